// POST /account/password and POST /account/deactivate (both behind UIA with m.login.password).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, login, registerUser, uniqueLocalpart } from "./helpers.js";

const WHOAMI = "/_matrix/client/v3/account/whoami";
const passwordAuth = (user: string, password: string, session?: string) => ({
  type: "m.login.password",
  identifier: { type: "m.id.user", user },
  password,
  ...(session ? { session } : {}),
});

describe("POST /account/password", () => {
  it("requires UIA with m.login.password, refuses a wrong password, then changes it and logs out other devices", async () => {
    const localpart = uniqueLocalpart("pw");
    const user = await registerUser(localpart, "old-password");
    const other = await login(localpart, "old-password");

    const first = await api("POST", "/_matrix/client/v3/account/password", { token: user.access_token, body: { new_password: "new-password" } });
    expect(first.status).toBe(401);
    expect(first.body.flows).toEqual([{ stages: ["m.login.password"] }]);
    expect(first.body.errcode).toBeUndefined();
    const session = first.body.session;

    const wrong = await api("POST", "/_matrix/client/v3/account/password", {
      token: user.access_token,
      body: { new_password: "new-password", auth: passwordAuth(localpart, "not-it", session) },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.body).toMatchObject({ errcode: "M_FORBIDDEN", session });
    expect((await login(localpart, "new-password")).status).toBe(403);

    const ok = await api("POST", "/_matrix/client/v3/account/password", {
      token: user.access_token,
      body: { new_password: "new-password", auth: passwordAuth(user.user_id, "old-password", session) },
    });
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({});
    // logout_devices defaults to true: other devices go, this one stays.
    expect((await api("GET", WHOAMI, { token: other.body.access_token })).status).toBe(401);
    expect((await api("GET", WHOAMI, { token: user.access_token })).status).toBe(200);
    // (Three failures in a row would trip the failed-attempts rate limit, so succeed first.)
    expect((await login(localpart, "new-password")).status).toBe(200);
    expect((await login(localpart, "old-password")).status).toBe(403);
  });

  it("keeps other devices with logout_devices: false", async () => {
    const localpart = uniqueLocalpart("keep");
    const user = await registerUser(localpart, "pw-1");
    const other = await login(localpart, "pw-1");
    const res = await api("POST", "/_matrix/client/v3/account/password", {
      token: user.access_token,
      body: { new_password: "pw-2", logout_devices: false, auth: passwordAuth(localpart, "pw-1") },
    });
    expect(res.status).toBe(200);
    expect((await api("GET", WHOAMI, { token: other.body.access_token })).status).toBe(200);
  });

  it("refuses to authenticate as another user, and a missing new_password", async () => {
    const a = uniqueLocalpart("a");
    const b = uniqueLocalpart("b");
    const userA = await registerUser(a);
    await registerUser(b);
    const res = await api("POST", "/_matrix/client/v3/account/password", {
      token: userA.access_token,
      body: { new_password: "x", auth: passwordAuth(b, `password-${b}`) },
    });
    expect(res.status).toBe(403);
    expect(res.body.errcode).toBe("M_FORBIDDEN");
    const missing = await api("POST", "/_matrix/client/v3/account/password", { token: userA.access_token, body: {} });
    expect(missing.status).toBe(400);
    expect(missing.body.errcode).toBe("M_MISSING_PARAM");
    expect((await api("POST", "/_matrix/client/v3/account/password", { body: { new_password: "x" } })).body.errcode).toBe("M_MISSING_TOKEN");
  });

  it("does not let a UIA session of one user be completed by another", async () => {
    const a = uniqueLocalpart("sa");
    const b = uniqueLocalpart("sb");
    const userA = await registerUser(a);
    const userB = await registerUser(b);
    const first = await api("POST", "/_matrix/client/v3/account/password", { token: userA.access_token, body: { new_password: "x" } });
    const res = await api("POST", "/_matrix/client/v3/account/password", {
      token: userB.access_token,
      body: { new_password: "x", auth: passwordAuth(b, `password-${b}`, first.body.session) },
    });
    expect(res.status).toBe(403);
  });
});

describe("POST /account/deactivate", () => {
  it("requires UIA, then removes every token and device and blocks login and re-registration", async () => {
    const localpart = uniqueLocalpart("deact");
    const user = await registerUser(localpart);
    const other = await login(localpart, `password-${localpart}`, { refresh_token: true });

    const first = await api("POST", "/_matrix/client/v3/account/deactivate", { token: user.access_token, body: {} });
    expect(first.status).toBe(401);
    expect(first.body.flows).toEqual([{ stages: ["m.login.password"] }]);
    const wrong = await api("POST", "/_matrix/client/v3/account/deactivate", {
      token: user.access_token,
      body: { auth: passwordAuth(localpart, "nope", first.body.session) },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.body.errcode).toBe("M_FORBIDDEN");
    expect((await api("GET", WHOAMI, { token: user.access_token })).status).toBe(200);

    const res = await api("POST", "/_matrix/client/v3/account/deactivate", {
      token: user.access_token,
      body: { auth: passwordAuth(localpart, `password-${localpart}`, first.body.session) },
    });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id_server_unbind_result: "no-support" });

    expect((await api("GET", WHOAMI, { token: user.access_token })).body.errcode).toBe("M_UNKNOWN_TOKEN");
    expect((await api("GET", WHOAMI, { token: other.body.access_token })).status).toBe(401);
    expect((await api("POST", "/_matrix/client/v3/refresh", { body: { refresh_token: other.body.refresh_token } })).status).toBe(401);
    const relogin = await login(localpart, `password-${localpart}`);
    expect(relogin.status).toBe(403);
    const row = await env.DB.prepare("SELECT deactivated, password_hash FROM users WHERE user_id = ?").bind(user.user_id).first();
    expect(row).toEqual({ deactivated: 1, password_hash: null });
    const devices = await env.DB.prepare("SELECT count(*) AS n FROM devices WHERE user_id = ?").bind(user.user_id).first<{ n: number }>();
    expect(devices!.n).toBe(0);
    const again = await api("POST", "/_matrix/client/v3/register", { body: { username: localpart, password: "pw" } });
    expect(again.body.errcode).toBe("M_USER_IN_USE");
  });

  it("makes the user leave the rooms they were in", async () => {
    const localpart = uniqueLocalpart("deactroom");
    const user = await registerUser(localpart);
    const owner = await registerUser(uniqueLocalpart("owner"));
    const room = await api("POST", "/_matrix/client/v3/createRoom", { token: owner.access_token, body: { preset: "public_chat" } });
    expect(room.status).toBe(200);
    const join = await api("POST", `/_matrix/client/v3/rooms/${encodeURIComponent(room.body.room_id)}/join`, { token: user.access_token, body: {} });
    expect(join.status).toBe(200);
    const before = await api("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(room.body.room_id)}/joined_members`, { token: owner.access_token });
    expect(Object.keys(before.body.joined)).toContain(user.user_id);

    const first = await api("POST", "/_matrix/client/v3/account/deactivate", { token: user.access_token, body: {} });
    const res = await api("POST", "/_matrix/client/v3/account/deactivate", {
      token: user.access_token,
      body: { auth: passwordAuth(localpart, `password-${localpart}`, first.body.session) },
    });
    expect(res.status).toBe(200);
    const after = await api("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(room.body.room_id)}/joined_members`, { token: owner.access_token });
    expect(Object.keys(after.body.joined)).toEqual([owner.user_id]);
  });
});
