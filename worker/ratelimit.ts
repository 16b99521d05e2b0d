// Rate limiting of login, registration and media ID creation (spec: Client-Server API, "Rate limiting": 429 M_LIMIT_EXCEEDED
// with `retry_after_ms`). Leaky buckets kept in D1 so that every isolate sees the same counts: each action
// adds 1 to a bucket that drains at `perSecond`; an action that would lift it above `burst` is refused.
//
// Limits (Synapse's defaults; configurable as "<per_second>,<burst>" or "off" through wrangler vars):
//   RC_LOGIN_ADDRESS                  0.003,5   login requests per client address
//   RC_LOGIN_ACCOUNT                  0.003,5   login requests per account
//   RC_LOGIN_FAILED_ATTEMPTS          0.17,3    wrong passwords per account (login and UIA)
//   RC_REGISTRATION                   0.17,3    successful registrations per client address
//   RC_REGISTRATION_TOKEN_VALIDITY    0.1,5     registration-token validity checks per client address
//   RC_MEDIA_CREATE                   10,50     POST /_matrix/media/v1/create per user
// The client address is `CF-Connecting-IP`. Requests without one (the test pool) and from loopback
// addresses (`wrangler dev` on this machine) are not limited per address; per-account limits still apply.
import { limitExceeded } from "../protocol/errors.js";
import type { Env } from "./env.js";

export interface RateLimit {
  perSecond: number;
  burst: number;
}

export const RATE_LIMIT_DEFAULTS = {
  RC_LOGIN_ADDRESS: { perSecond: 0.003, burst: 5 },
  RC_LOGIN_ACCOUNT: { perSecond: 0.003, burst: 5 },
  RC_LOGIN_FAILED_ATTEMPTS: { perSecond: 0.17, burst: 3 },
  RC_REGISTRATION: { perSecond: 0.17, burst: 3 },
  RC_REGISTRATION_TOKEN_VALIDITY: { perSecond: 0.1, burst: 5 },
  RC_MEDIA_CREATE: { perSecond: 10, burst: 50 },
} satisfies Record<string, RateLimit>;

export type RateLimitName = keyof typeof RATE_LIMIT_DEFAULTS;

/** The configured limit, or null when it is switched off. A malformed setting falls back to the default. */
export function rateLimitConfig(env: Env, name: RateLimitName): RateLimit | null {
  const raw = env[name];
  if (typeof raw !== "string" || raw.trim() === "") return RATE_LIMIT_DEFAULTS[name];
  if (raw.trim().toLowerCase() === "off") return null;
  const [rate, burst] = raw.split(",").map((s) => Number(s.trim()));
  if (rate === undefined || burst === undefined || !(rate > 0) || !(burst >= 1)) {
    console.warn(`ignoring malformed ${name}; using the default`);
    return RATE_LIMIT_DEFAULTS[name];
  }
  return { perSecond: rate, burst };
}

/** True for addresses that are not limited per address (absent, loopback). */
function exemptAddress(ip: string | undefined): ip is undefined {
  return ip === undefined || ip === "::1" || ip.startsWith("127.");
}

interface Options {
  /** Count this action (default). With false the bucket is only checked: "would one more be allowed?" */
  update?: boolean;
}

/**
 * Counts one action against `key` under limit `name` and throws M_LIMIT_EXCEEDED (429, retry_after_ms)
 * when it is over the limit. The check and the increment are one SQL statement, so concurrent requests
 * cannot both slip under the limit.
 */
export async function rateLimit(env: Env, name: RateLimitName, key: string, { update = true }: Options = {}): Promise<void> {
  const limit = rateLimitConfig(env, name);
  if (!limit) return;
  const bucket = `${name}:${key}`;
  const now = Date.now();
  // drained = max(0, level - elapsed * rate)
  const drained = "max(0, level - (? - updated_ts) / 1000.0 * ?)";
  if (update) {
    const row = await env.DB.prepare(
      `INSERT INTO rate_limits (key, level, updated_ts) VALUES (?, 1, ?)
         ON CONFLICT (key) DO UPDATE SET level = ${drained} + 1, updated_ts = ?
         WHERE ${drained} + 1 <= ?
       RETURNING level`,
    )
      .bind(bucket, now, now, limit.perSecond, now, now, limit.perSecond, limit.burst)
      .first();
    if (row) return; // inserted or updated: allowed
  }
  const current = await env.DB.prepare(`SELECT ${drained} AS level FROM rate_limits WHERE key = ?`)
    .bind(now, limit.perSecond, bucket)
    .first<{ level: number }>();
  const level = current?.level ?? 0;
  if (level + 1 <= limit.burst) return; // allowed (or it drained between the two statements)
  const retryAfterMs = Math.ceil(((level + 1 - limit.burst) / limit.perSecond) * 1000);
  throw limitExceeded(Math.max(retryAfterMs, 1));
}

/** Per-address variant: does nothing for requests without a (non-loopback) client address. */
export async function rateLimitAddress(env: Env, name: RateLimitName, ip: string | undefined, options?: Options): Promise<void> {
  if (exemptAddress(ip)) return;
  await rateLimit(env, name, `ip:${ip}`, options);
}

/** Counts an action without refusing it (e.g. a failed password attempt that is already answered). */
export async function recordAction(env: Env, name: RateLimitName, key: string): Promise<void> {
  const limit = rateLimitConfig(env, name);
  if (!limit) return;
  const now = Date.now();
  await env.DB.prepare(
    `INSERT INTO rate_limits (key, level, updated_ts) VALUES (?, 1, ?)
       ON CONFLICT (key) DO UPDATE SET level = max(0, level - (? - updated_ts) / 1000.0 * ?) + 1, updated_ts = ?`,
  )
    .bind(`${name}:${key}`, now, now, limit.perSecond, now)
    .run();
}

export async function recordAddressAction(env: Env, name: RateLimitName, ip: string | undefined): Promise<void> {
  if (exemptAddress(ip)) return;
  await recordAction(env, name, `ip:${ip}`);
}
