// Client-Server API: room members and the user's joined rooms (spec: "Room membership", GET /members,
// GET /joined_members, GET /joined_rooms; data/api/client-server/rooms.yaml, list_joined_rooms.yaml).
//
// The rooms a user is joined to come from the user's DO (durable-objects/user/sync-stream.ts
// `joinedRooms`): every Room DO notifies the User DO of each membership change of that user (pushed to
// them whether or not they sync, before the membership request returns; docs/fan-out.md), which is the
// one per-user record of memberships.
import { Hono } from "hono";
import { MEMBERSHIPS } from "../../durable-objects/room/members.js";
import { unwrap } from "../../durable-objects/user/outcome.js";
import { invalidParam } from "../../protocol/errors.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv } from "../env.js";
import { requireRoomId, roomStub } from "../room-store.js";
import { positionParam } from "../room-pagination.js";
import { userStore } from "../user-store.js";

export const roomMembersRoutes = new Hono<AppEnv>();

const V = "/_matrix/client/:version{v3|r0}";

function membershipParam(raw: string | undefined, name: string): string | undefined {
  if (raw === undefined || raw === "") return undefined;
  if (!(MEMBERSHIPS as readonly string[]).includes(raw)) throw invalidParam(`${name} must be one of ${MEMBERSHIPS.join(", ")}`);
  return raw;
}

// GET /_matrix/client/v3/rooms/{roomId}/members
roomMembersRoutes.get(`${V}/rooms/:roomId/members`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const { userId, deviceId } = requester(c);
  const at = await positionParam(c, "at", userId, roomId);
  const membership = membershipParam(c.req.query("membership"), "membership");
  const notMembership = membershipParam(c.req.query("not_membership"), "not_membership");
  const chunk = unwrap(await roomStub(c.env, roomId).roomMembers({ userId, deviceId }, { at, membership, notMembership }));
  return c.json({ chunk });
});

// GET /_matrix/client/v3/rooms/{roomId}/joined_members
roomMembersRoutes.get(`${V}/rooms/:roomId/joined_members`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const joined = unwrap(await roomStub(c.env, roomId).joinedMembers(requester(c).userId));
  return c.json({ joined });
});

// GET /_matrix/client/v3/joined_rooms
roomMembersRoutes.get(`${V}/joined_rooms`, requireAuth, async (c) => {
  const joined_rooms = await userStore(c.env, requester(c).userId).joinedRooms();
  return c.json({ joined_rooms });
});
