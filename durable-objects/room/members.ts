// Member lists for clients (spec: Client-Server API, GET /rooms/{roomId}/members, GET
// /rooms/{roomId}/joined_members; rooms.yaml).
import { forbidden } from "../../protocol/errors.js";
import { splitStateKey } from "../../protocol/pdu.js";
import type { ClientEvent } from "./client-event.js";
import type { RoomEngine } from "./engine.js";
import { latestRowAtOrBefore } from "./event-rows.js";
import { VisibilityChecker, readerAccess } from "./history-visibility.js";
import { clientEvents, type Reader } from "./reads.js";

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

  let ids: string[];
  if (point >= latest) {
    // The current state: one indexed query over current_state.
    ids = engine.sql
      .exec<{ event_id: string; membership: string | null }>("SELECT event_id, membership FROM current_state WHERE type = 'm.room.member' ORDER BY state_key")
      .toArray()
      .filter((r) => membershipSelected(r.membership, request))
      .map((r) => r.event_id);
  } else {
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
    ids = [];
    for (const m of members) {
      const membership = engine.sql.exec<{ membership: string | null }>("SELECT membership FROM events WHERE event_id = ?", m.eventId).toArray()[0]?.membership;
      if (membershipSelected(membership, request)) ids.push(m.eventId);
    }
  }
  return clientEvents(engine, ids, reader);
}

export interface JoinedMember {
  display_name?: string;
  avatar_url?: string;
}

/** GET /rooms/{roomId}/joined_members: only for current members (spec: "The current user must be in the
 * room for it to work"). */
export function joinedMembers(engine: RoomEngine, userId: string): Record<string, JoinedMember> {
  if (!engine.meta() || engine.membershipOf(userId)?.membership !== "join") {
    throw forbidden("Getting joined members while not being a current member of the room is forbidden.");
  }
  const out: Record<string, JoinedMember> = {};
  for (const r of engine.sql.exec<{ state_key: string; event_id: string }>(
    "SELECT state_key, event_id FROM current_state WHERE type = 'm.room.member' AND membership = 'join' ORDER BY state_key",
  )) {
    const content = engine.events.pdu(r.event_id)?.content;
    const member: JoinedMember = {};
    if (typeof content?.displayname === "string") member.display_name = content.displayname;
    if (typeof content?.avatar_url === "string") member.avatar_url = content.avatar_url;
    out[r.state_key] = member;
  }
  return out;
}
