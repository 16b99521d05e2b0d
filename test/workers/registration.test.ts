// POST /register (user-interactive auth with m.login.dummy), username rules, availability, guests,
// disabled registration. Registration tokens are in registration-tokens.test.ts (their presence changes
// the flows for the whole file's D1).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../worker/index.js";
import { api, registerUser, uniqueLocalpart } from "./helpers.js";

const REGISTER = "/_matrix/client/v3/register";

describe("POST /register", () => {
  it("answers a request without auth with the UIA flows and a session, without errcode", async () => {
    const res = await api("POST", REGISTER, { body: { username: uniqueLocalpart("uia"), password: "pw" } });
    expect(res.status).toBe(401);
    expect(res.body.flows).toEqual([{ stages: ["m.login.dummy"] }]);
    expect(res.body.params).toEqual({});
    expect(typeof res.body.session).toBe("string");
    expect(res.body.session.length).toBeGreaterThan(0);
    expect(res.body.errcode).toBeUndefined();
    expect(res.body.completed).toBeUndefined();
  });

  it("answers an empty body with the flows; a missing password is reported once auth has passed", async () => {
    const res = await api("POST", REGISTER, { body: {} });
    expect(res.status).toBe(401);
    expect(res.body.flows).toEqual([{ stages: ["m.login.dummy"] }]);
    const localpart = uniqueLocalpart("nopw");
    const noPassword = await api("POST", REGISTER, { body: { username: localpart, auth: { type: "m.login.dummy", session: res.body.session } } });
    expect(noPassword.status).toBe(400);
    expect(noPassword.body.errcode).toBe("M_MISSING_PARAM");
    // Nothing was registered; the same session still completes with a password.
    const done = await api("POST", REGISTER, { body: { username: localpart, password: "pw", auth: { type: "m.login.dummy", session: res.body.session } } });
    expect(done.status).toBe(200);
    const tooLong = await api("POST", REGISTER, { body: { password: "x".repeat(513) } });
    expect(tooLong.status).toBe(400);
  });

  it("answers M_NOT_JSON to a body that is not UTF-8", async () => {
    const raw = await buildApp().request(REGISTER, { method: "POST", body: new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]) }, env);
    expect(raw.status).toBe(400);
    expect(((await raw.json()) as { errcode: string }).errcode).toBe("M_NOT_JSON");
  });

  it("registers after m.login.dummy in the same session and returns a working access token", async () => {
    const localpart = uniqueLocalpart("dummy");
    const first = await api("POST", REGISTER, { body: { username: localpart, password: "pw" } });
    const res = await api("POST", REGISTER, {
      body: { username: localpart, password: "pw", auth: { type: "m.login.dummy", session: first.body.session } },
    });
    expect(res.status).toBe(200);
    expect(res.body.user_id).toBe(`@${localpart}:test.local`);
    expect(res.body.home_server).toBe("test.local");
    expect(typeof res.body.access_token).toBe("string");
    expect(typeof res.body.device_id).toBe("string");
    expect(res.body.refresh_token).toBeUndefined();
    expect(res.body.expires_in_ms).toBeUndefined();
    const who = await api("GET", "/_matrix/client/v3/account/whoami", { token: res.body.access_token });
    expect(who.body).toEqual({ user_id: res.body.user_id, device_id: res.body.device_id, is_guest: false });
    // The session is used up.
    const again = await api("POST", REGISTER, {
      body: { username: uniqueLocalpart("dummy2"), password: "pw", auth: { type: "m.login.dummy", session: first.body.session } },
    });
    expect(again.status).toBe(400);
  });

  it("accepts a stage sent with the first request (no session yet)", async () => {
    const res = await api("POST", REGISTER, { body: { username: uniqueLocalpart("nosession"), password: "pw", auth: { type: "m.login.dummy" } } });
    expect(res.status).toBe(200);
  });

  it("refuses an unknown session and a stage that is not offered", async () => {
    const unknown = await api("POST", REGISTER, {
      body: { username: uniqueLocalpart("x"), password: "pw", auth: { type: "m.login.dummy", session: "nosuchsession" } },
    });
    expect(unknown.status).toBe(400);
    const notOffered = await api("POST", REGISTER, {
      body: { username: uniqueLocalpart("x"), password: "pw", auth: { type: "m.login.password", password: "pw" } },
    });
    expect(notOffered.status).toBe(400);
    expect(notOffered.body.errcode).toBe("M_UNRECOGNIZED");
  });

  it("reports the UIA state for an auth dict with only a session", async () => {
    const first = await api("POST", REGISTER, { body: { username: uniqueLocalpart("state"), password: "pw" } });
    const res = await api("POST", REGISTER, { body: { username: uniqueLocalpart("state"), password: "pw", auth: { session: first.body.session } } });
    expect(res.status).toBe(401);
    expect(res.body.session).toBe(first.body.session);
  });

  it("uses device_id and initial_device_display_name", async () => {
    const user = await registerUser(uniqueLocalpart("dev"), undefined, { deviceId: "MYDEVICE", initialDeviceDisplayName: "Phone" });
    expect(user.device_id).toBe("MYDEVICE");
    const devices = await api("GET", "/_matrix/client/v3/devices", { token: user.access_token });
    expect(devices.body.devices).toHaveLength(1);
    expect(devices.body.devices[0]).toMatchObject({ device_id: "MYDEVICE", display_name: "Phone" });
  });

  it("returns only user_id with inhibit_login", async () => {
    const localpart = uniqueLocalpart("inhibit");
    const res = await api("POST", REGISTER, {
      body: { username: localpart, password: "pw", inhibit_login: true, auth: { type: "m.login.dummy" } },
    });
    expect(res.status).toBe(200);
    expect(res.body.user_id).toBe(`@${localpart}:test.local`);
    expect(res.body.access_token).toBeUndefined();
    expect(res.body.device_id).toBeUndefined();
    const login = await api("POST", "/_matrix/client/v3/login", {
      body: { type: "m.login.password", identifier: { type: "m.id.user", user: localpart }, password: "pw" },
    });
    expect(login.status).toBe(200);
  });

  it("issues a refresh token and an expiry when asked", async () => {
    const user = await registerUser(uniqueLocalpart("refresh"), undefined, { refreshToken: true });
    expect(typeof user.refresh_token).toBe("string");
    expect(user.expires_in_ms).toBeGreaterThan(0);
  });

  it("generates a localpart when username is omitted", async () => {
    const res = await api("POST", REGISTER, { body: { password: "pw", auth: { type: "m.login.dummy" } } });
    expect(res.status).toBe(200);
    expect(res.body.user_id).toMatch(/^@[a-z0-9]+:test\.local$/);
  });

  it("refuses guest registration", async () => {
    const res = await api("POST", REGISTER + "?kind=guest", { body: {} });
    expect(res.status).toBe(403);
    expect(res.body.errcode).toBe("M_GUEST_ACCESS_FORBIDDEN");
  });

  it("requires a password", async () => {
    const res = await api("POST", REGISTER, { body: { username: uniqueLocalpart("nopw"), auth: { type: "m.login.dummy" } } });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_MISSING_PARAM");
  });

  it("answers bad bodies with M_NOT_JSON and M_BAD_JSON", async () => {
    expect((await api("POST", REGISTER, { body: "{not json" })).body.errcode).toBe("M_NOT_JSON");
    expect((await api("POST", REGISTER, { body: "[1,2]" })).body.errcode).toBe("M_BAD_JSON");
    const wrongType = await api("POST", REGISTER, { body: { username: 5, password: "pw" } });
    expect(wrongType.status).toBe(400);
    expect(wrongType.body.errcode).toBe("M_BAD_JSON");
  });

  it("serves the r0 prefix too", async () => {
    const res = await api("POST", "/_matrix/client/r0/register", {
      body: { username: uniqueLocalpart("r0"), password: "pw", auth: { type: "m.login.dummy" } },
    });
    expect(res.status).toBe(200);
  });
});

describe("username rules", () => {
  const invalid = ["has space", "ümlaut", "a:b", "@at", "semi;colon", "quote'", "tab\t", ""];
  for (const username of invalid) {
    it(`refuses ${JSON.stringify(username)} with M_INVALID_USERNAME before UIA`, async () => {
      const res = await api("POST", REGISTER, { body: { username, password: "pw" } });
      expect(res.status).toBe(400);
      expect(res.body.errcode).toBe("M_INVALID_USERNAME");
    });
  }

  it("accepts every allowed character", async () => {
    const localpart = `a.b_c=d-e/f+g9-${crypto.randomUUID().slice(0, 6)}`;
    const user = await registerUser(localpart);
    expect(user.user_id).toBe(`@${localpart}:test.local`);
  });

  it("lower-cases the username", async () => {
    const localpart = uniqueLocalpart("MiXeD");
    const user = await registerUser(localpart);
    expect(user.user_id).toBe(`@${localpart.toLowerCase()}:test.local`);
  });

  it("limits the user ID to 255 bytes", async () => {
    const suffix = ":test.local".length + 1; // "@" + ":test.local"
    const prefix = crypto.randomUUID().slice(0, 8);
    const exact = prefix + "x".repeat(255 - suffix - prefix.length);
    expect(new TextEncoder().encode(`@${exact}:test.local`).length).toBe(255);
    const ok = await registerUser(exact);
    expect(ok.user_id).toBe(`@${exact}:test.local`);
    const tooLong = await api("POST", REGISTER, { body: { username: exact + "y", password: "pw" } });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.errcode).toBe("M_INVALID_USERNAME");
  });

  it("answers M_USER_IN_USE before UIA, case-insensitively", async () => {
    const localpart = uniqueLocalpart("taken");
    await registerUser(localpart);
    const res = await api("POST", REGISTER, { body: { username: localpart.toUpperCase(), password: "pw" } });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_USER_IN_USE");
  });
});

describe("GET /register/available", () => {
  it("says available, in use or invalid", async () => {
    const localpart = uniqueLocalpart("avail");
    const free = await api("GET", `/_matrix/client/v3/register/available?username=${localpart}`);
    expect(free.status).toBe(200);
    expect(free.body).toEqual({ available: true });
    await registerUser(localpart);
    const taken = await api("GET", `/_matrix/client/v3/register/available?username=${localpart}`);
    expect(taken.status).toBe(400);
    expect(taken.body.errcode).toBe("M_USER_IN_USE");
    const bad = await api("GET", `/_matrix/client/v3/register/available?username=${encodeURIComponent("no way")}`);
    expect(bad.status).toBe(400);
    expect(bad.body.errcode).toBe("M_INVALID_USERNAME");
  });
});

describe("registration disabled", () => {
  const disabledEnv = { ...env, ENABLE_REGISTRATION: "false" };
  const app = buildApp();

  it("refuses /register, /register/available and token validity with 403 M_FORBIDDEN", async () => {
    const register = await app.request(REGISTER, { method: "POST", body: JSON.stringify({ username: uniqueLocalpart("off"), password: "pw", auth: { type: "m.login.dummy" } }) }, disabledEnv);
    expect(register.status).toBe(403);
    expect(await register.json()).toMatchObject({ errcode: "M_FORBIDDEN" });
    const available = await app.request("/_matrix/client/v3/register/available?username=whoever", {}, disabledEnv);
    expect(available.status).toBe(403);
    const validity = await app.request("/_matrix/client/v1/register/m.login.registration_token/validity?token=abc", {}, disabledEnv);
    expect(validity.status).toBe(403);
  });

  it("is enabled in the test configuration (the allow side)", async () => {
    const res = await app.request(REGISTER, { method: "POST", body: JSON.stringify({ username: uniqueLocalpart("on"), password: "pw", auth: { type: "m.login.dummy" } }) }, env);
    expect(res.status).toBe(200);
  });
});
