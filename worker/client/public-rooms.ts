// Client-Server API: the published room directory listing (spec: "Published room directory",
// data/api/client-server/list_public_rooms.yaml `/publicRooms`).
//
// The published room IDs come from D1 (room_directory); each entry's summary is read from the room's
// current state through its Room DO, so the listing is never stale. That is one DO call per published
// room per request: fine for the directories of the servers Myelin targets, and the place to add a
// summary cache in D1 if a directory grows to thousands of rooms.
//
// Order: most joined members first, then room ID (the spec leaves the order to the server since v1.19
// and recommends the old largest-first order, which is Synapse's). Pagination tokens name the last
// (or, going backwards, the first) entry of a page by that sort key, so a page boundary does not shift
// when rooms are published or unpublished between requests.
import { Hono, type Context } from "hono";
import { invalidParam } from "../../protocol/errors.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { requireAuth } from "../auth.js";
import { publishedRoomIds, type DirectoryNetwork } from "../directory-store.js";
import type { AppEnv, Env } from "../env.js";
import { intParam, readJsonObject } from "../http.js";
import { remotePublicRooms } from "../federation/public-rooms.js";
import { isValidServerName } from "../../protocol/server-name.js";
import { loadRoomState, publicRoomChunk, type PublicRoomChunk } from "../room-summary.js";

/** Most entries one page holds: the spec lets the server bound `limit`, and an absent or zero `limit`
 * (Synapse: "no limit") still gets pages of this size, with `next_batch`. */
export const MAX_PUBLIC_ROOMS_LIMIT = 500;

export interface PublicRoomsQuery {
  limit?: number;
  since?: string;
  /** `filter.generic_search_term`. */
  searchTerm?: string;
  /** `filter.room_types`; `null` stands for rooms without a type. */
  roomTypes?: (string | null)[];
  includeAllNetworks?: boolean;
  thirdPartyInstanceId?: string;
}

export interface PublicRoomsResponse {
  chunk: PublicRoomChunk[];
  next_batch?: string;
  prev_batch?: string;
  total_room_count_estimate: number;
}

interface SortKey {
  members: number;
  roomId: string;
}

/** Negative when `a` comes before `b`: more joined members first, then room ID ascending. */
function compareKeys(a: SortKey, b: SortKey): number {
  if (a.members !== b.members) return b.members - a.members;
  return a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0;
}

const keyOf = (c: PublicRoomChunk): SortKey => ({ members: c.num_joined_members, roomId: c.room_id });

/** `f` (next page: entries after the key) or `b` (previous page: entries before it), the member
 * count, `_`, the room ID. Opaque to clients. */
function encodeToken(forward: boolean, key: SortKey): string {
  return `${forward ? "f" : "b"}${key.members}_${key.roomId}`;
}

function decodeToken(token: string): { forward: boolean; key: SortKey } {
  const m = /^([fb])(\d{1,15})_(!.+)$/.exec(token);
  if (!m) throw invalidParam("Unknown pagination token");
  return { forward: m[1] === "f", key: { members: Number(m[2]), roomId: m[3]! } };
}

/**
 * Whether a published room is listed. As Synapse: only rooms that anyone could join or knock on, or
 * read, appear; a published room that was later made invite-only drops out until that changes.
 */
function isListable(chunk: PublicRoomChunk): boolean {
  const rule = chunk.join_rule;
  return rule === "public" || rule === "knock" || rule === "knock_restricted" || chunk.world_readable;
}

function matchesFilter(chunk: PublicRoomChunk, q: PublicRoomsQuery): boolean {
  if (q.roomTypes !== undefined && q.roomTypes.length > 0) {
    if (!q.roomTypes.includes(chunk.room_type ?? null)) return false;
  }
  const term = q.searchTerm?.trim().toLowerCase();
  if (term) {
    // Spec: "search for in the room metadata, e.g. name, topic, canonical alias".
    const haystacks = [chunk.name, chunk.topic, chunk.canonical_alias];
    if (!haystacks.some((h) => h !== undefined && h.toLowerCase().includes(term))) return false;
  }
  return true;
}

/**
 * Which directory a request lists, as Synapse reads the two fields (rest/client/room.py
 * `PublicRoomListRestServlet`): `include_all_networks` lists this server's directory and every network of
 * every application service; `third_party_instance_id` (`<service id>|<network id>`, the `instance_id`
 * /thirdparty/protocols gives) lists that network's rooms; neither lists this server's own directory.
 */
function directoryNetwork(q: PublicRoomsQuery): DirectoryNetwork {
  if (q.includeAllNetworks) {
    if (q.thirdPartyInstanceId !== undefined) throw invalidParam("Can't use include_all_networks with an explicit network");
    return "all";
  }
  if (q.thirdPartyInstanceId === undefined) return "local";
  const bits = q.thirdPartyInstanceId.split("|");
  if (bits.length !== 2) throw invalidParam(`Invalid third_party_instance_id ${JSON.stringify(q.thirdPartyInstanceId)}`);
  // Synapse: an empty service ID is no network at all (ThirdPartyInstanceID(None, ...)): the local directory.
  if (bits[0] === "") return "local";
  return { appserviceId: bits[0]!, networkId: bits[1]! };
}

/** The local published room directory (or an application service network's), filtered and paginated. */
export async function listPublicRooms(env: Env, q: PublicRoomsQuery): Promise<PublicRoomsResponse> {
  const network = directoryNetwork(q);

  const since = q.since !== undefined && q.since !== "" ? decodeToken(q.since) : undefined;
  const limit = q.limit === undefined || q.limit === 0 ? MAX_PUBLIC_ROOMS_LIMIT : Math.min(q.limit, MAX_PUBLIC_ROOMS_LIMIT);

  const ids = await publishedRoomIds(env, network);
  const states = await Promise.all(ids.map((id) => loadRoomState(env, id)));
  const all: PublicRoomChunk[] = [];
  for (const state of states) {
    if (!state) continue;
    const chunk = publicRoomChunk(state);
    if (isListable(chunk) && matchesFilter(chunk, q)) all.push(chunk);
  }
  all.sort((a, b) => compareKeys(keyOf(a), keyOf(b)));

  let start: number;
  let end: number;
  if (!since) {
    start = 0;
    end = Math.min(limit, all.length);
  } else if (since.forward) {
    start = all.findIndex((c) => compareKeys(keyOf(c), since.key) > 0);
    if (start < 0) start = all.length;
    end = Math.min(start + limit, all.length);
  } else {
    end = all.findIndex((c) => compareKeys(keyOf(c), since.key) >= 0);
    if (end < 0) end = all.length;
    start = Math.max(0, end - limit);
  }
  const chunk = all.slice(start, end);
  const response: PublicRoomsResponse = { chunk, total_room_count_estimate: all.length };
  if (end < all.length && chunk.length > 0) response.next_batch = encodeToken(true, keyOf(chunk[chunk.length - 1]!));
  if (start > 0 && chunk.length > 0) response.prev_batch = encodeToken(false, keyOf(chunk[0]!));
  return response;
}

/** Spec: `server` defaults to the local server. Another server's directory is fetched over federation
 * (worker/federation/public-rooms.ts); this returns that server's name, or undefined for ours. */
function remoteServer(c: Context<AppEnv>): string | undefined {
  const server = c.req.query("server");
  if (server === undefined || server === "" || server === c.env.SERVER_NAME) return undefined;
  if (!isValidServerName(server)) throw invalidParam("Invalid server name");
  return server;
}

export function parsePublicRoomsBody(body: JsonObject): PublicRoomsQuery {
  const q: PublicRoomsQuery = {};
  if (body.limit !== undefined && body.limit !== null) {
    if (typeof body.limit !== "number" || !Number.isSafeInteger(body.limit) || body.limit < 0) {
      throw invalidParam("limit must be a non-negative integer");
    }
    q.limit = body.limit;
  }
  if (body.since !== undefined && body.since !== null) {
    if (typeof body.since !== "string") throw invalidParam("since must be a string");
    q.since = body.since;
  }
  if (body.filter !== undefined && body.filter !== null) {
    if (!isJsonObject(body.filter)) throw invalidParam("filter must be an object");
    const term = body.filter.generic_search_term;
    if (term !== undefined && term !== null) {
      if (typeof term !== "string") throw invalidParam("filter.generic_search_term must be a string");
      q.searchTerm = term;
    }
    const types = body.filter.room_types;
    if (types !== undefined && types !== null) {
      if (!Array.isArray(types) || !types.every((t) => t === null || typeof t === "string")) {
        throw invalidParam("filter.room_types must be a list of strings and nulls");
      }
      q.roomTypes = types as (string | null)[];
    }
  }
  if (body.include_all_networks !== undefined && body.include_all_networks !== null) {
    if (typeof body.include_all_networks !== "boolean") throw invalidParam("include_all_networks must be a boolean");
    q.includeAllNetworks = body.include_all_networks;
  }
  if (body.third_party_instance_id !== undefined && body.third_party_instance_id !== null) {
    if (typeof body.third_party_instance_id !== "string") throw invalidParam("third_party_instance_id must be a string");
    q.thirdPartyInstanceId = body.third_party_instance_id;
  }
  return q;
}

export const publicRoomsRoutes = new Hono<AppEnv>();

// GET /_matrix/client/v3/publicRooms
// No access token is required (the spec gives this endpoint no security requirement).
publicRoomsRoutes.get("/_matrix/client/:version{v3|r0}/publicRooms", async (c) => {
  const server = remoteServer(c);
  const q: PublicRoomsQuery = { limit: intParam(c, "limit", 0, 0) };
  const since = c.req.query("since");
  if (since !== undefined) q.since = since;
  if (server !== undefined) return c.json(await remotePublicRooms(c.env, server, { query: q }));
  return c.json(await listPublicRooms(c.env, q));
});

// POST /_matrix/client/v3/publicRooms
publicRoomsRoutes.post("/_matrix/client/:version{v3|r0}/publicRooms", requireAuth, async (c) => {
  const server = remoteServer(c);
  const body = await readJsonObject(c);
  const q = parsePublicRoomsBody(body);
  if (server !== undefined) return c.json(await remotePublicRooms(c.env, server, { body }));
  return c.json(await listPublicRooms(c.env, q));
});
