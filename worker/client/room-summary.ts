// Client-Server API: room summaries (spec v1.15: GET /_matrix/client/v1/room_summary/{roomIdOrAlias},
// data/api/client-server/room_summary.yaml; MSC3266). Behaviour as Synapse's RoomSummaryRestServlet and
// RoomSummaryHandler.get_room_summary, including the two unstable paths Synapse serves.
//
// A room this server is in is summarised from its Room DO's current state (worker/room-summary.ts) when
// the requester may see it: they are joined or invited, the room is public, knockable (knock and
// knock_restricted where the room version has them) or world-readable, or it is restricted and they are
// joined to one of the allowed rooms (canSeeInHierarchy, the space hierarchy's rule, which is Synapse's
// `_is_local_room_accessible`). A room this server is not in is asked of the `via` servers (or the
// servers an alias resolved to) over federation /hierarchy, as Synapse does, and shown under Synapse's
// `_is_remote_room_accessible`. Anything else is 404, so that the answer does not reveal private rooms.
//
// Authentication is optional (spec: servers MAY serve public and world-readable rooms without it; Synapse
// serves every room under the same rule): without a token only public, knockable and world-readable rooms
// are shown, and `membership` is absent. A token that is given must be valid.
import { Hono, type Context } from "hono";
import { invalidParam, notFound } from "../../protocol/errors.js";
import { accessTokenOf, authenticateToken, clientIp } from "../auth.js";
import { isValidRoomId, parseRoomAlias, resolveAnyRoomAlias } from "../directory-store.js";
import type { AppEnv, Env } from "../env.js";
import { fetchRemoteHierarchy } from "../federation/hierarchy.js";
import { canSeeInHierarchy, loadRoomState, roomSummary } from "../room-summary.js";
import { roomStub } from "../room-store.js";

export const roomSummaryRoutes = new Hono<AppEnv>();

/** The requester's user ID, or undefined without an access token (an invalid token is 401). */
async function optionalRequester(c: Context<AppEnv>): Promise<string | undefined> {
  const token = accessTokenOf(c);
  if (token === undefined) return undefined;
  let waitUntil: ((p: Promise<unknown>) => void) | undefined;
  try {
    const ctx = c.executionCtx;
    waitUntil = (p) => ctx.waitUntil(p);
  } catch {
    waitUntil = undefined; // no execution context (app.request in tests)
  }
  return (await authenticateToken(c.env, token, clientIp(c), waitUntil)).userId;
}

/** The room ID and the servers to ask for it (an alias brings its own, as Synapse's ResolveRoomIdMixin). */
async function resolveRoom(env: Env, identifier: string, via: string[]): Promise<{ roomId: string; via: string[] }> {
  if (identifier.startsWith("#")) {
    if (!parseRoomAlias(identifier)) throw invalidParam(`${identifier} was not legal room ID or room alias`);
    const resolved = await resolveAnyRoomAlias(env, identifier);
    if (!resolved) throw notFound(`Room alias ${identifier} not found`);
    return { roomId: resolved.roomId, via: resolved.servers };
  }
  if (!isValidRoomId(identifier)) throw invalidParam(`${identifier} was not legal room ID or room alias`);
  return { roomId: identifier, via };
}

const isJoinedTo = (env: Env, userId: string | undefined) => async (roomId: string) =>
  userId !== undefined && (await roomStub(env, roomId).isJoined(userId));

/** The requester's membership in a room, `leave` when they have none (Synapse). */
async function membershipOf(env: Env, roomId: string, userId: string): Promise<string> {
  return (await roomStub(env, roomId).membership(userId))?.membership ?? "leave";
}

const NOT_ACCESSIBLE = "Room not found or is not accessible";

async function summarise(c: Context<AppEnv>, identifier: string): Promise<Response> {
  const userId = await optionalRequester(c);
  const { roomId, via } = await resolveRoom(c.env, identifier, c.req.queries("via") ?? []);

  const state = await loadRoomState(c.env, roomId);
  const fromState = async (): Promise<Response> => {
    if (!state || !(await canSeeInHierarchy(state, userId ?? "", isJoinedTo(c.env, userId)))) throw notFound(NOT_ACCESSIBLE);
    const summary: Record<string, unknown> = { ...roomSummary(state) };
    if (userId !== undefined) summary.membership = state.membershipOf(userId) ?? "leave";
    return c.json(summary);
  };
  // Synapse summarises locally when this server is in the room. A room it only knows from the past (all
  // its users left) is asked of the `via` servers, and summarised from what this server has when none
  // answers.
  if (state && (state.joinedServers().includes(c.env.SERVER_NAME) || via.length === 0)) return fromState();
  // Spec: 404 when the room cannot be found. (Synapse answers 400 "Missing via to query remote room".)
  if (via.length === 0) throw notFound(NOT_ACCESSIBLE);
  const remote = await fetchRemoteHierarchy(c.env, roomId, via, true);
  if (!remote) return fromState();
  const { children_state: _children, ...room } = remote.room;
  // Synapse's `_is_remote_room_accessible`: by the summary's join rule (public when absent: the answer
  // carries no room version) or world readability; then membership of an allowed room; then anything the
  // requester has here (an invite, a membership in a room this server left).
  const rule = room.join_rule ?? "public";
  let accessible = rule === "public" || rule === "knock" || rule === "knock_restricted" || room.world_readable === true;
  if (!accessible && userId !== undefined) {
    const allowed = Array.isArray(room.allowed_room_ids) ? room.allowed_room_ids : [];
    for (const id of allowed) if (typeof id === "string" && (await isJoinedTo(c.env, userId)(id))) accessible = true;
    if (!accessible) accessible = ["join", "invite"].includes(await membershipOf(c.env, roomId, userId));
  }
  if (!accessible) throw notFound(NOT_ACCESSIBLE);
  const summary: Record<string, unknown> = { ...room };
  if (userId !== undefined) summary.membership = await membershipOf(c.env, roomId, userId);
  return c.json(summary);
}

// GET /_matrix/client/v1/room_summary/{roomIdOrAlias}
roomSummaryRoutes.get("/_matrix/client/v1/room_summary/:roomIdOrAlias", (c) => summarise(c, c.req.param("roomIdOrAlias")));
// GET /_matrix/client/unstable/im.nheko.summary/summary/{roomIdOrAlias} (MSC3266's unstable path)
roomSummaryRoutes.get("/_matrix/client/unstable/im.nheko.summary/summary/:roomIdOrAlias", (c) => summarise(c, c.req.param("roomIdOrAlias")));
// GET /_matrix/client/unstable/im.nheko.summary/rooms/{roomIdOrAlias}/summary (the older unstable path
// Synapse still serves)
roomSummaryRoutes.get("/_matrix/client/unstable/im.nheko.summary/rooms/:roomIdOrAlias/summary", (c) => summarise(c, c.req.param("roomIdOrAlias")));

