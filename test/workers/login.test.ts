// GET/POST /login, POST /refresh, POST /logout(/all), GET /account/whoami, access-token handling.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../worker/auth.js";
import { api, login, registerUser, uniqueLocalpart } from "./helpers.js";
import { forgetCachedTokens } from "../../worker/token-cache.js";

const WHOAMI = "/_matrix/client/v3/account/whoami";

describe("GET /login", () => {
  it("offers m.login.password", async () => {
    const res = await api("GET", "/_matrix/client/v3/login");
    expect(res.status).toBe(200);
    expect(res.body.flows).toContainEqual({ type: "m.login.password" });
  });
});

describe("POST /login", () => {
  it("logs in by localpart, full user ID, legacy user field and any letter case", async () => {
    const localpart = uniqueLocalpart("login");
    const user = await registerUser(localpart, "secret-1");
    for (const body of [
      { type: "m.login.password", identifier: { type: "m.id.user", user: localpart }, password: "secret-1" },
      { type: "m.login.password", identifier: { type: "m.id.user", user: user.user_id }, password: "secret-1" },
      { type: "m.login.password", user: localpart, password: "secret-1" },
      { type: "m.login.password", identifier: { type: "m.id.user", user: localpart.toUpperCase() }, password: "secret-1" },
    ]) {
      const res = await api("POST", "/_matrix/client/r0/login", { body });
      expect(res.status).toBe(200);
      expect(res.body.user_id).toBe(user.user_id);
      expect(res.body.home_server).toBe("test.local");
      expect(res.body.device_id).not.toBe(user.device_id);
      const who = await api("GET", WHOAMI, { token: res.body.access_token });
      expect(who.body).toEqual({ user_id: user.user_id, device_id: res.body.device_id, is_guest: false });
    }
  });

  it("refuses a wrong password, an unknown user and another server's user with M_FORBIDDEN", async () => {
    const localpart = uniqueLocalpart("wrongpw");
    await registerUser(localpart, "right");
    const wrong = await login(localpart, "wrong");
    expect(wrong.status).toBe(403);
    expect(wrong.body.errcode).toBe("M_FORBIDDEN");
    expect(wrong.body.access_token).toBeUndefined();
    const unknown = await login(uniqueLocalpart("ghost"), "right");
    expect(unknown.status).toBe(403);
    expect(unknown.body.errcode).toBe("M_FORBIDDEN");
    const remote = await login(`@${localpart}:other.example`, "right");
    expect(remote.status).toBe(403);
    expect(remote.body.errcode).toBe("M_FORBIDDEN");
  });

  it("refuses unknown login and identifier types and malformed bodies", async () => {
    const type = await api("POST", "/_matrix/client/v3/login", { body: { type: "m.login.fancy", user: "x", password: "y" } });
    expect(type.status).toBe(400);
    expect(type.body.errcode).toBe("M_UNKNOWN");
    const identifier = await api("POST", "/_matrix/client/v3/login", {
      body: { type: "m.login.password", identifier: { type: "m.id.thirdparty", medium: "email", address: "a@b.c" }, password: "y" },
    });
    expect(identifier.status).toBe(400);
    expect((await api("POST", "/_matrix/client/v3/login", { body: "" })).body.errcode).toBe("M_NOT_JSON");
    expect((await api("POST", "/_matrix/client/v3/login", { body: "nope" })).body.errcode).toBe("M_NOT_JSON");
    expect((await api("POST", "/_matrix/client/v3/login", { body: "[]" })).body.errcode).toBe("M_BAD_JSON");
  });

  it("reuses a device_id, invalidating the device's previous access token", async () => {
    const localpart = uniqueLocalpart("reuse");
    const user = await registerUser(localpart);
    const first = await login(localpart, `password-${localpart}`, { device_id: "SHARED", initial_device_display_name: "Laptop" });
    expect(first.body.device_id).toBe("SHARED");
    const second = await login(localpart, `password-${localpart}`, { device_id: "SHARED", initial_device_display_name: "Ignored" });
    expect(second.body.device_id).toBe("SHARED");
    const old = await api("GET", WHOAMI, { token: first.body.access_token });
    expect(old.status).toBe(401);
    expect(old.body.errcode).toBe("M_UNKNOWN_TOKEN");
    expect((await api("GET", WHOAMI, { token: second.body.access_token })).status).toBe(200);
    const devices = await api("GET", "/_matrix/client/v3/devices", { token: user.access_token });
    const shared = devices.body.devices.filter((d: { device_id: string }) => d.device_id === "SHARED");
    expect(shared).toEqual([expect.objectContaining({ device_id: "SHARED", display_name: "Laptop" })]);
  });

  it("issues a refresh token and expires_in_ms when asked", async () => {
    const localpart = uniqueLocalpart("lrefresh");
    await registerUser(localpart);
    const res = await login(localpart, `password-${localpart}`, { refresh_token: true });
    expect(res.status).toBe(200);
    expect(typeof res.body.refresh_token).toBe("string");
    expect(res.body.expires_in_ms).toBeGreaterThan(0);
    const plain = await login(localpart, `password-${localpart}`);
    expect(plain.body.refresh_token).toBeUndefined();
    expect(plain.body.expires_in_ms).toBeUndefined();
  });

  it("stores tokens only as hashes", async () => {
    const user = await registerUser(uniqueLocalpart("hashed"), undefined, { refreshToken: true });
    const raw = await env.DB.prepare("SELECT count(*) AS n FROM access_tokens WHERE token_hash = ?").bind(user.access_token).first<{ n: number }>();
    expect(raw!.n).toBe(0);
    const hashed = await env.DB.prepare("SELECT count(*) AS n FROM access_tokens WHERE token_hash = ?").bind(await sha256Hex(user.access_token)).first<{ n: number }>();
    expect(hashed!.n).toBe(1);
    const refresh = await env.DB.prepare("SELECT count(*) AS n FROM refresh_tokens WHERE token_hash = ?").bind(await sha256Hex(user.refresh_token!)).first<{ n: number }>();
    expect(refresh!.n).toBe(1);
    const password = await env.DB.prepare("SELECT password_hash FROM users WHERE user_id = ?").bind(user.user_id).first<{ password_hash: string }>();
    expect(password!.password_hash).toMatch(/^pbkdf2-sha256\$100000\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
  });
});

describe("access tokens", () => {
  it("answers a missing token with M_MISSING_TOKEN and an unknown one with M_UNKNOWN_TOKEN", async () => {
    const missing = await api("GET", WHOAMI);
    expect(missing.status).toBe(401);
    expect(missing.body.errcode).toBe("M_MISSING_TOKEN");
    const unknown = await api("GET", WHOAMI, { token: "mat_not_a_real_token" });
    expect(unknown.status).toBe(401);
    expect(unknown.body).toMatchObject({ errcode: "M_UNKNOWN_TOKEN", soft_logout: false });
    const malformed = await api("GET", WHOAMI, { headers: { Authorization: "Basic abc" } });
    expect(malformed.body.errcode).toBe("M_MISSING_TOKEN");
  });

  it("accepts the deprecated access_token query parameter", async () => {
    const user = await registerUser(uniqueLocalpart("query"));
    const res = await api("GET", `${WHOAMI}?access_token=${encodeURIComponent(user.access_token)}`);
    expect(res.status).toBe(200);
    expect(res.body.user_id).toBe(user.user_id);
  });

  it("answers an expired access token with soft_logout: true", async () => {
    const user = await registerUser(uniqueLocalpart("expired"), undefined, { refreshToken: true });
    expect((await api("GET", WHOAMI, { token: user.access_token })).status).toBe(200);
    await env.DB.prepare("UPDATE access_tokens SET expires_ts = ? WHERE token_hash = ?")
      .bind(Date.now() - 1, await sha256Hex(user.access_token))
      .run();
    forgetCachedTokens(); // a direct D1 edit is otherwise seen within TOKEN_CACHE_TTL_MS (worker/token-cache.ts)
    const res = await api("GET", WHOAMI, { token: user.access_token });
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ errcode: "M_UNKNOWN_TOKEN", soft_logout: true });
    // The refresh token still gets a new access token.
    const refreshed = await api("POST", "/_matrix/client/v3/refresh", { body: { refresh_token: user.refresh_token } });
    expect(refreshed.status).toBe(200);
    expect((await api("GET", WHOAMI, { token: refreshed.body.access_token })).status).toBe(200);
  });
});

describe("POST /refresh", () => {
  const refresh = (token: string) => api("POST", "/_matrix/client/v3/refresh", { body: { refresh_token: token } });

  it("rotates: the old tokens stay valid until the new access token is used", async () => {
    const user = await registerUser(uniqueLocalpart("rotate"), undefined, { refreshToken: true });
    const next = await refresh(user.refresh_token!);
    expect(next.status).toBe(200);
    expect(next.body.access_token).not.toBe(user.access_token);
    expect(next.body.refresh_token).not.toBe(user.refresh_token);
    expect(next.body.expires_in_ms).toBeGreaterThan(0);
    // Not used yet: the old access token still works.
    expect((await api("GET", WHOAMI, { token: user.access_token })).status).toBe(200);
    // First use of the new access token revokes the old refresh token and the old access token.
    const who = await api("GET", WHOAMI, { token: next.body.access_token });
    expect(who.body).toEqual({ user_id: user.user_id, device_id: user.device_id, is_guest: false });
    const old = await refresh(user.refresh_token!);
    expect(old.status).toBe(401);
    expect(old.body).toMatchObject({ errcode: "M_UNKNOWN_TOKEN", soft_logout: true });
    expect((await api("GET", WHOAMI, { token: user.access_token })).status).toBe(401);
    // The new refresh token works, and so on down the chain.
    const third = await refresh(next.body.refresh_token);
    expect(third.status).toBe(200);
    expect((await api("GET", WHOAMI, { token: third.body.access_token })).status).toBe(200);
    expect((await refresh(next.body.refresh_token)).status).toBe(401);
  });

  it("using the new refresh token also revokes the old one", async () => {
    const user = await registerUser(uniqueLocalpart("chain"), undefined, { refreshToken: true });
    const next = await refresh(user.refresh_token!);
    const third = await refresh(next.body.refresh_token);
    expect(third.status).toBe(200);
    expect((await refresh(user.refresh_token!)).status).toBe(401);
  });

  it("lets a client retry with the old refresh token; the unused successor is replaced", async () => {
    const user = await registerUser(uniqueLocalpart("retry"), undefined, { refreshToken: true });
    const lost = await refresh(user.refresh_token!);
    const retry = await refresh(user.refresh_token!);
    expect(retry.status).toBe(200);
    expect((await api("GET", WHOAMI, { token: lost.body.access_token })).status).toBe(401);
    expect((await refresh(lost.body.refresh_token)).status).toBe(401);
    expect((await api("GET", WHOAMI, { token: retry.body.access_token })).status).toBe(200);
  });

  it("refuses unknown refresh tokens with soft_logout and bad bodies with M_BAD_JSON", async () => {
    const res = await refresh("mrt_unknown");
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ errcode: "M_UNKNOWN_TOKEN", soft_logout: true });
    const bad = await api("POST", "/_matrix/client/v3/refresh", { body: { refresh_token: 42 } });
    expect(bad.status).toBe(400);
    expect(bad.body.errcode).toBe("M_BAD_JSON");
  });
});

describe("POST /logout", () => {
  it("invalidates the token and deletes the device", async () => {
    const localpart = uniqueLocalpart("logout");
    const user = await registerUser(localpart);
    const other = await login(localpart, `password-${localpart}`);
    const res = await api("POST", "/_matrix/client/v3/logout", { token: user.access_token });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
    expect((await api("GET", WHOAMI, { token: user.access_token })).body.errcode).toBe("M_UNKNOWN_TOKEN");
    const devices = await api("GET", "/_matrix/client/v3/devices", { token: other.body.access_token });
    expect(devices.body.devices.map((d: { device_id: string }) => d.device_id)).toEqual([other.body.device_id]);
    expect((await api("POST", "/_matrix/client/v3/logout", { token: user.access_token })).status).toBe(401);
  });

  it("/logout/all invalidates every token of the user only", async () => {
    const localpart = uniqueLocalpart("logoutall");
    const user = await registerUser(localpart);
    const other = await login(localpart, `password-${localpart}`, { refresh_token: true });
    const bystander = await registerUser(uniqueLocalpart("bystander"));
    expect((await api("POST", "/_matrix/client/v3/logout/all", { token: user.access_token })).status).toBe(200);
    expect((await api("GET", WHOAMI, { token: user.access_token })).status).toBe(401);
    expect((await api("GET", WHOAMI, { token: other.body.access_token })).status).toBe(401);
    expect((await api("POST", "/_matrix/client/v3/refresh", { body: { refresh_token: other.body.refresh_token } })).status).toBe(401);
    expect((await api("GET", WHOAMI, { token: bystander.access_token })).status).toBe(200);
    // The account itself still works.
    expect((await login(localpart, `password-${localpart}`)).status).toBe(200);
  });

  it("requires a token", async () => {
    expect((await api("POST", "/_matrix/client/v3/logout")).body.errcode).toBe("M_MISSING_TOKEN");
  });
});

describe("password hashes", () => {
  it("upgrades a hash made with fewer iterations at the next login", async () => {
    const localpart = uniqueLocalpart("rehash");
    const user = await registerUser(localpart, "weak-one");
    // The same password hashed with 1000 iterations (what an older version might have stored).
    const salt = crypto.getRandomValues(new Uint8Array(16));
    const key = await crypto.subtle.importKey("raw", new TextEncoder().encode("weak-one"), "PBKDF2", false, ["deriveBits"]);
    const bits = new Uint8Array(await crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt, iterations: 1000 }, key, 256));
    const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b)).replace(/=+$/, "");
    await env.DB.prepare("UPDATE users SET password_hash = ? WHERE user_id = ?").bind(`pbkdf2-sha256$1000$${b64(salt)}$${b64(bits)}`, user.user_id).run();
    expect((await login(localpart, "weak-one")).status).toBe(200);
    const row = await env.DB.prepare("SELECT password_hash FROM users WHERE user_id = ?").bind(user.user_id).first<{ password_hash: string }>();
    expect(row!.password_hash).toMatch(/^pbkdf2-sha256\$100000\$/);
    expect((await login(localpart, "weak-one")).status).toBe(200);
    expect((await login(localpart, "weak-two")).status).toBe(403);
  });
});
