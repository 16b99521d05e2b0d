// Reading a room's timeline for clients (spec: Client-Server API, GET /rooms/{roomId}/messages, "Lazy-loading
// room members", GET /rooms/{roomId}/context/{eventId}, GET /rooms/{roomId}/event/{eventId},
// GET /rooms/{roomId}/timestamp_to_event). "Chronological" order is the room's stream order.
//
// Positions: a position N is the point just after the event with stream ordering N (notifications.ts
// `roomToken` encodes it as `t<N>` for clients). Backwards from N: events with ordering <= N, newest first;
// forwards from N: events with ordering > N, oldest first.
//
// Every event passes the reader's history-visibility check (history-visibility.ts) and the filter. A page
// reads at most MAX_SCAN rows: a page whose candidates are mostly invisible (a user paginating into history
// from before they joined a `joined` room) comes back short, with `end` to continue from, as the spec
// allows ("an empty chunk does not necessarily imply that no more events are available").
import { MatrixError, notFound } from "../../protocol/errors.js";
import { eventPasses, needsContent, roomEventPasses } from "../../protocol/event-filter.js";
import type { RoomEventFilter } from "../../protocol/filter.js";
import { splitStateKey } from "../../protocol/pdu.js";
import type { ClientEvent } from "./client-event.js";
import type { RoomEngine } from "./engine.js";
import { ACCEPTED, EVENT_ROW_COLUMNS, acceptedRow, formatStateEvents, pduOf, type EventRow } from "./event-rows.js";
import { VisibilityChecker, readerAccess } from "./history-visibility.js";
import type { Reader } from "./reads.js";
import { readEvents, type ReadEvent } from "./relations.js";
import { sqlLimit } from "../sql-limit.js";

/** Rows one page reads at most (besides the page itself). */
export const MAX_SCAN = 1000;

export interface MessagesRequest {
  dir: "b" | "f";
  /** Start position; absent: the latest event the reader may see (dir b) or the room's start (dir f). */
  from?: number;
  /** Stop position (dir b: events with ordering > to; dir f: <= to). */
  to?: number;
  limit: number;
  filter?: RoomEventFilter;
}

export interface MessagesResult {
  chunk: ReadEvent[];
  start: number;
  /** Absent when the page is empty and no further events are available in that direction (as Synapse: a
   * page with events always has `end`, the next request then comes back empty without it). */
  end?: number;
  /** No further events are available in that direction (the Room DO backfills then). */
  exhausted: boolean;
  /** lazy_load_members: the member events of the chunk's senders. */
  state?: ClientEvent[];
}

/** Whether a row passes a RoomEventFilter (reading the content only when `contains_url` asks for it). */
export function passesFilter(engine: RoomEngine, filter: RoomEventFilter | undefined, row: EventRow): boolean {
  if (!filter) return true;
  const roomId = engine.meta()!.roomId;
  if (!eventPasses(filter, { type: row.type, sender: row.sender })) return false;
  const content = needsContent(filter) ? pduOf(row).content : undefined;
  return roomEventPasses(filter, { type: row.type, sender: row.sender, roomId, content });
}

export interface ScanResult {
  rows: EventRow[];
  /** Where the next page in the same direction starts. */
  cursor: number;
  /** No accepted event is left between the cursor and the bound. */
  exhausted: boolean;
}

/** Reads rows from `from` in direction `dir` until `limit` pass `accept` or MAX_SCAN rows were read. */
export function scan(engine: RoomEngine, dir: "b" | "f", from: number, to: number | undefined, limit: number, accept: (r: EventRow) => boolean): ScanResult {
  const backwards = dir === "b";
  const bound = backwards ? "stream_ordering <= ? AND stream_ordering > ?" : "stream_ordering > ? AND stream_ordering <= ?";
  const stop = to ?? (backwards ? 0 : Number.MAX_SAFE_INTEGER);
  const query = (cursor: number, n: number) =>
    engine.sql
      .exec<EventRow>(`SELECT ${EVENT_ROW_COLUMNS} FROM events WHERE ${bound} AND ${ACCEPTED} ORDER BY stream_ordering ${backwards ? "DESC" : "ASC"} LIMIT ${sqlLimit(n)}`, cursor, stop)
      .toArray();
  const rows: EventRow[] = [];
  let cursor = from;
  let scanned = 0;
  let exhausted = false;
  if (limit === 0) return { rows, cursor, exhausted: query(cursor, 1).length === 0 };
  const batchSize = Math.min(MAX_SCAN, limit + 10);
  while (rows.length < limit && scanned < MAX_SCAN) {
    const batch = query(cursor, batchSize);
    for (const r of batch) {
      scanned += 1;
      cursor = backwards ? r.stream_ordering - 1 : r.stream_ordering;
      if (accept(r)) rows.push(r);
      if (rows.length === limit) break;
    }
    if (batch.length < batchSize && rows.length < limit) {
      exhausted = true;
      break;
    }
  }
  if (!exhausted) exhausted = query(cursor, 1).length === 0;
  return { rows, cursor, exhausted };
}

/** The member events of `senders` in the state after `at` (lazy-loading members). */
function memberEventsAt(engine: RoomEngine, at: EventRow, senders: Iterable<string>, reader: Reader): ClientEvent[] {
  const ids: string[] = [];
  for (const sender of senders) {
    const id = engine.stateGroups.lookup(at.state_group_after, "m.room.member", sender);
    if (id !== undefined && !ids.includes(id)) ids.push(id);
  }
  return formatStateEvents(engine, ids, reader);
}

/** GET /rooms/{roomId}/messages. */
export function messages(engine: RoomEngine, reader: Reader, request: MessagesRequest): MessagesResult {
  const access = readerAccess(engine, reader.userId);
  const checker = new VisibilityChecker(engine, reader.userId);
  const start = request.from ?? (request.dir === "b" ? access.latestOrdering : 0);
  const page = scan(engine, request.dir, start, request.to, request.limit, (r) => passesFilter(engine, request.filter, r) && checker.canSee(r));
  const result: MessagesResult = { chunk: readEvents(engine, checker, page.rows, reader), start, exhausted: page.exhausted };
  if (!page.exhausted || page.rows.length > 0) result.end = page.cursor;
  if (request.filter?.lazy_load_members && page.rows.length > 0) {
    // Synapse's choice of "relevant" state: the senders' membership after the first event of the chunk.
    const state = memberEventsAt(engine, page.rows[0]!, new Set(page.rows.map((r) => r.sender)), reader);
    if (state.length > 0) result.state = state;
  }
  return result;
}

/** The event if it exists (accepted) and the reader may see it; otherwise 404 (spec: GET /event/{eventId}
 * answers 404 for both, so that event IDs cannot be probed). */
function visibleRow(engine: RoomEngine, checker: VisibilityChecker, eventId: string): EventRow {
  const row = acceptedRow(engine, eventId);
  if (!row || !checker.canSee(row)) throw notFound("Event not found.");
  return row;
}

/** GET /rooms/{roomId}/event/{eventId}. */
export function eventForReader(engine: RoomEngine, reader: Reader, eventId: string): ReadEvent {
  // Non-members of rooms that are not world-readable learn nothing, not even that the room exists.
  try {
    readerAccess(engine, reader.userId);
  } catch (e) {
    if (e instanceof MatrixError) throw notFound("Event not found.");
    throw e;
  }
  const checker = new VisibilityChecker(engine, reader.userId);
  const row = visibleRow(engine, checker, eventId);
  const event = readEvents(engine, checker, [row], reader)[0];
  if (!event) throw notFound("Event not found.");
  return event;
}

export interface ContextRequest {
  eventId: string;
  limit: number;
  filter?: RoomEventFilter;
}

export interface ContextResult {
  event: ReadEvent;
  events_before: ReadEvent[];
  events_after: ReadEvent[];
  /** Position to paginate backwards from (before the oldest event returned). */
  start: number;
  /** Position to paginate forwards from (after the newest event returned). */
  end: number;
  state: ClientEvent[];
}

/**
 * GET /rooms/{roomId}/context/{eventId}: up to limit/2 events before (rounded down, as Synapse) and the rest
 * after, the state at the last event returned. 403 for users who may not read the room, 404 for an event
 * that is unknown or invisible to the reader. The filter applies to the surrounding events and the state,
 * not to the event itself (spec).
 */
export function eventContext(engine: RoomEngine, reader: Reader, request: ContextRequest): ContextResult {
  readerAccess(engine, reader.userId);
  const checker = new VisibilityChecker(engine, reader.userId);
  const row = visibleRow(engine, checker, request.eventId);
  const accept = (r: EventRow) => passesFilter(engine, request.filter, r) && checker.canSee(r);
  const beforeLimit = Math.floor(request.limit / 2);
  const before = scan(engine, "b", row.stream_ordering - 1, undefined, beforeLimit, accept);
  const after = scan(engine, "f", row.stream_ordering, undefined, request.limit - beforeLimit, accept);

  const last = after.rows[after.rows.length - 1] ?? row;
  const state = engine.stateGroups.load(last.state_group_after);
  const lazy = request.filter?.lazy_load_members === true;
  const senders = new Set([row.sender, ...before.rows.map((r) => r.sender), ...after.rows.map((r) => r.sender)]);
  const filterSenders = request.filter?.senders !== undefined || request.filter?.not_senders !== undefined;
  const stateIds: string[] = [];
  for (const key of [...state.keys()].sort()) {
    const [type, sk] = splitStateKey(key);
    if (lazy && type === "m.room.member" && !senders.has(sk)) continue;
    const id = state.get(key)!;
    const sender = filterSenders ? engine.events.pdu(id)?.sender : undefined;
    if (request.filter && !eventPasses(request.filter, { type, sender })) continue;
    stateIds.push(id);
  }
  // The event itself is always returned, filtered or not.
  const [event] = readEvents(engine, checker, [row], reader);
  return {
    event: event!,
    events_before: readEvents(engine, checker, before.rows, reader),
    events_after: readEvents(engine, checker, after.rows, reader),
    start: before.cursor,
    end: after.cursor,
    state: formatStateEvents(engine, stateIds, reader),
  };
}

/**
 * GET /rooms/{roomId}/timestamp_to_event: the event nearest to `ts` in direction `dir` (f: the first with
 * origin_server_ts >= ts; b: the last with origin_server_ts <= ts) that the reader may see; null if none.
 */
export function timestampToEvent(engine: RoomEngine, reader: Reader, ts: number, dir: "b" | "f"): { event_id: string; origin_server_ts: number } | null {
  readerAccess(engine, reader.userId);
  const checker = new VisibilityChecker(engine, reader.userId);
  const forwards = dir === "f";
  let cursor = ts;
  let lastOrdering = forwards ? -1 : Number.MAX_SAFE_INTEGER;
  for (let scanned = 0; scanned < MAX_SCAN; ) {
    // Keyset pagination over (origin_server_ts, stream_ordering).
    const rows = engine.sql
      .exec<EventRow>(
        forwards
          ? `SELECT ${EVENT_ROW_COLUMNS} FROM events WHERE (origin_server_ts, stream_ordering) > (?, ?) AND ${ACCEPTED}
             ORDER BY origin_server_ts ASC, stream_ordering ASC LIMIT 50`
          : `SELECT ${EVENT_ROW_COLUMNS} FROM events WHERE (origin_server_ts, stream_ordering) < (?, ?) AND ${ACCEPTED}
             ORDER BY origin_server_ts DESC, stream_ordering DESC LIMIT 50`,
        cursor,
        lastOrdering,
      )
      .toArray();
    if (rows.length === 0) return null;
    for (const r of rows) {
      scanned += 1;
      if (checker.canSee(r)) return { event_id: r.event_id, origin_server_ts: r.origin_server_ts };
      cursor = r.origin_server_ts;
      lastOrdering = r.stream_ordering;
    }
  }
  return null;
}
