// Client-Server API: End-to-end encryption key management (spec: "End-to-End Encryption", "Key management
// API"; data/api/client-server/keys.yaml). The keys live in each user's Durable Object
// (durable-objects/user/e2e-keys.ts); this file validates requests and fans queries out to the users' DOs.
// Users of other servers are asked through their servers (worker/federation/remote-keys.ts: POST
// /_matrix/federation/v1/user/keys/query and /claim), within the request's `timeout`; a server that does
// not answer in time is reported in `failures`.
import { Hono } from "hono";
import { badJson, invalidParam, missingParam } from "../../protocol/errors.js";
import { canonicalOrBadJson, validateDeviceKeys, validateKeyMap } from "../../protocol/e2e-keys.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import type { KeyUpload } from "../../durable-objects/user/e2e-keys.js";
import { unwrap } from "../../durable-objects/user/outcome.js";
import { isLocalUserId, requester, requireAuth } from "../auth.js";
import { onOwnDevicesChanged, streamPositionOfSyncToken } from "../device-lists.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { userStore } from "../user-store.js";
import { claimRemoteKeys, queryRemoteKeys } from "../federation/remote-keys.js";

export const keysRoutes = new Hono<AppEnv>();

const CLIENT = "/_matrix/client/:version{v3|r0}";

/** How many users' DOs a query or claim asks at once. */
const FAN_OUT = 32;

/** The server name of a user ID (`@localpart:server`). */
export function serverOfUserId(userId: string): string {
  return userId.slice(userId.indexOf(":") + 1);
}

/** A user ID as the key APIs accept it: `@localpart:server` (spec: Appendices, "User Identifiers"). */
export function checkUserId(userId: string): void {
  if (!/^@[^:]+:.+$/.test(userId) || new TextEncoder().encode(userId).length > 255) {
    throw invalidParam(`Invalid user ID ${JSON.stringify(userId)}`);
  }
}

/** Runs `fn` over `items` with at most FAN_OUT calls in flight. */
export async function fanOut<T, R>(items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += FAN_OUT) {
    out.push(...(await Promise.all(items.slice(i, i + FAN_OUT).map(fn))));
  }
  return out;
}

/**
 * Which of `userIds` exist, with their devices and display names (D1). A device whose D1 row is gone is
 * deleted even if its keys have not been forgotten yet, so answers only list devices present here.
 */
export async function localDevices(env: Env, userIds: string[]): Promise<Map<string, Map<string, string | null>>> {
  const out = new Map<string, Map<string, string | null>>();
  for (let i = 0; i < userIds.length; i += 50) {
    const chunk = userIds.slice(i, i + 50);
    const rows = await env.DB.prepare(
      `SELECT u.user_id AS user_id, d.device_id AS device_id, d.display_name AS display_name
         FROM users u LEFT JOIN devices d ON d.user_id = u.user_id
        WHERE u.user_id IN (${chunk.map(() => "?").join(",")})`,
    )
      .bind(...chunk)
      .all<{ user_id: string; device_id: string | null; display_name: string | null }>();
    for (const row of rows.results) {
      let devices = out.get(row.user_id);
      if (!devices) out.set(row.user_id, (devices = new Map()));
      if (row.device_id !== null) devices.set(row.device_id, row.display_name);
    }
  }
  return out;
}

// POST /_matrix/client/v3/keys/upload
keysRoutes.post(`${CLIENT}/keys/upload`, requireAuth, async (c) => {
  const { userId, deviceId } = requester(c);
  const body = await readJsonObject(c);
  const upload: KeyUpload = { oneTimeKeys: [], fallbackKeys: [] };

  if (body.device_keys !== undefined) {
    // "May be absent", but not null (as Synapse).
    if (body.device_keys === null) throw badJson("device_keys must not be null");
    upload.deviceKeys = canonicalOrBadJson(validateDeviceKeys(body.device_keys, userId, deviceId), "device_keys");
  }
  if (body.one_time_keys !== undefined && body.one_time_keys !== null) {
    upload.oneTimeKeys = validateKeyMap(body.one_time_keys, "one_time_keys");
  }
  // MSC2732's unstable name is still sent by older clients.
  const fallback = body.fallback_keys ?? body["org.matrix.msc2732.fallback_keys"];
  if (fallback !== undefined && fallback !== null) {
    upload.fallbackKeys = validateKeyMap(fallback, "fallback_keys");
    // Spec: "There can only be at most one key per algorithm uploaded".
    const algorithms = new Set<string>();
    for (const key of upload.fallbackKeys) {
      if (algorithms.has(key.algorithm)) throw badJson(`fallback_keys: more than one ${key.algorithm} key`);
      algorithms.add(key.algorithm);
    }
  }

  const result = unwrap(await userStore(c.env, userId).uploadKeys(userId, deviceId, upload));
  if (result.deviceKeysChanged) await onOwnDevicesChanged(c.env, userId);
  return c.json({ one_time_key_counts: result.oneTimeKeyCounts });
});

/** `device_keys`, `master_keys`, `self_signing_keys` and `user_signing_keys` of a /keys/query answer. */
export interface KeysQueryResult {
  device_keys: JsonObject;
  master_keys: JsonObject;
  self_signing_keys: JsonObject;
  user_signing_keys: JsonObject;
}

/**
 * The keys of local users (`wanted`: user → device IDs, null for all) as `requesterUserId` sees them
 * (their own user-signing key only to themselves; "" for another server, which never sees one).
 */
export async function queryLocalKeys(env: Env, wanted: Map<string, string[] | null>, requesterUserId: string): Promise<KeysQueryResult> {
  const known = await localDevices(env, [...wanted.keys()]);
  const result: KeysQueryResult = { device_keys: {}, master_keys: {}, self_signing_keys: {}, user_signing_keys: {} };
  await fanOut([...known.keys()], async (userId) => {
    const devices = known.get(userId)!;
    const keys = await userStore(env, userId).queryKeys(userId, wanted.get(userId) ?? null, requesterUserId);
    const out: JsonObject = {};
    for (const [deviceId, json] of Object.entries(keys.devices)) {
      if (!devices.has(deviceId)) continue;
      const device = JSON.parse(json) as JsonObject;
      const displayName = devices.get(deviceId);
      // Spec: "the information returned will be the same as uploaded via /keys/upload, with the addition
      // of an `unsigned` property".
      device.unsigned = displayName === null || displayName === undefined ? {} : { device_display_name: displayName };
      out[deviceId] = device;
    }
    result.device_keys[userId] = out;
    if (keys.master !== undefined) result.master_keys[userId] = JSON.parse(keys.master) as JsonObject;
    if (keys.self_signing !== undefined) result.self_signing_keys[userId] = JSON.parse(keys.self_signing) as JsonObject;
    if (keys.user_signing !== undefined && userId === requesterUserId) result.user_signing_keys[userId] = JSON.parse(keys.user_signing) as JsonObject;
  });
  return result;
}

/** Claims one-time keys of local users (`userId → deviceId → algorithm`). */
export async function claimLocalKeys(env: Env, request: [string, Record<string, string>][]): Promise<JsonObject> {
  const oneTimeKeys: JsonObject = {};
  await fanOut(request, async ([userId, devices]) => {
    const claimed = await userStore(env, userId).claimKeys(devices);
    const out: JsonObject = {};
    for (const [deviceId, keys] of Object.entries(claimed)) {
      const byId: JsonObject = {};
      for (const [keyId, json] of Object.entries(keys)) byId[keyId] = JSON.parse(json) as JsonObject;
      out[deviceId] = byId;
    }
    if (Object.keys(out).length > 0) oneTimeKeys[userId] = out;
  });
  return oneTimeKeys;
}

/** Synapse's default for the `timeout` of /keys/query and /keys/claim (ms). */
const DEFAULT_REMOTE_TIMEOUT_MS = 10_000;

/** The request's `timeout` (ms): a non-negative integer, capped at a minute. */
function remoteTimeout(value: unknown): number {
  if (value === undefined) return DEFAULT_REMOTE_TIMEOUT_MS;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) throw badJson("timeout must be a non-negative integer");
  return Math.min(value, 60_000);
}

// POST /_matrix/client/v3/keys/query
keysRoutes.post(`${CLIENT}/keys/query`, requireAuth, async (c) => {
  const me = requester(c);
  const body = await readJsonObject(c);
  const query = body.device_keys;
  if (!isJsonObject(query)) throw badJson("device_keys must be an object");
  const timeoutMs = remoteTimeout(body.timeout);

  const wanted = new Map<string, string[] | null>();
  const remote = new Map<string, Map<string, string[]>>();
  for (const [userId, deviceIds] of Object.entries(query)) {
    checkUserId(userId);
    if (!Array.isArray(deviceIds) || !deviceIds.every((d): d is string => typeof d === "string")) {
      throw badJson(`device_keys.${userId} must be a list of device IDs`);
    }
    if (!isLocalUserId(userId, c.env)) {
      const server = serverOfUserId(userId);
      let users = remote.get(server);
      if (!users) remote.set(server, (users = new Map()));
      users.set(userId, [...new Set(deviceIds)]);
      continue;
    }
    // An empty list asks for every device.
    wanted.set(userId, deviceIds.length === 0 ? null : [...new Set(deviceIds)]);
  }

  const [result, fromRemote] = await Promise.all([queryLocalKeys(c.env, wanted, me.userId), queryRemoteKeys(c.env, me.userId, remote, timeoutMs)]);
  for (const field of ["device_keys", "master_keys", "self_signing_keys"] as const) Object.assign(result[field], fromRemote.result[field]);
  return c.json({ failures: fromRemote.failures, ...result });
});

// POST /_matrix/client/v3/keys/claim
keysRoutes.post(`${CLIENT}/keys/claim`, requireAuth, async (c) => {
  const body = await readJsonObject(c);
  const request = body.one_time_keys;
  if (!isJsonObject(request)) throw badJson("one_time_keys must be an object");
  const timeoutMs = remoteTimeout(body.timeout);

  const local: [string, Record<string, string>][] = [];
  const remote = new Map<string, Record<string, Record<string, string>>>();
  for (const [userId, devices] of Object.entries(request)) {
    checkUserId(userId);
    if (!isJsonObject(devices) || !Object.values(devices).every((a) => typeof a === "string" && a !== "")) {
      throw badJson(`one_time_keys.${userId} must map device IDs to algorithms`);
    }
    if (Object.keys(devices).length === 0) continue;
    if (!isLocalUserId(userId, c.env)) {
      const server = serverOfUserId(userId);
      let users = remote.get(server);
      if (!users) remote.set(server, (users = {}));
      users[userId] = devices as Record<string, string>;
      continue;
    }
    local.push([userId, devices as Record<string, string>]);
  }

  const [oneTimeKeys, fromRemote] = await Promise.all([claimLocalKeys(c.env, local), claimRemoteKeys(c.env, remote, timeoutMs)]);
  Object.assign(oneTimeKeys, fromRemote.oneTimeKeys);
  return c.json({ failures: fromRemote.failures, one_time_keys: oneTimeKeys });
});

// GET /_matrix/client/v3/keys/changes
keysRoutes.get(`${CLIENT}/keys/changes`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const fromToken = c.req.query("from");
  if (fromToken === undefined || fromToken === "") throw missingParam("Missing from parameter");
  const from = streamPositionOfSyncToken(fromToken);
  if (from === undefined) throw invalidParam("Invalid from token");
  // `to` is "a hint" (spec); like Synapse, changes after it are reported too (a client re-queries a
  // user once more; missing a change would be worse). It must still be a token if given.
  const toToken = c.req.query("to");
  if (toToken !== undefined && toToken !== "" && streamPositionOfSyncToken(toToken) === undefined) {
    throw invalidParam("Invalid to token");
  }
  const changes = await userStore(c.env, userId).deviceListChanges(from);
  return c.json({ changed: changes.changed, left: changes.left });
});
