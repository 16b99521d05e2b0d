// GET /_matrix/client/v3/voip/turnServer (worker/client/voip.ts): TURN credentials in the TURN REST
// scheme, checked against HMAC-SHA1 computed independently (RFC 2104 over a SHA-1 digest, and a vector
// computed with Python's hmac module).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../worker/index.js";
import { parseCloudflareIceServers, sharedSecretCredentials } from "../../worker/client/voip.js";
import { newUser } from "./room-helpers.js";

/** RFC 2104 by its definition, SHA(K^opad || SHA(K^ipad || m)), as padded standard base64 (btoa). */
async function hmacSha1Base64(secret: string, message: string): Promise<string> {
  const key = new Uint8Array(64);
  key.set(new TextEncoder().encode(secret)); // secrets here are shorter than SHA-1's 64-byte block
  const sha1 = async (...parts: Uint8Array[]) => {
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) (all.set(p, at), (at += p.length));
    return new Uint8Array(await crypto.subtle.digest("SHA-1", all));
  };
  const inner = await sha1(key.map((b) => b ^ 0x36), new TextEncoder().encode(message));
  const outer = await sha1(key.map((b) => b ^ 0x5c), inner);
  return btoa(String.fromCharCode(...outer));
}

const PATH = "/_matrix/client/v3/voip/turnServer";
const app = buildApp();

async function turnServer(token: string | undefined, vars: Record<string, string | undefined>) {
  const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  const res = await app.request(PATH, { headers }, { ...env, ...vars });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const SHARED = { TURN_URIS: "turn:turn.example.org:3478?transport=udp, turns:turn.example.org:5349", TURN_SHARED_SECRET: "north-wind" };

describe("GET /voip/turnServer", () => {
  it("answers an empty object without configuration, and 401 without a token", async () => {
    const alice = await newUser("turn");
    expect(await turnServer(alice.access_token, {})).toEqual({ status: 200, body: {} });
    // URIs without a secret or fixed credentials are not enough (Synapse answers {} too).
    expect(await turnServer(alice.access_token, { TURN_URIS: "turn:x.example:3478" })).toEqual({ status: 200, body: {} });
    const anon = await turnServer(undefined, SHARED);
    expect(anon.status).toBe(401);
    expect(anon.body.errcode).toBe("M_MISSING_TOKEN");
  });

  it("issues <expiry>:<user_id> with base64(HMAC-SHA1(secret, username)) for one hour by default", async () => {
    const alice = await newUser("turn");
    const before = Math.floor(Date.now() / 1000);
    const res = await turnServer(alice.access_token, SHARED);
    const after = Math.floor(Date.now() / 1000);
    expect(res.status).toBe(200);
    expect(res.body.uris).toEqual(["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"]);
    expect(res.body.ttl).toBe(3600);
    const username = res.body.username as string;
    const [expiry, ...rest] = username.split(":");
    expect(rest.join(":")).toBe(alice.user_id);
    expect(Number(expiry)).toBeGreaterThanOrEqual(before + 3600);
    expect(Number(expiry)).toBeLessThanOrEqual(after + 3600);
    expect(res.body.password).toBe(await hmacSha1Base64("north-wind", username));
  });

  it("matches a vector computed with Python's hmac (padded standard base64)", async () => {
    expect(await hmacSha1Base64("north-wind", "1700003600:@alice:test.local")).toBe("aFR4F5fvp+cg/w6CiFwvJWH66ps=");
    const creds = await sharedSecretCredentials("north-wind", "@alice:test.local", 1_700_000_000_999, 3_600_000);
    expect(creds).toEqual({ username: "1700003600:@alice:test.local", password: "aFR4F5fvp+cg/w6CiFwvJWH66ps=" });
  });

  it("takes TURN_USER_LIFETIME in ms or with a unit, and ignores a malformed one", async () => {
    const alice = await newUser("turn");
    expect((await turnServer(alice.access_token, { ...SHARED, TURN_USER_LIFETIME: "90s" })).body.ttl).toBe(90);
    expect((await turnServer(alice.access_token, { ...SHARED, TURN_USER_LIFETIME: "86400000" })).body.ttl).toBe(86400);
    expect((await turnServer(alice.access_token, { ...SHARED, TURN_USER_LIFETIME: "2d" })).body.ttl).toBe(172800);
    expect((await turnServer(alice.access_token, { ...SHARED, TURN_USER_LIFETIME: "soon" })).body.ttl).toBe(3600);
    expect((await turnServer(alice.access_token, { ...SHARED, TURN_USER_LIFETIME: "0" })).body.ttl).toBe(3600);
  });

  it("hands out fixed credentials when there is no shared secret", async () => {
    const alice = await newUser("turn");
    const res = await turnServer(alice.access_token, { TURN_URIS: "turn:a.example:3478", TURN_USERNAME: "u", TURN_PASSWORD: "p" });
    expect(res.body).toEqual({ username: "u", password: "p", ttl: 3600, uris: ["turn:a.example:3478"] });
  });

  it("falls back to the shared secret when Cloudflare's API cannot be reached", async () => {
    const alice = await newUser("turn");
    const res = await turnServer(alice.access_token, {
      ...SHARED,
      TURN_CLOUDFLARE_KEY_ID: "key",
      TURN_CLOUDFLARE_API_TOKEN: "token",
      TURN_CLOUDFLARE_API_URL: "http://127.0.0.1:1/v1",
    });
    expect(res.status).toBe(200);
    expect(res.body.password).toBe(await hmacSha1Base64("north-wind", res.body.username as string));
  });
});

describe("Cloudflare's generate-ice-servers answer", () => {
  const turn = {
    urls: ["turn:turn.cloudflare.com:3478?transport=udp", "turn:turn.cloudflare.com:53?transport=udp", "turns:turn.cloudflare.com:443?transport=tcp"],
    username: "cfuser",
    credential: "cfpass",
  };

  it("keeps the TURN URLs with credentials and drops STUN and port 53", () => {
    const body = { iceServers: [{ urls: ["stun:stun.cloudflare.com:3478", "stun:stun.cloudflare.com:53"] }, turn] };
    expect(parseCloudflareIceServers(body, 600)).toEqual({
      username: "cfuser",
      password: "cfpass",
      ttl: 600,
      uris: ["turn:turn.cloudflare.com:3478?transport=udp", "turns:turn.cloudflare.com:443?transport=tcp"],
    });
    // The older answer: one object instead of a list.
    expect(parseCloudflareIceServers({ iceServers: turn }, 60)?.username).toBe("cfuser");
  });

  it("refuses answers without usable credentials or with two different ones", () => {
    expect(parseCloudflareIceServers(null, 60)).toBeUndefined();
    expect(parseCloudflareIceServers({ iceServers: [{ urls: "stun:stun.cloudflare.com:3478" }] }, 60)).toBeUndefined();
    expect(parseCloudflareIceServers({ iceServers: [{ urls: "turn:a:3478", username: "u" }] }, 60)).toBeUndefined();
    expect(parseCloudflareIceServers({ iceServers: [turn, { ...turn, credential: "other" }] }, 60)).toBeUndefined();
  });
});
