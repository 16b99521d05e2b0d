// End-to-end encryption keys of users of other servers (spec: Server-Server API, "End-to-End Encryption":
// POST /_matrix/federation/v1/user/keys/query and /user/keys/claim; "Device Management": GET
// /_matrix/federation/v1/user/devices/{userId}).
//
// Everything another server says about its users' keys is checked before a client sees it or we keep it:
// a device key object must name the user and device it is listed under, and its self-signature by the
// device's own ed25519 key must verify when present (an unsigned one is kept, as Synapse keeps it: clients
// verify it); a master key must belong to the user; a self-signing key must be signed by the master key.
// What fails is left out, so a server cannot pass off keys signed by the wrong key.
//
// A local /keys/query is answered from our copy of a remote user's device list (kept by the remote user's
// DO, durable-objects/user/federated-device-list.ts) only while that copy is current; otherwise it asks
// their server (see queryRemoteKeys).
import { pushDeviceListChangeToAppservices } from "../../durable-objects/appservice/streams.js";
import { federationRequest } from "../../federation-client/request.js";
import type { FederatedCrossSigning, FederatedDevice } from "../../durable-objects/user/federated-device-list.js";
import { canonicalJson } from "../../protocol/canonical-json.js";
import { parseCrossSigningKey } from "../../protocol/e2e-keys.js";
import { isJsonObject, type JsonObject, type JsonValue } from "../../protocol/json.js";
import { serverNameOf } from "../../protocol/pdu.js";
import { verifyJsonSignature } from "../../protocol/signing.js";
import type { Env } from "../env.js";
import { userStore } from "../user-store.js";

/** A server's failure as /keys/query and /keys/claim report it (`failures[server]`). */
export interface ServerFailure {
  status: number;
  message: string;
}

/**
 * Whether `keys` is a device key object of `userId`'s `deviceId` that is not signed by a wrong key: it must
 * name that user and device, and its self-signature (by the device's own ed25519 key), when present, must
 * verify. Keys without a self-signature are kept, as Synapse keeps them (it checks no device signatures;
 * clients verify them before trusting a device, and Complement's TestDeviceListUpdates uploads keys
 * without signatures and expects the other server to see them).
 */
export async function validDeviceKeys(keys: unknown, userId: string, deviceId: string): Promise<boolean> {
  if (!isJsonObject(keys) || keys.user_id !== userId || keys.device_id !== deviceId || !isJsonObject(keys.keys)) return false;
  const keyId = `ed25519:${deviceId}`;
  try {
    canonicalJson(keys);
    const signatures = keys.signatures;
    if (signatures !== undefined && !isJsonObject(signatures)) return false;
    const own = signatures?.[userId];
    if (own !== undefined && !isJsonObject(own)) return false;
    if (own?.[keyId] === undefined) return true;
    const publicKey = keys.keys[keyId];
    if (typeof publicKey !== "string") return false;
    return await verifyJsonSignature(keys, userId, keyId, publicKey);
  } catch {
    return false;
  }
}

/** A remote user's master and self-signing keys that pass the checks (JSON objects by type). */
export async function validCrossSigningKeys(userId: string, master: unknown, selfSigning: unknown): Promise<{ master?: JsonObject; self_signing?: JsonObject }> {
  const out: { master?: JsonObject; self_signing?: JsonObject } = {};
  let masterKey: { keyId: string; publicKey: string } | undefined;
  if (master !== undefined) {
    try {
      const parsed = parseCrossSigningKey(master as JsonValue, userId, "master");
      canonicalJson(parsed.json);
      masterKey = parsed;
      out.master = master as JsonObject;
    } catch {
      // dropped
    }
  }
  if (selfSigning !== undefined && masterKey) {
    try {
      const parsed = parseCrossSigningKey(selfSigning as JsonValue, userId, "self_signing");
      if (await verifyJsonSignature(parsed.json, userId, masterKey.keyId, masterKey.publicKey)) out.self_signing = selfSigning as JsonObject;
    } catch {
      // dropped
    }
  }
  return out;
}

function failureOf(response: { status: number | null; error: string }): ServerFailure {
  return { status: response.status ?? 503, message: response.error };
}

/** A copy of a remote user's list as the User DO keeps it (durable-objects/user/federated-device-list.ts). */
type RemoteCopy = { streamId: number; devices: FederatedDevice[]; crossSigning: FederatedCrossSigning };

/**
 * Our copy of `userId`'s device list if it is current: synced, and anchored in a room that has been shared
 * with the user without a break since the copy was fetched (durable-objects/room/device-list-sharing.ts),
 * so that their server has been sending us every change. Null otherwise: the caller asks their server.
 */
async function currentCopy(env: Env, userId: string): Promise<RemoteCopy | null> {
  const copy = await userStore(env, userId).remoteDeviceList();
  if (!copy?.anchor) return null;
  const { roomId, position } = copy.anchor;
  const shared = await env.ROOMS.get(env.ROOMS.idFromName(roomId))
    .deviceListSharedSince(userId, position)
    .catch((e: unknown) => (console.warn("device list anchor check failed", roomId, e instanceof Error ? e.message : e), false));
  return shared ? copy : null;
}

/**
 * A room shared with `userId` now, with its position (the anchor of a copy fetched from now on), from the
 * rooms where a local user's sync saw them joined. Rooms that no longer share the user are forgotten.
 */
export async function findAnchor(env: Env, userId: string): Promise<{ roomId: string; position: number } | null> {
  const store = userStore(env, userId);
  for (const roomId of await store.remoteSharedRooms()) {
    const answer = await env.ROOMS.get(env.ROOMS.idFromName(roomId))
      .deviceListAnchor(userId)
      .catch((e: unknown) => (console.warn("device list anchor look-up failed", roomId, e instanceof Error ? e.message : e), "partial" as const));
    if (typeof answer === "number") return { roomId, position: answer };
    if (answer === null) await store.forgetRemoteSharedRoom(roomId);
  }
  return null;
}

/** A /keys/query answer's entries for one user from a copy of their list (as Synapse answers from its cache:
 * devices without keys left out, the display name in `unsigned`). */
function answerFromCopy(copy: RemoteCopy, wantedDevices: string[]): { devices: JsonObject; master?: JsonObject; selfSigning?: JsonObject } {
  const devices: JsonObject = {};
  for (const d of copy.devices) {
    if (d.keys === null || (wantedDevices.length > 0 && !wantedDevices.includes(d.deviceId))) continue;
    const keys = JSON.parse(d.keys) as JsonObject;
    const unsigned = isJsonObject(keys.unsigned) ? { ...keys.unsigned } : {};
    if (d.displayName !== null) unsigned.device_display_name = d.displayName;
    devices[d.deviceId] = { ...keys, unsigned };
  }
  const out: { devices: JsonObject; master?: JsonObject; selfSigning?: JsonObject } = { devices };
  if (copy.crossSigning.master !== undefined) out.master = JSON.parse(copy.crossSigning.master) as JsonObject;
  if (copy.crossSigning.self_signing !== undefined) out.selfSigning = JSON.parse(copy.crossSigning.self_signing) as JsonObject;
  return out;
}

/**
 * Asks each server for its users' keys (`server → user → device IDs`, empty: all), all servers at once,
 * each within `timeoutMs`. Registers `requesterUserId` as a watcher of each user's device list (their
 * /sync lists the user in `device_lists.changed` when an update arrives).
 *
 * As Synapse's E2eKeysHandler.query_devices: a user whose copy is current is answered from it (both
 * cross-signing keys or neither, else their server is asked); a user asked for all devices whose copy is
 * not current but who shares a room with us now is resynced (GET /user/devices), which answers the query
 * and makes the copy current; everyone else is asked with one POST /user/keys/query per server. Where we
 * differ: Synapse trusts its copy while it believes it shares a room; we trust it only while a room proves
 * unbroken sharing since the copy was fetched (durable-objects/room/device-list-sharing.ts), so a user who
 * left and joined again, or a room we left and joined again, costs a fetch rather than a stale answer.
 */
export async function queryRemoteKeys(
  env: Env,
  requesterUserId: string,
  remote: Map<string, Map<string, string[]>>,
  timeoutMs: number,
): Promise<{ result: { device_keys: JsonObject; master_keys: JsonObject; self_signing_keys: JsonObject }; failures: Record<string, ServerFailure> }> {
  const result = { device_keys: {} as JsonObject, master_keys: {} as JsonObject, self_signing_keys: {} as JsonObject };
  const failures: Record<string, ServerFailure> = {};
  const answer = (userId: string, a: ReturnType<typeof answerFromCopy>) => {
    result.device_keys[userId] = a.devices;
    if (a.master) result.master_keys[userId] = a.master;
    if (a.selfSigning) result.self_signing_keys[userId] = a.selfSigning;
  };
  await Promise.all(
    [...remote].map(async ([server, users]) => {
      const toAsk = new Map<string, string[]>();
      await Promise.all(
        [...users].map(async ([userId, wantedDevices]) => {
          await userStore(env, userId)
            .watchRemoteDeviceList(requesterUserId)
            .catch((e: unknown) => console.warn("device list watch failed", userId, e instanceof Error ? e.message : e));
          const copy = await currentCopy(env, userId).catch(() => null);
          // Synapse: one cross-signing key without the other means the copy is behind; ask.
          if (copy && (copy.crossSigning.master === undefined) === (copy.crossSigning.self_signing === undefined)) {
            answer(userId, answerFromCopy(copy, wantedDevices));
            return;
          }
          if (wantedDevices.length === 0) {
            const anchor = await findAnchor(env, userId).catch(() => null);
            const fetched = anchor ? await resyncRemoteDeviceList(env, userId, timeoutMs, anchor) : null;
            if (fetched) {
              answer(userId, answerFromCopy(fetched, []));
              return;
            }
          }
          toAsk.set(userId, wantedDevices);
        }),
      );
      if (toAsk.size === 0) return;
      const response = await federationRequest(env, {
        destination: server,
        method: "POST",
        path: "/_matrix/federation/v1/user/keys/query",
        body: { device_keys: Object.fromEntries(toAsk) },
        timeoutMs,
      });
      if (!response.ok) {
        failures[server] = failureOf(response);
        return;
      }
      const body = isJsonObject(response.body) ? response.body : {};
      const deviceKeys = isJsonObject(body.device_keys) ? body.device_keys : {};
      const masters = isJsonObject(body.master_keys) ? body.master_keys : {};
      const selfSigning = isJsonObject(body.self_signing_keys) ? body.self_signing_keys : {};
      for (const [userId, wantedDevices] of toAsk) {
        const devices = deviceKeys[userId];
        const out: JsonObject = {};
        if (isJsonObject(devices)) {
          for (const [deviceId, keys] of Object.entries(devices)) {
            if (wantedDevices.length > 0 && !wantedDevices.includes(deviceId)) continue;
            if (await validDeviceKeys(keys, userId, deviceId)) out[deviceId] = keys as JsonObject;
          }
        }
        result.device_keys[userId] = out;
        const cross = await validCrossSigningKeys(userId, masters[userId], selfSigning[userId]);
        if (cross.master) result.master_keys[userId] = cross.master;
        if (cross.self_signing) result.self_signing_keys[userId] = cross.self_signing;
      }
    }),
  );
  return { result, failures };
}

/** Claims one-time keys from each server (`server → user → device → algorithm`), each within `timeoutMs`. */
export async function claimRemoteKeys(
  env: Env,
  remote: Map<string, Record<string, Record<string, string>>>,
  timeoutMs: number,
): Promise<{ oneTimeKeys: JsonObject; failures: Record<string, ServerFailure> }> {
  const oneTimeKeys: JsonObject = {};
  const failures: Record<string, ServerFailure> = {};
  await Promise.all(
    [...remote].map(async ([server, users]) => {
      const response = await federationRequest(env, {
        destination: server,
        method: "POST",
        path: "/_matrix/federation/v1/user/keys/claim",
        body: { one_time_keys: users },
        timeoutMs,
      });
      if (!response.ok) {
        failures[server] = failureOf(response);
        return;
      }
      const body = isJsonObject(response.body) && isJsonObject(response.body.one_time_keys) ? response.body.one_time_keys : {};
      // Only what was asked for: users of that server, devices named in the request.
      for (const [userId, devices] of Object.entries(users)) {
        const claimed = body[userId];
        if (!isJsonObject(claimed)) continue;
        const out: JsonObject = {};
        for (const deviceId of Object.keys(devices)) if (isJsonObject(claimed[deviceId])) out[deviceId] = claimed[deviceId];
        if (Object.keys(out).length > 0) oneTimeKeys[userId] = out;
      }
    }),
  );
  return { oneTimeKeys, failures };
}

/**
 * Fetches a remote user's whole device list from their server (GET /user/devices/{userId}) and replaces
 * our copy (a resync: spec, "Device Management", when an update's `prev_id` names one we never saw),
 * anchored in `anchor` (looked up among the rooms shared with the user when not given; none: the copy
 * follows updates but answers no query). The anchor is taken before the request, so a membership change
 * during it fails the anchor's proof later. Tells the watching local users if the list changed. Returns the copy, or null when
 * the server did not answer usably or the answer is older than an update we have seen.
 */
export async function resyncRemoteDeviceList(
  env: Env,
  userId: string,
  timeoutMs = 30_000,
  anchor?: { roomId: string; position: number } | null,
): Promise<RemoteCopy | null> {
  const server = serverNameOf(userId);
  if (anchor === undefined) anchor = await findAnchor(env, userId).catch(() => null);
  const response = await federationRequest(env, {
    destination: server,
    method: "GET",
    path: `/_matrix/federation/v1/user/devices/${encodeURIComponent(userId)}`,
    timeoutMs,
  });
  if (!response.ok || !isJsonObject(response.body)) {
    console.warn("device list resync failed", userId, response.ok ? "not an object" : response.error);
    return null;
  }
  const body = response.body;
  const streamId = body.stream_id;
  if (body.user_id !== userId || typeof streamId !== "number" || !Number.isSafeInteger(streamId) || streamId < 0 || !Array.isArray(body.devices)) {
    console.warn("device list resync: malformed answer", userId);
    return null;
  }
  const devices: FederatedDevice[] = [];
  for (const d of body.devices) {
    if (!isJsonObject(d) || typeof d.device_id !== "string" || d.device_id === "") continue;
    const keys = d.keys !== undefined && (await validDeviceKeys(d.keys, userId, d.device_id)) ? JSON.stringify(d.keys) : null;
    const displayName = typeof d.device_display_name === "string" ? d.device_display_name : null;
    devices.push({ deviceId: d.device_id, keys, displayName });
  }
  const cross = await validCrossSigningKeys(userId, body.master_key, body.self_signing_key);
  const crossSigning: FederatedCrossSigning = {};
  if (cross.master) crossSigning.master = JSON.stringify(cross.master);
  if (cross.self_signing) crossSigning.self_signing = JSON.stringify(cross.self_signing);
  const { kept, changed, watchers } = await userStore(env, userId).replaceRemoteDeviceList(userId, streamId, devices, crossSigning, anchor);
  // As Synapse: room-mates hear of a resync only when it changed something (no churn of re-queries).
  if (kept && changed) await tellWatchers(env, userId, watchers);
  return kept ? { streamId, devices, crossSigning } : null;
}

/** Records a remote user's device list change in the streams of the local users watching it. */
export async function tellWatchers(env: Env, userId: string, watchers: string[]): Promise<void> {
  await Promise.all([
    // Application services with MSC3202 whose users watch this user (share a room with them, or asked for
    // their keys). The remote user's rooms are not known here, so a service interested only through a
    // room ID or alias namespace is not told (Synapse asks its membership tables).
    pushDeviceListChangeToAppservices(env, userId, [], watchers),
    ...watchers.map((w) =>
      userStore(env, w)
        .recordDeviceListChange(userId, "changed")
        .catch((e: unknown) => console.warn("device list change not recorded", w, e instanceof Error ? e.message : e)),
    ),
  ]);
}

