// Access-token authentication for the Client-Server API (spec: Client-Server API, "Client
// Authentication" / "Using access tokens"), plus the token and user-ID helpers shared by the account
// routes. Tokens are ≥256 random bits and only their SHA-256 is stored in D1, so a leaked database does
// not leak usable tokens; a look-up by hash needs no constant-time comparison of secrets.
import type { Context, MiddlewareHandler } from "hono";
import { MatrixError } from "../protocol/errors.js";
import { encodeBase64Url } from "../protocol/base64.js";
import type { AppEnv, Env } from "./env.js";
import { appserviceRequester } from "./appservice/auth.js";
import { cachedTokenRow, forgetCachedTokens, rememberTokenRow, tokenCacheGeneration } from "./token-cache.js";

/** Who made an authenticated request. */
export interface Requester {
  userId: string;
  /** "" for an application service request without `device_id` (Synapse: no device). */
  deviceId: string;
  isAdmin: boolean;
  /** Set when the request was made with an application service's as_token (worker/appservice/auth.ts). */
  appserviceId?: string;
}

const REQUESTER_KEY = "requester";

/** How often a device's `last_seen_ts` / `last_seen_ip` is written at most (saves a D1 write per request). */
const LAST_SEEN_INTERVAL_MS = 60_000;

export const missingToken = () => new MatrixError(401, "M_MISSING_TOKEN", "Missing access token");
export const unknownToken = (softLogout = false) =>
  new MatrixError(401, "M_UNKNOWN_TOKEN", softLogout ? "Access token has expired" : "Unrecognised access token", {
    soft_logout: softLogout,
  });

/** The access token of a request: `Authorization: Bearer <token>`, or the deprecated `access_token`
 * query parameter (spec: "Using access tokens"). */
export function accessTokenOf(c: Context): string | undefined {
  const header = c.req.header("authorization");
  if (header !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    // A malformed Authorization header is treated as a missing token, as Synapse does.
    return m ? m[1] : undefined;
  }
  const q = c.req.query("access_token");
  return q === undefined || q === "" ? undefined : q;
}

interface TokenRow {
  user_id: string;
  device_id: string;
  expires_ts: number | null;
  refresh_token_hash: string | null;
  used: number;
  admin: number;
  deactivated: number;
  last_seen_ts: number | null;
  last_seen_ip: string | null;
}

/** Resolves an access token to its requester, or throws M_UNKNOWN_TOKEN (soft_logout when expired). */
export async function authenticateToken(env: Env, token: string, clientIp?: string, waitUntil?: (p: Promise<unknown>) => void): Promise<Requester> {
  const tokenHash = await sha256Hex(token);
  // The isolate's memory of recent look-ups first (worker/token-cache.ts: what it changes and why).
  let row = cachedTokenRow<TokenRow>(tokenHash, Date.now());
  if (!row) {
    const generation = tokenCacheGeneration();
    row = await env.DB.prepare(
      `SELECT t.user_id, t.device_id, t.expires_ts, t.refresh_token_hash, t.used, u.admin, u.deactivated,
              d.last_seen_ts, d.last_seen_ip
         FROM access_tokens t
         JOIN users u ON u.user_id = t.user_id
         LEFT JOIN devices d ON d.user_id = t.user_id AND d.device_id = t.device_id
        WHERE t.token_hash = ?`,
    )
      .bind(tokenHash)
      .first<TokenRow>() ?? undefined;
    // Not kept: unknown tokens, deactivated users, and a refreshed token before its first use (below).
    if (row && !row.deactivated && (row.used || row.refresh_token_hash === null)) rememberTokenRow(tokenHash, row, generation, Date.now());
  }
  if (!row || row.deactivated) throw unknownToken();
  const now = Date.now();
  if (row.expires_ts !== null && row.expires_ts <= now) throw unknownToken(true);
  if (!row.used && row.refresh_token_hash !== null) {
    // Spec: "Refreshing access tokens": the old refresh token stays valid until the new access token
    // (or the new refresh token) is used; this is that first use.
    await revokePredecessor(env.DB, tokenHash, row.refresh_token_hash);
  }
  const stale = row.last_seen_ts === null || now - row.last_seen_ts > LAST_SEEN_INTERVAL_MS;
  if (stale || (clientIp !== undefined && clientIp !== row.last_seen_ip)) {
    const ip = clientIp ?? row.last_seen_ip;
    const update = env.DB.prepare("UPDATE devices SET last_seen_ts = ?, last_seen_ip = ? WHERE user_id = ? AND device_id = ?")
      .bind(now, ip, row.user_id, row.device_id)
      .run();
    // The remembered row (if any) follows, so the next requests within the interval write nothing.
    row.last_seen_ts = now;
    row.last_seen_ip = ip;
    if (waitUntil) waitUntil(update);
    else await update;
  }
  return { userId: row.user_id, deviceId: row.device_id, isAdmin: row.admin !== 0 };
}

/** Marks an access token used and deletes the refresh token (and its access tokens) that `refreshTokenHash`
 * replaced. Called on the first use of an access token or refresh token issued by /refresh. */
export async function revokePredecessor(db: D1Database, accessTokenHash: string | null, refreshTokenHash: string): Promise<void> {
  const statements = [
    db.prepare(
      "DELETE FROM access_tokens WHERE refresh_token_hash IN (SELECT token_hash FROM refresh_tokens WHERE next_token_hash = ?)",
    ).bind(refreshTokenHash),
    db.prepare("DELETE FROM refresh_tokens WHERE next_token_hash = ?").bind(refreshTokenHash),
    db.prepare("UPDATE access_tokens SET used = 1 WHERE refresh_token_hash = ?").bind(refreshTokenHash),
  ];
  if (accessTokenHash !== null) {
    statements.push(db.prepare("UPDATE access_tokens SET used = 1 WHERE token_hash = ?").bind(accessTokenHash));
  }
  await db.batch(statements);
  forgetCachedTokens();
}

/** The client's address: Cloudflare's `CF-Connecting-IP` (absent in local tests). */
export function clientIp(c: Context): string | undefined {
  return c.req.header("cf-connecting-ip") ?? undefined;
}

/** Middleware for endpoints that require an access token. Sets the requester read by `requester(c)`. */
export const requireAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  const token = accessTokenOf(c);
  if (token === undefined) throw missingToken();
  let waitUntil: ((p: Promise<unknown>) => void) | undefined;
  try {
    const ctx = c.executionCtx;
    waitUntil = (p) => ctx.waitUntil(p);
  } catch {
    waitUntil = undefined; // no execution context (e.g. app.request in tests)
  }
  // An application service's as_token is checked first, as Synapse does (worker/appservice/auth.ts).
  const asRequester = await appserviceRequester(c, token);
  c.set(REQUESTER_KEY, asRequester ?? (await authenticateTokenOrAppservice(c, token, waitUntil)));
  await next();
};

/** An ordinary access token, else (a service registered after this isolate's copy of the list) an as_token
 * found in D1. */
async function authenticateTokenOrAppservice(c: Context<AppEnv>, token: string, waitUntil?: (p: Promise<unknown>) => void): Promise<Requester> {
  try {
    return await authenticateToken(c.env, token, clientIp(c), waitUntil);
  } catch (e) {
    if (!(e instanceof MatrixError) || e.errcode !== "M_UNKNOWN_TOKEN" || e.extra.soft_logout === true) throw e;
    const r = await appserviceRequester(c, token, "database");
    if (r) return r;
    throw e;
  }
}

/** The authenticated requester; only valid behind `requireAuth`. */
export function requester(c: Context<AppEnv>): Requester {
  const r = c.get(REQUESTER_KEY) as Requester | undefined;
  if (!r) throw new Error("requester() called on a route without requireAuth");
  return r;
}

// ---------------------------------------------------------------------------------------------
// User IDs (spec: Appendices, "User Identifiers").

/** `@localpart:SERVER_NAME`. */
export function localUserId(localpart: string, env: Pick<Env, "SERVER_NAME">): string {
  return `@${localpart}:${env.SERVER_NAME}`;
}

/** The localpart if `userId` is a user of this server, else undefined. */
export function localpartOf(userId: string, env: Pick<Env, "SERVER_NAME">): string | undefined {
  const suffix = ":" + env.SERVER_NAME;
  if (!userId.startsWith("@") || !userId.endsWith(suffix)) return undefined;
  const localpart = userId.slice(1, -suffix.length);
  return localpart === "" || localpart.includes(":") ? undefined : localpart;
}

export function isLocalUserId(userId: string, env: Pick<Env, "SERVER_NAME">): boolean {
  return localpartOf(userId, env) !== undefined;
}

// ---------------------------------------------------------------------------------------------
// Secrets.

/** A fresh secret token: `prefix` + 32 random bytes (256 bits) in URL-safe base64. */
export function generateToken(prefix: string): string {
  return prefix + encodeBase64Url(crypto.getRandomValues(new Uint8Array(32)));
}

/** A device ID as clients see them: 10 uppercase letters, like Synapse's. */
export function generateDeviceId(): string {
  const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  const bytes = crypto.getRandomValues(new Uint8Array(10));
  let out = "";
  for (const b of bytes) out += letters[b % 26];
  return out;
}

export async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  let hex = "";
  for (const b of digest) hex += b.toString(16).padStart(2, "0");
  return hex;
}

/** Compares two byte strings in time independent of where they differ. */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
