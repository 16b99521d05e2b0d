// Client-Server API: Server Side Search (spec: "Server Side Search", data/api/client-server/search.yaml;
// behaviour and errors as Synapse's synapse/handlers/search.py). Only the `room_events` category exists.
//
// The search runs in each Room DO over its own full-text index (durable-objects/room/search.ts): the
// worker picks the rooms (those the user is joined to, narrowed by the filter's `rooms`/`not_rooms`, with
// the predecessors of upgraded rooms named in `rooms` as Synapse adds them), asks them all, and merges
// their pages by the order's sort key, with the room ID breaking ties between rooms:
//   rank:   rank desc, origin_server_ts desc, room ID asc, stream ordering desc;
//   recent: origin_server_ts desc, room ID asc, stream ordering desc.
// `next_batch` carries the sort key of the last result returned; each room then answers from its side of
// that key. As in Synapse, a full page (as many results as the limit) always gets a `next_batch`, and
// grouping by room gives each room group one that continues within that room. Unlike Synapse, `rank`
// pages too (Synapse returns one page of at most 500); a rank depends on the room's index statistics, so
// results ranked while the room gains messages between two pages may shift slightly.
import { Hono } from "hono";
import { roomToken } from "../../durable-objects/notifications.js";
import type { RoomSearchHit, RoomSearchRequest, RoomSearchResult } from "../../durable-objects/room/search.js";
import { KEY_TYPES, type SearchKey } from "../../durable-objects/room/search-index.js";
import { parseSearchTerm } from "../../durable-objects/room/search-query.js";
import { unwrap } from "../../durable-objects/user/outcome.js";
import { decodeBase64, encodeBase64Url } from "../../protocol/base64.js";
import { MatrixError, badJson, invalidParam } from "../../protocol/errors.js";
import { parseRoomEventFilter, type RoomEventFilter } from "../../protocol/filter.js";
import { isJsonObject, type JsonObject, type JsonValue } from "../../protocol/json.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { roomStub } from "../room-store.js";
import { compareKeys, positionInRoom, type BatchKey, type Order } from "../search-order.js";
import { userStore } from "../user-store.js";

export const searchRoutes = new Hono<AppEnv>();

/** Synapse's defaults: 10 results (the filter's default limit), 5 events of context on each side. */
const DEFAULT_LIMIT = 10;
const DEFAULT_CONTEXT = 5;
/** Bounds of this server: Synapse's rank search returns at most 500 results. */
const MAX_LIMIT = 500;
const MAX_CONTEXT = 100;
/** Room DOs asked at once. */
const FAN_OUT = 16;
/** Predecessors followed per room named in `filter.rooms`. */
const MAX_PREDECESSORS = 20;

interface ParsedSearch {
  term: string;
  keys: SearchKey[];
  filter: RoomEventFilter;
  order: Order;
  limit: number;
  includeState: boolean;
  context?: { before: number; after: number; includeProfile: boolean };
  groupBy: Set<"room_id" | "sender">;
}

interface Batch {
  order: Order;
  /** A room group's token: continue within this room only. */
  roomId?: string;
  key: BatchKey;
}

const invalidQuery = (message: string) => new MatrixError(400, "M_BAD_JSON", message);

function nonNegativeInt(value: JsonValue | undefined, name: string, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) throw badJson(`${name} must be a non-negative integer`);
  return Math.min(value, max);
}

/** The request body (spec: search.yaml; Synapse's `SearchHandler.search` checks). */
function parseSearchBody(body: JsonObject): ParsedSearch {
  const categories = body.search_categories;
  if (!isJsonObject(categories) || !isJsonObject(categories.room_events)) throw invalidQuery("Invalid search query: search_categories.room_events is required");
  const room = categories.room_events;
  if (typeof room.search_term !== "string") throw invalidQuery("Invalid search query: search_term must be a string");

  let keys: SearchKey[] = Object.keys(KEY_TYPES) as SearchKey[];
  if (room.keys !== undefined) {
    if (!Array.isArray(room.keys) || !room.keys.every((k) => typeof k === "string")) throw badJson("keys must be a list of strings");
    // Synapse ignores keys it does not index; they match nothing.
    keys = (room.keys as string[]).filter((k): k is SearchKey => Object.hasOwn(KEY_TYPES, k));
  }

  const filter = room.filter === undefined || room.filter === null ? {} : parseRoomEventFilter(room.filter, "filter");
  const limit = filter.limit === undefined ? DEFAULT_LIMIT : Math.min(filter.limit, MAX_LIMIT);

  const order = room.order_by ?? "rank";
  if (order !== "rank" && order !== "recent") throw invalidParam(`Invalid order by: ${JSON.stringify(order)}`);

  const includeState = room.include_state ?? false;
  if (typeof includeState !== "boolean") throw badJson("include_state must be a boolean");

  let context: ParsedSearch["context"];
  if (room.event_context !== undefined && room.event_context !== null) {
    const ec = room.event_context;
    if (!isJsonObject(ec)) throw badJson("event_context must be an object");
    const includeProfile = ec.include_profile ?? false;
    if (typeof includeProfile !== "boolean") throw badJson("event_context.include_profile must be a boolean");
    context = {
      before: nonNegativeInt(ec.before_limit, "event_context.before_limit", DEFAULT_CONTEXT, MAX_CONTEXT),
      after: nonNegativeInt(ec.after_limit, "event_context.after_limit", DEFAULT_CONTEXT, MAX_CONTEXT),
      includeProfile,
    };
  }

  const groupBy = new Set<"room_id" | "sender">();
  if (room.groupings !== undefined && room.groupings !== null) {
    const groupings = room.groupings;
    if (!isJsonObject(groupings)) throw badJson("groupings must be an object");
    const list = groupings.group_by ?? [];
    if (!Array.isArray(list)) throw badJson("groupings.group_by must be a list");
    for (const g of list) {
      if (!isJsonObject(g) || typeof g.key !== "string") throw badJson("groupings.group_by entries need a key");
      if (g.key !== "room_id" && g.key !== "sender") throw invalidParam(`Invalid group by keys: ${JSON.stringify(g.key)}`);
      groupBy.add(g.key);
    }
  }

  return { term: room.search_term, keys, filter, order, limit, includeState, context, groupBy };
}

function encodeBatch(batch: Batch): string {
  const k = batch.key;
  return encodeBase64Url(new TextEncoder().encode(JSON.stringify({ o: batch.order, g: batch.roomId, k: [k.rank, k.ts, k.roomId, k.ordering] })));
}

function decodeBatch(token: string): Batch {
  const invalid = () => invalidParam("Invalid batch");
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(decodeBase64(token)));
  } catch {
    throw invalid();
  }
  if (typeof value !== "object" || value === null) throw invalid();
  const { o, g, k } = value as { o?: unknown; g?: unknown; k?: unknown };
  if ((o !== "rank" && o !== "recent") || (g !== undefined && typeof g !== "string") || !Array.isArray(k) || k.length !== 4) throw invalid();
  const [rank, ts, roomId, ordering] = k as unknown[];
  const finite = (n: unknown): n is number => typeof n === "number" && Number.isFinite(n);
  if (!(rank === null || finite(rank)) || !Number.isSafeInteger(ts) || typeof roomId !== "string" || !Number.isSafeInteger(ordering)) throw invalid();
  if ((o === "rank") !== (rank !== null)) throw invalid();
  return { order: o, roomId: g, key: { rank, ts: ts as number, roomId, ordering: ordering as number } };
}

/** The room IDs an upgraded room replaced, newest first (Synapse's `get_old_rooms_from_upgraded_room`). */
async function predecessorsOf(env: Env, roomId: string): Promise<string[]> {
  const out: string[] = [];
  let current = roomId;
  while (out.length < MAX_PREDECESSORS) {
    const room = roomStub(env, current);
    const info = await room.roomInfo();
    if (!info) break;
    const predecessor = (await room.getPdu(info.createEventId))?.content.predecessor;
    const previous = isJsonObject(predecessor) ? predecessor.room_id : undefined;
    if (typeof previous !== "string" || previous === roomId || out.includes(previous)) break;
    out.push(previous);
    current = previous;
  }
  return out;
}

/** The rooms to search: joined, narrowed by the filter (with predecessors) and by a room group's batch. */
async function roomsToSearch(env: Env, userId: string, filter: RoomEventFilter, batch: Batch | undefined): Promise<string[]> {
  let rooms = await userStore(env, userId).joinedRooms();
  if (filter.rooms !== undefined) {
    const wanted = new Set(filter.rooms);
    for (const roomId of filter.rooms) for (const old of await predecessorsOf(env, roomId)) wanted.add(old);
    rooms = rooms.filter((r) => wanted.has(r));
  }
  if (filter.not_rooms !== undefined) {
    const unwanted = new Set(filter.not_rooms);
    rooms = rooms.filter((r) => !unwanted.has(r));
  }
  if (batch?.roomId !== undefined) rooms = rooms.filter((r) => r === batch.roomId);
  return rooms.sort();
}

async function mapLimited<T, R>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return out;
}

// POST /_matrix/client/v3/search
searchRoutes.post("/_matrix/client/:version{v3|r0}/search", requireAuth, async (c) => {
  const { userId, deviceId } = requester(c);
  const rawBatch = c.req.query("next_batch");
  const batch = rawBatch === undefined || rawBatch === "" ? undefined : decodeBatch(rawBatch);
  const search = parseSearchBody(await readJsonObject(c, { allowEmpty: false }));
  if (batch && batch.order !== search.order) throw invalidParam("Invalid batch: it belongs to a search with another order_by");

  const rooms = await roomsToSearch(c.env, userId, search.filter, batch);
  // The rooms are chosen: each room applies the rest of the filter.
  const { rooms: _rooms, not_rooms: _notRooms, ...roomFilter } = search.filter;
  const answers = await mapLimited(rooms, FAN_OUT, async (roomId) => {
    const request: RoomSearchRequest = {
      term: search.term,
      keys: search.keys,
      filter: roomFilter,
      order: search.order,
      limit: search.limit,
      includeState: search.includeState,
    };
    if (search.context) request.context = search.context;
    if (batch) request.after = positionInRoom(batch.key, roomId);
    const result: RoomSearchResult = unwrap(await roomStub(c.env, roomId).search({ userId, deviceId }, request));
    return { roomId, result };
  });

  const merged: { roomId: string; hit: RoomSearchHit; key: BatchKey }[] = [];
  let count = 0;
  for (const { roomId, result } of answers) {
    count += result.count;
    for (const hit of result.hits) {
      merged.push({ roomId, hit, key: { rank: search.order === "rank" ? hit.rank : null, ts: hit.ts, roomId, ordering: hit.ordering } });
    }
  }
  merged.sort((a, b) => compareKeys(search.order, a.key, b.key));
  const page = merged.slice(0, search.limit);

  const results = page.map(({ hit }) => {
    const context: Record<string, unknown> = {};
    if (hit.context) {
      context.events_before = hit.context.events_before;
      context.events_after = hit.context.events_after;
      context.start = roomToken(hit.context.start);
      context.end = roomToken(hit.context.end);
      if (hit.context.profile_info) context.profile_info = hit.context.profile_info;
    }
    return { rank: hit.rank, result: hit.event, context };
  });

  const roomEvents: Record<string, unknown> = { results, count, highlights: parseSearchTerm(search.term).highlights };

  if (search.includeState) {
    const state: Record<string, unknown> = {};
    const inPage = new Set(page.map((p) => p.roomId));
    for (const { roomId, result } of answers) if (inPage.has(roomId) && result.state) state[roomId] = result.state;
    roomEvents.state = state;
  }

  // A full page always has a next page, as in Synapse (it may turn out empty).
  const last = page.length > 0 && page.length >= search.limit ? page[page.length - 1]!.key : undefined;
  if (last) roomEvents.next_batch = encodeBatch({ order: search.order, roomId: batch?.roomId, key: last });

  if (search.groupBy.size > 0) {
    const groups: Record<string, Record<string, { results: string[]; order?: number; next_batch?: string }>> = {};
    const add = (kind: "room_id" | "sender", key: string, p: (typeof page)[number]) => {
      const byKey = (groups[kind] ??= {});
      const group = (byKey[key] ??= search.order === "rank" ? { results: [], order: p.hit.rank } : { results: [] });
      group.results.push(p.hit.event.event_id);
    };
    for (const p of page) {
      if (search.groupBy.has("room_id")) add("room_id", p.roomId, p);
      if (search.groupBy.has("sender")) add("sender", p.hit.event.sender, p);
    }
    if (last && groups.room_id) {
      for (const roomId of Object.keys(groups.room_id)) groups.room_id[roomId]!.next_batch = encodeBatch({ order: search.order, roomId, key: last });
    }
    roomEvents.groups = groups;
  }

  return c.json({ search_categories: { room_events: roomEvents } });
});
