// Room aliases and the published room directory, kept in D1 (see DESIGN.md, "Who owns what": aliases
// and the directory are global look-ups). Spec: Client-Server API, "Room aliases" and "Published room
// directory"; Appendices, "Room aliases".
//
// Also the functions other routes call: createRoom (`publishRoomOnCreate`, `aliasForCreateRoom`,
// `createAliasOnCreate`), /join (`resolveRoomAlias`) and the state-send path (`validateCanonicalAlias`).
import { queryAppservicesForAlias } from "./appservice/queries.js";
import { federationRequest } from "../federation-client/request.js";
import { MatrixError, invalidParam } from "../protocol/errors.js";
import { isValidServerName } from "../protocol/auth-rules.js";
import { isJsonObject, type JsonObject } from "../protocol/json.js";
import { serverNameOf } from "../protocol/pdu.js";
import type { Env } from "./env.js";
import { loadRoomState } from "./room-summary.js";

/** Spec: Appendices, "Room aliases": an alias, with its sigil and domain, is at most 255 bytes. */
export const MAX_ALIAS_BYTES = 255;

const utf8 = new TextEncoder();
/** A lone UTF-16 surrogate: not a Unicode scalar value, so not allowed in identifiers. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export interface ParsedRoomAlias {
  alias: string;
  localpart: string;
  serverName: string;
}

/**
 * Parses `#localpart:server_name` (spec: Appendices, "Room aliases": the localpart may hold any valid
 * non-surrogate code point except `:` and NUL; the whole alias is at most 255 bytes). The localpart ends
 * at the first `:`, so the server name may itself hold colons (a port, an IPv6 literal). An empty
 * localpart is refused. Returns null when `alias` is not a valid room alias.
 */
export function parseRoomAlias(alias: string): ParsedRoomAlias | null {
  if (!alias.startsWith("#")) return null;
  const colon = alias.indexOf(":");
  if (colon < 2) return null;
  const localpart = alias.slice(1, colon);
  const serverName = alias.slice(colon + 1);
  if (localpart.includes("\u0000") || LONE_SURROGATE.test(localpart)) return null;
  if (utf8.encode(alias).length > MAX_ALIAS_BYTES) return null;
  if (!isValidServerName(serverName)) return null;
  return { alias, localpart, serverName };
}

/** Parses an alias from a request, or throws 400 M_INVALID_PARAM (spec: the 400 of the directory endpoints). */
export function requireRoomAlias(alias: string): ParsedRoomAlias {
  const parsed = parseRoomAlias(alias);
  if (!parsed) throw invalidParam("Room alias invalid");
  return parsed;
}

/** Whether `roomId` looks like a room ID: `!` + opaque ID (v1-v11 `!opaque:server`, v12 `!hash`), ≤255 bytes. */
export function isValidRoomId(roomId: string): boolean {
  return roomId.length > 1 && roomId.startsWith("!") && !roomId.includes("\u0000") && utf8.encode(roomId).length <= 255;
}

// ---------------------------------------------------------------------------------------------
// Aliases (D1 table room_aliases).

export interface RoomAliasRow {
  alias: string;
  room_id: string;
  creator: string;
  created_ts: number;
}

export async function getAlias(env: Pick<Env, "DB">, alias: string): Promise<RoomAliasRow | null> {
  return env.DB.prepare("SELECT alias, room_id, creator, created_ts FROM room_aliases WHERE alias = ?")
    .bind(alias)
    .first<RoomAliasRow>();
}

/** Inserts a mapping; false when the alias is already taken (the primary key decides, so two racing
 * requests cannot both succeed). */
export async function insertAlias(env: Pick<Env, "DB">, alias: string, roomId: string, creator: string): Promise<boolean> {
  const result = await env.DB.prepare(
    "INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES (?, ?, ?, ?) ON CONFLICT (alias) DO NOTHING",
  )
    .bind(alias, roomId, creator, Date.now())
    .run();
  return result.meta.changes === 1;
}

/** Deletes a mapping; false when there was none. */
export async function deleteAlias(env: Pick<Env, "DB">, alias: string): Promise<boolean> {
  const result = await env.DB.prepare("DELETE FROM room_aliases WHERE alias = ?").bind(alias).run();
  return result.meta.changes === 1;
}

/** The local aliases of a room, oldest first (spec: GET /rooms/{roomId}/aliases). */
export async function localAliasesOf(env: Pick<Env, "DB">, roomId: string): Promise<string[]> {
  const { results } = await env.DB.prepare("SELECT alias FROM room_aliases WHERE room_id = ? ORDER BY created_ts, alias")
    .bind(roomId)
    .all<{ alias: string }>();
  return results.map((r) => r.alias);
}

/**
 * Resolves a room alias to its room ID and the servers that know the room (spec: GET
 * /directory/room/{roomAlias}). Only this server's aliases resolve: asking the alias's server over
 * federation (`GET /_matrix/federation/v1/query/directory`) is not implemented yet, so a remote alias
 * resolves to null. `servers` lists this server first, then the servers of the room's joined members
 * (and, while the room is partial, those the resident named), as Synapse does. Used by `/join/{roomIdOrAlias}` as well.
 */
export async function resolveRoomAlias(env: Env, alias: string): Promise<{ roomId: string; servers: string[] } | null> {
  const parsed = parseRoomAlias(alias);
  if (!parsed || parsed.serverName !== env.SERVER_NAME) return null;
  let row = await getAlias(env, alias);
  // Spec: Application Service API, "Querying": an application service may create the alias when asked.
  if (!row && (await queryAppservicesForAlias(env, alias))) row = await getAlias(env, alias);
  if (!row) return null;
  const servers = [env.SERVER_NAME];
  // Only the joined member list is needed, not the whole state. A room held with partial state (joined
  // with omit_members, durable-objects/room/partial-state.ts) knows few of its members yet: the servers the
  // resident named (`servers_in_room`) are added, as Synapse's
  // `get_current_hosts_in_room_or_partial_state_approximation` does (handlers/directory.py).
  const room = env.ROOMS.get(env.ROOMS.idFromName(row.room_id));
  const [joined, partial] = await Promise.all([room.members("join"), room.partialStateServers()]);
  for (const server of [...joined.map(serverNameOf), ...partial]) {
    if (server !== "" && !servers.includes(server)) servers.push(server);
  }
  return { roomId: row.room_id, servers };
}

/**
 * Resolves an alias of any server: ours from D1, another server's through the federation directory query
 * (spec: Server-Server API, GET /_matrix/federation/v1/query/directory). Null when it is unknown; a
 * server that cannot be reached is a 502 (Synapse answers the client with the remote error).
 */
export async function resolveAnyRoomAlias(env: Env, alias: string): Promise<{ roomId: string; servers: string[] } | null> {
  const parsed = parseRoomAlias(alias);
  if (!parsed) return null;
  if (parsed.serverName === env.SERVER_NAME) return resolveRoomAlias(env, alias);
  const answer = await federationRequest(env, {
    destination: parsed.serverName,
    method: "GET",
    path: `/_matrix/federation/v1/query/directory?room_alias=${encodeURIComponent(alias)}`,
  });
  if (!answer.ok) {
    if (answer.status === 404) return null;
    throw new MatrixError(502, "M_UNKNOWN", `Could not resolve ${alias} on ${parsed.serverName}: ${answer.error}`);
  }
  const body = answer.body;
  if (!isJsonObject(body) || typeof body.room_id !== "string") throw new MatrixError(502, "M_UNKNOWN", `${parsed.serverName} answered the alias query badly`);
  const servers = Array.isArray(body.servers) ? body.servers.filter((x): x is string => typeof x === "string") : [];
  return { roomId: body.room_id, servers: servers.length > 0 ? servers : [parsed.serverName] };
}

/**
 * After an alias was deleted: removes it from the room's `m.room.canonical_alias` event (as `alias` or
 * in `alt_aliases`), sending the new event as `userId`. Spec (DELETE /directory/room/{roomAlias}):
 * servers may do this, and then should delete the alias and succeed even when the user may not change
 * the event; so a refusal here is swallowed (as Synapse does) and the event stays as it was.
 * Returns whether the event was updated.
 */
export async function removeAliasFromCanonicalAlias(env: Env, roomId: string, alias: string, userId: string): Promise<boolean> {
  const state = await loadRoomState(env, roomId);
  const current = state?.get("m.room.canonical_alias", "")?.content;
  if (!current) return false;
  const altAliases = Array.isArray(current.alt_aliases) ? current.alt_aliases : undefined;
  const inAlt = altAliases?.includes(alias) ?? false;
  if (current.alias !== alias && !inAlt) return false;
  const content: JsonObject = { ...current };
  if (content.alias === alias) delete content.alias;
  if (altAliases && inAlt) content.alt_aliases = altAliases.filter((a) => a !== alias);
  // Narrowly typed: the RPC stub's mapping of the recursive JsonObject is too deep for TypeScript.
  // The Room DO answers client errors (e.g. too little power) as `{ error }` values, not exceptions.
  const stub = env.ROOMS.get(env.ROOMS.idFromName(roomId)) as unknown as {
    sendEvent(request: { sender: string; type: string; stateKey: string; content: JsonObject }): Promise<{ ok: unknown } | { error: unknown }>;
  };
  const result = await stub.sendEvent({ sender: userId, type: "m.room.canonical_alias", stateKey: "", content });
  return "ok" in result;
}

// ---------------------------------------------------------------------------------------------
// createRoom (spec: POST /createRoom, `room_alias_name` and `visibility`).

/**
 * Checks `room_alias_name` of a createRoom request before the room is created and returns the full
 * alias `#name:SERVER_NAME`. Throws 400 M_INVALID_PARAM when the name is not a valid alias localpart
 * (Synapse also refuses whitespace), 400 M_ROOM_IN_USE when the alias exists (spec: createRoom 400).
 */
export async function aliasForCreateRoom(env: Env, roomAliasName: string): Promise<string> {
  if (roomAliasName === "" || roomAliasName.includes(":") || /\s/.test(roomAliasName)) {
    throw invalidParam("Invalid characters in room alias");
  }
  const parsed = parseRoomAlias(`#${roomAliasName}:${env.SERVER_NAME}`);
  if (!parsed) throw invalidParam("Room alias invalid");
  if (await getAlias(env, parsed.alias)) throw new MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken");
  return parsed.alias;
}

/**
 * Creates the alias of a new room for its creator (createRoom's `room_alias_name`; no membership check,
 * the creator has just joined). `alias` is the full alias from `aliasForCreateRoom`, or a bare localpart.
 * Throws 400 M_ROOM_IN_USE if another request took the alias meanwhile.
 */
export async function createAliasOnCreate(env: Env, roomId: string, alias: string, userId: string): Promise<void> {
  const full = alias.startsWith("#") ? alias : `#${alias}:${env.SERVER_NAME}`;
  const parsed = parseRoomAlias(full);
  if (!parsed || parsed.serverName !== env.SERVER_NAME) throw invalidParam("Room alias invalid");
  if (!(await insertAlias(env, full, roomId, userId))) {
    throw new MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken");
  }
}

export type DirectoryVisibility = "public" | "private";

export function isDirectoryVisibility(v: unknown): v is DirectoryVisibility {
  return v === "public" || v === "private";
}

/** Publishes a new room in the directory when createRoom asked for `visibility: "public"` (spec: the
 * default `private` leaves the room out of the directory). */
export async function publishRoomOnCreate(env: Pick<Env, "DB">, roomId: string, visibility: string | undefined): Promise<void> {
  if (visibility === undefined || visibility === "private") return;
  if (visibility !== "public") throw invalidParam("visibility must be 'public' or 'private'");
  await setVisibility(env, roomId, "public");
}

// ---------------------------------------------------------------------------------------------
// Published room directory (D1 table room_directory; a room without a row is private).

export async function getVisibility(env: Pick<Env, "DB">, roomId: string): Promise<DirectoryVisibility | null> {
  const row = await env.DB.prepare("SELECT visibility FROM room_directory WHERE room_id = ?")
    .bind(roomId)
    .first<{ visibility: string }>();
  return row && isDirectoryVisibility(row.visibility) ? row.visibility : null;
}

export async function setVisibility(env: Pick<Env, "DB">, roomId: string, visibility: DirectoryVisibility): Promise<void> {
  await env.DB.prepare(
    `INSERT INTO room_directory (room_id, visibility, updated_ts) VALUES (?, ?, ?)
       ON CONFLICT (room_id) DO UPDATE SET visibility = excluded.visibility, updated_ts = excluded.updated_ts`,
  )
    .bind(roomId, visibility, Date.now())
    .run();
}

/**
 * Which directory a listing reads (Synapse's `network_tuple`, storage/databases/main/room.py
 * `get_largest_public_rooms`): `local`, the rooms published in this server's own directory (the default);
 * `all` (`include_all_networks`), those and every room an application service published on any of its
 * networks; or one network of one service (`third_party_instance_id`, `<service id>|<network id>`), the
 * rooms it published there (PUT /directory/list/appservice/{networkId}/{roomId}).
 */
export type DirectoryNetwork = "local" | "all" | { appserviceId: string; networkId: string };

/** Every room published in the directory of `network`. */
export async function publishedRoomIds(env: Pick<Env, "DB">, network: DirectoryNetwork = "local"): Promise<string[]> {
  const local = "SELECT room_id FROM room_directory WHERE visibility = 'public'";
  const bridged = "SELECT room_id FROM appservice_room_list WHERE visibility = 'public'";
  const statement =
    network === "local"
      ? env.DB.prepare(local)
      : network === "all"
        ? env.DB.prepare(`${local} UNION ${bridged}`)
        : env.DB.prepare(`${bridged} AND appservice_id = ? AND network_id = ?`).bind(network.appserviceId, network.networkId);
  const { results } = await statement.all<{ room_id: string }>();
  return results.map((r) => r.room_id);
}

// ---------------------------------------------------------------------------------------------
// m.room.canonical_alias (spec: PUT /rooms/{roomId}/state/{eventType}/{stateKey}, 400 responses).

/**
 * Validates the content of an `m.room.canonical_alias` event a client wants to send in `roomId`:
 * `alias` (when a non-empty string) and every entry of `alt_aliases` must be valid aliases
 * (400 M_INVALID_PARAM) that point to this room (400 M_BAD_ALIAS). As Synapse does, only aliases that
 * are new compared with the current canonical alias event are resolved, so a client can still send an
 * event that keeps an alias deleted since (e.g. to remove another one). `current` is the content of the
 * room's current `m.room.canonical_alias` event (null: none); when omitted it is read from the room.
 * Aliases of other servers cannot be resolved without federation and are refused as M_BAD_ALIAS.
 */
export async function validateCanonicalAlias(
  env: Env,
  roomId: string,
  content: JsonObject,
  current?: JsonObject | null,
): Promise<void> {
  if (current === undefined) {
    const state = await loadRoomState(env, roomId);
    current = state?.get("m.room.canonical_alias", "")?.content ?? null;
  }
  const previousAlias = current && typeof current.alias === "string" ? current.alias : undefined;
  const previousAlt = current && Array.isArray(current.alt_aliases) ? current.alt_aliases : [];

  const toCheck: string[] = [];
  const alias = content.alias;
  if (alias !== undefined && alias !== null && alias !== "") {
    if (typeof alias !== "string" || !parseRoomAlias(alias)) throw invalidParam("alias is not a valid room alias");
    if (alias !== previousAlias) toCheck.push(alias);
  }
  const alt = content.alt_aliases;
  if (alt !== undefined) {
    if (!Array.isArray(alt)) throw invalidParam("The alt_aliases property must be a list.");
    for (const a of alt) {
      if (typeof a !== "string" || !parseRoomAlias(a)) throw invalidParam("alt_aliases contains an invalid room alias");
      if (!previousAlt.includes(a) && !toCheck.includes(a)) toCheck.push(a);
    }
  }
  for (const a of toCheck) {
    const resolved = await resolveRoomAlias(env, a);
    if (!resolved || resolved.roomId !== roomId) {
      throw new MatrixError(400, "M_BAD_ALIAS", `The alias '${a}' does not point to this room.`);
    }
  }
}
