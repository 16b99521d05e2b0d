// Synapse admin API: registration tokens (Synapse docs/usage/administration/admin_api/registration_tokens.md).
// Tokens live in D1 `registration_tokens`; POST /register asks for one (m.login.registration_token) as
// soon as any exists, and counts its uses (worker/uia.ts).
import { Hono, type Context } from "hono";
import { invalidParam, notFound } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { boolQuery, requireAdmin } from "./auth.js";

export const adminRegistrationTokenRoutes = new Hono<AppEnv>();

const BASE = "/_synapse/admin/v1/registration_tokens";
/** Synapse's token grammar and bounds. */
const TOKEN_PATTERN = /^[A-Za-z0-9._~-]{1,64}$/;
const TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-";
const DEFAULT_LENGTH = 16;

interface TokenRow {
  token: string;
  uses_allowed: number | null;
  pending: number;
  completed: number;
  expiry_time: number | null;
}

function tokenJson(row: TokenRow): JsonObject {
  return { token: row.token, uses_allowed: row.uses_allowed, pending: row.pending, completed: row.completed, expiry_time: row.expiry_time };
}

async function tokenRow(env: Env, token: string): Promise<TokenRow | null> {
  return env.DB.prepare("SELECT token, uses_allowed, pending, completed, expiry_time FROM registration_tokens WHERE token = ?").bind(token).first<TokenRow>();
}

function tokenParam(c: Context<AppEnv>): string {
  return c.req.param("token") ?? "";
}

/** `uses_allowed`: a non-negative integer or null (no limit); undefined when absent. */
function usesAllowedOf(body: JsonObject): number | null | undefined {
  const v = body.uses_allowed;
  if (v === undefined || v === null) return v;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw invalidParam("uses_allowed must be a non-negative integer or null");
  return v;
}

/** `expiry_time`: ms since the epoch, not in the past, or null (never); undefined when absent. */
function expiryTimeOf(body: JsonObject): number | null | undefined {
  const v = body.expiry_time;
  if (v === undefined || v === null) return v;
  if (typeof v !== "number" || !Number.isSafeInteger(v)) throw invalidParam("expiry_time must be an integer or null");
  if (v < Date.now()) throw invalidParam("expiry_time must not be in the past");
  return v;
}

function randomToken(length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let out = "";
  // 256 = 3·66 + 58: a slight bias towards the first 58 characters, harmless for an invitation code.
  for (const b of bytes) out += TOKEN_CHARS[b % TOKEN_CHARS.length];
  return out;
}

// GET /_synapse/admin/v1/registration_tokens
adminRegistrationTokenRoutes.get(BASE, requireAdmin, async (c) => {
  const valid = boolQuery(c.req.query("valid"), "valid");
  const validSql = "(expiry_time IS NULL OR expiry_time > ?) AND (uses_allowed IS NULL OR pending + completed < uses_allowed)";
  const where = valid === undefined ? "" : valid ? `WHERE ${validSql}` : `WHERE NOT (${validSql})`;
  const stmt = c.env.DB.prepare(`SELECT token, uses_allowed, pending, completed, expiry_time FROM registration_tokens ${where} ORDER BY token`);
  const rows = await (valid === undefined ? stmt : stmt.bind(Date.now())).all<TokenRow>();
  return c.json({ registration_tokens: rows.results.map(tokenJson) });
});

// POST /_synapse/admin/v1/registration_tokens/new
adminRegistrationTokenRoutes.post(`${BASE}/new`, requireAdmin, async (c) => {
  const body = await readJsonObject(c);
  const usesAllowed = usesAllowedOf(body) ?? null;
  const expiryTime = expiryTimeOf(body) ?? null;
  let token: string;
  if (body.token !== undefined) {
    if (typeof body.token !== "string" || !TOKEN_PATTERN.test(body.token)) {
      throw invalidParam("token must consist only of characters matched by the regex [A-Za-z0-9._~-] and be at most 64 characters");
    }
    if (body.length !== undefined) throw invalidParam("length must not be given together with token");
    token = body.token;
  } else {
    const length = body.length ?? DEFAULT_LENGTH;
    if (typeof length !== "number" || !Number.isInteger(length) || length < 1 || length > 64) throw invalidParam("length must be an integer between 1 and 64");
    token = randomToken(length);
  }
  const inserted = await c.env.DB.prepare(
    "INSERT INTO registration_tokens (token, uses_allowed, pending, completed, expiry_time) VALUES (?, ?, 0, 0, ?) ON CONFLICT (token) DO NOTHING",
  )
    .bind(token, usesAllowed, expiryTime)
    .run();
  if (!inserted.meta.changes) throw invalidParam(`Token already exists: ${token}`);
  return c.json(tokenJson({ token, uses_allowed: usesAllowed, pending: 0, completed: 0, expiry_time: expiryTime }));
});

// GET /_synapse/admin/v1/registration_tokens/{token}
adminRegistrationTokenRoutes.get(`${BASE}/:token`, requireAdmin, async (c) => {
  const token = tokenParam(c);
  const row = await tokenRow(c.env, token);
  if (!row) throw notFound(`No such registration token: ${token}`);
  return c.json(tokenJson(row));
});

// PUT /_synapse/admin/v1/registration_tokens/{token}
adminRegistrationTokenRoutes.put(`${BASE}/:token`, requireAdmin, async (c) => {
  const token = tokenParam(c);
  const body = await readJsonObject(c);
  const usesAllowed = usesAllowedOf(body);
  const expiryTime = expiryTimeOf(body);
  const sets: string[] = [];
  const params: unknown[] = [];
  if (usesAllowed !== undefined || "uses_allowed" in body) (sets.push("uses_allowed = ?"), params.push(usesAllowed ?? null));
  if (expiryTime !== undefined || "expiry_time" in body) (sets.push("expiry_time = ?"), params.push(expiryTime ?? null));
  if (sets.length) await c.env.DB.prepare(`UPDATE registration_tokens SET ${sets.join(", ")} WHERE token = ?`).bind(...params, token).run();
  const row = await tokenRow(c.env, token);
  if (!row) throw notFound(`No such registration token: ${token}`);
  return c.json(tokenJson(row));
});

// DELETE /_synapse/admin/v1/registration_tokens/{token}
adminRegistrationTokenRoutes.delete(`${BASE}/:token`, requireAdmin, async (c) => {
  const token = tokenParam(c);
  const deleted = await c.env.DB.prepare("DELETE FROM registration_tokens WHERE token = ?").bind(token).run();
  if (!deleted.meta.changes) throw notFound(`No such registration token: ${token}`);
  return c.json({});
});
