// VoIP (spec: Client-Server API, "Voice over IP", GET /_matrix/client/v3/voip/turnServer): the TURN
// server a client uses to relay the media of a 1:1 call behind NAT.
//
// Two ways to get credentials, as Synapse's synapse/rest/client/voip.py:
// - Cloudflare's managed TURN (TURN_CLOUDFLARE_KEY_ID + TURN_CLOUDFLARE_API_TOKEN): one API call per request
//   (`POST .../turn/keys/{key_id}/credentials/generate-ice-servers`) returns short-lived credentials.
//   When that call fails, the answer falls back to the modes below (Synapse does the same).
// - The TURN REST scheme that coturn's `use-auth-secret` accepts (TURN_URIS + TURN_SHARED_SECRET): username
//   `<expiry unix seconds>:<user_id>`, password base64(HMAC-SHA1(secret, username)), padded standard base64
//   because that is what the TURN server computes; or fixed TURN_USERNAME + TURN_PASSWORD.
// Without configuration the answer is `{}` (Synapse's), never 404: clients then call without a relay.
import { Hono } from "hono";
import { encodeBase64 } from "../../protocol/base64.js";
import { requireAuth, requester } from "../auth.js";
import { parseDurationMs } from "../config-duration.js";
import type { AppEnv, Env } from "../env.js";

export const voipRoutes = new Hono<AppEnv>();

/** Synapse's default `turn_user_lifetime` (1 hour). */
const DEFAULT_TURN_USER_LIFETIME_MS = 3_600_000;
/** Cloudflare's published API root for Realtime TURN. */
const DEFAULT_CLOUDFLARE_API_URL = "https://rtc.live.cloudflare.com/v1";
/** How long the Cloudflare call may take before we fall back (a client waits for this answer). */
const CLOUDFLARE_TIMEOUT_MS = 5000;

export interface TurnServerAnswer {
  username: string;
  password: string;
  /** Seconds the credentials stay valid. */
  ttl: number;
  uris: string[];
}

function turnUris(env: Pick<Env, "TURN_URIS">): string[] {
  return (env.TURN_URIS ?? "").split(",").map((u) => u.trim()).filter((u) => u !== "");
}

/** TURN REST credentials for `userId`, valid for `lifetimeMs` from `nowMs` (coturn's `use-auth-secret`). */
export async function sharedSecretCredentials(secret: string, userId: string, nowMs: number, lifetimeMs: number): Promise<{ username: string; password: string }> {
  // Synapse: "%d" % ((now_ms + lifetime_ms) / 1000), i.e. the expiry truncated to whole seconds.
  const username = `${Math.floor((nowMs + lifetimeMs) / 1000)}:${userId}`;
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-1" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(username)));
  // Matrix's base64 is unpadded; coturn compares against padded base64, so pad it.
  const unpadded = encodeBase64(mac);
  return { username, password: unpadded + "=".repeat((4 - (unpadded.length % 4)) % 4) };
}

/**
 * The credentials in Cloudflare's answer as a Matrix answer, or undefined when it holds none usable. Keeps
 * the turn:/turns: URLs that carry a username and credential; drops port 53 (browsers block it, and
 * Cloudflare's documentation says to filter it out). Accepts `iceServers` as one object or a list (the
 * API has answered both shapes).
 */
export function parseCloudflareIceServers(body: unknown, ttl: number): TurnServerAnswer | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const raw = (body as { iceServers?: unknown }).iceServers;
  const servers = Array.isArray(raw) ? raw : raw !== undefined ? [raw] : [];
  let username: string | undefined;
  let password: string | undefined;
  const uris: string[] = [];
  for (const server of servers) {
    if (typeof server !== "object" || server === null) continue;
    const s = server as { urls?: unknown; username?: unknown; credential?: unknown };
    const urls = typeof s.urls === "string" ? [s.urls] : Array.isArray(s.urls) ? s.urls.filter((u): u is string => typeof u === "string") : [];
    const turn = urls.filter((u) => /^turns?:/.test(u) && !/:53$/.test(u.split("?")[0]!));
    if (turn.length === 0 || typeof s.username !== "string" || typeof s.credential !== "string") continue;
    if (username === undefined) {
      username = s.username;
      password = s.credential;
    } else if (username !== s.username || password !== s.credential) {
      // A Matrix answer holds one username and password; Synapse refuses such an answer too.
      return undefined;
    }
    for (const u of turn) if (!uris.includes(u)) uris.push(u);
  }
  if (username === undefined || password === undefined || uris.length === 0) return undefined;
  return { username, password, ttl, uris };
}

async function cloudflareCredentials(env: Env, ttl: number): Promise<TurnServerAnswer | undefined> {
  const keyId = env.TURN_CLOUDFLARE_KEY_ID;
  const token = env.TURN_CLOUDFLARE_API_TOKEN;
  if (!keyId || !token) return undefined;
  const base = (env.TURN_CLOUDFLARE_API_URL || DEFAULT_CLOUDFLARE_API_URL).replace(/\/+$/, "");
  const url = `${base}/turn/keys/${encodeURIComponent(keyId)}/credentials/generate-ice-servers`;
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ ttl }),
      signal: AbortSignal.timeout(CLOUDFLARE_TIMEOUT_MS),
    });
    if (!res.ok) {
      console.warn(`Cloudflare TURN credentials: HTTP ${res.status}; falling back`);
      await res.body?.cancel();
      return undefined;
    }
    const answer = parseCloudflareIceServers(await res.json(), ttl);
    if (!answer) console.warn("Cloudflare TURN credentials: no usable TURN server in the answer; falling back");
    return answer;
  } catch (e) {
    console.warn(`Cloudflare TURN credentials: ${e instanceof Error ? e.message : String(e)}; falling back`);
    return undefined;
  }
}

// GET /_matrix/client/v3/voip/turnServer
voipRoutes.get("/_matrix/client/:version{v3|r0}/voip/turnServer", requireAuth, async (c) => {
  // Synapse refuses guests unless `turn_allow_guests`; this server issues no guest accounts
  // (POST /register with kind=guest is 403), so every requester is a full user.
  const { userId } = requester(c);
  const lifetimeMs = parseDurationMs(c.env.TURN_USER_LIFETIME, DEFAULT_TURN_USER_LIFETIME_MS, "TURN_USER_LIFETIME");
  const ttl = Math.max(1, Math.floor(lifetimeMs / 1000));

  const cloudflare = await cloudflareCredentials(c.env, ttl);
  if (cloudflare) return c.json(cloudflare);

  const uris = turnUris(c.env);
  if (uris.length > 0 && c.env.TURN_SHARED_SECRET) {
    const { username, password } = await sharedSecretCredentials(c.env.TURN_SHARED_SECRET, userId, Date.now(), lifetimeMs);
    return c.json({ username, password, ttl, uris });
  }
  if (uris.length > 0 && c.env.TURN_USERNAME && c.env.TURN_PASSWORD) {
    return c.json({ username: c.env.TURN_USERNAME, password: c.env.TURN_PASSWORD, ttl, uris });
  }
  return c.json({});
});
