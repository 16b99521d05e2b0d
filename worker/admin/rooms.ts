// Synapse admin API: rooms (Synapse docs/admin_api/rooms.md): list, details, members, state, block, and
// delete (v1 answered when done; v2 answered with a delete ID whose status is kept in D1 `room_deletions`).
//
// The rooms this server holds are the rooms of the D1 event index (`event_rooms`, written by each Room DO
// after its commits); their details come from the Room DOs (room/admin.ts). Listing therefore asks every
// room's DO, a few at a time: fine for the thousands of rooms of a small server, not for a huge one.
import { Hono, type Context } from "hono";
import type { AdminRoomSummary } from "../../durable-objects/room/admin.js";
import { unwrap } from "../../durable-objects/room/outcome.js";
import { isValidUserId } from "../../protocol/auth-rules.js";
import { MatrixError, badJson, fromRpcError, invalidParam, notFound } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import { isLocalUserId, requester } from "../auth.js";
import { createRoom } from "../client/rooms.js";
import { localProfile } from "../client/profile.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { isValidRoomId, parseRoomAlias, resolveRoomAlias } from "../directory-store.js";
import { requireRoomId, roomStub } from "../room-store.js";
import { boolQuery, dirQuery, pageQuery, requireAdmin } from "./auth.js";
import { refuseIfRoomBlocked, setBlocked } from "./blocked-rooms.js";

export const adminRoomRoutes = new Hono<AppEnv>();

/** Room DOs asked at once while listing. */
const SUMMARY_CONCURRENCY = 16;

/** Every room ID of the event index. */
async function knownRoomIds(env: Env): Promise<string[]> {
  const { results } = await env.DB.prepare("SELECT DISTINCT room_id FROM event_rooms").all<{ room_id: string }>();
  return results.map((r) => r.room_id);
}

async function publicRoomIds(env: Env): Promise<Set<string>> {
  const { results } = await env.DB.prepare("SELECT room_id FROM room_directory WHERE visibility = 'public'").all<{ room_id: string }>();
  return new Set(results.map((r) => r.room_id));
}

async function summaries(env: Env, roomIds: string[]): Promise<AdminRoomSummary[]> {
  const out: AdminRoomSummary[] = [];
  const queue = [...roomIds];
  const worker = async () => {
    for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
      const summary = await roomStub(env, id).adminSummary();
      if (summary) out.push(summary);
    }
  };
  await Promise.all(Array.from({ length: Math.min(SUMMARY_CONCURRENCY, queue.length) }, worker));
  return out;
}

/** The list entry (Synapse's room dict in the List Room API). */
function roomJson(s: AdminRoomSummary, isPublic: boolean): JsonObject {
  return {
    room_id: s.room_id,
    name: s.name,
    canonical_alias: s.canonical_alias,
    joined_members: s.joined_members,
    joined_local_members: s.joined_local_members,
    version: s.version,
    creator: s.creator,
    encryption: s.encryption,
    federatable: s.federatable,
    public: isPublic,
    join_rules: s.join_rules,
    guest_access: s.guest_access,
    history_visibility: s.history_visibility,
    state_events: s.state_events,
    room_type: s.room_type,
  };
}

/** Synapse's `order_by` values (`alphabetical` and `size` are its deprecated names for `name` and
 * `joined_members`). */
const ORDER_KEYS: Record<string, string> = {
  name: "name",
  alphabetical: "name",
  canonical_alias: "canonical_alias",
  joined_members: "joined_members",
  size: "joined_members",
  joined_local_members: "joined_local_members",
  version: "version",
  creator: "creator",
  encryption: "encryption",
  federatable: "federatable",
  public: "public",
  join_rules: "join_rules",
  guest_access: "guest_access",
  history_visibility: "history_visibility",
  state_events: "state_events",
};

type Sortable = string | number | boolean | null;

function compareValues(a: Sortable, b: Sortable): number {
  // Missing values sort last going forwards, as SQL's NULLs do in Synapse's ascending lists.
  if (a === null || b === null) return a === b ? 0 : a === null ? 1 : -1;
  if (typeof a === "string" && typeof b === "string") return a < b ? -1 : a > b ? 1 : 0;
  return Number(a) - Number(b);
}

// GET /_synapse/admin/v1/rooms
adminRoomRoutes.get("/_synapse/admin/v1/rooms", requireAdmin, async (c) => {
  const { from, limit } = pageQuery(c.req.query("from"), c.req.query("limit"));
  const orderBy = c.req.query("order_by") ?? "name";
  const key = ORDER_KEYS[orderBy];
  if (key === undefined) throw invalidParam(`Unknown value for order_by: ${orderBy}`);
  const dir = dirQuery(c.req.query("dir"));
  const searchTerm = c.req.query("search_term");
  if (searchTerm === "") throw invalidParam("search_term cannot be empty");
  const publicOnly = boolQuery(c.req.query("public_rooms"), "public_rooms");
  const emptyRooms = boolQuery(c.req.query("empty_rooms"), "empty_rooms");

  const publicIds = await publicRoomIds(c.env);
  let rooms = (await summaries(c.env, await knownRoomIds(c.env))).map((s) => roomJson(s, publicIds.has(s.room_id)));
  if (searchTerm !== undefined) {
    // Synapse: the term may be part of the name, of the canonical alias or of the room ID (names and
    // aliases case-insensitively).
    const term = searchTerm.toLowerCase();
    rooms = rooms.filter(
      (r) =>
        (typeof r.name === "string" && r.name.toLowerCase().includes(term)) ||
        (typeof r.canonical_alias === "string" && r.canonical_alias.toLowerCase().includes(term)) ||
        (r.room_id as string).includes(searchTerm),
    );
  }
  if (publicOnly !== undefined) rooms = rooms.filter((r) => r.public === publicOnly);
  if (emptyRooms !== undefined) rooms = rooms.filter((r) => (r.joined_members === 0) === emptyRooms);
  const sign = dir === "b" ? -1 : 1;
  rooms.sort((a, b) => sign * compareValues(a[key] as Sortable, b[key] as Sortable) || compareValues(a.room_id as string, b.room_id as string));

  const page = rooms.slice(from, from + limit);
  const body: JsonObject = { rooms: page, offset: from, total_rooms: rooms.length };
  if (from + page.length < rooms.length) body.next_batch = from + page.length;
  if (from > 0) body.prev_batch = Math.max(0, from - limit);
  return c.json(body);
});

async function roomSummaryOr404(env: Env, roomId: string): Promise<AdminRoomSummary> {
  const summary = await roomStub(env, roomId).adminSummary();
  if (!summary) throw notFound("Room not found");
  return summary;
}

// GET /_synapse/admin/v1/rooms/{roomId}
adminRoomRoutes.get("/_synapse/admin/v1/rooms/:roomId", requireAdmin, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const s = await roomSummaryOr404(c.env, roomId);
  let devices = 0;
  // D1 allows 100 bound parameters per statement.
  for (let i = 0; i < s.local_members.length; i += 90) {
    const chunk = s.local_members.slice(i, i + 90);
    const row = await c.env.DB.prepare(`SELECT count(*) AS n FROM devices WHERE user_id IN (${chunk.map(() => "?").join(", ")})`)
      .bind(...chunk)
      .first<{ n: number }>();
    devices += row?.n ?? 0;
  }
  const isPublic = (await publicRoomIds(c.env)).has(roomId);
  return c.json({ ...roomJson(s, isPublic), topic: s.topic, avatar: s.avatar, joined_local_devices: devices });
});

// GET /_synapse/admin/v1/rooms/{roomId}/members
adminRoomRoutes.get("/_synapse/admin/v1/rooms/:roomId/members", requireAdmin, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const room = roomStub(c.env, roomId);
  if ((await room.roomInfo()) === null) throw notFound("Room not found");
  const members = (await room.members("join")).sort();
  return c.json({ members, total: members.length });
});

// GET /_synapse/admin/v1/rooms/{roomId}/state
adminRoomRoutes.get("/_synapse/admin/v1/rooms/:roomId/state", requireAdmin, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const room = roomStub(c.env, roomId);
  if ((await room.roomInfo()) === null) throw notFound("Room not found");
  const entries = await room.currentState();
  const state = await room.clientEvents(entries.map((e) => e.eventId));
  return c.json({ state });
});

// ---------------------------------------------------------------------------------------------
// Blocking (Synapse "Block Room API"): local users cannot join, be invited to or knock on a blocked room.

// PUT /_synapse/admin/v1/rooms/{roomId}/block (the room need not be known here: it may be blocked ahead)
adminRoomRoutes.put("/_synapse/admin/v1/rooms/:roomId/block", requireAdmin, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const body = await readJsonObject(c, { allowEmpty: false });
  if (typeof body.block !== "boolean") throw new MatrixError(400, "M_BAD_JSON", "Param 'block' must be a boolean.");
  await setBlocked(c.env, roomId, body.block, requester(c).userId);
  return c.json({ block: body.block });
});

// GET /_synapse/admin/v1/rooms/{roomId}/block
adminRoomRoutes.get("/_synapse/admin/v1/rooms/:roomId/block", requireAdmin, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const row = await c.env.DB.prepare("SELECT user_id FROM blocked_rooms WHERE room_id = ?").bind(roomId).first<{ user_id: string }>();
  return c.json(row ? { block: true, user_id: row.user_id } : { block: false });
});

// ---------------------------------------------------------------------------------------------
// Deleting (Synapse "Delete Room API": `shutdown_room` and `purge_room`).

interface DeleteRequest {
  newRoomUserId?: string;
  roomName: string;
  message: string;
  block: boolean;
  purge: boolean;
  forcePurge: boolean;
}

interface ShutdownResult {
  kicked_users: string[];
  failed_to_kick_users: string[];
  local_aliases: string[];
  new_room_id: string | null;
}

/** Synapse's defaults for the room the members are moved to. */
const DEFAULT_NEW_ROOM_NAME = "Content Violation Notification";
const DEFAULT_MESSAGE = "Sharing illegal content on this server is not permitted and rooms in violation will be blocked.";

function deleteRequestOf(body: JsonObject): DeleteRequest {
  const optional = <T>(key: string, type: "string" | "boolean", def: T): T => {
    const v = body[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== type) throw badJson(`'${key}' must be a ${type}`);
    return v as T;
  };
  const newRoomUserId = optional<string | undefined>("new_room_user_id", "string", undefined);
  if (newRoomUserId !== undefined && !isValidUserId(newRoomUserId)) throw invalidParam("new_room_user_id is not a valid user ID");
  return {
    newRoomUserId,
    roomName: optional("room_name", "string", DEFAULT_NEW_ROOM_NAME),
    message: optional("message", "string", DEFAULT_MESSAGE),
    block: optional("block", "boolean", false),
    purge: optional("purge", "boolean", true),
    forcePurge: optional("force_purge", "boolean", false),
  };
}

/**
 * Shuts the room down and, when asked, purges it. Every local member leaves (as themselves, as Synapse
 * does: no power level needed) and, with `new_room_user_id`, is joined into a new room
 * where that user posts `message`; local aliases are deleted and the room is taken off the directory.
 * A purge then empties the Room DO and deletes the D1 rows about the room (event index, reports).
 */
async function shutdownRoom(env: Env, roomId: string, request: DeleteRequest, admin: string): Promise<ShutdownResult> {
  if (request.block) await setBlocked(env, roomId, true, admin);
  const room = roomStub(env, roomId);
  const result: ShutdownResult = { kicked_users: [], failed_to_kick_users: [], local_aliases: [], new_room_id: null };
  const known = (await room.roomInfo()) !== null;
  if (known) {
    if (request.newRoomUserId !== undefined) {
      const creator = request.newRoomUserId;
      result.new_room_id = await createRoom(env, creator, { preset: "public_chat", name: request.roomName, power_level_content_override: { users_default: -10 } });
      unwrap(await roomStub(env, result.new_room_id).sendEvent({ sender: creator, type: "m.room.message", content: { msgtype: "m.text", body: request.message } }));
    }
    const joined = (await room.members("join")).filter((u) => isLocalUserId(u, env));
    for (const userId of joined) {
      try {
        unwrap(await room.updateMembership({ sender: userId, target: userId, action: "leave" }));
        result.kicked_users.push(userId);
      } catch (e) {
        console.warn("room shutdown: leave failed", roomId, userId, e instanceof Error ? e.message : fromRpcError(e));
        result.failed_to_kick_users.push(userId);
        continue;
      }
      if (result.new_room_id !== null && userId !== request.newRoomUserId) {
        try {
          // The new room is public: the members join it (as Synapse does), and can read but not speak.
          const profile = await localProfile(env, userId);
          unwrap(await roomStub(env, result.new_room_id).updateMembership({ sender: userId, target: userId, action: "join", profile }));
        } catch (e) {
          console.warn("room shutdown: moving a member to the new room failed", userId, e instanceof Error ? e.message : e);
        }
      }
    }
    // Pending invites of local users are rejected, so that their clients drop the room.
    for (const userId of (await room.members("invite")).filter((u) => isLocalUserId(u, env))) {
      try {
        unwrap(await room.updateMembership({ sender: userId, target: userId, action: "leave" }));
      } catch (e) {
        console.warn("room shutdown: invite rejection failed", roomId, userId, e instanceof Error ? e.message : e);
      }
    }
  }
  const aliases = await env.DB.prepare("DELETE FROM room_aliases WHERE room_id = ? RETURNING alias").bind(roomId).all<{ alias: string }>();
  result.local_aliases = aliases.results.map((r) => r.alias).sort();
  await env.DB.prepare("DELETE FROM room_directory WHERE room_id = ?").bind(roomId).run();

  if (request.purge && known) {
    if (result.failed_to_kick_users.length > 0 && !request.forcePurge) {
      throw new MatrixError(400, "M_UNKNOWN", "Users are still joined to this room");
    }
    unwrap(await room.purge());
    await env.DB.batch([
      env.DB.prepare("DELETE FROM event_rooms WHERE room_id = ?").bind(roomId),
      env.DB.prepare("DELETE FROM reports WHERE room_id = ?").bind(roomId),
      // The user directory's rows of the room (durable-objects/room/directory-index.ts).
      env.DB.prepare("DELETE FROM directory_members WHERE room_id = ?").bind(roomId),
      env.DB.prepare("DELETE FROM directory_rooms WHERE room_id = ?").bind(roomId),
    ]);
  }
  return result;
}

function deleteIdOf(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return [...bytes].map((b) => (b % 36).toString(36)).join("");
}

interface DeletionRow {
  delete_id: string;
  room_id: string;
  status: string;
  error: string | null;
  shutdown_room: string | null;
}

function deletionJson(row: DeletionRow): JsonObject {
  const out: JsonObject = {
    delete_id: row.delete_id,
    room_id: row.room_id,
    status: row.status,
    shutdown_room: row.shutdown_room === null ? { kicked_users: [], failed_to_kick_users: [], local_aliases: [], new_room_id: null } : JSON.parse(row.shutdown_room),
  };
  if (row.error !== null) out.error = row.error;
  return out;
}

/** Checks the request before anything changes: an unknown room is 404 unless it is to be blocked. */
async function startDelete(c: Context<AppEnv>): Promise<{ roomId: string; request: DeleteRequest }> {
  const roomId = requireRoomId(c.req.param("roomId"));
  const request = deleteRequestOf(await readJsonObject(c));
  if (request.newRoomUserId !== undefined) {
    if (!isLocalUserId(request.newRoomUserId, c.env)) throw invalidParam("User must be our own: " + request.newRoomUserId);
    // The new room's creator must be an account that can act (Synapse would make the room with a ghost).
    const creator = await c.env.DB.prepare("SELECT deactivated FROM users WHERE user_id = ?").bind(request.newRoomUserId).first<{ deactivated: number }>();
    if (!creator || creator.deactivated) throw invalidParam(`Unknown or deactivated user ${request.newRoomUserId}`);
  }
  if (!request.block && (await roomStub(c.env, roomId).roomInfo()) === null) throw notFound(`Unknown room id ${roomId}`);
  return { roomId, request };
}

// DELETE /_synapse/admin/v1/rooms/{roomId}: answered once done.
adminRoomRoutes.delete("/_synapse/admin/v1/rooms/:roomId", requireAdmin, async (c) => {
  const { roomId, request } = await startDelete(c);
  return c.json(await shutdownRoom(c.env, roomId, request, requester(c).userId));
});

// DELETE /_synapse/admin/v2/rooms/{roomId}: Synapse answers at once and works in the background; here the
// work is done within the request too (a Worker's background time is bounded), and its outcome is kept
// for the status endpoints.
adminRoomRoutes.delete("/_synapse/admin/v2/rooms/:roomId", requireAdmin, async (c) => {
  const { roomId, request } = await startDelete(c);
  const running = await c.env.DB.prepare("SELECT 1 FROM room_deletions WHERE room_id = ? AND status IN ('shutting_down', 'purging')").bind(roomId).first();
  if (running) throw new MatrixError(400, "M_UNKNOWN", `History purge already in progress for ${roomId}`);
  const deleteId = deleteIdOf();
  await c.env.DB.prepare("INSERT INTO room_deletions (delete_id, room_id, status, created_ts) VALUES (?, ?, 'shutting_down', ?)")
    .bind(deleteId, roomId, Date.now())
    .run();
  let status = "complete";
  let error: string | null = null;
  let result: ShutdownResult | null = null;
  try {
    result = await shutdownRoom(c.env, roomId, request, requester(c).userId);
  } catch (e) {
    const err = fromRpcError(e);
    status = "failed";
    error = err instanceof Error ? err.message : String(err);
  }
  await c.env.DB.prepare("UPDATE room_deletions SET status = ?, error = ?, shutdown_room = ? WHERE delete_id = ?")
    .bind(status, error, result === null ? null : JSON.stringify(result), deleteId)
    .run();
  return c.json({ delete_id: deleteId });
});

// GET /_synapse/admin/v2/rooms/{roomId}/delete_status
adminRoomRoutes.get("/_synapse/admin/v2/rooms/:roomId/delete_status", requireAdmin, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const { results } = await c.env.DB.prepare("SELECT * FROM room_deletions WHERE room_id = ? ORDER BY created_ts").bind(roomId).all<DeletionRow>();
  if (results.length === 0) throw notFound("No delete task for room_id '" + roomId + "' found");
  return c.json({ results: results.map(deletionJson) });
});

// GET /_synapse/admin/v2/rooms/delete_status/{deleteId}
adminRoomRoutes.get("/_synapse/admin/v2/rooms/delete_status/:deleteId", requireAdmin, async (c) => {
  const deleteId = c.req.param("deleteId");
  const row = await c.env.DB.prepare("SELECT * FROM room_deletions WHERE delete_id = ?").bind(deleteId).first<DeletionRow>();
  if (!row) throw notFound("delete id '" + deleteId + "' not found");
  const { delete_id: _id, room_id: _room, ...rest } = deletionJson(row);
  return c.json(rest);
});

// ---------------------------------------------------------------------------------------------
// POST /_synapse/admin/v1/join/{roomIdOrAlias} (Synapse "Edit Room Membership API"): joins a local user
// to a room this server is in. A room that is not public needs the admin in it: the admin invites the
// user first (as Synapse does). Rooms only on other servers are not joined through this endpoint.
adminRoomRoutes.post("/_synapse/admin/v1/join/:roomIdOrAlias", requireAdmin, async (c) => {
  const env = c.env;
  const target = c.req.param("roomIdOrAlias");
  const body = await readJsonObject(c, { allowEmpty: false });
  const userId = body.user_id;
  if (typeof userId !== "string") throw new MatrixError(400, "M_MISSING_PARAM", "Missing or invalid user_id");
  if (!isLocalUserId(userId, env)) throw new MatrixError(400, "M_UNKNOWN", "This endpoint can only be used with local users");
  const user = await env.DB.prepare("SELECT deactivated FROM users WHERE user_id = ?").bind(userId).first<{ deactivated: number }>();
  if (!user || user.deactivated) throw notFound("User not found");
  let roomId: string;
  if (target.startsWith("#")) {
    if (!parseRoomAlias(target)) throw invalidParam(`${target} is not a legal room alias`);
    const resolved = await resolveRoomAlias(env, target);
    if (!resolved) throw notFound(`Room alias ${target} not found`);
    roomId = resolved.roomId;
  } else {
    if (!isValidRoomId(target)) throw invalidParam(`${target} was not legal room ID or room alias`);
    roomId = target;
  }
  await refuseIfRoomBlocked(env, roomId);
  const room = roomStub(env, roomId);
  const summary = await room.adminSummary();
  if (!summary) throw notFound("Room not found");
  const profile = await localProfile(env, userId);
  if (summary.join_rules !== "public" && (await room.membership(userId))?.membership !== "invite") {
    const admin = requester(c).userId;
    if (!(await room.isJoined(admin))) throw new MatrixError(403, "M_FORBIDDEN", `${admin} not in room ${roomId}.`);
    unwrap(await room.updateMembership({ sender: admin, target: userId, action: "invite", profile }));
  }
  unwrap(await room.updateMembership({ sender: userId, target: userId, action: "join", profile }));
  return c.json({ room_id: roomId });
});
