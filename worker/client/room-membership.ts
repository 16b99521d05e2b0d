// Client-Server API: Room membership (spec: "Room membership", "Joining rooms", "Knocking on rooms",
// "Leaving rooms"; data/api/client-server/joining.yaml, inviting.yaml, knocking.yaml, leaving.yaml,
// kicking.yaml, banning.yaml). The Room DO decides (auth rules, restricted joins); these handlers parse.
import { Hono, type Context } from "hono";
import type { MembershipAction } from "../../durable-objects/room.js";
import type { MemberProfile } from "../../durable-objects/room/create-room.js";
import { isValidUserId } from "../../protocol/auth-rules.js";
import { badJson, forbidden, invalidParam, missingParam, notFound } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import { isLocalUserId, requester, requireAuth } from "../auth.js";
import { isValidRoomId, parseRoomAlias, resolveAnyRoomAlias } from "../directory-store.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { userStore } from "../user-store.js";
import { requireRoomId, roomStub } from "../room-store.js";
import { unwrap } from "../../durable-objects/room/outcome.js";
import { localProfile } from "./profile.js";
import { copyPushRulesFromPredecessor } from "./push-rules.js";
import { announceDeviceListOnJoin } from "../device-lists.js";
import { refuseIfRoomBlocked } from "../admin/blocked-rooms.js";
import { refuseServerNoticeInviteRejection } from "../admin/server-notices.js";

export const roomMembershipRoutes = new Hono<AppEnv>();

const V = "/_matrix/client/:version{v3|r0}";

function optionalReason(body: JsonObject): string | undefined {
  const reason = body.reason;
  if (reason === undefined || reason === null) return undefined;
  if (typeof reason !== "string") throw badJson("'reason' must be a string");
  return reason;
}

function requireUserIdParam(body: JsonObject): string {
  const userId = body.user_id;
  if (userId === undefined) throw missingParam("Missing user_id");
  if (typeof userId !== "string" || !isValidUserId(userId)) throw invalidParam("user_id is not a valid user ID");
  return userId;
}

async function profileOf(env: Env, userId: string): Promise<MemberProfile | undefined> {
  return isLocalUserId(userId, env) ? await localProfile(env, userId) : undefined;
}

/** Sends one membership change through the room's DO; returns the event ID. */
async function changeMembership(
  c: Context<AppEnv>,
  roomId: string,
  action: MembershipAction,
  target: string,
  reason: string | undefined,
  servers: string[] = [],
  content?: JsonObject,
): Promise<string> {
  const sender = requester(c).userId;
  const withProfile = action === "join" || action === "knock" || action === "invite";
  if (withProfile) await refuseIfRoomBlocked(c.env, roomId);
  const profile = withProfile ? await profileOf(c.env, target) : undefined;
  const eventId = unwrap(await roomStub(c.env, roomId).updateMembership({ sender, target, action, reason, profile, roomId, servers, content })).eventId;
  // The room's other servers learn the user's devices (worker/device-lists.ts), after the answer.
  if (action === "join") c.executionCtx.waitUntil(announceDeviceListOnJoin(c.env, target, roomId));
  return eventId;
}

/**
 * The servers to join a room through when this server is not in it (spec: POST /join/{roomIdOrAlias}
 * `via`, and the deprecated `server_name`): those named, then the servers the alias resolved to. Only when
 * there are none, the room ID's own server (room versions before 12 name the creating server in the ID):
 * servers the client named are the only ones tried, as Synapse (Complement's
 * TestRestrictedRoomsRemoteJoinFailOver expects a join through a server that cannot authorise it to fail).
 */
function joinServers(c: Context<AppEnv>, roomId: string, aliasServers: string[] = [], knock = false): string[] {
  const named = [...(c.req.queries("via") ?? []), ...(c.req.queries("server_name") ?? [])];
  // A knock always tries the room ID's server last, as Synapse does.
  const useId = knock || (named.length === 0 && aliasServers.length === 0);
  const fromId = roomId.includes(":") && useId ? [roomId.slice(roomId.indexOf(":") + 1)] : [];
  return [...new Set([...named, ...aliasServers, ...fromId])].filter((s) => s !== "" && s !== c.env.SERVER_NAME);
}

/** `roomIdOrAlias` of /join and /knock: a room ID, or an alias resolved through the directory (ours, or the
 * alias's server's over federation), with the servers the directory names. */
async function resolveRoomIdOrAlias(env: Env, roomIdOrAlias: string): Promise<{ roomId: string; servers: string[] }> {
  if (roomIdOrAlias.startsWith("#")) {
    if (!parseRoomAlias(roomIdOrAlias)) throw invalidParam(`${roomIdOrAlias} is not a legal room alias`);
    const resolved = await resolveAnyRoomAlias(env, roomIdOrAlias);
    if (!resolved) throw notFound(`Room alias ${roomIdOrAlias} not found`);
    return { roomId: resolved.roomId, servers: resolved.servers ?? [] };
  }
  if (!isValidRoomId(roomIdOrAlias)) throw invalidParam(`${roomIdOrAlias} was not legal room ID or room alias`);
  return { roomId: roomIdOrAlias, servers: [] };
}

/** The body of a join: its `reason`, and the whole body as the member event's content (as Synapse: a
 * client's extra keys are kept; `membership` and the server's own keys are set by the Room DO). */
async function joinBody(c: Context<AppEnv>): Promise<{ reason: string | undefined; content: JsonObject }> {
  const body = await readJsonObject(c, { allowEmpty: true });
  // Third-party signed joins need an identity server; this server has none.
  if (body.third_party_signed !== undefined) throw forbidden("Third-party invites are not supported on this server");
  return { reason: optionalReason(body), content: body };
}

// POST /_matrix/client/v3/rooms/{roomId}/join
roomMembershipRoutes.post(`${V}/rooms/:roomId/join`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const { reason, content } = await joinBody(c);
  await changeMembership(c, roomId, "join", requester(c).userId, reason, joinServers(c, roomId), content);
  await copyPushRulesFromPredecessor(c.env, requester(c).userId, roomId);
  return c.json({ room_id: roomId });
});

// POST /_matrix/client/v3/join/{roomIdOrAlias}
roomMembershipRoutes.post(`${V}/join/:roomIdOrAlias`, requireAuth, async (c) => {
  const { reason, content } = await joinBody(c);
  const { roomId, servers } = await resolveRoomIdOrAlias(c.env, c.req.param("roomIdOrAlias"));
  await changeMembership(c, roomId, "join", requester(c).userId, reason, joinServers(c, roomId, servers), content);
  await copyPushRulesFromPredecessor(c.env, requester(c).userId, roomId);
  return c.json({ room_id: roomId });
});

// POST /_matrix/client/v3/knock/{roomIdOrAlias}
roomMembershipRoutes.post(`${V}/knock/:roomIdOrAlias`, requireAuth, async (c) => {
  const body = await readJsonObject(c, { allowEmpty: true });
  const reason = optionalReason(body);
  const { roomId, servers } = await resolveRoomIdOrAlias(c.env, c.req.param("roomIdOrAlias"));
  await changeMembership(c, roomId, "knock", requester(c).userId, reason, joinServers(c, roomId, servers, true));
  return c.json({ room_id: roomId });
});

// POST /_matrix/client/v3/rooms/{roomId}/invite
roomMembershipRoutes.post(`${V}/rooms/:roomId/invite`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const body = await readJsonObject(c, { allowEmpty: false });
  // The third-party form ({id_server, medium, address}) needs an identity server.
  if (body.user_id === undefined && body.medium !== undefined) throw forbidden("Third-party invites are not supported on this server");
  const target = requireUserIdParam(body);
  await changeMembership(c, roomId, "invite", target, optionalReason(body));
  return c.json({});
});

// POST /_matrix/client/v3/rooms/{roomId}/leave
roomMembershipRoutes.post(`${V}/rooms/:roomId/leave`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const body = await readJsonObject(c, { allowEmpty: true });
  await refuseServerNoticeInviteRejection(c.env, roomId, requester(c).userId);
  await changeMembership(c, roomId, "leave", requester(c).userId, optionalReason(body));
  return c.json({});
});

// POST /_matrix/client/v3/rooms/{roomId}/forget
roomMembershipRoutes.post(`${V}/rooms/:roomId/forget`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  unwrap(await roomStub(c.env, roomId).forget(requester(c).userId));
  await userStore(c.env, requester(c).userId).forgetRoom(roomId);
  return c.json({});
});

// POST /_matrix/client/v3/rooms/{roomId}/kick
roomMembershipRoutes.post(`${V}/rooms/:roomId/kick`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const body = await readJsonObject(c, { allowEmpty: false });
  await changeMembership(c, roomId, "kick", requireUserIdParam(body), optionalReason(body));
  return c.json({});
});

// POST /_matrix/client/v3/rooms/{roomId}/ban
roomMembershipRoutes.post(`${V}/rooms/:roomId/ban`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const body = await readJsonObject(c, { allowEmpty: false });
  await changeMembership(c, roomId, "ban", requireUserIdParam(body), optionalReason(body));
  return c.json({});
});

// POST /_matrix/client/v3/rooms/{roomId}/unban
roomMembershipRoutes.post(`${V}/rooms/:roomId/unban`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const body = await readJsonObject(c, { allowEmpty: false });
  await changeMembership(c, roomId, "unban", requireUserIdParam(body), optionalReason(body));
  return c.json({});
});
