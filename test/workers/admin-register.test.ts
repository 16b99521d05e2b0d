// Synapse-compatible shared-secret registration: GET/POST /_synapse/admin/v1/register.
// The test configuration sets REGISTRATION_SHARED_SECRET = "test-shared-secret".
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../worker/index.js";
import { api, login, uniqueLocalpart } from "./helpers.js";

const PATH = "/_synapse/admin/v1/register";
const SECRET = "test-shared-secret";

/** HMAC-SHA1 over nonce\0user\0password\0admin|notadmin, hex, computed here independently of the server. */
async function mac(secret: string, parts: string[]): Promise<string> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-1" }, false, ["sign"]);
  const sig = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(parts.join("\0"))));
  return Array.from(sig, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function nonce(): Promise<string> {
  const res = await api("GET", PATH);
  expect(res.status).toBe(200);
  expect(typeof res.body.nonce).toBe("string");
  return res.body.nonce;
}

describe("shared-secret registration", () => {
  it("registers a user with the right HMAC", async () => {
    const n = await nonce();
    const username = uniqueLocalpart("shared");
    const res = await api("POST", PATH, {
      body: { nonce: n, username, password: "pw-shared", admin: false, mac: await mac(SECRET, [n, username, "pw-shared", "notadmin"]) },
    });
    expect(res.status).toBe(200);
    expect(res.body.user_id).toBe(`@${username}:test.local`);
    expect(res.body.home_server).toBe("test.local");
    const who = await api("GET", "/_matrix/client/v3/account/whoami", { token: res.body.access_token });
    expect(who.body).toMatchObject({ user_id: res.body.user_id, device_id: res.body.device_id });
    expect((await login(username, "pw-shared")).status).toBe(200);
    const row = await env.DB.prepare("SELECT admin FROM users WHERE user_id = ?").bind(res.body.user_id).first();
    expect(row).toEqual({ admin: 0 });
  });

  it("sets the admin flag when asked (with the admin MAC)", async () => {
    const n = await nonce();
    const username = uniqueLocalpart("boss");
    const res = await api("POST", PATH, {
      body: { nonce: n, username, password: "pw", admin: true, displayname: "The Boss", mac: await mac(SECRET, [n, username, "pw", "admin"]) },
    });
    expect(res.status).toBe(200);
    const row = await env.DB.prepare("SELECT admin, displayname FROM users WHERE user_id = ?").bind(res.body.user_id).first();
    expect(row).toEqual({ admin: 1, displayname: "The Boss" });
  });

  it("refuses a wrong HMAC, a MAC for the other admin flag, and a wrong secret", async () => {
    for (const [admin, macOf] of [
      [false, (n: string, u: string) => mac(SECRET, [n, u, "pw", "admin"])],
      [false, (n: string, u: string) => mac("not-the-secret", [n, u, "pw", "notadmin"])],
      [true, (n: string, u: string) => mac(SECRET, [n, u, "pw", "notadmin"])],
      [false, async () => "00"],
      [false, async () => "not hex"],
    ] as const) {
      const n = await nonce();
      const username = uniqueLocalpart("evil");
      const res = await api("POST", PATH, { body: { nonce: n, username, password: "pw", admin, mac: await macOf(n, username) } });
      expect(res.status).toBe(403);
      expect(res.body.errcode).toBe("M_FORBIDDEN");
      expect((await login(username, "pw")).status).toBe(403);
    }
  });

  it("accepts a nonce once, and refuses unknown nonces", async () => {
    const n = await nonce();
    const username = uniqueLocalpart("once");
    const body = { nonce: n, username, password: "pw", admin: false, mac: await mac(SECRET, [n, username, "pw", "notadmin"]) };
    expect((await api("POST", PATH, { body })).status).toBe(200);
    const replay = await api("POST", PATH, { body: { ...body, username: username + "x", mac: await mac(SECRET, [n, username + "x", "pw", "notadmin"]) } });
    expect(replay.status).toBe(400);
    const unknown = await api("POST", PATH, { body: { ...body, nonce: "deadbeef" } });
    expect(unknown.status).toBe(400);
  });

  it("applies the username rules and refuses a taken user ID", async () => {
    let n = await nonce();
    const res = await api("POST", PATH, { body: { nonce: n, username: "bad name", password: "pw", admin: false, mac: await mac(SECRET, [n, "bad name", "pw", "notadmin"]) } });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_INVALID_USERNAME");
    const username = uniqueLocalpart("dup");
    n = await nonce();
    await api("POST", PATH, { body: { nonce: n, username, password: "pw", admin: false, mac: await mac(SECRET, [n, username, "pw", "notadmin"]) } });
    n = await nonce();
    const dup = await api("POST", PATH, { body: { nonce: n, username, password: "pw", admin: false, mac: await mac(SECRET, [n, username, "pw", "notadmin"]) } });
    expect(dup.status).toBe(400);
    expect(dup.body.errcode).toBe("M_USER_IN_USE");
  });

  it("answers 400 when no shared secret is configured", async () => {
    const app = buildApp();
    const noSecret = { ...env, REGISTRATION_SHARED_SECRET: undefined };
    expect((await app.request(PATH, {}, noSecret)).status).toBe(400);
    const post = await app.request(PATH, { method: "POST", body: JSON.stringify({ nonce: "x", username: "y", password: "z", mac: "00" }) }, noSecret);
    expect(post.status).toBe(400);
    expect((await app.request(PATH, {}, env)).status).toBe(200);
  });
});
