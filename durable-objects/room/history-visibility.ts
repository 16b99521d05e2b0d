// History visibility (spec: Client-Server API, "Room History Visibility", "Server behaviour"): which events
// of a room a user may see. One checker per reader and request, used by every read path (/messages,
// /context, /event, /relations, /threads, /members?at=, timestamp_to_event, bundled aggregations).
//
// The rules depend on the state of the room *at the event*:
//   1. history_visibility world_readable: allow;
//   2. the user's membership was join: allow;
//   3. history_visibility shared and the user joined the room at any point after the event: allow;
//   4. the user's membership was invite and history_visibility invited: allow;
//   5. otherwise deny.
// For an m.room.history_visibility event the more permissive of the value before and after it counts; for
// the user's own m.room.member event, the more permissive of their membership before and after it.
//
// Cost: the two values a decision needs (history_visibility and the user's membership) are read from the
// event's state group together, in one query over the group's O(log N) base chain (state-lookup.ts; no
// full state map), and memoised per state group, so a page of events that share a few groups costs a few
// queries. Events after the user's current join need none at all.
import { forbidden } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import type { RoomEngine } from "./engine.js";
import { ACCEPTED, pduOf, type EventRow } from "./event-rows.js";
import { lookupStateKeys } from "./state-lookup.js";

export type HistoryVisibility = "world_readable" | "shared" | "invited" | "joined";

/** Most permissive first. */
const VISIBILITY_RANK: Record<HistoryVisibility, number> = { world_readable: 0, shared: 1, invited: 2, joined: 3 };

/** The value of an m.room.history_visibility content; absent or not understood means `shared` (spec). */
export function historyVisibilityOf(content: JsonObject | undefined): HistoryVisibility {
  const v = content?.history_visibility;
  return typeof v === "string" && Object.hasOwn(VISIBILITY_RANK, v) ? (v as HistoryVisibility) : "shared";
}

/** Membership for the purpose of visibility, most permissive first (join, then invite; others see nothing
 * through membership). */
const membershipRank = (m: string | undefined): number => (m === "join" ? 0 : m === "invite" ? 1 : 2);

/** Synapse's MEMBERSHIP_PRIORITY: "most joined" first (MSC4115's choice for the user's own member event). */
const MEMBERSHIP_PRIORITY = ["join", "invite", "knock", "leave", "ban"];
const knownMembership = (m: string | undefined): string => (m !== undefined && MEMBERSHIP_PRIORITY.includes(m) ? m : "leave");

/** Whether the history visibility in a room's current state is world_readable. */
export function isWorldReadable(engine: RoomEngine): boolean {
  return historyVisibilityOf(engine.currentStateEvent("m.room.history_visibility", "")?.content) === "world_readable";
}

/** What a reader may do in a room at all, before any per-event check. */
export interface ReaderAccess {
  /** The user's current membership, if any. */
  membership: string | undefined;
  /** The last stream ordering the reader's default view of the timeline starts from: the room's latest
   * event, or for a user who left (or was banned) the event that removed them (spec: "After a user has
   * left a room, they may see any events which they were allowed to see before they left the room, but no
   * events received after they left."). */
  latestOrdering: number;
  /** The room is world-readable now and the reader reads it as a non-member (peeking). */
  peeking: boolean;
}

/**
 * The gate of the room read endpoints (Synapse's `check_user_in_room_or_world_readable`): members, users
 * who left or were banned (and did not forget the room), and anyone in a world-readable room may read;
 * others (and unknown rooms) get 403. What each of them may see is then decided per event.
 */
export function readerAccess(engine: RoomEngine, userId: string): ReaderAccess {
  const meta = engine.meta();
  if (meta) {
    const m = engine.membershipOf(userId);
    const latest = engine.maxStreamOrdering();
    if (m?.membership === "join") return { membership: "join", latestOrdering: latest, peeking: false };
    if ((m?.membership === "leave" || m?.membership === "ban") && !engine.isForgotten(userId)) {
      if (isWorldReadable(engine)) return { membership: m.membership, latestOrdering: latest, peeking: true };
      const at = engine.eventMeta(m.eventId)?.streamOrdering ?? latest;
      return { membership: m.membership, latestOrdering: at, peeking: false };
    }
    if (isWorldReadable(engine)) return { membership: m?.membership, latestOrdering: latest, peeking: true };
  }
  throw forbidden(`User ${userId} not in room ${meta?.roomId ?? "(unknown)"}, and room previews are disabled`);
}

/** What the checker knows of the state at one group. */
interface GroupState {
  visibility: HistoryVisibility;
  /** The reader's member event in that state, if any. */
  memberEvent: string | undefined;
  /** Its membership, read when first needed (null: the event has none). */
  membership?: string | null;
}

/** Decides, event by event, what one user may see (see the top of this file). */
export class VisibilityChecker {
  /** Stream ordering of the user's current join: later events were all sent while they were joined. */
  private readonly joinedFrom: number | undefined;
  /** Stream ordering of the user's latest join (Infinity while joined): rule 3's "joined after". */
  private readonly lastJoin: number;
  private readonly byGroup = new Map<number | null, GroupState>();
  /** State-group look-ups made (tests and benchmarks). */
  lookups = 0;

  constructor(
    private readonly engine: RoomEngine,
    readonly userId: string,
  ) {
    // The user's current membership and the stream ordering of its event, in one query (every room of an
    // initial /sync builds one of these, most of them in a Room DO that just started), or none when a sync
    // read the current state's rows already: their ordering is where the membership was set, at or after
    // its event. Either is a valid `joinedFrom` (the user was joined from there on); events between the
    // two, which a resolved fork can leave, take the full check below.
    const known = engine.currentMembershipForReads(userId);
    const current =
      known !== undefined
        ? known && { membership: known.membership, stream_ordering: known.streamOrdering }
        : engine.sql
            .exec<{ membership: string | null; stream_ordering: number | null }>(
              `SELECT c.membership, e.stream_ordering FROM current_state c LEFT JOIN events e ON e.event_id = c.event_id
               WHERE c.type = 'm.room.member' AND c.state_key = ?`,
              userId,
            )
            .toArray()[0];
    if (current?.membership === "join") {
      this.joinedFrom = current.stream_ordering ?? undefined;
      this.lastJoin = Infinity;
    } else {
      this.lastJoin =
        engine.sql
          .exec<{ m: number | null }>(
            `SELECT MAX(stream_ordering) AS m FROM events WHERE type = 'm.room.member' AND state_key = ? AND membership = 'join' AND ${ACCEPTED}`,
            userId,
          )
          .one().m ?? -1;
    }
  }

  /** Whether the user may see the event of `row`. */
  canSee(row: EventRow): boolean {
    if (this.joinedFrom !== undefined && row.stream_ordering >= this.joinedFrom) return true;

    let visibility = this.historyVisibilityAt(row.state_group_before);
    if (row.type === "m.room.history_visibility" && row.state_key === "") {
      const after = historyVisibilityOf(pduOf(row).content);
      if (VISIBILITY_RANK[after] < VISIBILITY_RANK[visibility]) visibility = after;
    }
    if (visibility === "world_readable") return true;
    // Rule 3 needs no membership look-up: decide it first.
    if (visibility === "shared" && this.lastJoin > row.stream_ordering) return true;

    let membership: string | undefined;
    if (row.type === "m.room.member" && row.state_key === this.userId) {
      const before = row.replaces_state === null ? undefined : this.membershipOfEvent(row.replaces_state);
      const after = row.membership ?? undefined;
      membership = membershipRank(after) <= membershipRank(before) ? after : before;
    } else {
      membership = this.membershipAtGroup(row.state_group_before);
    }
    if (membership === "join") return true;
    if (visibility === "invited" && membership === "invite") return true;
    return false;
  }

  /**
   * MSC4115 (`unsigned.membership`): the user's membership at the time of the event, as Synapse computes
   * it in `filter_events_for_client`: the membership in the state before the event, except that for the
   * user's own member event the "more joined" of the memberships before and after it counts (so a join
   * event says `join` and a leave after a join says `join`). No membership is `leave`.
   */
  membershipAt(row: EventRow): string {
    if (this.joinedFrom !== undefined && row.stream_ordering >= this.joinedFrom) return "join";
    if (row.type === "m.room.member" && row.state_key === this.userId) {
      const before = knownMembership(row.replaces_state === null ? undefined : this.membershipOfEvent(row.replaces_state));
      const after = knownMembership(row.membership ?? undefined);
      return MEMBERSHIP_PRIORITY.indexOf(after) <= MEMBERSHIP_PRIORITY.indexOf(before) ? after : before;
    }
    return knownMembership(this.membershipAtGroup(row.state_group_before));
  }

  /** The rows the user may see, in the given order. */
  filter<T extends EventRow>(rows: readonly T[]): T[] {
    return rows.filter((r) => this.canSee(r));
  }

  /** The two state entries a decision needs at `group`, read together in one query (state-lookup.ts). */
  private stateAt(group: number | null): GroupState {
    let state = this.byGroup.get(group);
    if (state === undefined) {
      this.lookups += 1;
      const [visibilityEvent, memberEvent] = lookupStateKeys(this.engine.sql, group, [
        ["m.room.history_visibility", ""],
        ["m.room.member", this.userId],
      ]);
      state = {
        visibility: historyVisibilityOf(visibilityEvent === undefined ? undefined : this.engine.events.pdu(visibilityEvent)?.content),
        memberEvent,
      };
      this.byGroup.set(group, state);
    }
    return state;
  }

  private historyVisibilityAt(group: number | null): HistoryVisibility {
    return this.stateAt(group).visibility;
  }

  private membershipAtGroup(group: number | null): string | undefined {
    const state = this.stateAt(group);
    if (state.membership === undefined && state.memberEvent !== undefined) state.membership = this.membershipOfEvent(state.memberEvent) ?? null;
    return state.membership ?? undefined;
  }

  private membershipOfEvent(eventId: string): string | undefined {
    const r = this.engine.sql.exec<{ membership: string | null }>("SELECT membership FROM events WHERE event_id = ?", eventId).toArray()[0];
    return r?.membership ?? undefined;
  }
}
