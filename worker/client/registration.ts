// Client-Server API: "Account registration" (POST /register with user-interactive authentication,
// username availability, registration-token validity). Spec: content/client-server-api "Account
// registration and management", "Token-authenticated registration".
import { Hono, type Context } from "hono";
import { MatrixError, badJson, forbidden, invalidParam, missingParam } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import { createSession, createUser } from "../accounts.js";
import { accessTokenOf, clientIp, localUserId, missingToken } from "../auth.js";
import { APPSERVICE_LOGIN_TYPE, refuseExclusiveUser, registerAppserviceUser } from "../appservice/accounts.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { hashPassword } from "../password.js";
import { rateLimitAddress, recordAddressAction } from "../ratelimit.js";
import { finishUiaSession, userInteractiveAuth, type UiaStage } from "../uia.js";

/** Longest password accepted (Synapse's limit): hashing unbounded input would waste CPU. */
export const MAX_PASSWORD_LENGTH = 512;
/** Longest device display name accepted (Synapse's limit). */
export const MAX_DEVICE_DISPLAY_NAME_LENGTH = 100;
const MAX_USER_ID_BYTES = 255;

export const userInUse = () => new MatrixError(400, "M_USER_IN_USE", "User ID already taken.");
export const invalidUsername = (message: string) => new MatrixError(400, "M_INVALID_USERNAME", message);

/**
 * Checks a localpart for a new account. Spec: Appendices, "User Identifiers": new localparts use only
 * `a-z 0-9 . _ = - /` and `+`, and the whole user ID is at most 255 bytes.
 */
export function validateNewLocalpart(localpart: string, env: Pick<Env, "SERVER_NAME">): void {
  if (localpart === "") throw invalidUsername("User ID cannot be empty");
  if (!/^[a-z0-9._=\-/+]+$/.test(localpart)) {
    throw invalidUsername("User ID can only contain characters a-z, 0-9, or '=_-./+'");
  }
  if (new TextEncoder().encode(localUserId(localpart, env)).length > MAX_USER_ID_BYTES) {
    throw invalidUsername(`User ID may not be longer than ${MAX_USER_ID_BYTES} bytes`);
  }
}

export function registrationEnabled(env: Env): boolean {
  return env.ENABLE_REGISTRATION === "true";
}

function requireRegistrationEnabled(env: Env): void {
  if (!registrationEnabled(env)) throw forbidden("Registration has been disabled");
}

/** Registration requires a token as soon as the operator has created one (spec: "Token-authenticated
 * registration"); otherwise a single m.login.dummy stage suffices. */
async function registrationFlows(env: Env): Promise<UiaStage[][]> {
  const any = await env.DB.prepare("SELECT 1 FROM registration_tokens LIMIT 1").first();
  return any ? [["m.login.registration_token"]] : [["m.login.dummy"]];
}

function optionalString(body: JsonObject, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw badJson(`${key} must be a string`);
  return v;
}

function optionalBoolean(body: JsonObject, key: string): boolean {
  const v = body[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") throw badJson(`${key} must be a boolean`);
  return v;
}

/** A localpart for a registration without `username`: 12 random lowercase letters and digits. */
function generateLocalpart(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let out = "";
  for (const b of crypto.getRandomValues(new Uint8Array(12))) out += alphabet[b % alphabet.length];
  return out;
}

export const registrationRoutes = new Hono<AppEnv>();

const CLIENT = "/_matrix/client/:version{v3|r0}";

// POST /_matrix/client/v3/register
registrationRoutes.post(`${CLIENT}/register`, async (c) => {
  const env = c.env;
  const kind = c.req.query("kind") ?? "user";
  if (kind === "guest") throw new MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled");
  if (kind !== "user") throw invalidParam("kind must be 'user' or 'guest'");
  // A registration with an access token is an application service's (Synapse: only an as_token may be
  // given here), allowed while open registration is off (worker/appservice/accounts.ts).
  if (accessTokenOf(c) !== undefined) return registerAppserviceUser(c, await readJsonObject(c));
  requireRegistrationEnabled(env);
  const body = await readJsonObject(c);
  const ip = clientIp(c);
  // Only successful registrations count (below); here we only check that one more is allowed.
  await rateLimitAddress(env, "RC_REGISTRATION", ip, { update: false });

  const username = optionalString(body, "username");
  const password = optionalString(body, "password");
  const deviceId = optionalString(body, "device_id");
  const displayName = optionalString(body, "initial_device_display_name");
  const inhibitLogin = optionalBoolean(body, "inhibit_login");
  const wantsRefresh = optionalBoolean(body, "refresh_token");
  if (body.type === APPSERVICE_LOGIN_TYPE) throw missingToken();
  if (password !== undefined && password.length > MAX_PASSWORD_LENGTH) throw invalidParam("Password too long");
  if (displayName !== undefined && displayName.length > MAX_DEVICE_DISPLAY_NAME_LENGTH) {
    throw invalidParam("Device display name is too long");
  }
  if (deviceId !== undefined && (deviceId === "" || deviceId.length > 255)) throw invalidParam("Invalid device_id");

  // Spec: M_USER_IN_USE and M_INVALID_USERNAME are checked before user-interactive authentication.
  // Localparts are lower-cased (as Synapse does), so `Alice` registers `@alice`.
  const localpart = username !== undefined ? username.toLowerCase() : generateLocalpart();
  validateNewLocalpart(localpart, env);
  const userId = localUserId(localpart, env);
  if (await env.DB.prepare("SELECT 1 FROM users WHERE user_id = ?").bind(userId).first()) throw userInUse();
  await refuseExclusiveUser(env, userId);

  const auth = await userInteractiveAuth(env, body, {
    method: "POST",
    operation: "register",
    flows: await registrationFlows(env),
  });

  // As Synapse: a missing password is reported only once user-interactive auth has passed, so that
  // `POST /register {}` answers 401 with the flows (spec: "User-Interactive Authentication API").
  if (password === undefined) throw missingParam("Missing params: password");
  // The user ID may have been taken while the client was completing authentication.
  if (!(await createUser(env, userId, await hashPassword(password)))) throw userInUse();
  await finishUiaSession(env, auth, { registered: true });
  await recordAddressAction(env, "RC_REGISTRATION", ip);

  const response: JsonObject = { user_id: userId, home_server: env.SERVER_NAME };
  if (!inhibitLogin) {
    const session = await createSession(env, userId, { deviceId, displayName, refreshToken: wantsRefresh, clientIp: ip });
    Object.assign(response, session);
  }
  return c.json(response);
});

// GET /_matrix/client/v3/register/available
registrationRoutes.get(`${CLIENT}/register/available`, async (c) => {
  requireRegistrationEnabled(c.env);
  const username = c.req.query("username");
  if (username === undefined) throw missingParam("Missing username");
  const localpart = username.toLowerCase();
  validateNewLocalpart(localpart, c.env);
  const taken = await c.env.DB.prepare("SELECT 1 FROM users WHERE user_id = ?").bind(localUserId(localpart, c.env)).first();
  if (taken) throw userInUse();
  await refuseExclusiveUser(c.env, localUserId(localpart, c.env));
  return c.json({ available: true });
});

// GET /_matrix/client/v1/register/m.login.registration_token/validity
const validity = async (c: Context<AppEnv>) => {
  requireRegistrationEnabled(c.env);
  await rateLimitAddress(c.env, "RC_REGISTRATION_TOKEN_VALIDITY", clientIp(c));
  const token = c.req.query("token");
  if (token === undefined) throw missingParam("Missing token");
  // Spec: tokens are at most 64 characters from the unreserved URI set.
  if (!/^[A-Za-z0-9._~-]{1,64}$/.test(token)) return c.json({ valid: false });
  const row = await c.env.DB.prepare(
    `SELECT 1 FROM registration_tokens WHERE token = ? AND (expiry_time IS NULL OR expiry_time > ?)
       AND (uses_allowed IS NULL OR pending + completed < uses_allowed)`,
  )
    .bind(token, Date.now())
    .first();
  return c.json({ valid: row !== null });
};
registrationRoutes.get("/_matrix/client/v1/register/m.login.registration_token/validity", validity);
