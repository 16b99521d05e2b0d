// What /sync reads from a Room DO (spec: GET /sync, "Syncing"; "History visibility"; "Stripped state";
// "Lazy-loading room members"). The User DO decides which room events are new for a sync response (its
// inbox holds one row per notification); this module turns that into the room's part of the response:
// the timeline (visible, filtered, limited, with prev_batch), the state before or after it, and the
// summary. One RPC per room and response, whatever the number of events.
//
// "State at a point" is read from the current state and the state_deltas log (engine.ts): the state after
// room stream ordering X is the current state with every delta after X undone (each delta row keeps the
// event it replaced). A sync reads near the head of the room, so that is a handful of rows, and it is the
// current state as the room had it at X (after state resolution of forks), which is what clients saw.
import type { RoomEventFilter } from "../../protocol/filter.js";
import { eventPasses } from "../../protocol/event-filter.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { authEventIds, splitStateKey, stateKey, type IdentifiedPdu, type Pdu, type StateKey } from "../../protocol/pdu.js";
import { roomToken, type ReceiptUpdate } from "../notifications.js";
import { MAX_STICKY_DURATION_MS, stickyDurationMs, stickyUntil, type ClientEvent } from "./client-event.js";
import type { RoomEngine } from "./engine.js";
import { ACCEPTED, EVENT_ROW_COLUMNS, MAX_PARAMS, formatRows, pduOf, type EventRow } from "./event-rows.js";
import { VisibilityChecker } from "./history-visibility.js";
import { wirePdu } from "./federation-reads.js";
import { newestTimelineGap } from "./timeline-gaps.js";
import { clientEvents } from "./reads.js";
import { isPartialState } from "./partial-state.js";
import { stickyReceivedAt } from "./sticky-receipt.js";
import { passesFilter } from "./timeline.js";
import { sqlLimit } from "../sql-limit.js";

/** A federation-format event (spec: Filter `event_format` `federation`): the stored PDU with its event ID. */
export type FederationEvent = IdentifiedPdu;

export type SyncEvent = ClientEvent | FederationEvent;

export interface RoomSyncRequest {
  userId: string;
  deviceId?: string;
  /** The section the room appears in. */
  section: "join" | "leave";
  /**
   * `latest`: the newest events with stream ordering <= `upto` (initial sync, a newly joined room, a left
   * room in an initial sync), with the full state. `exact`: the new events of an incremental sync,
   * `orderings` ascending (already narrowed by type and sender by the User DO).
   */
  mode: "latest" | "exact";
  upto: number;
  orderings?: number[];
  /** exact: the User DO dropped older candidates to honour the limit. */
  limited?: boolean;
  /** exact: the room's point at the since token; state changes after it are reported. */
  sinceOrdering?: number;
  limit: number;
  timelineFilter?: RoomEventFilter;
  stateFilter?: RoomEventFilter;
  lazyLoadMembers?: boolean;
  /** Lazy-loading without redundant members: member events the client already has (user ID → event ID). */
  lazyMembersSent?: Record<string, string>;
  /** Return the full state (full_state=true, or latest mode). */
  fullState?: boolean;
  /** MSC4222 `use_state_after`: report the state at the end of the timeline. */
  stateAfter?: boolean;
  eventFormat?: "client" | "federation";
  /** Include the room's public receipts (initial sync of the room). */
  includeReceipts?: boolean;
}

export interface RoomSummary {
  "m.heroes"?: string[];
  "m.joined_member_count": number;
  "m.invited_member_count": number;
}

export interface RoomSyncResult {
  timeline: { events: SyncEvent[]; limited: boolean; prev_batch: string };
  /** `state` (request.stateAfter false) or `state_after` (true). */
  state: SyncEvent[];
  summary?: RoomSummary;
  /** The room's receipts (includeReceipts). */
  receipts?: ReceiptUpdate[];
  /** MSC4354: unexpired sticky events the timeline does not carry (joined rooms; absent when none). */
  sticky?: SyncEvent[];
}

/** A stripped state event (spec: "Stripped state"). */
export interface StrippedStateEvent {
  type: string;
  state_key: string;
  content: JsonObject;
  sender: string;
}

/** Spec "Stripped state": the state a user sees about a room they are invited to or knocked on. */
export const STRIPPED_STATE_TYPES = [
  "m.room.create",
  "m.room.name",
  "m.room.avatar",
  "m.room.topic",
  "m.room.join_rules",
  "m.room.canonical_alias",
  "m.room.encryption",
];

/** How many rows a latest-mode scan reads at most before it gives up filling the timeline. */
const MAX_SCAN = 2000;

type Row = EventRow;

/** Who may see which event (room/history-visibility.ts, shared with /messages and the other read paths),
 * plus one rule of Synapse's that sync needs: the user's own membership change made by themselves
 * (leaving, rejecting an invite, withdrawing a knock) is always visible to them, or a rejected invite
 * could never leave their client. */
export class Visibility {
  private readonly checker: VisibilityChecker;

  constructor(
    engine: RoomEngine,
    private readonly userId: string,
  ) {
    this.checker = new VisibilityChecker(engine, userId);
  }

  canSee(row: Row): boolean {
    if (row.type === "m.room.member" && row.state_key === this.userId && row.sender === this.userId) return true;
    return this.checker.canSee(row);
  }

  /** MSC4115: the user's membership at the event (history-visibility.ts). */
  membershipAt(row: Row): string {
    return this.checker.membershipAt(row);
  }
}

/** The state at points of the room, from the current state and the delta log. */
export class StateRewinder {
  private readonly current: ReadonlyMap<StateKey, string>;
  /** Deltas after `from`, oldest first. */
  private readonly deltas: { ordering: number; key: StateKey; eventId: string | null; prevEventId: string | null }[];

  constructor(engine: RoomEngine, from: number) {
    this.current = engine.currentStateForReads();
    this.deltas = engine.sql
      .exec<{ stream_ordering: number; type: string; state_key: string; event_id: string | null; prev_event_id: string | null }>(
        "SELECT stream_ordering, type, state_key, event_id, prev_event_id FROM state_deltas WHERE stream_ordering > ? ORDER BY stream_ordering",
        from,
      )
      .toArray()
      .map((r) => ({ ordering: r.stream_ordering, key: stateKey(r.type, r.state_key), eventId: r.event_id, prevEventId: r.prev_event_id }));
  }

  /** The full state after ordering `at` (at >= from). */
  stateAt(at: number): Map<StateKey, string> {
    const state = new Map(this.current);
    for (let i = this.deltas.length - 1; i >= 0; i--) {
      const d = this.deltas[i]!;
      if (d.ordering <= at) break;
      if (d.prevEventId === null) state.delete(d.key);
      else state.set(d.key, d.prevEventId);
    }
    return state;
  }

  /** One key's event after ordering `at` (at >= from). */
  valueAt(key: StateKey, at: number): string | undefined {
    for (const d of this.deltas) {
      if (d.ordering > at && d.key === key) return d.prevEventId ?? undefined;
    }
    return this.current.get(key);
  }

  /** Keys changed by deltas with ordering in (after, upto]. */
  changedKeys(after: number, upto: number): Set<StateKey> {
    const keys = new Set<StateKey>();
    for (const d of this.deltas) if (d.ordering > after && d.ordering <= upto) keys.add(d.key);
    return keys;
  }
}

function rowsAt(engine: RoomEngine, orderings: number[]): Row[] {
  const out: Row[] = [];
  for (let i = 0; i < orderings.length; i += MAX_PARAMS) {
    const chunk = orderings.slice(i, i + MAX_PARAMS);
    out.push(
      ...engine.sql
        .exec<Row>(`SELECT ${EVENT_ROW_COLUMNS} FROM events WHERE stream_ordering IN (${chunk.map(() => "?").join(",")}) AND ${ACCEPTED}`, ...chunk)
        .toArray(),
    );
  }
  return out.sort((a, b) => a.stream_ordering - b.stream_ordering);
}

/** The room's part of a /sync response (see RoomSyncRequest). */
export function roomSync(engine: RoomEngine, request: RoomSyncRequest, now = Date.now()): RoomSyncResult {
  const meta = engine.meta();
  if (!meta) return { timeline: { events: outOfBandTimeline(engine, request), limited: false, prev_batch: roomToken(0) }, state: [] };
  // Read first: in a Room DO that just started, its rows also answer the reader's membership and the
  // summary's counts (engine.ts currentStateForReads).
  engine.currentStateForReads();
  const visibility = new Visibility(engine, request.userId);
  const limit = Math.max(0, request.limit);

  // The timeline.
  let timelineRows: Row[];
  let limited: boolean;
  /** Latest mode, when the scan read the whole room up to `upto`: every accepted row, newest first. */
  let everyAcceptedRow: Row[] | undefined;
  if (request.mode === "exact") {
    timelineRows = rowsAt(engine, request.orderings ?? []).filter(
      (r) => r.stream_ordering <= request.upto && visibility.canSee(r) && passesFilter(engine, request.timelineFilter, r),
    );
    limited = request.limited === true || timelineRows.length > limit;
    if (timelineRows.length > limit) timelineRows = timelineRows.slice(timelineRows.length - limit);
    // A hole in the DAG inside the range (room/timeline-gaps.ts): only the events from it on, limited, as
    // Synapse's `_load_filtered_recents` does with `get_timeline_gaps`.
    const gap = request.sinceOrdering === undefined ? undefined : newestTimelineGap(engine, request.sinceOrdering, request.upto);
    if (gap !== undefined) {
      timelineRows = timelineRows.filter((r) => r.stream_ordering >= gap);
      limited = true;
    }
  } else {
    timelineRows = [];
    limited = false;
    let before = request.upto + 1;
    let scanned = 0;
    const batchSize = 2 * limit + 20;
    const read: Row[] = [];
    let readAll = false;
    scan: while (scanned < MAX_SCAN) {
      const batch = engine.sql
        .exec<Row>(`SELECT ${EVENT_ROW_COLUMNS} FROM events WHERE stream_ordering < ? AND ${ACCEPTED} ORDER BY stream_ordering DESC LIMIT ${sqlLimit(batchSize)}`, before)
        .toArray();
      for (const r of batch) {
        scanned += 1;
        before = r.stream_ordering;
        read.push(r);
        if (!passesFilter(engine, request.timelineFilter, r) || !visibility.canSee(r)) continue;
        if (timelineRows.length === limit) {
          limited = true; // one more visible event exists before the timeline
          break scan;
        }
        timelineRows.push(r);
      }
      // A short batch is the room's first events: no further read (a small room is one query).
      if (batch.length < batchSize) {
        readAll = true;
        break;
      }
    }
    if (scanned >= MAX_SCAN) limited = true;
    timelineRows.reverse();
    // Every accepted event up to `upto` was read: the sticky events are among them (no second read).
    if (readAll) everyAcceptedRow = read;
  }
  const first = timelineRows[0];
  const start = first ? first.stream_ordering - 1 : request.upto; // the point just before the timeline
  // An initial (latest-mode) timeline that holds every visible event the filter lets through gets the sync
  // point itself as prev_batch, as Synapse's `_load_filtered_recents` (only a trimmed timeline moves it):
  // `/members?at=<prev_batch>` then answers the members at the sync point, not the empty state before the
  // create event (Complement's TestGetRoomMembersAtPoint).
  const prevBatch = roomToken(request.mode === "latest" && !limited ? request.upto : Math.max(0, start));

  // The state.
  const since = request.mode === "exact" && !request.fullState ? (request.sinceOrdering ?? 0) : start;
  const rewinder = new StateRewinder(engine, Math.min(since, start));
  const stateIds = new Map<StateKey, string>();
  const fullState = request.mode === "latest" || request.fullState === true;
  const inTimeline = new Set(timelineRows.map((r) => r.event_id));
  if (request.stateAfter) {
    if (fullState) for (const [k, id] of rewinder.stateAt(request.upto)) stateIds.set(k, id);
    else {
      for (const k of rewinder.changedKeys(since, request.upto)) {
        const id = rewinder.valueAt(k, request.upto);
        if (id !== undefined) stateIds.set(k, id);
      }
    }
  } else {
    if (fullState) for (const [k, id] of rewinder.stateAt(start)) stateIds.set(k, id);
    else {
      for (const k of rewinder.changedKeys(since, start)) {
        const id = rewinder.valueAt(k, start);
        if (id !== undefined) stateIds.set(k, id);
      }
    }
    // State changed inside the timeline's range by events the timeline does not show (filtered out, or
    // older than the limit when the User DO cut the candidates): the client learns the final value here.
    for (const k of rewinder.changedKeys(start, request.upto)) {
      const id = rewinder.valueAt(k, request.upto);
      if (id !== undefined && !inTimeline.has(id)) stateIds.set(k, id);
    }
  }

  // Lazy-loading members (spec: "Lazy-loading room members"): only the members the timeline needs (its
  // senders), the user's own membership when the state is full, and the heroes.
  const read = new Map((everyAcceptedRow ?? timelineRows).map((r) => [r.event_id, r]));
  // The summary only when it may say something new (spec: a count that has not changed since the last sync
  // may be omitted; the heroes come from the same member events): a full state, or a change in the range to
  // a member event, the name or the canonical alias. Synapse goes further and leaves it out of every sync
  // that does not lazy-load members. Most incremental syncs (messages) skip its queries this way.
  const summaryMayChange =
    fullState || [...rewinder.changedKeys(since, request.upto)].some((k) => SUMMARY_STATE_TYPES.has(splitStateKey(k)[0]));
  const summary = request.section === "join" && summaryMayChange ? roomSummary(engine, request.userId, (id) => read.get(id)) : undefined;
  if (request.lazyLoadMembers) {
    const partial = isPartialState(engine);
    const wanted = new Set(timelineRows.map((r) => r.sender));
    if (fullState) wanted.add(request.userId);
    for (const hero of summary?.["m.heroes"] ?? []) wanted.add(hero);
    const gap = fullState ? new Set<StateKey>() : rewinder.changedKeys(since, start);
    for (const k of [...stateIds.keys()]) {
      const [type, sk] = splitStateKey(k);
      // Membership changes in the gap are always returned (spec: "When a sync is limited ...").
      if (type === "m.room.member" && !wanted.has(sk) && !gap.has(k)) stateIds.delete(k);
    }
    const at = request.stateAfter ? request.upto : start;
    const sent = request.lazyMembersSent ?? {};
    for (const user of wanted) {
      const k = stateKey("m.room.member", user);
      if (stateIds.has(k)) continue;
      const id = rewinder.valueAt(k, at);
      // Spec (include_redundant_members false): a member event the client already has is not sent again.
      if (id !== undefined && id !== sent[user] && (request.stateAfter || !inTimeline.has(id))) stateIds.set(k, id);
      else if (id === undefined && partial) {
        // A partial-state join lacks most members: the sender's membership is taken from the auth events
        // of their timeline events, as Synapse's `_find_missing_partial_state_memberships` does (Complement
        // msc3902 "Lazy-loading ... includes remote memberships during partial state join").
        const fromAuth = memberFromAuthEvents(engine, timelineRows, user);
        if (fromAuth !== undefined && fromAuth !== sent[user]) stateIds.set(k, fromAuth);
      }
    }
  }

  // The state filter (types, senders) applies to the state section.
  const stateEventIds: string[] = [];
  for (const [k, id] of [...stateIds].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    const [type] = splitStateKey(k);
    if (request.stateFilter && !eventPasses(request.stateFilter, { type, sender: engine.events.pdu(id)?.sender })) continue;
    stateEventIds.push(id);
  }

  const reader = { userId: request.userId, deviceId: request.deviceId };
  const format = (ids: string[]): SyncEvent[] =>
    request.eventFormat === "federation" ? federationEvents(engine, ids, now) : clientEvents(engine, ids, reader, now);

  const result: RoomSyncResult = {
    timeline: {
      events: request.eventFormat === "federation" ? format(timelineRows.map((r) => r.event_id)) : formatRows(engine, timelineRows, reader, now, visibility),
      limited,
      prev_batch: prevBatch,
    },
    state: format(stateEventIds),
  };
  if (summary) result.summary = summary;
  if (request.section === "join") {
    const sticky = stickyEventIds(engine, request, inTimeline, now, everyAcceptedRow);
    if (sticky.length > 0) result.sticky = format(sticky);
  }
  return result;
}

/** The member event of `user` among the auth events of their events in `rows` (the latest first). */
export function memberFromAuthEvents(engine: RoomEngine, rows: Row[], user: string): string | undefined {
  for (let i = rows.length - 1; i >= 0; i--) {
    const row = rows[i]!;
    if (row.sender !== user) continue;
    for (const authId of authEventIds(engine.events.pdu(row.event_id) ?? ({} as Pdu))) {
      const m = engine.events.meta(authId);
      if (m && m.type === "m.room.member" && m.stateKey === user && m.rejectedReason === null) return authId;
    }
  }
  return undefined;
}

/**
 * A room this server is not in: the user's out-of-band leave (a rejected or rescinded invite, a withdrawn
 * knock) is the whole timeline of their left room, as Synapse shows it, so that clients see the membership
 * change (Complement's SyncLeftFrom reads it there).
 */
function outOfBandTimeline(engine: RoomEngine, request: RoomSyncRequest): SyncEvent[] {
  if (request.eventFormat === "federation") return [];
  const own = engine.outOfBandMembership(request.userId);
  if (!own || (own.membership !== "leave" && own.membership !== "ban")) return [];
  const pdu = engine.events.pdu(own.eventId);
  if (!pdu || typeof pdu.state_key !== "string") return [];
  const event = { event_id: own.eventId, type: pdu.type, state_key: pdu.state_key, sender: pdu.sender, content: pdu.content, origin_server_ts: pdu.origin_server_ts, unsigned: {} };
  return [event as unknown as SyncEvent];
}

/** What the `events_sticky` index (schema.ts) looks for in an event's JSON; the query below spells its
 * condition exactly as the index does, so that SQLite uses it. */
const STICKY_KEY = '"msc4354_sticky"';

/** Sticky-index rows a scan reads at most, and sticky events one response carries at most. */
const MAX_STICKY_SCAN = 1000;
const MAX_STICKY_EVENTS = 100;

/**
 * MSC4354: the room's sticky events that are still sticky now and that the client should have but the
 * timeline does not carry: all of them for an initial sync or a room the user just joined (`latest`), those
 * after the since token for an incremental sync (the ones a limited timeline left out). Oldest first.
 * Read from the partial index `events_sticky` (schema.ts), newest first; an event can only still be sticky
 * if its origin_server_ts is within the longest duration (start = min(origin_server_ts, receipt)), but events
 * from other servers can arrive late, so an old one does not end the scan.
 */
export function stickyEventIds(
  engine: RoomEngine,
  request: Pick<RoomSyncRequest, "mode" | "sinceOrdering" | "upto">,
  inTimeline: ReadonlySet<string>,
  now: number,
  /** Every accepted row with stream ordering <= upto, newest first, when the caller has read them all
   * already (a small room's initial sync): the candidates are taken from them, as the query would. */
  everyAcceptedRow?: readonly Row[],
): string[] {
  const after = request.mode === "exact" ? (request.sinceOrdering ?? 0) : 0;
  const rows = everyAcceptedRow
    ? everyAcceptedRow
        .filter((r) => r.stream_ordering > after && r.stream_ordering <= request.upto && r.json.includes(STICKY_KEY))
        .slice(0, MAX_STICKY_SCAN)
    : engine.sql
        .exec<{ event_id: string; origin_server_ts: number; json: string }>(
          `SELECT event_id, origin_server_ts, json FROM events
           WHERE instr(json, '${STICKY_KEY}') > 0 AND stream_ordering > ? AND stream_ordering <= ? AND ${ACCEPTED}
           ORDER BY stream_ordering DESC LIMIT ${sqlLimit(MAX_STICKY_SCAN)}`,
          after,
          request.upto,
        )
        .toArray();
  const found: string[] = [];
  for (const row of rows) {
    if (row.origin_server_ts <= now - MAX_STICKY_DURATION_MS || inTimeline.has(row.event_id)) continue;
    const pdu = JSON.parse(row.json) as { [key: string]: unknown; origin_server_ts: number };
    const duration = stickyDurationMs(pdu);
    // No history-visibility check (MSC4354: "History visibility checks MUST NOT be applied to sticky
    // events ... Any joined user is authorised to see sticky events for the duration they remain sticky";
    // Synapse passes them as always_include_ids). This section is for joined rooms only.
    if (duration === undefined || stickyUntil(pdu, duration, now, stickyReceivedAt(engine, row.event_id)) <= now) continue;
    found.push(row.event_id);
    if (found.length >= MAX_STICKY_EVENTS) break;
  }
  return found.reverse();
}

function federationEvents(engine: RoomEngine, ids: string[], now: number): FederationEvent[] {
  const out: FederationEvent[] = [];
  for (const id of ids) {
    const pdu = engine.events.pdu(id);
    if (!pdu) continue;
    const unsigned = isJsonObject(pdu.unsigned) ? { ...pdu.unsigned } : {};
    unsigned.age = Math.max(0, now - pdu.origin_server_ts);
    out.push({ ...pdu, event_id: id, unsigned });
  }
  return out;
}

/** The room summary (spec: /sync `summary`): member counts and, when the room has no name or canonical
 * alias, up to 5 heroes (joined or invited members other than the user, by stream ordering; left and
 * banned members when there are none). */
export function roomSummary(engine: RoomEngine, userId: string, readRow: (eventId: string) => Row | undefined = () => undefined): RoomSummary {
  // Counted once per change of the current state, not per sync (a big room's long-polls all ask at once).
  const summary: RoomSummary = { "m.joined_member_count": engine.memberCount("join"), "m.invited_member_count": engine.memberCount("invite") };
  // From the current state a sync read has loaded already (StateRewinder): no query per key.
  const current = engine.currentStateForReads();
  const contentOf = (type: string) => {
    const id = current.get(stateKey(type, ""));
    if (id === undefined) return undefined;
    // An event the sync has read already (the timeline) is not read again.
    const row = readRow(id);
    return row ? pduOf(row).content : engine.events.pdu(id)?.content;
  };
  const name = contentOf("m.room.name")?.name;
  const alias = contentOf("m.room.canonical_alias")?.alias;
  if ((typeof name === "string" && name !== "") || (typeof alias === "string" && alias !== "")) return summary;
  let list = heroes(engine, userId, ["join", "invite"]);
  if (list.length === 0) list = heroes(engine, userId, ["leave", "ban"]);
  summary["m.heroes"] = list;
  return summary;
}

/** The state whose changes can change a room summary: memberships (counts, heroes), and the name and
 * canonical alias (whether there are heroes). */
const SUMMARY_STATE_TYPES = new Set(["m.room.member", "m.room.name", "m.room.canonical_alias"]);

/** Heroes per summary (spec: "m.heroes": up to 5). */
const HEROES = 5;

/**
 * The first HEROES members other than `userId` with one of `memberships`, by the stream ordering of their
 * current membership (ties by user ID). One indexed walk per membership (current_state_by_membership_order)
 * of at most HEROES + 1 rows, merged here: a nameless room of 10,000 members reads a dozen rows, not every
 * member and a sort, for each summary (each listener's pushed part after every change of the state).
 */
function heroes(engine: RoomEngine, userId: string, memberships: string[]): string[] {
  const rows: { state_key: string; stream_ordering: number }[] = [];
  for (const membership of memberships) {
    rows.push(
      ...engine.sql
        .exec<{ state_key: string; stream_ordering: number }>(
          `SELECT state_key, stream_ordering FROM current_state WHERE membership = ? AND type = 'm.room.member'
           ORDER BY stream_ordering, state_key LIMIT ${sqlLimit(HEROES + 1)}`,
          membership,
        )
        .toArray(),
    );
  }
  rows.sort((a, b) => a.stream_ordering - b.stream_ordering || (a.state_key < b.state_key ? -1 : a.state_key > b.state_key ? 1 : 0));
  return rows.filter((r) => r.state_key !== userId).slice(0, HEROES).map((r) => r.state_key);
}

/** The stripped state of the room for a user invited or knocking (spec: "Stripped state"), with the user's
 * own membership event (the invite shows who invited them). */
export function strippedState(engine: RoomEngine, userId: string): StrippedStateEvent[] {
  // An invite to a room this server is not in: the state the inviting server sent (federation-invites.ts).
  const outOfBand = engine.outOfBandMembership(userId);
  if (outOfBand && (!engine.meta() || engine.membershipOf(userId) === null)) return outOfBand.strippedState as unknown as StrippedStateEvent[];
  if (!engine.meta()) return [];
  const out: StrippedStateEvent[] = [];
  const wholeCreate = engine.meta()!.rules.authorization.roomCreateEventIdAsRoomId;
  const add = (pdu: IdentifiedPdu | undefined) => {
    if (!pdu || typeof pdu.state_key !== "string") return;
    // MSC4311, as Synapse's strip_event: where the room ID is the create event's hash (v12), the create
    // event is given whole (its PDU), so that clients and servers can check the room ID and its creator.
    const whole = wholeCreate && pdu.type === "m.room.create" ? wirePdu(engine, pdu.event_id) : undefined;
    out.push(whole ? (whole as unknown as StrippedStateEvent) : { type: pdu.type, state_key: pdu.state_key, content: pdu.content, sender: pdu.sender });
  };
  for (const type of STRIPPED_STATE_TYPES) add(engine.currentStateEvent(type, ""));
  add(engine.currentStateEvent("m.room.member", userId));
  return out;
}
