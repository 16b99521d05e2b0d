// The error model at the edge: 404/405 M_UNRECOGNIZED, M_NOT_JSON, M_TOO_LARGE, CORS preflight, and
// rate limiting of login and registration (429 M_LIMIT_EXCEEDED with retry_after_ms).
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, login, registerUser, uniqueLocalpart } from "./helpers.js";

const worker = (exports as unknown as { default: { fetch(request: Request): Promise<Response> } }).default;

describe("unknown endpoints and methods", () => {
  it("answers 404 M_UNRECOGNIZED for an unknown path", async () => {
    const res = await api("GET", "/_matrix/client/v3/no/such/thing");
    expect(res.status).toBe(404);
    expect(res.body.errcode).toBe("M_UNRECOGNIZED");
  });

  it("answers 405 M_UNRECOGNIZED for a known path with the wrong method", async () => {
    for (const [method, path] of [
      ["PUT", "/_matrix/client/v3/login"],
      ["POST", "/_matrix/client/v3/account/whoami"],
      ["GET", "/_matrix/client/v3/logout"],
      ["POST", "/_matrix/client/r0/devices/ABC"],
      ["DELETE", "/_matrix/client/v3/register"],
    ]) {
      const res = await api(method!, path!);
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.body.errcode).toBe("M_UNRECOGNIZED");
      expect(res.headers.get("Allow")).toBeTruthy();
    }
  });
});

describe("unknown federation endpoints", () => {
  it("answers 404 and 405 before asking for an X-Matrix signature, and 401 on known endpoints", async () => {
    for (const path of ["/_matrix/federation/unknown", "/_matrix/federation/v1/unknown", "/_matrix/federation/v1/send"]) {
      const res = await api("GET", path);
      expect(res.status, path).toBe(404);
      expect(res.body.errcode).toBe("M_UNRECOGNIZED");
    }
    const wrongMethod = await api("PUT", "/_matrix/federation/v1/version");
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.body.errcode).toBe("M_UNRECOGNIZED");
    const getSend = await api("GET", "/_matrix/federation/v1/send/txn1");
    expect(getSend.status).toBe(405);
    // A known endpoint without a signature still needs one.
    const unsigned = await api("PUT", "/_matrix/federation/v1/send/txn1", { body: { pdus: [] } });
    expect(unsigned.status).toBe(401);
    expect((await api("GET", "/_matrix/federation/v1/version")).status).toBe(200);
  });
});

describe("CORS", () => {
  it("answers an OPTIONS preflight with the spec's headers", async () => {
    const res = await worker.fetch(
      new Request("https://test.local/_matrix/client/v3/login", {
        method: "OPTIONS",
        headers: { Origin: "https://app.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "Authorization, Content-Type" },
      }),
    );
    expect(res.status).toBeLessThan(300);
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe("*");
    const methods = res.headers.get("Access-Control-Allow-Methods") ?? "";
    for (const m of ["GET", "POST", "PUT", "DELETE", "OPTIONS"]) expect(methods).toContain(m);
    const headers = (res.headers.get("Access-Control-Allow-Headers") ?? "").toLowerCase();
    for (const h of ["x-requested-with", "content-type", "authorization"]) expect(headers).toContain(h);
  });

  it("puts Access-Control-Allow-Origin on ordinary and error responses", async () => {
    const ok = await worker.fetch(new Request("https://test.local/_matrix/client/v3/login", { headers: { Origin: "https://app.example" } }));
    expect(ok.headers.get("Access-Control-Allow-Origin")).toBe("*");
    const err = await worker.fetch(new Request("https://test.local/_matrix/client/v3/account/whoami", { headers: { Origin: "https://app.example" } }));
    expect(err.status).toBe(401);
    expect(err.headers.get("Access-Control-Allow-Origin")).toBe("*");
  });
});

describe("request bodies", () => {
  it("refuses bodies over 1 MiB with 413 M_TOO_LARGE", async () => {
    const big = JSON.stringify({ type: "m.login.password", user: "x", password: "a".repeat(1024 * 1024 + 10) });
    const res = await api("POST", "/_matrix/client/v3/login", { body: big });
    expect(res.status).toBe(413);
    expect(res.body.errcode).toBe("M_TOO_LARGE");
  });

  it("refuses non-JSON with M_NOT_JSON", async () => {
    const user = await registerUser(uniqueLocalpart("notjson"));
    const res = await api("PUT", `/_matrix/client/v3/devices/${user.device_id}`, { token: user.access_token, body: "display_name=x" });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_NOT_JSON");
  });
});

describe("rate limits", () => {
  it("limits logins per client address (5 at once, Synapse's default)", async () => {
    const headers = { "CF-Connecting-IP": "203.0.113.10" };
    for (let i = 0; i < 5; i++) {
      const res = await api("POST", "/_matrix/client/v3/login", { headers, body: { type: "m.login.password", user: uniqueLocalpart("nobody"), password: "x" } });
      expect(res.status).toBe(403);
    }
    const limited = await api("POST", "/_matrix/client/v3/login", { headers, body: { type: "m.login.password", user: uniqueLocalpart("nobody"), password: "x" } });
    expect(limited.status).toBe(429);
    expect(limited.body.errcode).toBe("M_LIMIT_EXCEEDED");
    expect(limited.body.retry_after_ms).toBeGreaterThan(0);
    // Another address is not affected.
    const other = await api("POST", "/_matrix/client/v3/login", { headers: { "CF-Connecting-IP": "203.0.113.11" }, body: { type: "m.login.password", user: uniqueLocalpart("nobody"), password: "x" } });
    expect(other.status).toBe(403);
  });

  it("limits failed password attempts per account, even with the right password afterwards", async () => {
    const localpart = uniqueLocalpart("flood");
    await registerUser(localpart);
    for (let i = 0; i < 3; i++) expect((await login(localpart, "wrong")).status).toBe(403);
    const limited = await login(localpart, `password-${localpart}`);
    expect(limited.status).toBe(429);
    expect(limited.body.errcode).toBe("M_LIMIT_EXCEEDED");
    expect(limited.body.retry_after_ms).toBeGreaterThan(0);
    // Another account is not affected.
    const other = uniqueLocalpart("calm");
    await registerUser(other);
    expect((await login(other, `password-${other}`)).status).toBe(200);
  });

  it("limits logins per account (5 at once)", async () => {
    const localpart = uniqueLocalpart("busy");
    await registerUser(localpart);
    for (let i = 0; i < 5; i++) expect((await login(localpart, `password-${localpart}`)).status).toBe(200);
    const limited = await login(localpart, `password-${localpart}`);
    expect(limited.status).toBe(429);
    expect(limited.body.retry_after_ms).toBeGreaterThan(0);
  });

  it("limits registrations per client address (3 at once)", async () => {
    const headers = { "CF-Connecting-IP": "203.0.113.20" };
    const register = (username: string) =>
      api("POST", "/_matrix/client/v3/register", { headers, body: { username, password: "pw", auth: { type: "m.login.dummy" } } });
    for (let i = 0; i < 3; i++) expect((await register(uniqueLocalpart("many"))).status).toBe(200);
    const limited = await register(uniqueLocalpart("many"));
    expect(limited.status).toBe(429);
    expect(limited.body.errcode).toBe("M_LIMIT_EXCEEDED");
    expect(limited.body.retry_after_ms).toBeGreaterThan(0);
    const loopback = await api("POST", "/_matrix/client/v3/register", {
      headers: { "CF-Connecting-IP": "127.0.0.1" },
      body: { username: uniqueLocalpart("local"), password: "pw", auth: { type: "m.login.dummy" } },
    });
    expect(loopback.status).toBe(200);
  });
});
