// Event relationships (spec: Client-Server API, "Forming relationships between events", "Aggregations of
// child events", "Threading", "Event replacements", "Reference relations"; relations.yaml,
// threads_list.yaml; MSC3981 recursion).
//
// The `events` table keeps each event's relation (`rel_type`, `relates_to`, and `thread_root` for m.thread)
// in indexed columns, so children of an event, a thread's replies and the list of threads are index
// look-ups. A redaction clears the columns (a redacted child no longer relates to anything).
//
// Every event handed out passes the reader's history-visibility check (history-visibility.ts).
import { MatrixError, notFound } from "../../protocol/errors.js";
import { isJsonObject } from "../../protocol/json.js";
import type { ClientEvent, ClientEventUnsigned } from "./client-event.js";
import type { RoomEngine } from "./engine.js";
import { ACCEPTED, EVENT_ROW_COLUMNS, MAX_PARAMS, acceptedRow, formatRows, pduOf, type EventRow } from "./event-rows.js";
import { VisibilityChecker, readerAccess } from "./history-visibility.js";
import type { Reader } from "./reads.js";
import { sqlLimit } from "../sql-limit.js";

/** An event with `m.replace` aggregated (the form of a thread's `latest_event`; kept non-recursive so the
 * type crosses Durable Object RPC). */
export interface EventWithReplacement extends ClientEvent {
  unsigned?: ClientEventUnsigned & { "m.relations"?: { "m.replace"?: ClientEvent } };
}

/** Spec: "Server-side aggregation of m.thread relationships". */
export interface ThreadSummary {
  latest_event: EventWithReplacement;
  count: number;
  current_user_participated: boolean;
}

/** The bundled aggregations of one event (`unsigned["m.relations"]`). */
export interface BundledAggregations {
  "m.thread"?: ThreadSummary;
  "m.replace"?: ClientEvent;
  "m.reference"?: { chunk: { event_id: string }[] };
}

/** An event as the read endpoints return it: the client format plus bundled aggregations. */
export interface ReadEvent extends ClientEvent {
  unsigned?: ClientEventUnsigned & { "m.relations"?: BundledAggregations };
}

/** Synapse's recursion depth for `recurse=true` (the spec asks for at least 3). */
export const RELATIONS_RECURSION_DEPTH = 3;

const AGGREGATED_REL_TYPES = ["m.thread", "m.replace", "m.reference"];

/** Formats rows for a reader and adds their bundled aggregations. */
export function readEvents(engine: RoomEngine, checker: VisibilityChecker, rows: readonly EventRow[], reader: Reader, now = Date.now()): ReadEvent[] {
  const events = formatRows(engine, rows, reader, now, checker) as ReadEvent[];
  bundleAggregations(engine, checker, events, reader, now);
  return events;
}

/**
 * Adds `unsigned["m.relations"]` to the events that have aggregatable children (m.thread, m.replace,
 * m.reference). State events get none (spec: "State events do not currently receive bundled
 * aggregations"). One indexed query finds which events have children at all; only those cost more.
 */
export function bundleAggregations(engine: RoomEngine, checker: VisibilityChecker, events: ReadEvent[], reader: Reader, now = Date.now()): void {
  const candidates = events.filter((e) => e.state_key === undefined);
  if (candidates.length === 0) return;
  const parents = new Set<string>();
  const relTypes = AGGREGATED_REL_TYPES.map(() => "?").join(",");
  for (let i = 0; i < candidates.length; i += MAX_PARAMS - AGGREGATED_REL_TYPES.length) {
    const chunk = candidates.slice(i, i + MAX_PARAMS - AGGREGATED_REL_TYPES.length).map((e) => e.event_id);
    for (const r of engine.sql.exec<{ relates_to: string }>(
      `SELECT DISTINCT relates_to FROM events WHERE relates_to IN (${chunk.map(() => "?").join(",")}) AND rel_type IN (${relTypes}) AND ${ACCEPTED}`,
      ...chunk,
      ...AGGREGATED_REL_TYPES,
    )) {
      parents.add(r.relates_to);
    }
  }
  for (const event of candidates) {
    if (!parents.has(event.event_id)) continue;
    const aggregations = aggregationsOf(engine, checker, event, reader, now);
    if (Object.keys(aggregations).length === 0) continue;
    event.unsigned = { ...(event.unsigned ?? {}), "m.relations": aggregations };
  }
}

function aggregationsOf(engine: RoomEngine, checker: VisibilityChecker, event: ClientEvent, reader: Reader, now: number): BundledAggregations {
  const out: BundledAggregations = {};
  const thread = threadSummary(engine, checker, event, reader, now);
  if (thread) out["m.thread"] = thread;
  const replacement = latestReplacement(engine, checker, event, reader, now);
  if (replacement) out["m.replace"] = replacement;
  const references = engine.sql
    .exec<{ event_id: string }>(
      `SELECT event_id FROM events WHERE relates_to = ? AND rel_type = 'm.reference' AND ${ACCEPTED} ORDER BY stream_ordering`,
      event.event_id,
    )
    .toArray();
  if (references.length > 0) out["m.reference"] = { chunk: references.map((r) => ({ event_id: r.event_id })) };
  return out;
}

/** Spec "Server-side aggregation of m.thread relationships": the latest event (the newest the reader may
 * see), the number of replies, and whether the reader sent the root or a reply. */
export function threadSummary(engine: RoomEngine, checker: VisibilityChecker, root: ClientEvent, reader: Reader, now: number): ThreadSummary | undefined {
  const count = engine.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM events WHERE thread_root = ? AND ${ACCEPTED}`, root.event_id).one().n;
  if (count === 0) return undefined;
  let latest: EventRow | undefined;
  let before = Number.MAX_SAFE_INTEGER;
  // Usually the newest reply is visible: read a few at a time.
  for (let scanned = 0; !latest && scanned < 200; ) {
    const batch = engine.sql
      .exec<EventRow>(
        `SELECT ${EVENT_ROW_COLUMNS} FROM events WHERE thread_root = ? AND stream_ordering < ? AND ${ACCEPTED} ORDER BY stream_ordering DESC LIMIT 10`,
        root.event_id,
        before,
      )
      .toArray();
    if (batch.length === 0) break;
    for (const r of batch) {
      scanned += 1;
      before = r.stream_ordering;
      if (checker.canSee(r)) {
        latest = r;
        break;
      }
    }
  }
  if (!latest) return undefined;
  const latestEvent = formatRows(engine, [latest], reader, now)[0] as EventWithReplacement | undefined;
  if (!latestEvent) return undefined;
  const edit = latestReplacement(engine, checker, latestEvent, reader, now);
  if (edit) latestEvent.unsigned = { ...(latestEvent.unsigned ?? {}), "m.relations": { "m.replace": edit } };
  const participated =
    root.sender === reader.userId ||
    engine.sql.exec(`SELECT 1 FROM events WHERE thread_root = ? AND sender = ? AND ${ACCEPTED} LIMIT 1`, root.event_id, reader.userId).toArray().length > 0;
  return { latest_event: latestEvent, count, current_user_participated: participated };
}

/**
 * Spec "Server-side aggregation of m.replace relationships" and "Validity of replacement events": the most
 * recent valid replacement (by origin_server_ts, then the larger event ID) that the reader may see. None
 * for a redacted original, a state event, or an original that is itself a replacement.
 */
export function latestReplacement(engine: RoomEngine, checker: VisibilityChecker, original: ClientEvent, reader: Reader, now: number): ClientEvent | undefined {
  if (original.state_key !== undefined || original.unsigned?.redacted_because !== undefined) return undefined;
  const rel = original.content["m.relates_to"];
  if (isJsonObject(rel) && rel.rel_type === "m.replace") return undefined;
  const rows = engine.sql
    .exec<EventRow>(
      `SELECT ${EVENT_ROW_COLUMNS} FROM events WHERE relates_to = ? AND rel_type = 'm.replace' AND sender = ? AND type = ? AND state_key IS NULL AND ${ACCEPTED}
       ORDER BY origin_server_ts DESC, event_id DESC LIMIT 50`,
      original.event_id,
      original.sender,
      original.type,
    )
    .toArray();
  for (const row of rows) {
    if (!checker.canSee(row)) continue;
    const pdu = pduOf(row);
    // Unencrypted replacements must carry the new content; encrypted ones carry it inside the ciphertext.
    if (row.type !== "m.room.encrypted" && !isJsonObject(pdu.content["m.new_content"])) continue;
    return formatRows(engine, [row], reader, now)[0];
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// GET /relations

export interface RelationsRequest {
  eventId: string;
  relType?: string;
  eventType?: string;
  dir: "b" | "f";
  /** A room position (see notifications.ts): dir b returns events with ordering <= from, dir f > from. */
  from?: number;
  /** The position to stop at (dir b: ordering > to; dir f: ordering <= to). */
  to?: number;
  limit: number;
  recurse: boolean;
}

export interface RelationsResult {
  chunk: ReadEvent[];
  /** The position to continue from, when more events may follow. */
  next?: number;
  recursionDepth: number;
}

/** How many candidate rows one page reads at most before it returns what it has (with `next`). */
const MAX_SCAN = 1000;

/**
 * The children of an event (spec: GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]),
 * newest first for dir b. With `recurse`, events relating to the children count too, up to 3 levels
 * (MSC3981); the rel_type and event type filters apply at every level, as Synapse does. The caller checks
 * that the parent exists and is visible.
 */
export function relations(engine: RoomEngine, checker: VisibilityChecker, request: RelationsRequest, reader: Reader, parentRedacted: boolean): RelationsResult {
  const depth = request.recurse ? RELATIONS_RECURSION_DEPTH : 1;
  const where: string[] = [ACCEPTED];
  const args: (string | number)[] = [];
  if (request.relType !== undefined) {
    where.push("rel_type = ?");
    args.push(request.relType);
  }
  if (request.eventType !== undefined) {
    where.push("type = ?");
    args.push(request.eventType);
  }
  // Edits of a redacted event would leak its content (spec: "Redactions of edited events").
  if (parentRedacted) {
    where.push("(rel_type IS NULL OR rel_type != 'm.replace' OR relates_to != ?)");
    args.push(request.eventId);
  }
  const backwards = request.dir === "b";
  const sqlFor = (cursor: number, batch: number) => {
    const bound = backwards ? "stream_ordering <= ?" : "stream_ordering > ?";
    const stop = request.to === undefined ? "" : backwards ? " AND stream_ordering > ?" : " AND stream_ordering <= ?";
    const params: (string | number)[] = [request.eventId, depth, ...args, cursor];
    if (request.to !== undefined) params.push(request.to);
    return {
      sql: `WITH RECURSIVE related(event_id, depth) AS (
              SELECT event_id, 1 FROM events WHERE relates_to = ?
              UNION SELECT e.event_id, r.depth + 1 FROM events e JOIN related r ON e.relates_to = r.event_id WHERE r.depth < ?
            )
            SELECT ${EVENT_ROW_COLUMNS} FROM events WHERE event_id IN (SELECT event_id FROM related) AND ${where.join(" AND ")}
              AND ${bound}${stop} ORDER BY stream_ordering ${backwards ? "DESC" : "ASC"} LIMIT ${sqlLimit(batch)}`,
      params,
    };
  };

  const chosen: EventRow[] = [];
  let cursor = request.from ?? (backwards ? Number.MAX_SAFE_INTEGER : 0);
  let scanned = 0;
  let exhausted = false;
  const batchSize = Math.min(MAX_SCAN, Math.max(2 * request.limit, 20));
  while (chosen.length < request.limit && scanned < MAX_SCAN) {
    const { sql, params } = sqlFor(cursor, batchSize);
    const rows = engine.sql.exec<EventRow>(sql, ...params).toArray();
    for (const r of rows) {
      scanned += 1;
      cursor = backwards ? r.stream_ordering - 1 : r.stream_ordering;
      if (checker.canSee(r)) chosen.push(r);
      if (chosen.length === request.limit) break;
    }
    if (rows.length < batchSize && chosen.length < request.limit) {
      exhausted = true;
      break;
    }
  }
  if (!exhausted) {
    // More rows after the cursor?
    const { sql, params } = sqlFor(cursor, 1);
    exhausted = engine.sql.exec(sql, ...params).toArray().length === 0;
  }
  const result: RelationsResult = { chunk: readEvents(engine, checker, chosen, reader), recursionDepth: depth };
  if (!exhausted) result.next = cursor;
  return result;
}

// ---------------------------------------------------------------------------------------------
// GET /threads

export interface ThreadsRequest {
  include: "all" | "participated";
  /** Only threads whose latest reply has stream ordering <= from. */
  from?: number;
  limit: number;
}

export interface ThreadsResult {
  chunk: ReadEvent[];
  next?: number;
}

/**
 * The thread roots of the room, the thread with the most recent reply first (spec: GET
 * /rooms/{roomId}/threads), each with its bundled aggregations. Roots the reader may not see are skipped.
 * `participated`: threads whose root or a reply the reader sent.
 */
export function threads(engine: RoomEngine, checker: VisibilityChecker, request: ThreadsRequest, reader: Reader): ThreadsResult {
  const participated = request.include === "participated";
  const chosen: EventRow[] = [];
  let cursor = request.from ?? Number.MAX_SAFE_INTEGER;
  let scanned = 0;
  let exhausted = false;
  const batchSize = Math.min(MAX_SCAN, Math.max(2 * request.limit, 20));
  const page = (before: number, n: number) =>
    engine.sql
      .exec<{ root: string; latest: number }>(
        `SELECT thread_root AS root, MAX(stream_ordering) AS latest FROM events t WHERE thread_root IS NOT NULL AND ${ACCEPTED}
         GROUP BY thread_root HAVING latest <= ?${
           participated
             ? ` AND (EXISTS (SELECT 1 FROM events p WHERE p.thread_root = t.thread_root AND p.sender = ? AND p.outlier = 0 AND p.rejected_reason IS NULL AND p.soft_failed = 0)
                  OR EXISTS (SELECT 1 FROM events r WHERE r.event_id = t.thread_root AND r.sender = ?))`
             : ""
         }
         ORDER BY latest DESC LIMIT ${sqlLimit(n)}`,
        before,
        ...(participated ? [reader.userId, reader.userId] : []),
      )
      .toArray();
  while (chosen.length < request.limit && scanned < MAX_SCAN) {
    const roots = page(cursor, batchSize);
    for (const { root, latest } of roots) {
      scanned += 1;
      cursor = latest - 1;
      const row = engine.sql.exec<EventRow>(`SELECT ${EVENT_ROW_COLUMNS} FROM events WHERE event_id = ? AND ${ACCEPTED}`, root).toArray()[0];
      if (row && checker.canSee(row)) chosen.push(row);
      if (chosen.length === request.limit) break;
    }
    if (roots.length < batchSize && chosen.length < request.limit) {
      exhausted = true;
      break;
    }
  }
  if (!exhausted) exhausted = page(cursor, 1).length === 0;
  const result: ThreadsResult = { chunk: readEvents(engine, checker, chosen, reader) };
  if (!exhausted) result.next = cursor;
  return result;
}

// ---------------------------------------------------------------------------------------------
// The endpoints' entry points: the reader's access and the parent's visibility first.

/** GET /relations: 404 when the parent is unknown or the reader may not see it (spec: relations.yaml). */
export function relationsForReader(engine: RoomEngine, reader: Reader, request: RelationsRequest): RelationsResult {
  try {
    readerAccess(engine, reader.userId);
  } catch (e) {
    if (e instanceof MatrixError) throw notFound("Event not found.");
    throw e;
  }
  const checker = new VisibilityChecker(engine, reader.userId);
  const parent = acceptedRow(engine, request.eventId);
  if (!parent || !checker.canSee(parent)) throw notFound("Event not found.");
  const redacted = engine.eventMeta(request.eventId)?.redactedBecause != null;
  return relations(engine, checker, request, reader, redacted);
}

/** GET /threads: 403 for users who may not read the room. */
export function threadsForReader(engine: RoomEngine, reader: Reader, request: ThreadsRequest): ThreadsResult {
  readerAccess(engine, reader.userId);
  return threads(engine, new VisibilityChecker(engine, reader.userId), request, reader);
}
