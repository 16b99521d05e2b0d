// Client-Server API: "Device management" (list, read, rename, delete devices).
// Spec: content/client-server-api "Device management"; deleting devices requires user-interactive auth.
import { Hono } from "hono";
import { drizzle } from "drizzle-orm/d1";
import { and, eq } from "drizzle-orm";
import { badJson, invalidParam, notFound } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import { devices } from "../../schema/d1.js";
import { deleteDevices } from "../accounts.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { finishUiaSession, userInteractiveAuth } from "../uia.js";
import { MAX_DEVICE_DISPLAY_NAME_LENGTH } from "./registration.js";
import { msc4190Service, upsertServiceDevice } from "../appservice/accounts.js";
import { onOwnDevicesChanged } from "../device-lists.js";
import { userStore } from "../user-store.js";

export const deviceRoutes = new Hono<AppEnv>();

const CLIENT = "/_matrix/client/:version{v3|r0}";

type DeviceRow = typeof devices.$inferSelect;

function deviceJson(d: DeviceRow): JsonObject {
  const out: JsonObject = { device_id: d.deviceId };
  if (d.displayName !== null) out.display_name = d.displayName;
  if (d.lastSeenIp !== null) out.last_seen_ip = d.lastSeenIp;
  if (d.lastSeenTs !== null) out.last_seen_ts = d.lastSeenTs;
  return out;
}

// GET /_matrix/client/v3/devices
deviceRoutes.get(`${CLIENT}/devices`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const rows = await drizzle(c.env.DB).select().from(devices).where(eq(devices.userId, userId));
  return c.json({ devices: rows.map(deviceJson) });
});

// GET /_matrix/client/v3/devices/{deviceId}
deviceRoutes.get(`${CLIENT}/devices/:deviceId`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const rows = await drizzle(c.env.DB)
    .select()
    .from(devices)
    .where(and(eq(devices.userId, userId), eq(devices.deviceId, c.req.param("deviceId"))));
  if (!rows[0]) throw notFound("Device not found");
  return c.json(deviceJson(rows[0]));
});

// PUT /_matrix/client/v3/devices/{deviceId}
deviceRoutes.put(`${CLIENT}/devices/:deviceId`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const body = await readJsonObject(c);
  const displayName = body.display_name;
  if (displayName !== undefined && displayName !== null && typeof displayName !== "string") {
    throw badJson("display_name must be a string");
  }
  if (typeof displayName === "string" && displayName.length > MAX_DEVICE_DISPLAY_NAME_LENGTH) {
    throw invalidParam("Device display name is too long");
  }
  // MSC4190: an application service creates its users' devices here, without logging them in.
  if (await msc4190Service(c)) {
    const created = await upsertServiceDevice(c.env, userId, c.req.param("deviceId"), typeof displayName === "string" ? displayName : undefined);
    return c.json({}, created ? 201 : 200);
  }
  // Without display_name there is nothing to set (drizzle refuses an empty SET): only the device must exist.
  if (displayName === undefined) {
    const found = await c.env.DB.prepare("SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?").bind(userId, c.req.param("deviceId")).first();
    if (!found) throw notFound("Device not found");
    return c.json({});
  }
  const result = await drizzle(c.env.DB)
    .update(devices)
    .set({ displayName })
    .where(and(eq(devices.userId, userId), eq(devices.deviceId, c.req.param("deviceId"))))
    .returning({ deviceId: devices.deviceId });
  if (result.length === 0) throw notFound("Device not found");
  // A device's name is part of the device list others see (m.device_list_update `device_display_name`):
  // the user, their room-mates and the servers sharing a room hear of it, as Synapse's update_device does.
  await userStore(c.env, userId).recordDeviceListChange(userId);
  await onOwnDevicesChanged(c.env, userId);
  return c.json({});
});

// DELETE /_matrix/client/v3/devices/{deviceId}
deviceRoutes.delete(`${CLIENT}/devices/:deviceId`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const deviceId = c.req.param("deviceId");
  const body = await readJsonObject(c);
  // MSC4190: application services delete their users' devices without user-interactive auth.
  const auth = (await msc4190Service(c)) ? undefined : await userInteractiveAuth(c.env, body, {
    method: "DELETE",
    operation: `devices/${deviceId}`,
    flows: [["m.login.password"]],
    userId,
  });
  // Deleting an unknown device succeeds (as in Synapse): the outcome the client asked for holds.
  await deleteDevices(c.env, userId, [deviceId]);
  if (auth) await finishUiaSession(c.env, auth);
  return c.json({});
});

// POST /_matrix/client/v3/delete_devices
deviceRoutes.post(`${CLIENT}/delete_devices`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const body = await readJsonObject(c);
  const list = body.devices;
  if (!Array.isArray(list) || !list.every((d): d is string => typeof d === "string")) {
    throw badJson("devices must be a list of device IDs");
  }
  const auth = (await msc4190Service(c)) ? undefined : await userInteractiveAuth(c.env, body, {
    method: "POST",
    operation: "delete_devices",
    flows: [["m.login.password"]],
    userId,
  });
  await deleteDevices(c.env, userId, [...new Set(list)]);
  if (auth) await finishUiaSession(c.env, auth);
  return c.json({});
});
