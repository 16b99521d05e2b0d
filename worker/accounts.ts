// Account storage in D1: users, devices, access and refresh tokens. The route files (registration,
// login, logout, account, devices, admin register) call these; nothing here reads a request.
// Spec: Client-Server API, "Relationship between access tokens and devices", "Refreshing access tokens".
import { and, eq, inArray } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import { accessTokens, devices, refreshTokens, users } from "../schema/d1.js";
import { generateDeviceId, generateToken, sha256Hex } from "./auth.js";
import { onAllDevicesDeleted, onDevicesDeleted } from "./device-lists.js";
import { removePushersOfDevicesStatement } from "../durable-objects/user/pushers.js";
import { pushersChanged } from "./user-store.js";
import type { Env } from "./env.js";
import { forgetCachedTokens } from "./token-cache.js";

/** Lifetime of an access token issued with a refresh token (Synapse's `refreshable_access_token_lifetime`). */
export const REFRESHABLE_ACCESS_TOKEN_LIFETIME_MS = 5 * 60 * 1000;

export const ACCESS_TOKEN_PREFIX = "mat_";
export const REFRESH_TOKEN_PREFIX = "mrt_";

export interface UserRow {
  userId: string;
  passwordHash: string | null;
  deactivated: boolean;
  admin: boolean;
}

export async function getUser(env: Env, userId: string): Promise<UserRow | undefined> {
  const rows = await drizzle(env.DB)
    .select({ userId: users.userId, passwordHash: users.passwordHash, deactivated: users.deactivated, admin: users.admin })
    .from(users)
    .where(eq(users.userId, userId))
    .limit(1);
  return rows[0];
}

/** Creates the account; false if the user ID is taken (by a live or deactivated account). The display
 * name starts as the localpart, as in Synapse. */
export async function createUser(
  env: Env,
  userId: string,
  passwordHash: string | null,
  options: { admin?: boolean; displayname?: string } = {},
): Promise<boolean> {
  const displayname = options.displayname ?? userId.slice(1, userId.indexOf(":"));
  const result = await drizzle(env.DB)
    .insert(users)
    .values({ userId, passwordHash, admin: options.admin ?? false, displayname, createdTs: Date.now() })
    .onConflictDoNothing()
    .run();
  return result.meta.changes === 1;
}

export interface Session {
  access_token: string;
  device_id: string;
  refresh_token?: string;
  expires_in_ms?: number;
}

/**
 * Logs a device in: creates the device (or reuses `deviceId` if the user has it, invalidating its
 * previous tokens, as the spec requires for /login), and issues an access token, with a refresh token
 * and an expiry when the client supports refresh tokens.
 */
export async function createSession(
  env: Env,
  userId: string,
  options: { deviceId?: string; displayName?: string; refreshToken?: boolean; clientIp?: string },
): Promise<Session> {
  const deviceId = options.deviceId ?? generateDeviceId();
  const now = Date.now();
  const db = env.DB;
  const statements: D1PreparedStatement[] = [
    db.prepare("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?").bind(userId, deviceId),
    db.prepare("DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?").bind(userId, deviceId),
    // initial_device_display_name is ignored for a known device.
    db.prepare(
      `INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (user_id, device_id) DO UPDATE SET last_seen_ts = excluded.last_seen_ts,
           last_seen_ip = coalesce(excluded.last_seen_ip, last_seen_ip)`,
    ).bind(userId, deviceId, options.displayName ?? null, now, now, options.clientIp ?? null),
  ];
  const accessToken = generateToken(ACCESS_TOKEN_PREFIX);
  const session: Session = { access_token: accessToken, device_id: deviceId };
  if (options.refreshToken) {
    const refreshToken = generateToken(REFRESH_TOKEN_PREFIX);
    const refreshHash = await sha256Hex(refreshToken);
    statements.push(
      db.prepare("INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts) VALUES (?, ?, ?, ?)")
        .bind(refreshHash, userId, deviceId, now),
      db.prepare(
        "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts, refresh_token_hash, used) VALUES (?, ?, ?, ?, ?, ?, 1)",
      ).bind(await sha256Hex(accessToken), userId, deviceId, now, now + REFRESHABLE_ACCESS_TOKEN_LIFETIME_MS, refreshHash),
    );
    session.refresh_token = refreshToken;
    session.expires_in_ms = REFRESHABLE_ACCESS_TOKEN_LIFETIME_MS;
  } else {
    statements.push(
      db.prepare("INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, used) VALUES (?, ?, ?, ?, 1)")
        .bind(await sha256Hex(accessToken), userId, deviceId, now),
    );
  }
  await db.batch(statements);
  // A reused device ID has just lost its previous tokens (worker/token-cache.ts).
  if (options.deviceId !== undefined) forgetCachedTokens();
  return session;
}

/** Deletes devices with their access and refresh tokens. */
export async function deleteDevices(env: Env, userId: string, deviceIds: string[]): Promise<void> {
  if (deviceIds.length === 0) return;
  const db = drizzle(env.DB);
  let pushersRemoved = 0;
  // D1 limits bound parameters per statement (100); delete in chunks.
  for (let i = 0; i < deviceIds.length; i += 50) {
    const chunk = deviceIds.slice(i, i + 50);
    await db.batch([
      db.delete(accessTokens).where(and(eq(accessTokens.userId, userId), inArray(accessTokens.deviceId, chunk))),
      db.delete(refreshTokens).where(and(eq(refreshTokens.userId, userId), inArray(refreshTokens.deviceId, chunk))),
      db.delete(devices).where(and(eq(devices.userId, userId), inArray(devices.deviceId, chunk))),
    ]);
    forgetCachedTokens(); // their tokens are gone (worker/token-cache.ts)
    // The devices' pushers go too (Synapse: remove_pushers_by_devices).
    pushersRemoved += (await removePushersOfDevicesStatement(env.DB, userId, chunk).run()).meta.changes;
  }
  if (pushersRemoved > 0) await pushersChanged(env, [userId]);
  // Their end-to-end keys and to-device inboxes go too (worker/device-lists.ts).
  await onDevicesDeleted(env, userId, deviceIds);
}

/** Deletes all of a user's devices and tokens, except `keepDeviceId` if given. */
export async function deleteAllDevices(env: Env, userId: string, keepDeviceId?: string): Promise<void> {
  const db = env.DB;
  const except = keepDeviceId === undefined ? "" : " AND device_id != ?";
  const params = keepDeviceId === undefined ? [userId] : [userId, keepDeviceId];
  await db.batch([
    db.prepare(`DELETE FROM access_tokens WHERE user_id = ?${except}`).bind(...params),
    db.prepare(`DELETE FROM refresh_tokens WHERE user_id = ?${except}`).bind(...params),
    db.prepare(`DELETE FROM devices WHERE user_id = ?${except}`).bind(...params),
  ]);
  forgetCachedTokens(); // worker/token-cache.ts
  // Their pushers go too (Synapse: remove_pushers_by_devices), e.g. all but the requester's on a password
  // change with logout_devices.
  if ((await removePushersOfDevicesStatement(db, userId, null, keepDeviceId).run()).meta.changes > 0) await pushersChanged(env, [userId]);
  await onAllDevicesDeleted(env, userId, keepDeviceId);
}

export async function setPasswordHash(env: Env, userId: string, passwordHash: string | null): Promise<void> {
  await drizzle(env.DB).update(users).set({ passwordHash }).where(eq(users.userId, userId));
}

/** Spec: "Account deactivation": the account can no longer log in; all its devices and tokens go. The row
 * stays so that the user ID is never handed out again. */
export async function deactivateUser(env: Env, userId: string, erase: boolean): Promise<void> {
  const db = drizzle(env.DB);
  await db
    .update(users)
    .set(erase ? { deactivated: true, erased: true, passwordHash: null, displayname: null, avatarUrl: null } : { deactivated: true, passwordHash: null })
    .where(eq(users.userId, userId));
  forgetCachedTokens(); // worker/token-cache.ts
  await deleteAllDevices(env, userId);
}
