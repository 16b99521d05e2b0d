// Client-Server API: Presence (spec: "Presence", data/api/client-server/presence.yaml). A user's presence
// lives in their User DO; a change is fanned out to the User DOs of their local room-mates
// (durable-objects/user/room-mates.ts), whose /sync shows it in `presence`.
import { Hono } from "hono";
import type { PresenceEvent } from "../../durable-objects/user/sync.js";
import { fanOutPresence } from "../../durable-objects/user/room-mates.js";
import { badJson, forbidden, invalidParam } from "../../protocol/errors.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { userStore } from "../user-store.js";

export const presenceRoutes = new Hono<AppEnv>();

const V = "/_matrix/client/:version{v3|r0}";
const PRESENCE_STATES = ["online", "offline", "unavailable"] as const;
/** Synapse's limit on status messages. */
const MAX_STATUS_MSG_LENGTH = 1024;

function userIdParam(raw: string | undefined): string {
  if (raw === undefined || !/^@[^:]+:.+$/.test(raw) || raw.length > 255) throw invalidParam("Invalid user ID");
  return raw;
}

// PUT /_matrix/client/v3/presence/{userId}/status
presenceRoutes.put(`${V}/presence/:userId/status`, requireAuth, async (c) => {
  const userId = userIdParam(c.req.param("userId"));
  if (requester(c).userId !== userId) throw forbidden("Can only set your own presence state");
  const body = await readJsonObject(c, { allowEmpty: false });
  const presence = body.presence;
  if (typeof presence !== "string" || !(PRESENCE_STATES as readonly string[]).includes(presence)) {
    throw badJson("presence must be one of online, offline, unavailable");
  }
  let statusMsg: string | null = null;
  if (body.status_msg !== undefined && body.status_msg !== null) {
    if (typeof body.status_msg !== "string") throw badJson("status_msg must be a string");
    if (body.status_msg.length > MAX_STATUS_MSG_LENGTH) throw badJson("status_msg is too long");
    statusMsg = body.status_msg;
  }
  const user = userStore(c.env, userId);
  const changed = await user.setPresence(userId, presence as (typeof PRESENCE_STATES)[number], statusMsg);
  if (changed) {
    const rooms = await user.joinedRooms();
    const fanOut = fanOutPresence(c.env, userId, rooms, changed);
    try {
      c.executionCtx.waitUntil(fanOut);
    } catch {
      await fanOut; // no execution context (app.request in tests)
    }
  }
  return c.json({});
});

// GET /_matrix/client/v3/presence/{userId}/status
presenceRoutes.get(`${V}/presence/:userId/status`, requireAuth, async (c) => {
  const userId = userIdParam(c.req.param("userId"));
  const me = requester(c).userId;
  let event: PresenceEvent | null;
  if (userId === me) {
    event = await userStore(c.env, me).presence(me);
  } else {
    // Visible to users who share a room (spec: presence is shared with users who "share a room"; Synapse
    // answers 403 otherwise). The requester's DO holds room-mates' presence as it was fanned out.
    event = await userStore(c.env, me).presence(userId);
    if (!event) {
      const [mine, theirs] = await Promise.all([userStore(c.env, me).joinedRooms(), userStore(c.env, userId).joinedRooms()]);
      const shared = mine.some((r) => theirs.includes(r));
      if (!shared) throw forbidden("You are not allowed to see their presence");
      event = await userStore(c.env, userId).presence(userId);
    }
  }
  // Never set (or never seen): offline, as Synapse answers.
  if (!event) return c.json({ presence: "offline" });
  const body: Record<string, unknown> = { presence: event.presence, last_active_ago: event.lastActiveAgo, currently_active: event.currentlyActive };
  if (event.statusMsg !== undefined) body.status_msg = event.statusMsg;
  return c.json(body);
});
