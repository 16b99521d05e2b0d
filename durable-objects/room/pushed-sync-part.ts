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
import { roomSummary, roomSync, type RoomSyncRequest } from "./sync-reads.js";
import { newestTimelineGap } from "./timeline-gaps.js";

/** Rounds with up to this many recipients get a part built for each; bigger rounds share parts
 * (`sharedPushedParts`): one `roomSync` per recipient would make the round's cost grow with the listeners. */
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
  if (!recipientFits(recipient, list)) return undefined;
  const built = buildPart(engine, recipient, list);
  return built && forRecipient(built, recipient);
}

/**
 * For rounds with more than PUSHED_PART_MAX_RECIPIENTS recipients: parts built once and shared by the
 * recipients they fit, so that the cost is one `roomSync` per distinct list (usually one per round) and a
 * few look-ups per recipient, not one `roomSync` each. What `roomSync` answers depends on the user only
 * through (a) history visibility and MSC4115 `unsigned.membership`, which for a user joined since before
 * the first pushed event are "visible" and "join" for every event of it (history-visibility.ts
 * `joinedFrom`), (b) the summary's heroes (the members other than the user, also the lazy state's), keyed
 * here, and (c) the user's own events and membership, refused as for one recipient. A recipient who does
 * not fit gets no part (their woken sync asks the room).
 */
export function sharedPushedParts(engine: RoomEngine): (recipient: string, list: readonly RoomEventNotification[]) => PushedSyncPart | undefined {
  const built = new Map<string, BuiltPart | null>();
  return (recipient, list) => {
    if (list.length === 0 || !recipientFits(recipient, list)) return undefined;
    const facts = recipientFacts(engine, recipient);
    if (facts.joinedAt === null || facts.joinedAt >= list[0]!.streamOrdering) return undefined;
    const key = `${list.map((n) => n.streamOrdering).join(",")}\n${facts.summary}`;
    let part = built.get(key);
    if (part === undefined) {
      part = buildPart(engine, recipient, list) ?? null;
      built.set(key, part);
    }
    return part === null ? undefined : forRecipient(part, recipient);
  };
}

/** What a shared part depends on of its recipient, read from the current state: kept per change of it
 * (RoomEngine.currentStateVersion), so that a big room's rounds do not read them for every listener. */
interface RecipientFacts {
  /** Stream ordering of the user's current join (null: not joined). */
  joinedAt: number | null;
  /** The user's room summary (its heroes leave the user out) as JSON text. */
  summary: string;
}
const recipientFactsCache = new WeakMap<RoomEngine, { version: number; byUser: Map<string, RecipientFacts> }>();
/** Recipients' facts kept per room at most. */
const RECIPIENT_FACTS_KEPT = 4096;

function recipientFacts(engine: RoomEngine, userId: string): RecipientFacts {
  let cache = recipientFactsCache.get(engine);
  if (cache?.version !== engine.currentStateVersion) recipientFactsCache.set(engine, (cache = { version: engine.currentStateVersion, byUser: new Map() }));
  let facts = cache.byUser.get(userId);
  if (facts === undefined) {
    const current = engine.membershipOf(userId);
    const joinedAt = current?.membership === "join" ? (engine.eventMeta(current.eventId)?.streamOrdering ?? null) : null;
    facts = { joinedAt, summary: JSON.stringify(roomSummary(engine, userId)) };
    if (cache.byUser.size >= RECIPIENT_FACTS_KEPT) cache.byUser.clear();
    cache.byUser.set(userId, facts);
  }
  return facts;
}

/** A part before the recipient's own check of its lazy state. */
interface BuiltPart {
  part: PushedSyncPart;
  /** The lazy state (member events only) and who sent its events. */
  lazy?: { text: string; senders: Set<string> };
}

/** Neither an event of the recipient's own nor one about their membership (see pushedSyncPart). */
function recipientFits(recipient: string, list: readonly RoomEventNotification[]): boolean {
  for (const n of list) {
    if (n.sender === recipient || (n.type === "m.room.member" && n.stateKey === recipient)) return false;
  }
  return true;
}

function forRecipient(built: BuiltPart, recipient: string): PushedSyncPart {
  const part = { ...built.part };
  // A member event the recipient sent could carry their device's transaction ID.
  if (built.lazy && !built.lazy.senders.has(recipient)) part.lazyState = built.lazy.text;
  return part;
}

function buildPart(engine: RoomEngine, recipient: string, list: readonly RoomEventNotification[]): BuiltPart | undefined {
  const meta = engine.meta();
  if (!meta || list.length === 0 || engine.keyIdentity().active) return undefined;
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
  const built: BuiltPart = { part: { roomId: meta.roomId, sinceOrdering, upto, orderings, result: JSON.stringify(result) } };
  if (!isPartialState(engine)) {
    const lazy = roomSync(engine, { ...request, lazyLoadMembers: true, lazyMembersSent: {} });
    // Only member events can differ.
    if (lazy.state.every((e) => e.type === "m.room.member")) built.lazy = { text: JSON.stringify(lazy.state), senders: new Set(lazy.state.map((e) => e.sender)) };
  }
  return built;
}
