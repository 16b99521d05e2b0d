// The isolate's memory of access-token look-ups (worker/token-cache.ts) never outlives a revocation made
// through the API: every way of ending a token or changing its user's role is seen by the very next request,
// although the token's row was remembered by the requests before. (Its lifetime edges: test/unit/token-cache.test.ts.)
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../worker/auth.js";
import { forgetCachedTokens } from "../../worker/token-cache.js";
import { ADMIN, adminApi, enc, registerAdmin } from "./admin-helpers.js";
import { api, login, registerUser, uniqueLocalpart } from "./helpers.js";

const WHOAMI = "/_matrix/client/v3/account/whoami";
const whoami = (token: string) => api("GET", WHOAMI, { token });

describe("remembered access tokens", () => {
  it("are remembered: a row deleted behind the server's back still works until the cache is cleared", async () => {
    // This is the trade-off the cache makes (a direct D1 edit is seen within TOKEN_CACHE_TTL_MS); it also
    // shows that the tests below exercise a remembered token, not a fresh D1 look-up.
    const user = await registerUser(uniqueLocalpart("remembered"));
    expect((await whoami(user.access_token)).status).toBe(200);
    await env.DB.prepare("DELETE FROM access_tokens WHERE token_hash = ?").bind(await sha256Hex(user.access_token)).run();
    expect((await whoami(user.access_token)).status).toBe(200);
    forgetCachedTokens();
    expect((await whoami(user.access_token)).body.errcode).toBe("M_UNKNOWN_TOKEN");
  });

  it("end at /logout", async () => {
    const user = await registerUser(uniqueLocalpart("logout"));
    expect((await whoami(user.access_token)).status).toBe(200);
    expect((await api("POST", "/_matrix/client/v3/logout", { token: user.access_token, body: {} })).status).toBe(200);
    const after = await whoami(user.access_token);
    expect(after.status).toBe(401);
    expect(after.body).toMatchObject({ errcode: "M_UNKNOWN_TOKEN", soft_logout: false });
  });

  it("end at /logout/all from another device", async () => {
    const localpart = uniqueLocalpart("logoutall");
    const first = await registerUser(localpart);
    const second = (await login(localpart, `password-${localpart}`)).body.access_token as string;
    expect((await whoami(first.access_token)).status).toBe(200);
    expect((await whoami(second)).status).toBe(200);
    expect((await api("POST", "/_matrix/client/v3/logout/all", { token: second, body: {} })).status).toBe(200);
    expect((await whoami(first.access_token)).status).toBe(401);
    expect((await whoami(second)).status).toBe(401);
  });

  it("end when a login reuses the device ID (the device's old token goes)", async () => {
    const localpart = uniqueLocalpart("relogin");
    const user = await registerUser(localpart);
    expect((await whoami(user.access_token)).status).toBe(200);
    const again = await login(localpart, `password-${localpart}`, { device_id: user.device_id });
    expect(again.status).toBe(200);
    expect((await whoami(user.access_token)).status).toBe(401);
    expect((await whoami(again.body.access_token)).status).toBe(200);
  });

  it("end when the successor of a refreshed token is first used", async () => {
    const user = await registerUser(uniqueLocalpart("refresh"), undefined, { refreshToken: true });
    expect((await whoami(user.access_token)).status).toBe(200);
    const next = await api("POST", "/_matrix/client/v3/refresh", { body: { refresh_token: user.refresh_token } });
    expect(next.status).toBe(200);
    // Until the new token is used, the old one stays valid (spec: "Refreshing access tokens").
    expect((await whoami(user.access_token)).status).toBe(200);
    expect((await whoami(next.body.access_token)).status).toBe(200);
    expect((await whoami(user.access_token)).status).toBe(401);
    expect((await whoami(next.body.access_token)).status).toBe(200);
  });

  it("end when an admin deactivates the user, and follow the admin flag at once", async () => {
    const admin = await registerAdmin();
    const user = await registerUser(uniqueLocalpart("role"));
    const isAdmin = () => api("GET", `${ADMIN}/v1/users/${enc(user.user_id)}/admin`, { token: user.access_token });
    expect((await isAdmin()).status).toBe(403);
    expect((await adminApi(admin, "PUT", `/v1/users/${enc(user.user_id)}/admin`, { admin: true })).status).toBe(200);
    expect((await isAdmin()).status).toBe(200);
    expect((await adminApi(admin, "PUT", `/v2/users/${enc(user.user_id)}`, { admin: false })).status).toBe(200);
    expect((await isAdmin()).status).toBe(403);
    expect((await adminApi(admin, "POST", `/v1/deactivate/${enc(user.user_id)}`, {})).status).toBe(200);
    expect((await whoami(user.access_token)).status).toBe(401);
  });

  it("refuse an expired token at its expiry even while remembered", async () => {
    const user = await registerUser(uniqueLocalpart("expiry"), undefined, { refreshToken: true });
    expect((await whoami(user.access_token)).status).toBe(200);
    // The remembered row carries the expiry; moving the clock past it is enough.
    const expiresIn = user.expires_in_ms!;
    const realNow = Date.now;
    const start = realNow();
    try {
      Date.now = () => start + expiresIn - 1_000;
      expect((await whoami(user.access_token)).status).toBe(200);
      Date.now = () => start + expiresIn + 1;
      const expired = await whoami(user.access_token);
      expect(expired.status).toBe(401);
      expect(expired.body).toMatchObject({ errcode: "M_UNKNOWN_TOKEN", soft_logout: true });
    } finally {
      Date.now = realNow;
    }
  });
});
