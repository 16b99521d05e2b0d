// What simplified sliding sync (MSC4186) reads from a Room DO: one room's part of a response (timeline,
// `required_state`, name, avatar, heroes, member counts), one RPC per room and response. The User DO
// decides which rooms a response carries and from which point (durable-objects/user/sliding-sync.ts);
// this module reads the room. Where the proposal is silent it follows Synapse
// (synapse/handlers/sliding_sync/__init__.py `get_room_sync_data`).
//
// Unlike /sync, `required_state` is the state at the end of the timeline (the current state as of `upto`),
// not the state before it: the client replaces what it had for each key it receives.
import { LAZY, WILDCARD, wantsState, type RequiredState } from "../../protocol/sliding-sync.js";
import { splitStateKey, stateKey, type StateKey } from "../../protocol/pdu.js";
import { roomToken } from "../notifications.js";
import type { ClientEvent } from "./client-event.js";
import type { RoomEngine } from "./engine.js";
import { ACCEPTED, EVENT_ROW_COLUMNS, formatRows, type EventRow } from "./event-rows.js";
import { clientEvents } from "./reads.js";
import { isPartialState } from "./partial-state.js";
import { sqlLimit } from "../sql-limit.js";
import { StateRewinder, Visibility, memberFromAuthEvents, roomSummary, stickyEventIds } from "./sync-reads.js";

export interface SlidingRoomRequest {
  userId: string;
  deviceId?: string;
  /** The room stream ordering the response is complete up to (the user's point in the room). */
  upto: number;
  /** Previously sent on the connection: the room's point then (only what came after is new). Absent: the
   * room is sent from scratch (`initial`). */
  sinceOrdering?: number;
  /** The timeline limit grew since the room was last sent: the latest events again (`expanded_timeline`). */
  expandTimeline?: boolean;
  /** Events after this point count as live (`num_live`). */
  liveFrom: number;
  timelineLimit: number;
  requiredState: RequiredState;
  /** The required_state the room was last sent with, when the new one asks for more: the state only the
   * new one matches is sent in full. */
  previousRequiredState?: RequiredState;
  /** `$LAZY`: members whose membership this connection already sent for the room (not sent again unless
   * it changed since `sinceOrdering`). */
  lazySent?: string[];
}

export interface StrippedHero {
  user_id: string;
  displayname?: string;
  avatar_url?: string;
}

export interface SlidingRoomResult {
  timeline: ClientEvent[];
  limited: boolean;
  prevBatch: string;
  numLive: number;
  requiredState: ClientEvent[];
  /** Present when initial or changed: the name (null: removed). */
  name?: string | null;
  avatar?: string | null;
  heroes?: StrippedHero[];
  joinedCount: number;
  invitedCount: number;
  /** `$LAZY`: the members the connection has now been sent (the request's `lazySent`, less those whose
   * membership changed without being sent, plus those sent now); absent without `$LAZY`. */
  lazyMembers?: string[];
}

/** Members remembered per room and connection for `$LAZY` (beyond this the oldest are forgotten and may be
 * sent again: harmless, as Synapse's cache eviction). */
export const MAX_LAZY_MEMBERS_REMEMBERED = 100;

/** What the list filters need to know about a room (MSC4186 `is_encrypted`, `room_types`). */
export interface RoomFacts {
  roomType: string | null;
  encrypted: boolean;
}

/** How many rows one timeline scan reads at most (history visibility can hide many). */
const MAX_SCAN = 2000;

/**
 * The newest visible events with stream ordering in (after, upto], oldest first, at most `limit`;
 * `limited` when more visible events exist in that range (or the scan gave up).
 */
function scanTimeline(engine: RoomEngine, visibility: Visibility, after: number, upto: number, limit: number): { rows: EventRow[]; limited: boolean } {
  const rows: EventRow[] = [];
  let before = upto + 1;
  let scanned = 0;
  for (;;) {
    if (scanned >= MAX_SCAN) return { rows: rows.reverse(), limited: true };
    const batch = engine.sql
      .exec<EventRow>(
        `SELECT ${EVENT_ROW_COLUMNS} FROM events WHERE stream_ordering < ? AND stream_ordering > ? AND ${ACCEPTED} ORDER BY stream_ordering DESC LIMIT ${sqlLimit(2 * limit + 20)}`,
        before,
        after,
      )
      .toArray();
    if (batch.length === 0) return { rows: rows.reverse(), limited: false };
    for (const r of batch) {
      scanned += 1;
      before = r.stream_ordering;
      if (!visibility.canSee(r)) continue;
      if (rows.length === limit) return { rows: rows.reverse(), limited: true };
      rows.push(r);
    }
  }
}

/** The room's part of a sliding sync response (see SlidingRoomRequest). */
export function slidingRoom(engine: RoomEngine, request: SlidingRoomRequest, now = Date.now()): SlidingRoomResult | null {
  if (!engine.meta()) return null;
  const visibility = new Visibility(engine, request.userId);
  const initial = request.sinceOrdering === undefined;
  const since = request.sinceOrdering ?? 0;
  const upto = request.upto;

  // The timeline: from scratch (or expanded) the latest events; otherwise those after the last response.
  const after = initial || request.expandTimeline ? 0 : Math.min(since, upto);
  const { rows, limited } = scanTimeline(engine, visibility, after, upto, Math.max(0, request.timelineLimit));
  const first = rows[0];
  const prevBatch = roomToken(Math.max(0, first ? first.stream_ordering - 1 : upto));
  const numLive = rows.filter((r) => r.stream_ordering > request.liveFrom).length;

  // required_state.
  const rewinder = new StateRewinder(engine, Math.min(since, upto));
  const rs = request.requiredState;
  const ids = new Map<StateKey, string>();
  const wanted = (k: StateKey) => {
    const [type, sk] = splitStateKey(k);
    return wantsState(rs, type, sk);
  };
  if (initial) {
    addMatching(ids, rewinder, rs, upto, wanted);
  } else {
    for (const k of rewinder.changedKeys(since, upto)) {
      if (!wanted(k)) continue;
      const id = rewinder.valueAt(k, upto);
      if (id !== undefined) ids.set(k, id);
    }
    const old = request.previousRequiredState;
    if (old) {
      // A required_state that asks for more than last time: what only the new one matches, in full.
      addMatching(ids, rewinder, rs, upto, (k) => {
        const [type, sk] = splitStateKey(k);
        return wantsState(rs, type, sk) && !wantsState(old, type, sk);
      });
      if (rs.lazyMembers && !old.lazyMembers) for (const r of rows) addMember(ids, rewinder, r.sender, upto);
    }
  }
  let lazyMembers: string[] | undefined;
  if (rs.lazyMembers) {
    // `$LAZY` (MSC4186 "Lazy loaded memberships"; Synapse's lazy member cache per connection): the
    // members needed to render the timeline (its senders, and the targets of its membership events),
    // except those the timeline itself carries and those this connection was already sent, unless their
    // membership changed since.
    const inTimeline = new Set(rows.map((r) => r.event_id));
    const memberChanges = initial ? null : new Set([...rewinder.changedKeys(since, upto)].filter((k) => splitStateKey(k)[0] === "m.room.member").map((k) => splitStateKey(k)[1]));
    const sent = new Set(initial ? [] : (request.lazySent ?? []));
    if (memberChanges) for (const userId of memberChanges) sent.delete(userId);
    const needed = new Set<string>();
    for (const r of rows) {
      needed.add(r.sender);
      if (r.type === "m.room.member" && r.state_key !== null && r.state_key !== undefined) needed.add(r.state_key);
    }
    // A room joined with partial state lacks most members: a sender's membership is then taken from the
    // auth events of their timeline events, as /sync does (sync-reads.ts memberFromAuthEvents; Synapse's
    // sliding sync leaves it out, its /sync does not).
    const partial = isPartialState(engine);
    for (const userId of needed) {
      const k = stateKey("m.room.member", userId);
      const id = rewinder.valueAt(k, upto) ?? (partial ? memberFromAuthEvents(engine, rows, userId) : undefined);
      if (id === undefined) continue;
      if (!ids.has(k) && !inTimeline.has(id) && !sent.has(userId)) ids.set(k, id);
      // Sent now, or carried by the timeline, or sent before and unchanged: the client has it.
      sent.delete(userId);
      sent.add(userId);
    }
    lazyMembers = [...sent].slice(-MAX_LAZY_MEMBERS_REMEMBERED);
  }

  const reader = { userId: request.userId, deviceId: request.deviceId };
  const summary = roomSummary(engine, request.userId);
  const result: SlidingRoomResult = {
    timeline: formatRows(engine, rows, reader, now, visibility),
    limited,
    prevBatch,
    numLive,
    requiredState: clientEvents(engine, [...ids.values()], reader, now),
    joinedCount: summary["m.joined_member_count"],
    invitedCount: summary["m.invited_member_count"],
  };
  if (lazyMembers) result.lazyMembers = lazyMembers;

  // Name, avatar and heroes (MSC4186 "Currently or previously joined rooms"): sent from scratch, and
  // again when they changed.
  const changed = initial ? null : rewinder.changedKeys(since, upto);
  const nameKey = stateKey("m.room.name", "");
  const avatarKey = stateKey("m.room.avatar", "");
  if (changed === null || changed.has(nameKey)) result.name = stringContent(engine, rewinder.valueAt(nameKey, upto), "name");
  if (changed === null || changed.has(avatarKey)) result.avatar = stringContent(engine, rewinder.valueAt(avatarKey, upto), "url");
  if (initial && result.name === null) delete result.name;
  if (initial && result.avatar === null) delete result.avatar;
  const membersChanged = changed === null || [...changed].some((k) => splitStateKey(k)[0] === "m.room.member");
  const heroes = summary["m.heroes"];
  if (heroes && membersChanged) {
    result.heroes = heroes.map((userId) => {
      const hero: StrippedHero = { user_id: userId };
      const content = engine.currentStateEvent("m.room.member", userId)?.content;
      if (typeof content?.displayname === "string") hero.displayname = content.displayname;
      if (typeof content?.avatar_url === "string") hero.avatar_url = content.avatar_url;
      return hero;
    });
  }
  return result;
}

/** Adds the state at `upto` whose key passes `test`, looking keys up one by one when required_state
 * names them, and walking the whole state only for wildcards. */
function addMatching(ids: Map<StateKey, string>, rewinder: StateRewinder, rs: RequiredState, upto: number, test: (k: StateKey) => boolean): void {
  const wildcard = WILDCARD in rs.entries || Object.values(rs.entries).some((keys) => keys.includes(WILDCARD));
  if (wildcard) {
    for (const [k, id] of rewinder.stateAt(upto)) if (test(k)) ids.set(k, id);
    return;
  }
  for (const [type, keys] of Object.entries(rs.entries)) {
    for (const sk of keys) {
      if (sk === LAZY) continue;
      const k = stateKey(type, sk);
      if (!test(k)) continue;
      const id = rewinder.valueAt(k, upto);
      if (id !== undefined) ids.set(k, id);
    }
  }
}

function addMember(ids: Map<StateKey, string>, rewinder: StateRewinder, userId: string, upto: number): void {
  const k = stateKey("m.room.member", userId);
  const id = rewinder.valueAt(k, upto);
  if (id !== undefined) ids.set(k, id);
}

/** A string field of a state event's content; null when the event is absent or the field is not a
 * non-empty string (MSC4186: `name` null when removed). */
function stringContent(engine: RoomEngine, eventId: string | undefined, field: string): string | null {
  if (eventId === undefined) return null;
  const value = engine.events.pdu(eventId)?.content[field];
  return typeof value === "string" && value !== "" ? value : null;
}

/** The room's type and encryption, for list filters: from the current state, or, for a room this server
 * is not in (an invite over federation), from the stripped state the invite carried. */
export function roomFacts(engine: RoomEngine, userId: string): RoomFacts {
  if (engine.meta()) {
    const type = engine.currentStateEvent("m.room.create", "")?.content.type;
    return { roomType: typeof type === "string" ? type : null, encrypted: engine.currentStateEvent("m.room.encryption", "") !== undefined };
  }
  const stripped = (engine.outOfBandMembership(userId)?.strippedState ?? []) as unknown as { type: string; content?: { type?: unknown } }[];
  const create = stripped.find((e) => e.type === "m.room.create");
  return {
    roomType: typeof create?.content?.type === "string" ? create.content.type : null,
    encrypted: stripped.some((e) => e.type === "m.room.encryption"),
  };
}

/** The rooms a space names as children (`m.space.child` with a non-empty `via`; spec: "Spaces"). */
export function spaceChildren(engine: RoomEngine): string[] {
  if (!engine.meta()) return [];
  const out: string[] = [];
  for (const [k, id] of engine.currentState()) {
    const [type, sk] = splitStateKey(k);
    if (type !== "m.space.child") continue;
    const via = engine.events.pdu(id)?.content.via;
    if (Array.isArray(via) && via.length > 0) out.push(sk);
  }
  return out;
}


/** The sticky events extension's question to one room (MSC4354; Synapse's extension
 * `org.matrix.msc4354.sticky_events`): its unexpired sticky events with stream ordering in (after, upto]. */
export interface SlidingStickyRequest {
  userId: string;
  deviceId?: string;
  after: number;
  upto: number;
}

/** The room's unexpired sticky events in the request's range, oldest first (at most 100, the newest). No
 * history-visibility check: MSC4354 lets every joined member see them while they are sticky (the User DO
 * asks only about rooms the user is joined to). */
export function slidingStickyEvents(engine: RoomEngine, request: SlidingStickyRequest, now = Date.now()): ClientEvent[] {
  if (!engine.meta()) return [];
  const ids = stickyEventIds(engine, { mode: "exact", sinceOrdering: request.after, upto: request.upto }, new Set(), now);
  return clientEvents(engine, ids, { userId: request.userId, deviceId: request.deviceId }, now);
}
