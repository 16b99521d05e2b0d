// Server-Server API: PUT /_matrix/federation/v2/invite/{roomId}/{eventId} (spec: "Inviting to a room";
// data/api/server-server/invites-v2.yaml). The room's DO checks and co-signs the invite.
import { Hono } from "hono";
import { unwrap } from "../../durable-objects/room/outcome.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { requireRoomId, roomStub } from "../room-store.js";
import { requestOrigin } from "./auth.js";
import { refuseIfRoomBlocked } from "../admin/blocked-rooms.js";

export const federationInviteRoutes = new Hono<AppEnv>();

// PUT /_matrix/federation/v2/invite/{roomId}/{eventId}
federationInviteRoutes.put("/_matrix/federation/v2/invite/:roomId/:eventId", async (c) => {
  const origin = requestOrigin(c);
  const roomId = requireRoomId(c.req.param("roomId"));
  const eventId = c.req.param("eventId") ?? "";
  const body = await readJsonObject(c, { allowEmpty: false, canonical: false });
  // Synapse refuses invites into rooms an admin blocked (worker/admin/blocked-rooms.ts).
  await refuseIfRoomBlocked(c.env, roomId);
  return c.json(unwrap(await roomStub(c.env, roomId).receiveInvite({ origin, roomId, eventId, body })));
});
