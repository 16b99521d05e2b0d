// Hooks around a user's device list (spec: "Tracking the device list for a user"): what happens after a
// user's devices, device keys or cross-signing keys changed, and when devices are deleted.
//
// The change itself is recorded in the user's own DO in the same transaction as the key write
// (durable-objects/user/device-lists.ts), so it is never lost between the write and a hook. What remains
// for `onOwnDevicesChanged` is telling the OTHER users who share an encrypted room with the user; that
// needs room membership and is done by the sync layer (durable-objects/user/room-mates.ts calls
// `recordDeviceListChange(userId)` on each of their DOs).
//
// Other servers sharing a room with the user hear about it too (spec: Server-Server API, "Device
// Management"): one `m.device_list_update` EDU per changed device, chained by `stream_id`/`prev_id`
// (durable-objects/user/federated-device-list.ts keeps what was sent), and an `m.signing_key_update` when the
// master or self-signing key changed, through each server's Destination DO.
import { fanOutDeviceListChange, joinedMembersOf } from "../durable-objects/user/room-mates.js";
import type { QueuedEdu } from "../durable-objects/destination.js";
import type { FederatedCrossSigning, FederatedDevice, OwnDeviceListChanges } from "../durable-objects/user/federated-device-list.js";
import { serverNameOf } from "../protocol/pdu.js";
import { localDevices } from "./client/keys.js";
import { userStore } from "./user-store.js";
import { pushDeviceListChangeToAppservices } from "../durable-objects/appservice/streams.js";
import type { Env } from "./env.js";

/**
 * Called after `userId`'s device list changed: device keys uploaded or changed, devices with keys deleted,
 * cross-signing keys or self-signatures changed. Already recorded in the user's own DO when this runs.
 * Propagates the change to the local users sharing a room with `userId`.
 */
export async function onOwnDevicesChanged(env: Env, userId: string): Promise<void> {
  // Every local user sharing a room with `userId` records the change in their own stream (sync's
  // durable-objects/user/room-mates.ts); their next /sync lists `userId` in device_lists.changed.
  const rooms = await userStore(env, userId).joinedRooms();
  await Promise.all([
    fanOutDeviceListChange(env, userId, rooms),
    federateDeviceListChange(env, userId, rooms),
    // Application services with MSC3202 that track the user (their own, or one in a room they bridge).
    pushDeviceListChangeToAppservices(env, userId, rooms),
  ]);
}

/** The user's devices and cross-signing keys as other servers see them (GET /user/devices too). */
export async function federatedDeviceList(env: Env, userId: string): Promise<{ devices: FederatedDevice[]; crossSigning: FederatedCrossSigning }> {
  const [known, keys] = await Promise.all([localDevices(env, [userId]), userStore(env, userId).queryKeys(userId, null, "")]);
  const devices: FederatedDevice[] = [...(known.get(userId) ?? new Map<string, string | null>())].map(([deviceId, displayName]) => ({
    deviceId,
    keys: keys.devices[deviceId] ?? null,
    displayName,
  }));
  const crossSigning: FederatedCrossSigning = {};
  if (keys.master !== undefined) crossSigning.master = keys.master;
  if (keys.self_signing !== undefined) crossSigning.self_signing = keys.self_signing;
  return { devices, crossSigning };
}

/** Other servers with members in any of `rooms` (in a room held with partial state, also the servers the
 * resident named for the members not known yet: Complement msc3902 "Outgoing device list updates"). The
 * rooms found partial are added to `partialRooms` when given. */
export async function serversSharingRooms(env: Env, rooms: string[], partialRooms?: string[]): Promise<string[]> {
  const lists = await Promise.all(rooms.map((roomId) => joinedMembersOf(env, roomId).catch(() => [] as string[])));
  const partial = await Promise.all(rooms.map((roomId) => env.ROOMS.get(env.ROOMS.idFromName(roomId)).partialStateServers().catch(() => [] as string[])));
  for (const [i, named] of partial.entries()) if (named.length > 0) partialRooms?.push(rooms[i]!);
  const servers = new Set<string>(partial.flat());
  for (const list of lists) for (const member of list) servers.add(serverNameOf(member));
  servers.delete(env.SERVER_NAME);
  return [...servers].sort();
}

/** The EDUs for a local user's device list changes (spec: "Device Management"). */
export function deviceListEdus(userId: string, changes: OwnDeviceListChanges): QueuedEdu[] {
  const edus: QueuedEdu[] = changes.updates.map((u) => {
    const content: Record<string, unknown> = { user_id: u.userId, device_id: u.deviceId, stream_id: u.streamId, prev_id: u.prevIds, deleted: u.deleted };
    if (u.displayName !== null) content.device_display_name = u.displayName;
    if (u.keys !== null) content.keys = JSON.parse(u.keys);
    return { eduType: "m.device_list_update", content: JSON.stringify(content) };
  });
  if (changes.signingKeys) {
    const content: Record<string, unknown> = { user_id: userId };
    if (changes.signingKeys.master !== undefined) content.master_key = JSON.parse(changes.signingKeys.master);
    if (changes.signingKeys.self_signing !== undefined) content.self_signing_key = JSON.parse(changes.signingKeys.self_signing);
    edus.push({ eduType: "m.signing_key_update", content: JSON.stringify(content) });
  }
  return edus;
}

/** Diffs the user's list against what other servers were told and queues the EDUs for the servers that
 * share a room with the user. Failures are logged: a peer that missed an update resyncs at the next one. */
async function federateDeviceListChange(env: Env, userId: string, rooms: string[]): Promise<void> {
  try {
    const { devices, crossSigning } = await federatedDeviceList(env, userId);
    const changes = await userStore(env, userId).diffOwnDeviceList(userId, devices, crossSigning);
    const edus = deviceListEdus(userId, changes);
    if (edus.length === 0) return;
    const partialRooms: string[] = [];
    const servers = await serversSharingRooms(env, rooms, partialRooms);
    await Promise.all([
      ...servers.map((server) => env.DESTINATIONS.get(env.DESTINATIONS.idFromName(server)).enqueue(server, [], edus)),
      // A room held with partial state keeps them for the servers its resync shows missed them
      // (durable-objects/room/partial-state-device-lists.ts).
      ...partialRooms.map((roomId) => env.ROOMS.get(env.ROOMS.idFromName(roomId)).keepPartialStateDeviceListEdus(userId, edus)),
    ]);
  } catch (e) {
    console.warn("device list update not federated", userId, e instanceof Error ? e.message : e);
  }
}

/**
 * A local user joined `roomId`. Its other servers may not be receiving the user's device list updates
 * yet, and must now (spec: Server-Server API, "Device Management": updates are sent "when that user joins a
 * room which contains servers which are not already receiving updates for that user's device list"). Any
 * change not federated yet goes out as usual; then every device is announced as it stands to the room's
 * servers, at the feed's current stream_id with no prev_id: a server that already follows the list has
 * seen that stream_id and drops it as a duplicate, one that does not starts from it. (Complement
 * TestDeviceListsUpdateOverFederationOnRoomJoin; Synapse does not do this and skips that test.) A join
 * into a room held with partial state announces nothing (see below).
 * Best effort, like every device list EDU: a peer that missed it fetches the list when it needs it.
 */
export async function announceDeviceListOnJoin(env: Env, userId: string, roomId: string): Promise<void> {
  try {
    // Not into a room held with partial state: its servers are not known yet (the resync brings them, and
    // durable-objects/room/partial-state-device-lists.ts then sends what they missed). Synapse announces
    // nothing on a join, and Complement's msc3902 resident fails a test on any EDU it did not expect.
    if ((await env.ROOMS.get(env.ROOMS.idFromName(roomId)).partialStateServers()).length > 0) return;
    // A room of this server alone: nothing to announce (a change not federated yet stays in the diff's
    // snapshot and goes out with the next one).
    const roomServers = await serversSharingRooms(env, [roomId]);
    if (roomServers.length === 0) return;
    const store = userStore(env, userId);
    const { devices, crossSigning } = await federatedDeviceList(env, userId);
    const changes = await store.diffOwnDeviceList(userId, devices, crossSigning);
    const pending = deviceListEdus(userId, changes);
    const enqueue = (servers: Iterable<string>, edus: QueuedEdu[]) =>
      Promise.all([...servers].map((server) => env.DESTINATIONS.get(env.DESTINATIONS.idFromName(server)).enqueue(server, [], edus)));
    // Changes not federated yet: to every server sharing a room with the user, the new room's included.
    if (pending.length > 0) {
      const otherServers = await serversSharingRooms(env, await store.joinedRooms());
      await enqueue(new Set([...otherServers, ...roomServers]), pending);
    }
    // The devices those changes did not cover: as they stand, to the new room's servers.
    const covered = new Set(changes.updates.map((u) => u.deviceId));
    const rest = devices.filter((d) => !covered.has(d.deviceId));
    if (rest.length === 0) return;
    const streamId = await store.ownDeviceListStreamId();
    const snapshot = rest.map((d) => ({ userId, deviceId: d.deviceId, streamId, prevIds: [], deleted: false, keys: d.keys, displayName: d.displayName }));
    await enqueue(roomServers, deviceListEdus(userId, { updates: snapshot, signingKeys: null }));
  } catch (e) {
    console.warn("device list not announced on join", userId, roomId, e instanceof Error ? e.message : e);
  }
}

/** Called after devices were deleted (D1 rows gone): forgets their keys and to-device inboxes in the
 * user's DO, and signals the device list change if any of them had keys. */
export async function onDevicesDeleted(env: Env, userId: string, deviceIds: string[]): Promise<void> {
  if (deviceIds.length === 0) return;
  const changed = await userStore(env, userId).deleteDeviceKeys(userId, deviceIds);
  if (changed) await onOwnDevicesChanged(env, userId);
}

/** `onDevicesDeleted` for one device. */
export function onDeviceDeleted(env: Env, userId: string, deviceId: string): Promise<void> {
  return onDevicesDeleted(env, userId, [deviceId]);
}

/** Called after all of a user's devices except `keepDeviceId` were deleted (logout/all, password change,
 * deactivation). */
export async function onAllDevicesDeleted(env: Env, userId: string, keepDeviceId?: string): Promise<void> {
  const changed = await userStore(env, userId).deleteDeviceKeys(userId, null, keepDeviceId);
  if (changed) await onOwnDevicesChanged(env, userId);
}

/**
 * The position in the requesting user's stream that a sync token names, for /keys/changes. Sync tokens
 * belong to the sync layer; until it defines them, a token is the decimal stream position itself, or the
 * position followed by `_` and more fields. The sync layer should make this read its token format.
 * Returns undefined for a token it cannot read.
 */
export function streamPositionOfSyncToken(token: string): number | undefined {
  const m = /^s?(\d{1,15})(?:_.*)?$/.exec(token);
  return m ? Number(m[1]) : undefined;
}
