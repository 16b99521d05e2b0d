// Synapse admin API: user accounts (Synapse docs/admin_api/user_admin_api.md). Accounts live in D1
// (`users`, `devices`); a user's rooms are known to their User DO; profile changes and deactivation reach
// the rooms through the same helpers the client API uses.
import { Hono, type Context } from "hono";
import { MatrixError, badJson, forbidden, invalidParam, notFound } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import { createUser, deactivateUser, deleteAllDevices, setPasswordHash } from "../accounts.js";
import { localpartOf, requester, requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { hashPassword } from "../password.js";
import { leaveAllRooms } from "../client/account.js";
import { localProfile, onProfileChanged, MAX_AVATAR_URL_LENGTH, MAX_DISPLAYNAME_LENGTH } from "../client/profile.js";
import { MAX_PASSWORD_LENGTH, userInUse, validateNewLocalpart } from "../client/registration.js";
import { userStore } from "../user-store.js";
import { pushersOf } from "../../durable-objects/user/pushers.js";
import { boolQuery, containsPattern, dirQuery, pageQuery, requireAdmin } from "./auth.js";
import { forgetCachedTokens } from "../token-cache.js";

export const adminUserRoutes = new Hono<AppEnv>();

/** Synapse's built-in user types (`user_types.extra_user_types` adds more there; not configurable here). */
const USER_TYPES = new Set(["bot", "support"]);

interface UserDbRow {
  user_id: string;
  password_hash: string | null;
  created_ts: number;
  deactivated: number;
  admin: number;
  displayname: string | null;
  avatar_url: string | null;
  user_type: string | null;
  erased: number;
  last_seen_ts: number | null;
}

const USER_COLUMNS = `u.user_id, u.password_hash, u.created_ts, u.deactivated, u.admin, u.displayname, u.avatar_url, u.user_type, u.erased,
  (SELECT max(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id) AS last_seen_ts`;

/** The fields the list and the query share (Synapse's user dict). Guests, shadow bans and locks do not
 * exist here: always false. */
function userJson(row: UserDbRow): JsonObject {
  return {
    name: row.user_id,
    displayname: row.displayname,
    avatar_url: row.avatar_url,
    is_guest: false,
    admin: row.admin !== 0,
    deactivated: row.deactivated !== 0,
    erased: row.erased !== 0,
    shadow_banned: false,
    creation_ts: row.created_ts,
    last_seen_ts: row.last_seen_ts,
    user_type: row.user_type,
    locked: false,
    suspended: false,
    approved: true,
  };
}

/** The full answer of GET /v2/users/{userId}. Synapse gives `creation_ts` in seconds there (and in ms in
 * the list); we follow it. */
function userDetailsJson(row: UserDbRow): JsonObject {
  return {
    ...userJson(row),
    creation_ts: Math.floor(row.created_ts / 1000),
    threepids: [],
    external_ids: [],
    appservice_id: null,
    consent_server_notice_sent: null,
    consent_version: null,
    consent_ts: null,
  };
}

async function userRow(env: Env, userId: string): Promise<UserDbRow | null> {
  return env.DB.prepare(`SELECT ${USER_COLUMNS} FROM users u WHERE u.user_id = ?`).bind(userId).first<UserDbRow>();
}

/** The `{userId}` path parameter as a local user ID (400 for another server's user, as Synapse). */
function localUserParam(c: Context<AppEnv>, what = "look up"): string {
  const userId = c.req.param("userId") ?? "";
  if (localpartOf(userId, c.env) === undefined) throw new MatrixError(400, "M_UNKNOWN", `Can only ${what} local users`);
  return userId;
}

async function existingUser(env: Env, userId: string): Promise<UserDbRow> {
  const row = await userRow(env, userId);
  if (!row) throw notFound("User not found");
  return row;
}

const ORDER_COLUMNS: Record<string, string> = {
  name: "u.user_id",
  is_guest: "0",
  admin: "u.admin",
  user_type: "u.user_type",
  deactivated: "u.deactivated",
  shadow_banned: "0",
  displayname: "u.displayname",
  avatar_url: "u.avatar_url",
  creation_ts: "u.created_ts",
  last_seen_ts: "last_seen_ts",
};

/** GET /_synapse/admin/v2/users and v3 (v3: `deactivated` absent lists everyone, true only the deactivated). */
function listUsers(version: 2 | 3) {
  return async (c: Context<AppEnv>) => {
    const q = (name: string) => c.req.query(name);
    const { from, limit } = pageQuery(q("from"), q("limit"));
    const dir = dirQuery(q("dir"));
    const orderBy = q("order_by") ?? "name";
    const column = ORDER_COLUMNS[orderBy];
    if (column === undefined) throw new MatrixError(400, "M_INVALID_PARAM", `Unknown value for order_by: ${orderBy}`);
    const where: string[] = [];
    const params: unknown[] = [];
    const name = q("name");
    const userIdFilter = q("user_id");
    if (name !== undefined && name !== "") {
      // Synapse: localparts or display names containing the value; `user_id` is ignored then.
      where.push("(substr(u.user_id, 2, instr(u.user_id, ':') - 2) LIKE ? ESCAPE '\\' OR u.displayname LIKE ? ESCAPE '\\')");
      params.push(containsPattern(name), containsPattern(name));
    } else if (userIdFilter !== undefined && userIdFilter !== "") {
      where.push("u.user_id LIKE ? ESCAPE '\\'");
      params.push(containsPattern(userIdFilter));
    }
    boolQuery(q("guests"), "guests"); // there are no guest accounts: either value lists the same users
    const deactivated = boolQuery(q("deactivated"), "deactivated");
    if (version === 2) {
      if (deactivated !== true) where.push("u.deactivated = 0");
    } else if (deactivated !== undefined) {
      where.push(`u.deactivated = ${deactivated ? 1 : 0}`);
    }
    const admins = boolQuery(q("admins"), "admins");
    if (admins !== undefined) where.push(`u.admin = ${admins ? 1 : 0}`);
    boolQuery(q("locked"), "locked"); // accounts are never locked
    for (const excluded of c.req.queries("not_user_type") ?? []) {
      if (excluded === "") where.push("u.user_type IS NOT NULL");
      else {
        where.push("(u.user_type IS NULL OR u.user_type != ?)");
        params.push(excluded);
      }
    }
    const whereSql = where.length ? `WHERE ${where.join(" AND ")}` : "";
    const direction = dir === "b" ? "DESC" : "ASC";
    // Ties are broken by ascending user ID, as Synapse does.
    const rows = await c.env.DB.prepare(
      `SELECT ${USER_COLUMNS} FROM users u ${whereSql} ORDER BY ${column} ${direction}, u.user_id ASC LIMIT ? OFFSET ?`,
    )
      .bind(...params, limit, from)
      .all<UserDbRow>();
    const total = await c.env.DB.prepare(`SELECT count(*) AS n FROM users u ${whereSql}`).bind(...params).first<{ n: number }>();
    const body: JsonObject = { users: rows.results.map(userJson), total: total?.n ?? 0 };
    if (from + rows.results.length < (total?.n ?? 0)) body.next_token = String(from + rows.results.length);
    return c.json(body);
  };
}

// GET /_synapse/admin/v2/users
adminUserRoutes.get("/_synapse/admin/v2/users", requireAdmin, listUsers(2));
// GET /_synapse/admin/v3/users
adminUserRoutes.get("/_synapse/admin/v3/users", requireAdmin, listUsers(3));

// GET /_synapse/admin/v2/users/{userId}
adminUserRoutes.get("/_synapse/admin/v2/users/:userId", requireAdmin, async (c) => {
  const userId = localUserParam(c);
  return c.json(userDetailsJson(await existingUser(c.env, userId)));
});

function optionalField<T>(body: JsonObject, key: string, check: (v: unknown) => v is T, what: string): T | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (!check(v)) throw badJson(`'${key}' must be ${what}`);
  return v;
}
const isString = (v: unknown): v is string => typeof v === "string";
const isBoolean = (v: unknown): v is boolean => typeof v === "boolean";
const isStringOrNull = (v: unknown): v is string | null => v === null || typeof v === "string";
const isArray = (v: unknown): v is unknown[] => Array.isArray(v);

// PUT /_synapse/admin/v2/users/{userId}: creates (201) or modifies (200) an account.
adminUserRoutes.put("/_synapse/admin/v2/users/:userId", requireAdmin, async (c) => {
  const env = c.env;
  const userId = localUserParam(c, "create or modify");
  const body = await readJsonObject(c);
  const password = optionalField(body, "password", isString, "a string");
  if (password !== undefined && (password.length > MAX_PASSWORD_LENGTH || password === "")) throw invalidParam("Invalid password");
  const logoutDevices = optionalField(body, "logout_devices", isBoolean, "a boolean") ?? true;
  const displayname = optionalField(body, "displayname", isString, "a string");
  if (displayname !== undefined && [...displayname].length > MAX_DISPLAYNAME_LENGTH) throw invalidParam("displayname is too long");
  const avatarUrl = optionalField(body, "avatar_url", isString, "a string");
  if (avatarUrl !== undefined && avatarUrl !== "" && !avatarUrl.startsWith("mxc://")) throw invalidParam("avatar_url must be an MXC URI");
  if (avatarUrl !== undefined && avatarUrl.length > MAX_AVATAR_URL_LENGTH) throw invalidParam("avatar_url is too long");
  const admin = optionalField(body, "admin", isBoolean, "a boolean");
  const deactivated = optionalField(body, "deactivated", isBoolean, "a boolean");
  const locked = optionalField(body, "locked", isBoolean, "a boolean");
  if (locked === true) throw invalidParam("Locking accounts is not supported by this server");
  const userType = optionalField(body, "user_type", isStringOrNull, "a string or null");
  if (typeof userType === "string" && !USER_TYPES.has(userType)) throw invalidParam("Invalid user type");
  // Third-party IDs and SSO mappings do not exist here; an empty list (what tools send back) is accepted.
  for (const key of ["threepids", "external_ids"]) {
    const list = optionalField(body, key, isArray, "an array");
    if (list !== undefined && list.length > 0) throw invalidParam(`'${key}' are not supported by this server`);
  }

  const existing = await userRow(env, userId);
  if (!existing) {
    const localpart = localpartOf(userId, env)!;
    validateNewLocalpart(localpart, env);
    const created = await createUser(env, userId, password === undefined ? null : await hashPassword(password), {
      admin: admin ?? false,
      displayname: displayname === "" ? undefined : displayname,
    });
    if (!created) throw userInUse();
    const extra: string[] = [];
    const params: unknown[] = [];
    if (displayname === "") extra.push("displayname = NULL");
    if (avatarUrl !== undefined && avatarUrl !== "") (extra.push("avatar_url = ?"), params.push(avatarUrl));
    if (typeof userType === "string") (extra.push("user_type = ?"), params.push(userType));
    if (deactivated === true) extra.push("deactivated = 1");
    if (extra.length) await env.DB.prepare(`UPDATE users SET ${extra.join(", ")} WHERE user_id = ?`).bind(...params, userId).run();
    return c.json(userDetailsJson((await userRow(env, userId))!), 201);
  }

  // Synapse: an admin cannot demote themselves (the server could be left without one).
  if (admin === false && userId === requester(c).userId) throw new MatrixError(400, "M_UNKNOWN", "You may not demote yourself.");
  if (deactivated === false && existing.deactivated !== 0 && password === undefined && existing.password_hash === null) {
    // Synapse: a reactivated account needs a password to log in with.
    throw new MatrixError(400, "M_UNKNOWN", "Must provide a password to re-activate an account.");
  }
  const sets: string[] = [];
  const params: unknown[] = [];
  if (admin !== undefined) (sets.push("admin = ?"), params.push(admin ? 1 : 0));
  if (userType !== undefined) (sets.push("user_type = ?"), params.push(userType));
  if (deactivated === false && existing.deactivated !== 0) sets.push("deactivated = 0, erased = 0");
  const profileChanged = (displayname !== undefined && (displayname || null) !== existing.displayname) || (avatarUrl !== undefined && (avatarUrl || null) !== existing.avatar_url);
  if (displayname !== undefined) (sets.push("displayname = ?"), params.push(displayname === "" ? null : displayname));
  if (avatarUrl !== undefined) (sets.push("avatar_url = ?"), params.push(avatarUrl === "" ? null : avatarUrl));
  if (sets.length) {
    await env.DB.prepare(`UPDATE users SET ${sets.join(", ")} WHERE user_id = ?`).bind(...params, userId).run();
    if (admin !== undefined) forgetCachedTokens(); // the user's tokens grant another role now (worker/token-cache.ts)
  }
  if (password !== undefined) {
    await setPasswordHash(env, userId, await hashPassword(password));
    if (logoutDevices) await deleteAllDevices(env, userId);
  }
  if (deactivated === true && existing.deactivated === 0) {
    await deactivateUser(env, userId, false);
    await leaveAllRooms(env, userId);
  } else if (profileChanged && existing.deactivated === 0) {
    // Spec: "Events on Change of Profile Information": the new profile goes into the user's rooms.
    const profile = await localProfile(env, userId);
    if (profile) await onProfileChanged(env, userId, profile);
  }
  return c.json(userDetailsJson((await userRow(env, userId))!), 200);
});

// POST /_synapse/admin/v1/deactivate/{userId}
adminUserRoutes.post("/_synapse/admin/v1/deactivate/:userId", requireAdmin, async (c) => {
  const userId = localUserParam(c, "deactivate");
  const body = await readJsonObject(c);
  const erase = optionalField(body, "erase", isBoolean, "a boolean") ?? false;
  await existingUser(c.env, userId);
  await deactivateUser(c.env, userId, erase);
  await leaveAllRooms(c.env, userId);
  // No identity-server bindings are kept: nothing to unbind, which Synapse reports as success.
  return c.json({ id_server_unbind_result: "success" });
});

// POST /_synapse/admin/v1/reset_password/{userId}
adminUserRoutes.post("/_synapse/admin/v1/reset_password/:userId", requireAdmin, async (c) => {
  const userId = localUserParam(c, "reset the password of");
  const body = await readJsonObject(c, { allowEmpty: false });
  const password = body.new_password;
  if (typeof password !== "string" || password === "") throw new MatrixError(400, "M_MISSING_PARAM", "Missing or invalid new_password");
  if (password.length > MAX_PASSWORD_LENGTH) throw invalidParam("Password too long");
  const logoutDevices = optionalField(body, "logout_devices", isBoolean, "a boolean") ?? true;
  const user = await existingUser(c.env, userId);
  if (user.deactivated) throw new MatrixError(400, "M_UNKNOWN", "Cannot reset the password of a deactivated user");
  await setPasswordHash(c.env, userId, await hashPassword(password));
  if (logoutDevices) await deleteAllDevices(c.env, userId);
  return c.json({});
});

// GET /_synapse/admin/v1/users/{userId}/admin
adminUserRoutes.get("/_synapse/admin/v1/users/:userId/admin", requireAdmin, async (c) => {
  const userId = localUserParam(c, "get the admin status of");
  return c.json({ admin: (await existingUser(c.env, userId)).admin !== 0 });
});

// PUT /_synapse/admin/v1/users/{userId}/admin
adminUserRoutes.put("/_synapse/admin/v1/users/:userId/admin", requireAdmin, async (c) => {
  const userId = localUserParam(c, "set the admin status of");
  const body = await readJsonObject(c, { allowEmpty: false });
  if (typeof body.admin !== "boolean") throw new MatrixError(400, "M_MISSING_PARAM", "Missing or invalid 'admin'");
  await existingUser(c.env, userId);
  if (!body.admin && userId === requester(c).userId) throw new MatrixError(400, "M_UNKNOWN", "You may not demote yourself.");
  await c.env.DB.prepare("UPDATE users SET admin = ? WHERE user_id = ?").bind(body.admin ? 1 : 0, userId).run();
  forgetCachedTokens(); // worker/token-cache.ts
  return c.json({});
});

// GET /_synapse/admin/v1/users/{userId}/joined_rooms
adminUserRoutes.get("/_synapse/admin/v1/users/:userId/joined_rooms", requireAdmin, async (c) => {
  const userId = localUserParam(c);
  await existingUser(c.env, userId);
  const rooms = await userStore(c.env, userId).joinedRooms();
  return c.json({ joined_rooms: rooms, total: rooms.length });
});

// GET /_synapse/admin/v1/users/{userId}/pushers
adminUserRoutes.get("/_synapse/admin/v1/users/:userId/pushers", requireAdmin, async (c) => {
  const userId = localUserParam(c);
  await existingUser(c.env, userId);
  const pushers = (await pushersOf(c.env.DB, userId)).map((p) => ({
    app_display_name: p.appDisplayName,
    app_id: p.appId,
    data: JSON.parse(p.data) as JsonObject,
    device_display_name: p.deviceDisplayName,
    kind: p.kind,
    lang: p.lang,
    profile_tag: p.profileTag,
    pushkey: p.pushkey,
  }));
  return c.json({ pushers, total: pushers.length });
});

/** Synapse's whois answer: per device, one session with its last connection (no user agents are kept). */
async function whois(env: Env, userId: string): Promise<JsonObject> {
  const rows = await env.DB.prepare("SELECT device_id, last_seen_ts, last_seen_ip FROM devices WHERE user_id = ? ORDER BY device_id")
    .bind(userId)
    .all<{ device_id: string; last_seen_ts: number | null; last_seen_ip: string | null }>();
  const devices: JsonObject = {};
  for (const d of rows.results) {
    const connections = d.last_seen_ts === null ? [] : [{ ip: d.last_seen_ip, last_seen: d.last_seen_ts, user_agent: null }];
    devices[d.device_id] = { sessions: [{ connections }] };
  }
  return { user_id: userId, devices };
}

// GET /_synapse/admin/v1/whois/{userId}
adminUserRoutes.get("/_synapse/admin/v1/whois/:userId", requireAdmin, async (c) => {
  const userId = localUserParam(c);
  await existingUser(c.env, userId);
  return c.json(await whois(c.env, userId));
});

// GET /_matrix/client/v3/admin/whois/{userId} (spec: "Server administration"): for server admins and
// for the user themselves.
adminUserRoutes.get("/_matrix/client/:version{v3|r0}/admin/whois/:userId", requireAuth, async (c) => {
  const userId = localUserParam(c);
  const me = requester(c);
  if (!me.isAdmin && me.userId !== userId) throw forbidden("You are not a server admin");
  await existingUser(c.env, userId);
  return c.json(await whois(c.env, userId));
});
