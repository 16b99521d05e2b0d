// The room's part of the /sync response a push wakes, carried by the push itself (docs/fan-out.md, "The
// wake"; DESIGN.md: "Long-polls are woken by the writer"). A waiting /sync that a push wakes usually shows
// exactly the pushed events, and the worker would then ask the room for its part (`syncRoom`: one more
// round trip through the room, which locally shares one thread with everything else). So, for small
// rounds, the room computes that part when it pushes, with the same code (`roomSync`), for the request the
// User DO will plan in the common case: an incremental sync whose timeline is exactly these events, since
// the event before them, with or without lazy-loading members. The User DO keeps it in memory and hands it
// to the worker only when its plan asks for exactly that; anything else (a filter that needs content,
// full_state, state_after, the federation format, more or fewer events) asks the room as before.
import type { RoomEventNotification } from "../notifications.js";
import type { RoomEngine } from "./engine.js";
import { ACCEPTED } from "./event-rows.js";
import { isPartialState } from "./partial-state.js";
import { roomSync, type RoomSyncRequest } from "./sync-reads.js";
import { newestTimelineGap } from "./timeline-gaps.js";

/** Rounds with more recipients than this carry no part: its cost (one `roomSync` per recipient) would
 * grow with the room's listeners, and the wake of a big room is not this path's business. */
export const PUSHED_PART_MAX_RECIPIENTS = 8;

/**
 * The room's answer to `syncRoom` for the exact request described here (room/sync-reads.ts RoomSyncRequest
 * with mode `exact`, these `orderings`, `upto`, `sinceOrdering`, `limited: false`, no filters, client
 * format, no lazy-loading, no full state, no state_after, section `join`).
 */
export interface PushedSyncPart {
  roomId: string;
  sinceOrdering: number;
  upto: number;
  orderings: number[];
  /** The RoomSyncResult as JSON text: it only passes through the User DO (and plain text keeps RPC's type
   * mapping and structured cloning shallow). */
  result: string;
  /** Lazy-loading members (spec: "Lazy-loading room members"): the state of the same request with
   * `lazy_load_members` and nothing sent before (the member events of the timeline's senders and the
   * heroes, sorted as the room sorts state), as JSON text; the worker leaves out those the device has.
   * Absent where that request is not answered this way (a partial-state room, a member event the
   * recipient sent). */
  lazyState?: string;
}

/**
 * The part for one recipient of a round, or undefined when the round is not the simple case: an event of
 * the recipient's own (its `transaction_id` depends on the device) or about their membership (the plan is
 * then not an exact timeline), accepted events of the range not all pushed to them, a timeline gap, or a
 * part with state, sticky events or fewer events than pushed.
 */
export function pushedSyncPart(engine: RoomEngine, recipient: string, list: readonly RoomEventNotification[]): PushedSyncPart | undefined {
  const meta = engine.meta();
  if (!meta || list.length === 0 || engine.keyIdentity().active) return undefined;
  for (const n of list) {
    if (n.sender === recipient || (n.type === "m.room.member" && n.stateKey === recipient)) return undefined;
  }
  const first = list[0]!.streamOrdering;
  const upto = list[list.length - 1]!.streamOrdering;
  const accepted = engine.sql
    .exec<{ n: number; prev: number | null }>(
      `SELECT (SELECT COUNT(*) FROM events WHERE stream_ordering >= ?1 AND stream_ordering <= ?2 AND ${ACCEPTED}) AS n,
              (SELECT MAX(stream_ordering) FROM events WHERE stream_ordering < ?1 AND ${ACCEPTED}) AS prev`,
      first,
      upto,
    )
    .one();
  if (accepted.n !== list.length || accepted.prev === null) return undefined;
  const sinceOrdering = accepted.prev;
  if (newestTimelineGap(engine, sinceOrdering, upto) !== undefined) return undefined;
  const orderings = list.map((n) => n.streamOrdering);
  const request: RoomSyncRequest = {
    userId: recipient,
    section: "join",
    mode: "exact",
    upto,
    orderings,
    limited: false,
    sinceOrdering,
    limit: orderings.length,
    eventFormat: "client",
  };
  const result = roomSync(engine, request);
  if (result.state.length > 0 || result.sticky !== undefined || result.timeline.limited || result.timeline.events.length !== orderings.length) return undefined;
  const part: PushedSyncPart = { roomId: meta.roomId, sinceOrdering, upto, orderings, result: JSON.stringify(result) };
  if (!isPartialState(engine)) {
    const lazy = roomSync(engine, { ...request, lazyLoadMembers: true, lazyMembersSent: {} });
    // Only member events can differ; one the recipient sent could carry their device's transaction ID.
    if (lazy.state.every((e) => e.type === "m.room.member" && e.sender !== recipient)) part.lazyState = JSON.stringify(lazy.state);
  }
  return part;
}
