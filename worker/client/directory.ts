// Client-Server API: Room aliases and a room's visibility in the published room directory (spec:
// "Room aliases", data/api/client-server/directory.yaml; "Published room directory",
// list_public_rooms.yaml `/directory/list/room/{roomId}`). Aliases and visibility live in D1
// (worker/directory-store.ts); membership and power levels are read from the room's current state.
import { Hono } from "hono";
import { MatrixError, forbidden, invalidParam, missingParam, notFound } from "../../protocol/errors.js";
import { requester, requireAuth } from "../auth.js";
import {
  deleteAlias,
  getAlias,
  getVisibility,
  insertAlias,
  isDirectoryVisibility,
  isValidRoomId,
  localAliasesOf,
  removeAliasFromCanonicalAlias,
  requireRoomAlias,
  resolveAnyRoomAlias,
  resolveRoomAlias,
  setVisibility,
} from "../directory-store.js";
import type { AppEnv } from "../env.js";
import { requesterAppservice } from "../appservice/auth.js";
import { refuseExclusiveAlias } from "../appservice/accounts.js";
import { readJsonObject } from "../http.js";
import { canChangeRoomList, isWorldReadable, loadRoomState } from "../room-summary.js";

export const directoryRoutes = new Hono<AppEnv>();

const aliasExists = (alias: string) => new MatrixError(409, "M_UNKNOWN", `Room alias ${alias} already exists.`);
const aliasNotFound = (alias: string) => notFound(`Room alias ${alias} not found.`);

function requireRoomId(roomId: string): string {
  if (!isValidRoomId(roomId)) throw invalidParam(`${roomId} is not a legal room ID`);
  return roomId;
}

// PUT /_matrix/client/v3/directory/room/{roomAlias}
directoryRoutes.put("/_matrix/client/:version{v3|r0}/directory/room/:roomAlias", requireAuth, async (c) => {
  const user = requester(c);
  const alias = requireRoomAlias(c.req.param("roomAlias"));
  // Only aliases of this server can be created here; another server's namespace is its own.
  if (alias.serverName !== c.env.SERVER_NAME) throw invalidParam("Room alias must be local");
  const body = await readJsonObject(c, { allowEmpty: false });
  if (body.room_id === undefined) throw missingParam("Missing room_id");
  if (typeof body.room_id !== "string" || !isValidRoomId(body.room_id)) throw invalidParam("room_id is not a valid room ID");
  const roomId = body.room_id;

  const state = await loadRoomState(c.env, roomId);
  if (!state) throw notFound("Room not found");
  // Application services create aliases in their alias namespace, members or not; nobody else may take an
  // alias a service holds exclusively (Synapse `DirectoryHandler._create_association`).
  const service = await requesterAppservice(c.env, user);
  if (service) {
    if (!service.isAliasInNamespace(alias.alias)) throw new MatrixError(400, "M_EXCLUSIVE", "This application service has not reserved this kind of alias.");
  } else {
    // As Synapse (`require_membership_for_aliases`, on by default): only members of the room, or server
    // admins, may point an alias at it, so nobody squats names for rooms they are not in.
    if (!user.isAdmin && state.membershipOf(user.userId) !== "join") {
      throw forbidden("You must be in the room to create an alias for it");
    }
    await refuseExclusiveAlias(c.env, alias.alias, undefined);
  }
  if (!(await insertAlias(c.env, alias.alias, roomId, user.userId))) throw aliasExists(alias.alias);
  // Application services with alias namespaces match the room's aliases (room/appservice-outbound.ts).
  await (c.env.ROOMS.get(c.env.ROOMS.idFromName(roomId)) as unknown as { aliasesChanged(): Promise<void> }).aliasesChanged();
  return c.json({});
});

// GET /_matrix/client/v3/directory/room/{roomAlias}
directoryRoutes.get("/_matrix/client/:version{v3|r0}/directory/room/:roomAlias", async (c) => {
  const alias = requireRoomAlias(c.req.param("roomAlias"));
  // Other servers' aliases through the federation directory query.
  const resolved = await resolveAnyRoomAlias(c.env, alias.alias);
  if (!resolved) throw aliasNotFound(alias.alias);
  return c.json({ room_id: resolved.roomId, servers: resolved.servers });
});

// DELETE /_matrix/client/v3/directory/room/{roomAlias}
directoryRoutes.delete("/_matrix/client/:version{v3|r0}/directory/room/:roomAlias", requireAuth, async (c) => {
  const user = requester(c);
  const alias = requireRoomAlias(c.req.param("roomAlias"));
  const row = await getAlias(c.env, alias.alias);
  if (!row) throw aliasNotFound(alias.alias);
  // The spec lets the server choose ("only be deleted by their creator or a server administrator").
  // As Synapse: the alias's creator, a server admin, or a joined member with the power to send
  // m.room.canonical_alias in the room (who could remove the alias from the room's state anyway).
  if (row.creator !== user.userId && !user.isAdmin) {
    const state = await loadRoomState(c.env, row.room_id);
    if (!state || !canChangeRoomList(state, user.userId, false)) {
      throw forbidden("You don't have permission to delete the alias.");
    }
  }
  if (!(await deleteAlias(c.env, alias.alias))) throw aliasNotFound(alias.alias);
  // As Synapse: the room stops advertising the alias in m.room.canonical_alias (when the user may).
  await removeAliasFromCanonicalAlias(c.env, row.room_id, alias.alias, user.userId);
  return c.json({});
});

// GET /_matrix/client/v3/rooms/{roomId}/aliases
directoryRoutes.get("/_matrix/client/:version{v3|r0}/rooms/:roomId/aliases", requireAuth, async (c) => {
  const user = requester(c);
  const roomId = requireRoomId(c.req.param("roomId"));
  // Spec: members of the room, anyone if it is world-readable; server admins too ("Servers may choose
  // to ... allow server administrators to view aliases regardless of membership").
  if (!user.isAdmin) {
    const state = await loadRoomState(c.env, roomId);
    if (!state || (state.membershipOf(user.userId) !== "join" && !isWorldReadable(state))) {
      throw forbidden("You are not a member of the room.");
    }
  }
  return c.json({ aliases: await localAliasesOf(c.env, roomId) });
});

// GET /_matrix/client/v3/directory/list/room/{roomId}
directoryRoutes.get("/_matrix/client/:version{v3|r0}/directory/list/room/:roomId", async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const visibility = await getVisibility(c.env, roomId);
  if (visibility !== null) return c.json({ visibility });
  if (!(await loadRoomState(c.env, roomId))) throw notFound("Room not found");
  return c.json({ visibility: "private" });
});

// PUT /_matrix/client/v3/directory/list/room/{roomId}
directoryRoutes.put("/_matrix/client/:version{v3|r0}/directory/list/room/:roomId", requireAuth, async (c) => {
  const user = requester(c);
  const roomId = requireRoomId(c.req.param("roomId"));
  const body = await readJsonObject(c);
  // Spec: `visibility` defaults to `public`.
  const visibility = body.visibility ?? "public";
  if (!isDirectoryVisibility(visibility)) throw invalidParam("visibility must be 'public' or 'private'");
  const state = await loadRoomState(c.env, roomId);
  if (!state) throw notFound("Room not found");
  // The spec allows extra checks ("only be changed by the room creator or a server administrator"). As
  // Synapse (`check_can_change_room_list`): a server admin, or a joined member with the power level to
  // send m.room.canonical_alias (a moderator under default power levels).
  if (!canChangeRoomList(state, user.userId, user.isAdmin)) {
    throw forbidden("This user is not permitted to publish rooms to the room list");
  }
  await setVisibility(c.env, roomId, visibility);
  return c.json({});
});
