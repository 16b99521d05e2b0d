// Synapse-compatible shared-secret registration (Synapse admin API, "Shared-Secret Registration"):
// GET /_synapse/admin/v1/register hands out a nonce; POST registers a user when `mac` is the
// HMAC-SHA1, keyed with REGISTRATION_SHARED_SECRET, of `nonce \0 username \0 password \0 admin|notadmin`
// (hex). Tools such as Synapse's `register_new_matrix_user` use it.
import { Hono } from "hono";
import { MatrixError, badJson, forbidden } from "../../protocol/errors.js";
import { createSession, createUser } from "../accounts.js";
import { localUserId, timingSafeEqual } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { hashPassword } from "../password.js";
import { MAX_PASSWORD_LENGTH, userInUse, validateNewLocalpart } from "../client/registration.js";

/** How long a nonce may be used (Synapse keeps them for 60 s). */
export const NONCE_LIFETIME_MS = 60_000;

export const adminRegisterRoutes = new Hono<AppEnv>();

function sharedSecret(env: Env): string {
  const secret = env.REGISTRATION_SHARED_SECRET;
  // Synapse answers 400 when shared-secret registration is not configured.
  if (!secret) throw new MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled");
  return secret;
}

function hexToBytes(hex: string): Uint8Array | undefined {
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(hex)) return undefined;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** The MAC Synapse's client computes (exported for the tests and for tools). */
export async function registrationMac(secret: string, nonce: string, username: string, password: string, admin: boolean, userType?: string): Promise<string> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-1" }, false, ["sign"]);
  let message = `${nonce}\0${username}\0${password}\0${admin ? "admin" : "notadmin"}`;
  if (userType !== undefined) message += `\0${userType}`;
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(message)));
  return [...mac].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// GET /_synapse/admin/v1/register
adminRegisterRoutes.get("/_synapse/admin/v1/register", async (c) => {
  sharedSecret(c.env);
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const nonce = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  const now = Date.now();
  await c.env.DB.batch([
    c.env.DB.prepare("DELETE FROM registration_nonces WHERE created_ts < ?").bind(now - NONCE_LIFETIME_MS),
    c.env.DB.prepare("INSERT INTO registration_nonces (nonce, created_ts) VALUES (?, ?)").bind(nonce, now),
  ]);
  return c.json({ nonce });
});

// POST /_synapse/admin/v1/register
adminRegisterRoutes.post("/_synapse/admin/v1/register", async (c) => {
  const env = c.env;
  const secret = sharedSecret(env);
  const body = await readJsonObject(c, { allowEmpty: false });
  const { nonce, username, password, mac } = body;
  const admin = body.admin ?? false;
  const userType = body.user_type ?? undefined;
  const displayname = body.displayname ?? undefined;
  if (typeof nonce !== "string") throw badJson("nonce must be a string");
  if (typeof username !== "string" || username === "" || username.includes("\0")) throw new MatrixError(400, "M_INVALID_USERNAME", "Invalid username");
  if (typeof password !== "string" || password === "" || password.includes("\0") || password.length > MAX_PASSWORD_LENGTH) {
    throw new MatrixError(400, "M_INVALID_PARAM", "Invalid password");
  }
  if (typeof admin !== "boolean") throw badJson("admin must be a boolean");
  if (userType !== undefined && typeof userType !== "string") throw badJson("user_type must be a string");
  if (displayname !== undefined && typeof displayname !== "string") throw badJson("displayname must be a string");
  if (typeof mac !== "string") throw badJson("mac must be a string");

  // A nonce is good for one attempt, right or wrong (as in Synapse).
  const used = await env.DB.prepare("DELETE FROM registration_nonces WHERE nonce = ? AND created_ts >= ? RETURNING nonce")
    .bind(nonce, Date.now() - NONCE_LIFETIME_MS)
    .first();
  if (!used) throw new MatrixError(400, "M_UNKNOWN", "unrecognised nonce");

  const expected = hexToBytes(await registrationMac(secret, nonce, username, password, admin, userType));
  const given = hexToBytes(mac.toLowerCase());
  if (!given || !expected || !timingSafeEqual(given, expected)) throw forbidden("HMAC incorrect");

  const localpart = username.toLowerCase();
  validateNewLocalpart(localpart, env);
  const userId = localUserId(localpart, env);
  if (!(await createUser(env, userId, await hashPassword(password), { admin, displayname }))) throw userInUse();
  const session = await createSession(env, userId, {});
  return c.json({ user_id: userId, access_token: session.access_token, device_id: session.device_id, home_server: env.SERVER_NAME });
});
