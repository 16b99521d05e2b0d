// Application services on the Client-Server API (spec: Application Service API, "Client-Server API
// Extensions": "Identity assertion", "Timestamp massaging"; MSC4326 device masquerading). A request whose
// access token is a registered service's as_token acts as the service's sender user, or, with `user_id=`,
// as any registered user in its user namespaces; `device_id=` (or MSC3202's `org.matrix.msc3202.device_id`)
// picks one of that user's devices. Errors follow Synapse (synapse/api/auth/base.py
// `validate_appservice_can_control_user_id`, internal.py `get_appservice_user`).
//
// The as_token is found by its SHA-256 (durable-objects/appservice/registry.ts): a look-up by hash compares
// no secret byte by byte, so its time says nothing about the token. Tokens are never logged.
import type { Context } from "hono";
import { MatrixError, forbidden } from "../../protocol/errors.js";
import { appserviceById, appserviceByTokenHash, sha256Hex, type Appservice } from "../../durable-objects/appservice/registry.js";
import type { Requester } from "../auth.js";
import type { AppEnv, Env } from "../env.js";

export { appservices, appserviceById, exclusiveOwnerOfAlias, exclusiveOwnerOfUser } from "../../durable-objects/appservice/registry.js";

/** Sender users known to exist in this isolate (their row is written once, on first use). */
const sendersEnsured = new Set<string>();

/**
 * The requester of a request made with an as_token, or undefined when `token` is no service's. `where`:
 * the isolate's cached list (first, before access tokens are looked up) or D1.
 */
export async function appserviceRequester(c: Context<AppEnv>, token: string, where: "cached" | "database" = "cached"): Promise<Requester | undefined> {
  const service = await appserviceByTokenHash(c.env, await sha256Hex(token), where);
  if (!service) return undefined;
  const asserted = c.req.query("user_id");
  const userId = asserted === undefined || asserted === "" ? service.sender : asserted;
  await checkCanControl(c.env, service, userId);
  const deviceId = c.req.query("device_id") ?? c.req.query("org.matrix.msc3202.device_id");
  if (deviceId !== undefined) {
    const device = await c.env.DB.prepare("SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?").bind(userId, deviceId).first();
    // Synapse answers 400 M_EXCLUSIVE for a device the user does not have (auth/internal.py).
    if (!device) {
      throw new MatrixError(400, "M_EXCLUSIVE", `Application service trying to use a device that doesn't exist ('${deviceId}' for ${userId})`);
    }
  }
  noteServiceContact(c, service.id);
  return { userId, deviceId: deviceId ?? "", isAdmin: false, appserviceId: service.id };
}

/** Services that made a request lately, per isolate: their queue was told at most every CONTACT_MS. */
const lastContact = new Map<string, number>();
const CONTACT_MS = 10_000;

/**
 * A request with a service's as_token shows the service is up: its push queue ends a back-off and sends
 * now (durable-objects/appservice.ts `serviceIsUp`), so a bridge that was restarted gets what it missed at
 * once rather than after the back-off. In the background; at most every CONTACT_MS per service and isolate.
 */
export function noteServiceContact(c: Context<AppEnv>, id: string, now = Date.now()): void {
  const last = lastContact.get(id);
  // `now` 0: always (a successful ping).
  if (now !== 0 && last !== undefined && now - last < CONTACT_MS) return;
  lastContact.set(id, now);
  if (lastContact.size > 1000) lastContact.delete(lastContact.keys().next().value as string);
  const call = c.env.APPSERVICES.get(c.env.APPSERVICES.idFromName(id))
    .serviceIsUp()
    .catch((e: unknown) => console.warn(`appservice ${id}: serviceIsUp failed`, e instanceof Error ? e.message : e));
  try {
    c.executionCtx.waitUntil(call);
  } catch {
    // no execution context (app.request in tests): the call runs on its own
  }
}

/**
 * Synapse `validate_appservice_can_control_user_id`: the sender itself, or a registered user in the
 * service's user namespaces. The sender's account is created on its first use.
 */
export async function checkCanControl(env: Env, service: Appservice, userId: string): Promise<void> {
  if (userId === service.sender) {
    await ensureSender(env, service);
    return;
  }
  if (!service.isInterestedInUser(userId)) throw forbidden(`Application service cannot masquerade as this user (${userId}).`);
  const row = await env.DB.prepare("SELECT deactivated FROM users WHERE user_id = ?").bind(userId).first<{ deactivated: number }>();
  if (!row) throw forbidden(`Application service has not registered this user (${userId})`);
}

/** The sender user's account (no password: it can only be used through the as_token). */
async function ensureSender(env: Env, service: Appservice): Promise<void> {
  const key = `${env.SERVER_NAME}\u0000${service.sender}`;
  if (sendersEnsured.has(key)) return;
  await env.DB.prepare("INSERT INTO users (user_id, password_hash, created_ts, displayname) VALUES (?, NULL, ?, ?) ON CONFLICT (user_id) DO NOTHING")
    .bind(service.sender, Date.now(), service.registration.senderLocalpart)
    .run();
  sendersEnsured.add(key);
}

/** The service a requester acts for, if it authenticated with an as_token. */
export async function requesterAppservice(env: Env, requester: Requester): Promise<Appservice | undefined> {
  return requester.appserviceId === undefined ? undefined : appserviceById(env, requester.appserviceId);
}

/**
 * Timestamp massaging (spec: Application Service API, "Timestamp massaging"): `ts=` on PUT /send and
 * /state sets `origin_server_ts`, for application services only (ignored for ordinary users, as Synapse).
 */
export function massagedTimestamp(c: Context<AppEnv>, requester: Requester): number | undefined {
  if (requester.appserviceId === undefined) return undefined;
  const raw = c.req.query("ts");
  if (raw === undefined) return undefined;
  if (!/^[0-9]{1,16}$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    throw new MatrixError(400, "M_INVALID_PARAM", "Query parameter 'ts' must be an integer");
  }
  return Number(raw);
}
