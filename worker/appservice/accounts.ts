// Accounts of application services' users (spec: Application Service API, "Client-Server API Extensions":
// "Server admin style permissions", `m.login.application_service` for POST /register and POST /login;
// MSC4190 device management), and the exclusive namespaces that ordinary registrations and aliases must
// stay out of. Behaviour and errors as Synapse (synapse/rest/client/register.py `_do_appservice_registration`,
// handlers/register.py `appservice_register` / `check_username`, rest/client/login.py `_do_appservice_login`).
import type { Context } from "hono";
import { MatrixError, badJson, forbidden, invalidParam } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import { createSession, createUser } from "../accounts.js";
import { accessTokenOf, clientIp, localUserId, missingToken, requester } from "../auth.js";
import { userInUse, validateNewLocalpart } from "../client/registration.js";
import type { AppEnv, Env } from "../env.js";
import { rateLimitAddress } from "../ratelimit.js";
import { appserviceById, appserviceByTokenHash, exclusiveOwnerOfAlias, exclusiveOwnerOfUser, sha256Hex, type Appservice } from "../../durable-objects/appservice/registry.js";

export const APPSERVICE_LOGIN_TYPE = "m.login.application_service";

const exclusive = (message: string) => new MatrixError(400, "M_EXCLUSIVE", message);

/** The service whose as_token authenticates this request; 401 when there is none or it is no service's. */
async function requestService(c: Context<AppEnv>, what: string): Promise<Appservice> {
  const token = accessTokenOf(c);
  if (token === undefined) throw missingToken();
  const hash = await sha256Hex(token);
  const service = (await appserviceByTokenHash(c.env, hash, "cached")) ?? (await appserviceByTokenHash(c.env, hash, "database"));
  if (!service) throw new MatrixError(401, "M_UNKNOWN_TOKEN", `${what} is only valid for application services`);
  return service;
}

/** The service of a request's as_token, or undefined when the request carries no token or another kind. */
export async function optionalRequestService(c: Context<AppEnv>): Promise<Appservice | undefined> {
  const token = accessTokenOf(c);
  if (token === undefined) return undefined;
  const hash = await sha256Hex(token);
  return (await appserviceByTokenHash(c.env, hash, "cached")) ?? (await appserviceByTokenHash(c.env, hash, "database"));
}

/**
 * An ordinary registration (or a check of a name's availability) of a user ID that an application service
 * holds exclusively: 400 M_EXCLUSIVE (Synapse `check_username`). `except` is the registering service.
 */
export async function refuseExclusiveUser(env: Env, userId: string, except?: Appservice): Promise<void> {
  const owner = await exclusiveOwnerOfUser(env, userId);
  if (owner && owner.id !== except?.id) throw exclusive("This user ID is reserved by an application service.");
}

/** Creating an alias another application service holds exclusively: 400 M_EXCLUSIVE (Synapse
 * `DirectoryHandler._create_association` → "This alias is reserved by an application service."). */
export async function refuseExclusiveAlias(env: Env, alias: string, requesterAppserviceId: string | undefined): Promise<void> {
  const owner = await exclusiveOwnerOfAlias(env, alias);
  if (owner && owner.id !== requesterAppserviceId) throw exclusive("This alias is reserved by an application service.");
}

/**
 * POST /register with `type: m.login.application_service` (or any registration made with an as_token):
 * a user in the service's namespace, no password, no user-interactive authentication, allowed while open
 * registration is off. With MSC4190 (`io.element.msc4190`) no access token is issued: the service creates
 * devices with PUT /devices/{deviceId}.
 */
export async function registerAppserviceUser(c: Context<AppEnv>, body: JsonObject): Promise<Response> {
  const env = c.env;
  const service = await requestService(c, "This registration type");
  if (body.type !== undefined && body.type !== APPSERVICE_LOGIN_TYPE) {
    // Synapse: an as_token registration must say which type it is.
    throw new MatrixError(400, "M_BAD_JSON", `Invalid registration type for an application service: use ${APPSERVICE_LOGIN_TYPE}`);
  }
  const username = body.username;
  if (typeof username !== "string") throw invalidParam("username must be a string for application service registration");
  validateNewLocalpart(username, env);
  const userId = localUserId(username, env);
  // Synapse `appservice_register`: the user must be in the service's namespace, and no other service's
  // exclusive namespace.
  if (!service.isInterestedInUser(userId)) throw exclusive("Invalid user localpart for this application service.");
  await refuseExclusiveUser(env, userId, service);
  if (!(await createUser(env, userId, null))) throw userInUse();

  const response: JsonObject = { user_id: userId, home_server: env.SERVER_NAME };
  const inhibitLogin = body.inhibit_login === true;
  if (!inhibitLogin && !service.registration.msc4190) {
    const deviceId = typeof body.device_id === "string" && body.device_id !== "" ? body.device_id : undefined;
    const displayName = typeof body.initial_device_display_name === "string" ? body.initial_device_display_name : undefined;
    Object.assign(response, await createSession(env, userId, { deviceId, displayName, clientIp: clientIp(c) }));
  }
  return c.json(response);
}

/**
 * POST /login with `type: m.login.application_service` (spec: "Appservice Login"): the as_token in the
 * Authorization header, `identifier` `{type: m.id.user, user}` in the service's namespace. Rate limited per
 * address unless the registration says `rate_limited: false`.
 */
export async function loginAppserviceUser(c: Context<AppEnv>, body: JsonObject): Promise<Response> {
  const env = c.env;
  const service = await requestService(c, "This login method");
  if (service.registration.rateLimited) await rateLimitAddress(env, "RC_LOGIN_ADDRESS", clientIp(c));
  const identifier = body.identifier;
  let user: unknown;
  if (identifier === undefined && typeof body.user === "string") user = body.user; // deprecated top-level `user`
  else {
    if (typeof identifier !== "object" || identifier === null || Array.isArray(identifier)) throw invalidParam("Invalid identifier in login submission");
    const id = identifier as JsonObject;
    if (id.type !== "m.id.user") throw invalidParam("Unknown login identifier type");
    user = id.user;
  }
  if (typeof user !== "string" || user === "") throw invalidParam("Invalid user in identifier");
  const userId = user.startsWith("@") ? user : localUserId(user, env);
  if (!service.isInterestedInUser(userId)) throw forbidden("Invalid access_token");
  const row = await env.DB.prepare("SELECT deactivated FROM users WHERE user_id = ?").bind(userId).first<{ deactivated: number }>();
  if (!row) throw forbidden("Invalid access_token");
  if (row.deactivated) throw new MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated");
  const deviceId = body.device_id;
  if (deviceId !== undefined && deviceId !== null && (typeof deviceId !== "string" || deviceId === "" || deviceId.length > 255)) {
    throw invalidParam("Invalid device_id");
  }
  const displayName = body.initial_device_display_name;
  if (displayName !== undefined && displayName !== null && typeof displayName !== "string") throw badJson("initial_device_display_name must be a string");
  const session = await createSession(env, userId, {
    deviceId: typeof deviceId === "string" ? deviceId : undefined,
    displayName: typeof displayName === "string" ? displayName : undefined,
    refreshToken: body.refresh_token === true,
    clientIp: clientIp(c),
  });
  return c.json({ user_id: userId, ...session, home_server: env.SERVER_NAME });
}

/** Whether the request is an application service's that enabled MSC4190 device management
 * (`io.element.msc4190`): PUT /devices/{id} creates devices, deleting needs no user-interactive auth. */
export async function msc4190Service(c: Context<AppEnv>): Promise<boolean> {
  const id = requester(c).appserviceId;
  if (id === undefined) return false;
  return (await appserviceById(c.env, id))?.registration.msc4190 === true;
}

/** Creates a device for a service's user (MSC4190), or renames it; true when it was created. */
export async function upsertServiceDevice(env: Env, userId: string, deviceId: string, displayName: string | undefined): Promise<boolean> {
  if (deviceId === "" || deviceId.length > 255) throw invalidParam("Invalid device_id");
  const existing = await env.DB.prepare("SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?").bind(userId, deviceId).first();
  if (existing) {
    if (displayName !== undefined) await env.DB.prepare("UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?").bind(displayName, userId, deviceId).run();
    return false;
  }
  const inserted = await env.DB.prepare(
    "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?, ?, ?, ?) ON CONFLICT (user_id, device_id) DO NOTHING",
  )
    .bind(userId, deviceId, displayName ?? null, Date.now())
    .run();
  return inserted.meta.changes === 1;
}
