// POST /search inside one room (spec: Client-Server API, "Server Side Search"; Synapse's
// synapse/handlers/search.py): the matches of a search term in the room's full-text index
// (search-index.ts) that the searcher may see, in the requested order, from a position on, with their
// context. The worker (worker/client/search.ts) asks every room the user is in and merges the answers.
//
// Orders (the worker merges rooms by the same keys, the room ID breaking ties between rooms):
//   rank    best match first (FTS5's bm25, negated so that higher is better; it weighs a term by its rarity
//           in this room, as Synapse's SQLite rank does), then as `recent`;
//   recent  newest first by origin_server_ts, then by stream ordering (Synapse's order).
// A position is the sort key of the last result a client saw; a page holds the results strictly after it.
//
// Who sees what: only members joined now search a room (Synapse searches joined rooms only), and each
// match passes the same history-visibility check as /messages (history-visibility.ts), so a user who
// joined a `joined` room late does not find what was said before. Redacted events are never found.
import { invalidParam } from "../../protocol/errors.js";
import type { RoomEventFilter } from "../../protocol/filter.js";
import type { ClientEvent } from "./client-event.js";
import type { RoomEngine } from "./engine.js";
import { MAX_PARAMS, eventRowColumns, formatStateEvents, type EventRow } from "./event-rows.js";
import { VisibilityChecker } from "./history-visibility.js";
import type { Reader } from "./reads.js";
import { readEvents, type ReadEvent } from "./relations.js";
import { KEY_TYPES, type SearchKey } from "./search-index.js";
import { parseSearchTerm } from "./search-query.js";
import { MAX_SCAN, passesFilter, scan } from "./timeline.js";
import { sqlLimit } from "../sql-limit.js";

/** Where a page starts: the sort key of the last result already returned (see the top of this file). */
export interface SearchPosition {
  /** Order `rank` only. */
  rank?: number;
  ts: number;
  /** Results at `ts` (and `rank`) with a smaller stream ordering come after the position. The worker
   * passes the largest or smallest safe integer for rooms ordered after or before the position's room. */
  ordering: number;
}

export interface RoomSearchRequest {
  term: string;
  keys: SearchKey[];
  /** The RoomEventFilter without `rooms`/`not_rooms` (the worker chose the rooms). */
  filter?: RoomEventFilter;
  order: "rank" | "recent";
  limit: number;
  after?: SearchPosition;
  context?: { before: number; after: number; includeProfile: boolean };
  includeState: boolean;
}

export interface SearchContext {
  events_before: ReadEvent[];
  events_after: ReadEvent[];
  /** Room positions (the worker turns them into tokens, as /context). */
  start: number;
  end: number;
  profile_info?: Record<string, { displayname: string | null; avatar_url: string | null }>;
}

export interface RoomSearchHit {
  event: ReadEvent;
  rank: number;
  ts: number;
  ordering: number;
  context?: SearchContext;
}

export interface RoomSearchResult {
  hits: RoomSearchHit[];
  /** Matches the searcher may see (all of them, not only this page); approximate past MAX_EXACT_COUNT
   * matches, where it counts every match in the index as Synapse always does. */
  count: number;
  /** The room's current state, when asked for and the room has hits. */
  state?: ClientEvent[];
}

/** Up to this many matches the count is exact (each is checked for visibility and the filter). */
export const MAX_EXACT_COUNT = 1000;

type HitRow = EventRow & { hit_rank?: number };

const EMPTY: RoomSearchResult = { hits: [], count: 0 };

/** POST /search in one room (see the top of this file). */
export function searchRoom(engine: RoomEngine, reader: Reader, request: RoomSearchRequest): RoomSearchResult {
  try {
    return searchIndexed(engine, reader, request);
  } catch (e) {
    // The term's grammar cannot make an FTS5 syntax error (search-query.ts), but a term can still exceed
    // what FTS5 evaluates (its limits on an expression's size): a client error, not a failure.
    if (e instanceof Error && /fts5/i.test(e.message)) throw invalidParam(`search_term cannot be searched: ${e.message.replace(/: SQLITE_\w+$/, "")}`);
    throw e;
  }
}

function searchIndexed(engine: RoomEngine, reader: Reader, request: RoomSearchRequest): RoomSearchResult {
  if (!engine.meta() || engine.membershipOf(reader.userId)?.membership !== "join") return EMPTY;
  const { match } = parseSearchTerm(request.term);
  const types = [...new Set(request.keys.map((k) => KEY_TYPES[k]))];
  const index = engine.events.search;
  if (match === null || types.length === 0 || !index.searchAvailable()) return EMPTY;
  index.catchUp();

  const checker = new VisibilityChecker(engine, reader.userId);
  const accept = (r: EventRow) => passesFilter(engine, request.filter, r) && checker.canSee(r);
  const rank = request.order === "rank";

  // The matches: the index's rowids are stream orderings. For `rank` every match is scored (bm25 needs
  // the index cursor), materialised once per query; `recent` reads matches in time order through the
  // events table and scores only the page.
  const typeList = types.map(() => "?").join(", ");
  const eligible = `e.type IN (${typeList}) AND e.outlier = 0 AND e.rejected_reason IS NULL AND e.soft_failed = 0 AND e.redacted_because IS NULL`;
  const ranked = `WITH hits AS MATERIALIZED (SELECT rowid AS hit_ordering, -bm25(event_search) AS hit_rank FROM event_search WHERE event_search MATCH ?)
    SELECT ${eventRowColumns("e")}, hits.hit_rank AS hit_rank FROM hits JOIN events e ON e.stream_ordering = hits.hit_ordering WHERE ${eligible}`;
  const timed = `SELECT ${eventRowColumns("e")} FROM events e
    WHERE e.stream_ordering IN (SELECT rowid FROM event_search WHERE event_search MATCH ?) AND ${eligible}`;
  const orderBy = rank ? "hit_rank DESC, e.origin_server_ts DESC, e.stream_ordering DESC" : "e.origin_server_ts DESC, e.stream_ordering DESC";

  const page = (after: SearchPosition | undefined, n: number): HitRow[] => {
    const args: (string | number)[] = [match, ...types];
    let keyset = "";
    if (after) {
      const byTime = "(e.origin_server_ts < ? OR (e.origin_server_ts = ? AND e.stream_ordering < ?))";
      if (rank) {
        keyset = ` AND (hit_rank < ? OR (hit_rank = ? AND ${byTime}))`;
        args.push(after.rank ?? Number.MAX_VALUE, after.rank ?? Number.MAX_VALUE);
      } else {
        keyset = ` AND ${byTime}`;
      }
      args.push(after.ts, after.ts, after.ordering);
    }
    return engine.sql.exec<HitRow>(`${rank ? ranked : timed}${keyset} ORDER BY ${orderBy} LIMIT ${sqlLimit(n)}`, ...args).toArray();
  };

  // The page: matches after the position, read in batches until `limit` pass or MAX_SCAN were read.
  const rows: HitRow[] = [];
  let position = request.after;
  let scanned = 0;
  const batchSize = Math.min(MAX_SCAN, request.limit + 10);
  while (rows.length < request.limit && scanned < MAX_SCAN) {
    const batch = page(position, batchSize);
    for (const r of batch) {
      scanned += 1;
      position = { rank: r.hit_rank, ts: r.origin_server_ts, ordering: r.stream_ordering };
      if (accept(r)) rows.push(r);
      if (rows.length === request.limit) break;
    }
    if (batch.length < batchSize) break;
  }

  const ranks = rank ? new Map(rows.map((r) => [r.stream_ordering, r.hit_rank ?? 0])) : ranksOf(engine, match, rows);
  const events = readEvents(engine, checker, rows, reader);
  const hits: RoomSearchHit[] = rows.map((r, i) => {
    const hit: RoomSearchHit = { event: events[i]!, rank: ranks.get(r.stream_ordering) ?? 0, ts: r.origin_server_ts, ordering: r.stream_ordering };
    if (request.context) hit.context = contextOf(engine, checker, reader, r, request.context);
    return hit;
  });

  const result: RoomSearchResult = { hits, count: countVisible(engine, match, types, eligible, accept) };
  if (request.includeState && hits.length > 0) result.state = formatStateEvents(engine, [...engine.currentState().values()], reader);
  return result;
}

/** The rank of each row's match (order `recent` reads matches without scoring them). */
function ranksOf(engine: RoomEngine, match: string, rows: readonly EventRow[]): Map<number, number> {
  const ranks = new Map<number, number>();
  for (let i = 0; i < rows.length; i += MAX_PARAMS - 1) {
    const chunk = rows.slice(i, i + MAX_PARAMS - 1).map((r) => r.stream_ordering);
    const found = engine.sql.exec<{ o: number; r: number }>(
      `SELECT rowid AS o, -bm25(event_search) AS r FROM event_search WHERE event_search MATCH ? AND rowid IN (${chunk.map(() => "?").join(", ")})`,
      match,
      ...chunk,
    );
    for (const row of found) ranks.set(row.o, row.r);
  }
  return ranks;
}

/** The number of matches the searcher may see (see RoomSearchResult.count). */
function countVisible(engine: RoomEngine, match: string, types: string[], eligible: string, accept: (r: EventRow) => boolean): number {
  const total = engine.sql
    .exec<{ n: number }>(`SELECT COUNT(*) AS n FROM events e WHERE e.stream_ordering IN (SELECT rowid FROM event_search WHERE event_search MATCH ?) AND ${eligible}`, match, ...types)
    .one().n;
  if (total > MAX_EXACT_COUNT) return total;
  let visible = 0;
  for (const r of engine.sql.exec<EventRow>(
    `SELECT ${eventRowColumns("e")} FROM events e WHERE e.stream_ordering IN (SELECT rowid FROM event_search WHERE event_search MATCH ?) AND ${eligible} ORDER BY e.stream_ordering`,
    match,
    ...types,
  )) {
    if (accept(r)) visible += 1;
  }
  return visible;
}

/**
 * The context of one result (spec: `event_context`; Synapse's `_calculate_event_contexts`): up to
 * `before` and `after` events around it that the searcher may see (the search filter does not apply), and
 * with `includeProfile` the display name and avatar of their senders in the state after the last of them.
 */
function contextOf(engine: RoomEngine, checker: VisibilityChecker, reader: Reader, row: EventRow, limits: { before: number; after: number; includeProfile: boolean }): SearchContext {
  const visible = (r: EventRow) => checker.canSee(r);
  const before = scan(engine, "b", row.stream_ordering - 1, undefined, limits.before, visible);
  const after = scan(engine, "f", row.stream_ordering, undefined, limits.after, visible);
  const context: SearchContext = {
    events_before: readEvents(engine, checker, before.rows, reader),
    events_after: readEvents(engine, checker, after.rows, reader),
    start: before.cursor,
    end: after.cursor,
  };
  if (limits.includeProfile) {
    const last = after.rows[after.rows.length - 1] ?? row;
    const profiles: NonNullable<SearchContext["profile_info"]> = {};
    for (const sender of new Set([...before.rows, row, ...after.rows].map((r) => r.sender))) {
      const memberId = engine.stateGroups.lookup(last.state_group_after, "m.room.member", sender);
      const content = memberId === undefined ? undefined : engine.events.pdu(memberId)?.content;
      if (!content) continue;
      profiles[sender] = {
        displayname: typeof content.displayname === "string" ? content.displayname : null,
        avatar_url: typeof content.avatar_url === "string" ? content.avatar_url : null,
      };
    }
    context.profile_info = profiles;
  }
  return context;
}

