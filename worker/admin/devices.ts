// Synapse admin API: a user's devices (Synapse docs/admin_api/user_admin_api.md, "User devices"), from D1
// `devices`; deleting goes through the same helper as the client API (tokens, keys and to-device inboxes
// go with the device, and the device list change is announced).
import { Hono, type Context } from "hono";
import { MatrixError, badJson, invalidParam, notFound } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import { deleteDevices } from "../accounts.js";
import { localpartOf } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { MAX_DEVICE_DISPLAY_NAME_LENGTH } from "../client/registration.js";
import { requireAdmin } from "./auth.js";

export const adminDeviceRoutes = new Hono<AppEnv>();

const USER = "/_synapse/admin/v2/users/:userId";

interface DeviceRow {
  user_id: string;
  device_id: string;
  display_name: string | null;
  last_seen_ts: number | null;
  last_seen_ip: string | null;
}

function deviceJson(d: DeviceRow): JsonObject {
  // No user agents are kept.
  return { device_id: d.device_id, display_name: d.display_name, last_seen_ip: d.last_seen_ip, last_seen_ts: d.last_seen_ts, last_seen_user_agent: null, user_id: d.user_id };
}

/** The `{userId}` of a local user who exists (400 for another server's user, 404 for an unknown one). */
async function existingLocalUser(c: Context<AppEnv>): Promise<string> {
  const userId = c.req.param("userId") ?? "";
  if (localpartOf(userId, c.env) === undefined) throw new MatrixError(400, "M_UNKNOWN", "Can only lookup local users");
  if (!(await c.env.DB.prepare("SELECT 1 FROM users WHERE user_id = ?").bind(userId).first())) throw notFound("Unknown user");
  return userId;
}

async function device(env: Env, userId: string, deviceId: string): Promise<DeviceRow | null> {
  return env.DB.prepare("SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip FROM devices WHERE user_id = ? AND device_id = ?")
    .bind(userId, deviceId)
    .first<DeviceRow>();
}

// GET /_synapse/admin/v2/users/{userId}/devices
adminDeviceRoutes.get(`${USER}/devices`, requireAdmin, async (c) => {
  const userId = await existingLocalUser(c);
  const { results } = await c.env.DB.prepare("SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip FROM devices WHERE user_id = ? ORDER BY device_id")
    .bind(userId)
    .all<DeviceRow>();
  return c.json({ devices: results.map(deviceJson), total: results.length });
});

// GET /_synapse/admin/v2/users/{userId}/devices/{deviceId}
adminDeviceRoutes.get(`${USER}/devices/:deviceId`, requireAdmin, async (c) => {
  const userId = await existingLocalUser(c);
  const row = await device(c.env, userId, c.req.param("deviceId"));
  if (!row) throw notFound("Device not found");
  return c.json(deviceJson(row));
});

// PUT /_synapse/admin/v2/users/{userId}/devices/{deviceId}
adminDeviceRoutes.put(`${USER}/devices/:deviceId`, requireAdmin, async (c) => {
  const userId = await existingLocalUser(c);
  const body = await readJsonObject(c);
  const displayName = body.display_name;
  if (displayName !== undefined && displayName !== null && typeof displayName !== "string") throw badJson("display_name must be a string");
  if (typeof displayName === "string" && displayName.length > MAX_DEVICE_DISPLAY_NAME_LENGTH) throw invalidParam("Device display name is too long");
  if (!(await device(c.env, userId, c.req.param("deviceId")))) throw notFound("Device not found");
  if (displayName !== undefined) {
    await c.env.DB.prepare("UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?").bind(displayName, userId, c.req.param("deviceId")).run();
  }
  return c.json({});
});

// DELETE /_synapse/admin/v2/users/{userId}/devices/{deviceId}: an unknown device is deleted already (Synapse).
adminDeviceRoutes.delete(`${USER}/devices/:deviceId`, requireAdmin, async (c) => {
  const userId = await existingLocalUser(c);
  await deleteDevices(c.env, userId, [c.req.param("deviceId")]);
  return c.json({});
});

// POST /_synapse/admin/v2/users/{userId}/delete_devices
adminDeviceRoutes.post(`${USER}/delete_devices`, requireAdmin, async (c) => {
  const userId = await existingLocalUser(c);
  const body = await readJsonObject(c, { allowEmpty: false });
  const list = body.devices;
  if (!Array.isArray(list) || !list.every((d): d is string => typeof d === "string")) throw badJson("devices must be a list of device IDs");
  await deleteDevices(c.env, userId, [...new Set(list)]);
  return c.json({});
});
