// Member lists for clients (spec: Client-Server API, GET /rooms/{roomId}/members, GET
// /rooms/{roomId}/joined_members; rooms.yaml).
import { forbidden } from "../../protocol/errors.js";
import { splitStateKey, type Pdu } from "../../protocol/pdu.js";
import type { ClientEvent } from "./client-event.js";
import type { RoomEngine } from "./engine.js";
import { eventRowColumns, formatRows, latestRowAtOrBefore, rowsByEventId, type EventRow } from "./event-rows.js";
import { VisibilityChecker, readerAccess } from "./history-visibility.js";
import type { Reader } from "./reads.js";

export const MEMBERSHIPS = ["join", "invite", "knock", "leave", "ban"] as const;

export interface MembersRequest {
  /** A room position (`at` token): the members in the state after the last event at or before it. */
  at?: number;
  membership?: string;
  notMembership?: string;
}

/** Spec: `membership` and `not_membership` together are an "or": the membership is `membership`, or it is
 * not `not_membership`. Alone, each filters as its name says. */
export function membershipSelected(m: string | null | undefined, request: MembersRequest): boolean {
  const { membership, notMembership } = request;
  if (membership === undefined && notMembership === undefined) return true;
  if (membership !== undefined && m === membership) return true;
  if (notMembership !== undefined && m !== notMembership) return true;
  return false;
}

/**
 * GET /rooms/{roomId}/members. Joined members (and world-readable peekers) get the current members, or
 * the members at `at`; a user who left gets the members when they left (an `at` later than that is cut
 * there). The state at `at` must be visible to the reader (history visibility of the event at that point),
 * else 403.
 */
export function roomMembers(engine: RoomEngine, reader: Reader, request: MembersRequest): ClientEvent[] {
  const access = readerAccess(engine, reader.userId);
  const latest = engine.maxStreamOrdering();
  const point = Math.min(request.at ?? latest, access.latestOrdering);

  if (point >= latest) {
    // The current state: one query over current_state joined to the events.
    const rows = engine.sql
      .exec<EventRow>(
        `SELECT ${eventRowColumns("e")} FROM current_state cs JOIN events e ON e.event_id = cs.event_id
         WHERE cs.type = 'm.room.member' ORDER BY cs.state_key`,
      )
      .toArray()
      .filter((r) => membershipSelected(r.membership, request));
    return formatRows(engine, rows, reader);
  }
  const row = latestRowAtOrBefore(engine, point);
  if (!row) return [];
  if (request.at !== undefined && !new VisibilityChecker(engine, reader.userId).canSee(row)) {
    throw forbidden("You may not see the room's members at that point");
  }
  const state = engine.stateGroups.load(row.state_group_after);
  const members: { userId: string; eventId: string }[] = [];
  for (const [key, eventId] of state) {
    const [type, userId] = splitStateKey(key);
    if (type === "m.room.member") members.push({ userId, eventId });
  }
  members.sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
  const rows = rowsByEventId(
    engine,
    members.map((m) => m.eventId),
  );
  const selected: EventRow[] = [];
  for (const m of members) {
    const r = rows.get(m.eventId);
    if (r && membershipSelected(r.membership, request)) selected.push(r);
  }
  return formatRows(engine, selected, reader);
}

/** Both keys are always there, null when the member event has none (as Synapse answers; Complement's
 * TestRoomState checks for `avatar_url` of a user without an avatar). */
export interface JoinedMember {
  display_name: string | null;
  avatar_url: string | null;
}

/** GET /rooms/{roomId}/joined_members: only for current members (spec: "The current user must be in the
 * room for it to work"). */
export function joinedMembers(engine: RoomEngine, userId: string): Record<string, JoinedMember> {
  if (!engine.meta() || engine.membershipOf(userId)?.membership !== "join") {
    throw forbidden("Getting joined members while not being a current member of the room is forbidden.");
  }
  const out: Record<string, JoinedMember> = {};
  for (const r of engine.sql.exec<{ state_key: string; json: string }>(
    `SELECT cs.state_key, e.json FROM current_state cs JOIN events e ON e.event_id = cs.event_id
     WHERE cs.type = 'm.room.member' AND cs.membership = 'join' ORDER BY cs.state_key`,
  )) {
    const content = (JSON.parse(r.json) as Pdu).content;
    out[r.state_key] = {
      display_name: typeof content?.displayname === "string" ? content.displayname : null,
      avatar_url: typeof content?.avatar_url === "string" ? content.avatar_url : null,
    };
  }
  return out;
}
