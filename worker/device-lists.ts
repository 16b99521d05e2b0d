// Hooks around a user's device list (spec: "Tracking the device list for a user"): what happens after a
// user's devices, device keys or cross-signing keys changed, and when devices are deleted.
//
// The change itself is recorded in the user's own DO in the same transaction as the key write
// (durable-objects/user/device-lists.ts), so it is never lost between the write and a hook. What remains
// for `onOwnDevicesChanged` is telling the OTHER users who share an encrypted room with the user; that
// needs room membership and is done by the sync layer (durable-objects/user/room-mates.ts calls
// `recordDeviceListChange(userId)` on each of their DOs).
import { fanOutDeviceListChange } from "../durable-objects/user/room-mates.js";
import { userStore } from "./user-store.js";
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
  await fanOutDeviceListChange(env, userId, rooms);
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
