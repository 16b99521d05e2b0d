// Server-Server API: our users' devices and keys for other servers (spec: "Device Management": GET
// /_matrix/federation/v1/user/devices/{userId}; "End-to-End Encryption": POST
// /_matrix/federation/v1/user/keys/query and /user/keys/claim; data/api/server-server/user_devices.yaml,
// user_keys.yaml). Only local users are answered; users of other servers in a request are left out (as
// Synapse does). A server never sees a user-signing key.
import { Hono } from "hono";
import { isValidUserId } from "../../protocol/auth-rules.js";
import { badJson, invalidParam } from "../../protocol/errors.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { isLocalUserId } from "../auth.js";
import { claimLocalKeys, queryLocalKeys } from "../client/keys.js";
import { federatedDeviceList } from "../device-lists.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { userStore } from "../user-store.js";
import { requestOrigin } from "./auth.js";

export const federationUserKeysRoutes = new Hono<AppEnv>();

/** Synapse's cap on the users of one federation key query or claim. */
const MAX_USERS = 1000;

// GET /_matrix/federation/v1/user/devices/{userId}
federationUserKeysRoutes.get("/_matrix/federation/v1/user/devices/:userId", async (c) => {
  requestOrigin(c);
  const userId = c.req.param("userId");
  if (!isValidUserId(userId) || !isLocalUserId(userId, c.env)) throw invalidParam("User is not local to this server");
  const [{ devices, crossSigning }, streamId] = await Promise.all([federatedDeviceList(c.env, userId), userStore(c.env, userId).ownDeviceListStreamId()]);
  const out: JsonObject = {
    user_id: userId,
    stream_id: streamId,
    devices: devices.map((d) => {
      const device: JsonObject = { device_id: d.deviceId };
      if (d.keys !== null) device.keys = JSON.parse(d.keys) as JsonObject;
      if (d.displayName !== null) device.device_display_name = d.displayName;
      return device;
    }),
  };
  if (crossSigning.master !== undefined) out.master_key = JSON.parse(crossSigning.master) as JsonObject;
  if (crossSigning.self_signing !== undefined) out.self_signing_key = JSON.parse(crossSigning.self_signing) as JsonObject;
  return c.json(out);
});

// POST /_matrix/federation/v1/user/keys/query
federationUserKeysRoutes.post("/_matrix/federation/v1/user/keys/query", async (c) => {
  requestOrigin(c);
  const body = await readJsonObject(c, { canonical: false });
  const query = body.device_keys;
  if (!isJsonObject(query)) throw badJson("device_keys must be an object");
  if (Object.keys(query).length > MAX_USERS) throw badJson(`At most ${MAX_USERS} users per query`);
  const wanted = new Map<string, string[] | null>();
  for (const [userId, deviceIds] of Object.entries(query)) {
    if (!Array.isArray(deviceIds) || !deviceIds.every((d): d is string => typeof d === "string")) throw badJson(`device_keys.${userId} must be a list of device IDs`);
    if (!isValidUserId(userId) || !isLocalUserId(userId, c.env)) continue;
    wanted.set(userId, deviceIds.length === 0 ? null : [...new Set(deviceIds)]);
  }
  const result = await queryLocalKeys(c.env, wanted, "");
  return c.json({ device_keys: result.device_keys, master_keys: result.master_keys, self_signing_keys: result.self_signing_keys });
});

// POST /_matrix/federation/v1/user/keys/claim
federationUserKeysRoutes.post("/_matrix/federation/v1/user/keys/claim", async (c) => {
  requestOrigin(c);
  const body = await readJsonObject(c, { canonical: false });
  const request = body.one_time_keys;
  if (!isJsonObject(request)) throw badJson("one_time_keys must be an object");
  if (Object.keys(request).length > MAX_USERS) throw badJson(`At most ${MAX_USERS} users per claim`);
  const local: [string, Record<string, string>][] = [];
  for (const [userId, devices] of Object.entries(request)) {
    if (!isJsonObject(devices) || !Object.values(devices).every((a) => typeof a === "string" && a !== "")) {
      throw badJson(`one_time_keys.${userId} must map device IDs to algorithms`);
    }
    if (!isValidUserId(userId) || !isLocalUserId(userId, c.env) || Object.keys(devices).length === 0) continue;
    local.push([userId, devices as Record<string, string>]);
  }
  return c.json({ one_time_keys: await claimLocalKeys(c.env, local) });
});
