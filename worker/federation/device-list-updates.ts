// Server-Server API: inbound `m.device_list_update` and `m.signing_key_update` EDUs (spec: "Device
// Management"). A remote user's updates are applied to our copy of their list (the remote user's DO,
// durable-objects/user/federated-device-list.ts) in `prev_id` order; one naming a `prev_id` we never saw
// (or none at all) means we missed one, and the whole list is fetched again from their server (GET
// /user/devices/{userId}: `resyncRemoteDeviceList`) when a room shared with them can anchor the copy.
// Updates of users no local user asked about are not tracked (Synapse only tracks users it shares a room
// with). Either way the local users watching the user get `device_lists.changed` in their next /sync.
//
// Checked before anything is kept: the user belongs to the sending server, and the device keys an update
// carries are the device's own, self-signed (worker/federation/remote-keys.ts). An update that fails is
// dropped and our copy of the user's list is marked stale (it answers no query until fetched again; the
// next update resyncs it).
import type { DeviceListUpdate, FederatedCrossSigning } from "../../durable-objects/user/federated-device-list.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { serverNameOf } from "../../protocol/pdu.js";
import type { Env } from "../env.js";
import { userStore } from "../user-store.js";
import type { EduVerdict } from "./edus.js";
import { findAnchor, resyncRemoteDeviceList, tellWatchers, validCrossSigningKeys, validDeviceKeys } from "./remote-keys.js";

const isUserId = (v: unknown): v is string => typeof v === "string" && /^@[^:]+:.+$/.test(v) && v.length <= 255;
const isStreamId = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** Parses and checks one update; a string is the reason to drop it. */
async function parseUpdate(origin: string, content: JsonObject): Promise<DeviceListUpdate | string> {
  const { user_id: userId, device_id: deviceId, stream_id: streamId, prev_id: prevId, deleted, keys, device_display_name: displayName } = content;
  if (!isUserId(userId) || typeof deviceId !== "string" || deviceId === "" || !isStreamId(streamId)) return "malformed";
  if (serverNameOf(userId) !== origin) return "user of another server";
  const prevIds = prevId === undefined ? [] : prevId;
  if (!Array.isArray(prevIds) || !prevIds.every(isStreamId)) return "malformed prev_id";
  if (deleted !== undefined && typeof deleted !== "boolean") return "malformed deleted";
  if (displayName !== undefined && displayName !== null && typeof displayName !== "string") return "malformed device_display_name";
  const isDeleted = deleted === true;
  if (!isDeleted && keys !== undefined && !(await validDeviceKeys(keys, userId, deviceId))) return "device keys not signed by the device's key";
  return {
    userId,
    deviceId,
    streamId,
    prevIds: prevIds as number[],
    deleted: isDeleted,
    keys: !isDeleted && keys !== undefined ? JSON.stringify(keys) : null,
    displayName: typeof displayName === "string" ? displayName : null,
  };
}

/** Applies the device list updates of one transaction, per user in order. Returns a verdict per update. */
export async function applyDeviceListUpdates(env: Env, origin: string, contents: JsonObject[]): Promise<EduVerdict[]> {
  const verdicts: EduVerdict[] = [];
  const byUser = new Map<string, { index: number; update: DeviceListUpdate }[]>();
  const doubted = new Set<string>();
  for (const [index, content] of contents.entries()) {
    const parsed = await parseUpdate(origin, content);
    if (typeof parsed === "string") {
      verdicts.push(`dropped: ${parsed}`);
      // An update of one of the sender's users that we cannot use leaves our copy behind: it answers
      // nothing until fetched again (the chain would show the gap only at the next update).
      const userId = content.user_id;
      if (isUserId(userId) && serverNameOf(userId) === origin) doubted.add(userId);
      continue;
    }
    verdicts.push("applied");
    const list = byUser.get(parsed.userId) ?? [];
    list.push({ index, update: parsed });
    byUser.set(parsed.userId, list);
  }
  await Promise.all(
    [...doubted].map(async (userId) => {
      const store = userStore(env, userId);
      await store.invalidateRemoteDeviceList();
      // Something changed that we could not follow: the watchers' clients ask again (from their server).
      if (!byUser.has(userId)) await tellWatchers(env, userId, await store.remoteWatchers());
    }),
  );
  await Promise.all(
    [...byUser].map(async ([userId, updates]) => {
      const store = userStore(env, userId);
      const { verdicts: results, watchers } = await store.applyRemoteDeviceListUpdates(updates.map((u) => u.update));
      results.forEach((r, i) => {
        const index = updates[i]!.index;
        if (r === "untracked") verdicts[index] = "ignored: no local user tracks this user";
        else if (r === "duplicate") verdicts[index] = "ignored: already applied";
      });
      if (results.includes("resync")) {
        // The copy is marked stale already (the User DO did it with the verdicts). A resync is worth its
        // request only when a room shared with the user now can anchor the new copy (otherwise the copy
        // answers no query, and the next /keys/query asks the user's server anyway): a user we share no
        // room with, or only rooms held with partial state (whose members we do not know yet; Synapse
        // keeps such updates pending until the resync, Complement msc3902 "Device list tracking for
        // pre-existing members in partial state room"), is not fetched; the watchers are told, and their
        // clients ask again. The resync tells the watchers itself; if it fails they are told all the
        // same: with the copy stale the question goes to the user's server.
        const anchor = await findAnchor(env, userId).catch(() => null);
        const copy = anchor ? await resyncRemoteDeviceList(env, userId, undefined, anchor) : null;
        if (!anchor) await tellWatchers(env, userId, watchers);
        else if (!copy) {
          results.forEach((r, i) => r === "resync" && (verdicts[updates[i]!.index] = "dropped: gap in prev_id and the resync failed"));
          await tellWatchers(env, userId, watchers);
        }
      } else if (results.includes("applied")) await tellWatchers(env, userId, watchers);
    }),
  );
  return verdicts;
}

/** Spec: "m.signing_key_update": {user_id, master_key?, self_signing_key?}. */
export async function applySigningKeyUpdate(env: Env, origin: string, content: JsonObject): Promise<EduVerdict> {
  const { user_id: userId, master_key: master, self_signing_key: selfSigning } = content;
  if (!isUserId(userId)) return "dropped: malformed";
  if (serverNameOf(userId) !== origin) return "dropped: user of another server";
  const store = userStore(env, userId);
  const cached = await store.remoteDeviceList();
  if (!cached) {
    // No copy to update (never fetched, or stale): the watchers' clients ask again, and that question goes
    // to the user's server.
    const watchers = await store.remoteWatchers();
    if (watchers.length === 0) return "ignored: no local user tracks this user";
    await tellWatchers(env, userId, watchers);
    return "applied";
  }
  // A self-signing key alone is checked against the master key we know.
  const masterKey = master ?? (cached.crossSigning.master !== undefined ? (JSON.parse(cached.crossSigning.master) as JsonObject) : undefined);
  const valid = await validCrossSigningKeys(userId, masterKey, selfSigning);
  if ((master !== undefined && !valid.master) || (selfSigning !== undefined && !valid.self_signing)) {
    // The keys changed in a way we cannot follow: the copy is no longer sure (doubt means fetch).
    await store.invalidateRemoteDeviceList();
    return "dropped: invalid cross-signing key";
  }
  const update: FederatedCrossSigning = {};
  if (master !== undefined) update.master = JSON.stringify(valid.master);
  if (selfSigning !== undefined) update.self_signing = JSON.stringify(valid.self_signing);
  if (Object.keys(update).length === 0) return "dropped: no key";
  const { applied, watchers } = await store.applyRemoteSigningKeys(update);
  if (applied) await tellWatchers(env, userId, watchers);
  return applied ? "applied" : "ignored: no local user tracks this user";
}
