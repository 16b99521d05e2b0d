// Client-Server API: "Login" (GET/POST /login with m.login.password) and "Refreshing access tokens"
// (POST /refresh). Spec: content/client-server-api "Legacy API: Login", "Refreshing access tokens".
import { Hono } from "hono";
import { MatrixError, badJson, forbidden, invalidParam } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import {
  REFRESHABLE_ACCESS_TOKEN_LIFETIME_MS,
  REFRESH_TOKEN_PREFIX,
  ACCESS_TOKEN_PREFIX,
  createSession,
  getUser,
  setPasswordHash,
} from "../accounts.js";
import { clientIp, generateToken, localpartOf, revokePredecessor, sha256Hex, unknownToken } from "../auth.js";
import type { AppEnv } from "../env.js";
import { APPSERVICE_LOGIN_TYPE, loginAppserviceUser } from "../appservice/accounts.js";
import { readJsonObject } from "../http.js";
import { dummyPasswordHash, hashPassword, needsRehash, verifyPassword } from "../password.js";
import { rateLimit, rateLimitAddress, recordAction } from "../ratelimit.js";
import { passwordIdentifierUser } from "../uia.js";
import { MAX_DEVICE_DISPLAY_NAME_LENGTH, MAX_PASSWORD_LENGTH } from "./registration.js";
import { forgetCachedTokens } from "../token-cache.js";

export const loginRoutes = new Hono<AppEnv>();

const CLIENT = "/_matrix/client/:version{v3|r0}";

// GET /_matrix/client/v3/login
loginRoutes.get(`${CLIENT}/login`, (c) => c.json({ flows: [{ type: "m.login.password" }, { type: APPSERVICE_LOGIN_TYPE }] }));

// POST /_matrix/client/v3/login
loginRoutes.post(`${CLIENT}/login`, async (c) => {
  const env = c.env;
  const body = await readJsonObject(c, { allowEmpty: false });
  // Application services log their users in with the as_token (worker/appservice/accounts.ts).
  if (body.type === APPSERVICE_LOGIN_TYPE) return loginAppserviceUser(c, body);
  const ip = clientIp(c);
  await rateLimitAddress(env, "RC_LOGIN_ADDRESS", ip);

  if (body.type !== "m.login.password") {
    throw new MatrixError(400, "M_UNKNOWN", "Unknown login type");
  }
  const userId = passwordIdentifierUser(body, env);
  const password = body.password;
  if (typeof password !== "string") throw badJson("password must be a string");
  const deviceId = body.device_id;
  if (deviceId !== undefined && deviceId !== null && (typeof deviceId !== "string" || deviceId === "" || deviceId.length > 255)) {
    throw invalidParam("Invalid device_id");
  }
  const displayName = body.initial_device_display_name;
  if (displayName !== undefined && displayName !== null) {
    if (typeof displayName !== "string") throw badJson("initial_device_display_name must be a string");
    if (displayName.length > MAX_DEVICE_DISPLAY_NAME_LENGTH) throw invalidParam("Device display name is too long");
  }
  const wantsRefresh = body.refresh_token;
  if (wantsRefresh !== undefined && typeof wantsRefresh !== "boolean") throw badJson("refresh_token must be a boolean");

  await rateLimit(env, "RC_LOGIN_ACCOUNT", `user:${userId}`);
  await rateLimit(env, "RC_LOGIN_FAILED_ATTEMPTS", `user:${userId}`, { update: false });

  const user = localpartOf(userId, env) === undefined ? undefined : await getUser(env, userId);
  // Hash even when there is no such user, so that the answer time does not reveal which users exist.
  const ok =
    password.length <= MAX_PASSWORD_LENGTH &&
    (await verifyPassword(password, user?.passwordHash ?? (await dummyPasswordHash())));
  if (!user || !user.passwordHash || !ok) {
    await recordAction(env, "RC_LOGIN_FAILED_ATTEMPTS", `user:${userId}`);
    throw forbidden("Invalid username or password");
  }
  if (user.deactivated) throw new MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated");
  // Hashes made with weaker parameters are upgraded while the password is at hand.
  if (needsRehash(user.passwordHash)) await setPasswordHash(env, userId, await hashPassword(password));

  const session = await createSession(env, userId, {
    deviceId: typeof deviceId === "string" ? deviceId : undefined,
    displayName: typeof displayName === "string" ? displayName : undefined,
    refreshToken: wantsRefresh === true,
    clientIp: ip,
  });
  const response: JsonObject = { user_id: userId, ...session, home_server: env.SERVER_NAME };
  if (env.WELL_KNOWN_CLIENT) response.well_known = { "m.homeserver": { base_url: env.WELL_KNOWN_CLIENT } };
  return c.json(response);
});

interface RefreshRow {
  user_id: string;
  device_id: string;
  next_token_hash: string | null;
}

// POST /_matrix/client/v3/refresh
//
// Rotation: each use of a refresh token issues a new access token and a new refresh token. The old refresh
// token (and the old access token) stay valid until the new access token or the new refresh token is first
// used, then they are deleted (spec: "Refreshing access tokens", which lets a client retry a refresh whose
// answer it lost). A retry with the old refresh token replaces the unused successor it had issued before.
loginRoutes.post("/_matrix/client/v3/refresh", async (c) => {
  const env = c.env;
  const body = await readJsonObject(c, { allowEmpty: false });
  const refreshToken = body.refresh_token;
  if (typeof refreshToken !== "string") throw badJson("refresh_token must be a string");
  const oldHash = await sha256Hex(refreshToken);
  const row = await env.DB.prepare(
    `SELECT r.user_id, r.device_id, r.next_token_hash FROM refresh_tokens r JOIN users u ON u.user_id = r.user_id
      WHERE r.token_hash = ? AND u.deactivated = 0`,
  )
    .bind(oldHash)
    .first<RefreshRow>();
  if (!row) throw unknownToken(true);

  // Using this refresh token is the first use of it: its own predecessor (if any) is now revoked.
  await revokePredecessor(env.DB, null, oldHash);

  const now = Date.now();
  const accessToken = generateToken(ACCESS_TOKEN_PREFIX);
  const newRefresh = generateToken(REFRESH_TOKEN_PREFIX);
  const newHash = await sha256Hex(newRefresh);
  const db = env.DB;
  const statements: D1PreparedStatement[] = [];
  if (row.next_token_hash !== null) {
    // A retry: forget the successor issued last time (never used, or it would have revoked this token).
    statements.push(
      db.prepare("DELETE FROM access_tokens WHERE refresh_token_hash = ?").bind(row.next_token_hash),
      db.prepare("DELETE FROM refresh_tokens WHERE token_hash = ?").bind(row.next_token_hash),
    );
  }
  statements.push(
    db.prepare("INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts) VALUES (?, ?, ?, ?)")
      .bind(newHash, row.user_id, row.device_id, now),
    db.prepare(
      "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts, refresh_token_hash, used) VALUES (?, ?, ?, ?, ?, ?, 0)",
    ).bind(await sha256Hex(accessToken), row.user_id, row.device_id, now, now + REFRESHABLE_ACCESS_TOKEN_LIFETIME_MS, newHash),
    db.prepare("UPDATE refresh_tokens SET next_token_hash = ? WHERE token_hash = ?").bind(newHash, oldHash),
  );
  await db.batch(statements);
  forgetCachedTokens(); // a retry deleted the successor's access token (worker/token-cache.ts)
  return c.json({ access_token: accessToken, refresh_token: newRefresh, expires_in_ms: REFRESHABLE_ACCESS_TOKEN_LIFETIME_MS });
});
