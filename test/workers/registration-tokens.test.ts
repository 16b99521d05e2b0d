// Token-authenticated registration (spec: "Token-authenticated registration"): once a registration
// token exists, /register requires the m.login.registration_token stage; uses are counted.
// The tests of this file run in order and share one D1 (storage is isolated per file).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, registerUser, uniqueLocalpart } from "./helpers.js";

const REGISTER = "/_matrix/client/v3/register";
const validity = (token: string) =>
  api("GET", `/_matrix/client/v1/register/m.login.registration_token/validity?token=${encodeURIComponent(token)}`);

async function tokenRow(token: string) {
  return env.DB.prepare("SELECT pending, completed FROM registration_tokens WHERE token = ?").bind(token).first<{ pending: number; completed: number }>();
}

describe("registration tokens", () => {
  it("offers m.login.dummy while no token exists", async () => {
    const res = await api("POST", REGISTER, { body: { username: uniqueLocalpart("before"), password: "pw" } });
    expect(res.body.flows).toEqual([{ stages: ["m.login.dummy"] }]);
    expect((await validity("whatever")).body).toEqual({ valid: false });
  });

  it("requires the token stage once tokens exist", async () => {
    const now = Date.now();
    await env.DB.batch([
      env.DB.prepare("INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES ('once-only', 1, NULL)"),
      env.DB.prepare("INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES ('expired', NULL, ?)").bind(now - 1000),
      env.DB.prepare("INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES ('unlimited', NULL, ?)").bind(now + 3_600_000),
    ]);
    const res = await api("POST", REGISTER, { body: { username: uniqueLocalpart("need"), password: "pw" } });
    expect(res.status).toBe(401);
    expect(res.body.flows).toEqual([{ stages: ["m.login.registration_token"] }]);
    const dummy = await api("POST", REGISTER, {
      body: { username: uniqueLocalpart("need"), password: "pw", auth: { type: "m.login.dummy", session: res.body.session } },
    });
    expect(dummy.status).toBe(400);
    expect(dummy.body.errcode).toBe("M_UNRECOGNIZED");
  });

  it("answers validity for valid, expired, unknown and malformed tokens", async () => {
    expect((await validity("once-only")).body).toEqual({ valid: true });
    expect((await validity("unlimited")).body).toEqual({ valid: true });
    expect((await validity("expired")).body).toEqual({ valid: false });
    expect((await validity("nope")).body).toEqual({ valid: false });
    expect((await validity("has space!")).body).toEqual({ valid: false });
  });

  it("fails the stage with M_UNAUTHORIZED for unknown and expired tokens", async () => {
    for (const token of ["nope", "expired"]) {
      const first = await api("POST", REGISTER, { body: { username: uniqueLocalpart("bad"), password: "pw" } });
      const res = await api("POST", REGISTER, {
        body: { username: uniqueLocalpart("bad"), password: "pw", auth: { type: "m.login.registration_token", token, session: first.body.session } },
      });
      expect(res.status).toBe(401);
      expect(res.body.errcode).toBe("M_UNAUTHORIZED");
      expect(res.body.session).toBe(first.body.session);
      expect(res.body.flows).toEqual([{ stages: ["m.login.registration_token"] }]);
    }
  });

  it("registers with a token and counts the use; a used-up token is refused", async () => {
    const user = await registerUser(uniqueLocalpart("tok"), undefined, { registrationToken: "once-only" });
    expect(user.user_id).toMatch(/^@tok-/);
    expect(await tokenRow("once-only")).toEqual({ pending: 0, completed: 1 });
    expect((await validity("once-only")).body).toEqual({ valid: false });
    await expect(registerUser(uniqueLocalpart("tok2"), undefined, { registrationToken: "once-only" })).rejects.toThrow(/401/);
  });

  it("keeps registering with an unlimited token", async () => {
    await registerUser(uniqueLocalpart("u1"), undefined, { registrationToken: "unlimited" });
    await registerUser(uniqueLocalpart("u2"), undefined, { registrationToken: "unlimited" });
    expect(await tokenRow("unlimited")).toEqual({ pending: 0, completed: 2 });
  });

  it("counts pending uses, and releases them when their UIA session expires", async () => {
    await env.DB.prepare("INSERT INTO registration_tokens (token, uses_allowed) VALUES ('single', 1)").run();
    expect((await validity("single")).body).toEqual({ valid: true });
    // A session that validated 'single' two hours ago and never registered holds the only use.
    await env.DB.batch([
      env.DB.prepare(
        "INSERT INTO uia_sessions (session_id, method, path, user_id, completed, registration_token, created_ts) VALUES ('old', 'POST', 'register', NULL, '[\"m.login.registration_token\"]', 'single', ?)",
      ).bind(Date.now() - 2 * 3_600_000),
      env.DB.prepare("UPDATE registration_tokens SET pending = 1 WHERE token = 'single'"),
    ]);
    expect((await validity("single")).body).toEqual({ valid: false });
    // Starting any new session forgets expired ones and gives their uses back.
    await api("POST", REGISTER, { body: { username: uniqueLocalpart("new"), password: "pw" } });
    expect(await tokenRow("single")).toEqual({ pending: 0, completed: 0 });
    expect((await validity("single")).body).toEqual({ valid: true });
    const gone = await api("POST", REGISTER, {
      body: { username: uniqueLocalpart("late"), password: "pw", auth: { type: "m.login.registration_token", token: "single", session: "old" } },
    });
    expect(gone.status).toBe(400);
    await registerUser(uniqueLocalpart("single"), undefined, { registrationToken: "single" });
    expect(await tokenRow("single")).toEqual({ pending: 0, completed: 1 });
  });
});
