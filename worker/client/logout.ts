// Client-Server API: "Logout" (POST /logout, POST /logout/all). Spec: content/client-server-api
// "Legacy API: Logout": logging out invalidates the access token and deletes the device it belongs to.
import { Hono } from "hono";
import { deleteAllDevices, deleteDevices } from "../accounts.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv } from "../env.js";

export const logoutRoutes = new Hono<AppEnv>();

const CLIENT = "/_matrix/client/:version{v3|r0}";

// POST /_matrix/client/v3/logout
logoutRoutes.post(`${CLIENT}/logout`, requireAuth, async (c) => {
  const { userId, deviceId } = requester(c);
  await deleteDevices(c.env, userId, [deviceId]);
  return c.json({});
});

// POST /_matrix/client/v3/logout/all
logoutRoutes.post(`${CLIENT}/logout/all`, requireAuth, async (c) => {
  const { userId } = requester(c);
  await deleteAllDevices(c.env, userId);
  return c.json({});
});
