// Server-Server API: joins, leaves and knocks of remote users in our rooms (spec: "Joining Rooms",
// "Leaving Rooms (Rejecting Invites)", "Knocking upon a room"; data/api/server-server/joins-v1.yaml,
// joins-v2.yaml, leaving-v2.yaml, knocks.yaml). The Room DO decides; these handlers parse. The server ACL
// is checked before any of them runs (auth.ts `federationRoomAcl`).
import { Hono, type Context } from "hono";
import type { RemoteMembership } from "../../durable-objects/room/federation-membership.js";
import { unwrap } from "../../durable-objects/room/outcome.js";
import { isValidUserId } from "../../protocol/auth-rules.js";
import { serverKeyOfUser } from "../../protocol/participation.js";
import { accountKeyOfUser } from "../../protocol/accounts.js";
import { invalidParam } from "../../protocol/errors.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { requireRoomId, roomStub } from "../room-store.js";
import { requestOrigin } from "./auth.js";

export const federationMembershipRoutes = new Hono<AppEnv>();

async function make(c: Context<AppEnv>, membership: RemoteMembership) {
  const origin = requestOrigin(c);
  const roomId = requireRoomId(c.req.param("roomId"));
  const userId = c.req.param("userId") ?? "";
  // MSC4345 rooms name users by server key (`@bob:<key>`), which the server name grammar refuses;
  // MSC4348 rooms by account key (`@<key>`, no server part).
  if (!isValidUserId(userId) && serverKeyOfUser(userId) === undefined && accountKeyOfUser(userId) === undefined) throw invalidParam("Invalid user ID");
  // make_join and make_knock list the room versions the joining server supports (`ver`, repeated);
  // without any, the spec's default is version 1 only.
  const supportedVersions = membership === "leave" ? undefined : c.req.queries("ver") ?? ["1"];
  const result = unwrap(await roomStub(c.env, roomId).makeMembership({ origin, userId, membership, supportedVersions }));
  return c.json(result);
}

/** send_join, send_leave, send_knock. `v1`: the deprecated v1 send_join and send_leave, which answer
 * `[200, body]` (spec: joins-v1.yaml, leaving-v1.yaml) and know no `omit_members`; Synapse still serves them. */
async function send(c: Context<AppEnv>, membership: RemoteMembership, v1 = false) {
  const origin = requestOrigin(c);
  const roomId = requireRoomId(c.req.param("roomId"));
  const eventId = c.req.param("eventId") ?? "";
  const pdu = await readJsonObject(c, { allowEmpty: false, canonical: false });
  const omitMembers = !v1 && c.req.query("omit_members") === "true";
  const result = unwrap(await roomStub(c.env, roomId).sendMembership({ origin, eventId, membership, pdu, omitMembers }));
  return c.json(v1 ? [200, result] : result);
}

// MSC4345 (unstable names of ../shared/proposals/README.md): a server asks to take part in a room.
// GET /_matrix/federation/unstable/org.matrix.msc4345/make_participation/{roomId}/{serverKey}
federationMembershipRoutes.get("/_matrix/federation/unstable/org.matrix.msc4345/make_participation/:roomId/:serverKey", async (c) => {
  const origin = requestOrigin(c);
  const roomId = requireRoomId(c.req.param("roomId"));
  const userId = c.req.query("user_id");
  return c.json(unwrap(await roomStub(c.env, roomId).makeParticipation({ origin, serverKey: c.req.param("serverKey"), userId })));
});
// PUT /_matrix/federation/unstable/org.matrix.msc4345/send_participation/{roomId}/{eventId}
federationMembershipRoutes.put("/_matrix/federation/unstable/org.matrix.msc4345/send_participation/:roomId/:eventId", async (c) => {
  const origin = requestOrigin(c);
  const roomId = requireRoomId(c.req.param("roomId"));
  const pdu = await readJsonObject(c, { allowEmpty: false });
  return c.json(unwrap(await roomStub(c.env, roomId).sendParticipation({ origin, eventId: c.req.param("eventId"), pdu })));
});

// GET /_matrix/federation/v1/make_join/{roomId}/{userId}
federationMembershipRoutes.get("/_matrix/federation/v1/make_join/:roomId/:userId", (c) => make(c, "join"));
// PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}
federationMembershipRoutes.put("/_matrix/federation/v2/send_join/:roomId/:eventId", (c) => send(c, "join"));
// PUT /_matrix/federation/v1/send_join/{roomId}/{eventId} (deprecated)
federationMembershipRoutes.put("/_matrix/federation/v1/send_join/:roomId/:eventId", (c) => send(c, "join", true));
// GET /_matrix/federation/v1/make_leave/{roomId}/{userId}
federationMembershipRoutes.get("/_matrix/federation/v1/make_leave/:roomId/:userId", (c) => make(c, "leave"));
// PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}
federationMembershipRoutes.put("/_matrix/federation/v2/send_leave/:roomId/:eventId", (c) => send(c, "leave"));
// PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId} (deprecated)
federationMembershipRoutes.put("/_matrix/federation/v1/send_leave/:roomId/:eventId", (c) => send(c, "leave", true));
// GET /_matrix/federation/v1/make_knock/{roomId}/{userId}
federationMembershipRoutes.get("/_matrix/federation/v1/make_knock/:roomId/:userId", (c) => make(c, "knock"));
// PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}
federationMembershipRoutes.put("/_matrix/federation/v1/send_knock/:roomId/:eventId", (c) => send(c, "knock"));
