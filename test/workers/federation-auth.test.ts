// Inbound request authentication (spec: Server-Server API, "Request Authentication") and room server ACLs
// ("Server Access Control Lists"). Requests are signed by the independent remote servers of
// test/workers/remote-homeserver.mjs; their keys are fetched by Myelin through the federation client.
import { env } from "cloudflare:workers";
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { MatrixError } from "../../protocol/errors.js";
import { MIN_REFETCH_INTERVAL_MS, clearServerKeyMemo } from "../../federation-client/server-keys.js";
import { assertServerAllowedInRoom, federationAuth, requestOrigin } from "../../worker/federation/auth.js";
import type { AppEnv, Env } from "../../worker/env.js";
import { SERVER_NAME, counter, inbound, remoteAuthorization, remoteControl, signedInbound, testEnv, uniqueServer, type Answer } from "./federation-helpers.js";
import { createRoom, newUser, putState } from "./room-helpers.js";

// A federation route behind the real middleware, answering with what the handler sees.
const app = new Hono<AppEnv>();
app.use("/_matrix/federation/*", federationAuth);
app.get("/_matrix/federation/v1/whoami", (c) => c.json({ origin: requestOrigin(c) }));
app.put("/_matrix/federation/v1/echo/:id", async (c) => c.json({ origin: requestOrigin(c), body: await c.req.json() }));
app.get("/_matrix/federation/v1/version", (c) => c.json({ open: true }));
app.onError((e, c) => (e instanceof MatrixError ? c.json(e.toJSON(), e.status as 400) : c.json({ errcode: "M_UNKNOWN", error: String(e) }, 500)));

async function call(method: string, uri: string, init: { authorization?: string; body?: string } = {}, e: Env = testEnv): Promise<Answer> {
  const headers = new Headers();
  if (init.authorization !== undefined) headers.set("Authorization", init.authorization);
  const res = await app.fetch(new Request(`https://${SERVER_NAME}${uri}`, { method, headers, body: init.body }), e);
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text), text, headers: res.headers };
}

async function signed(name: string, method: string, uri: string, content?: unknown, extra: { destination?: string; version?: number } = {}) {
  const { authorization } = await remoteAuthorization({ name, method, uri, content, ...extra });
  return { authorization, body: content === undefined ? undefined : JSON.stringify(content) };
}

const db = (env as unknown as Env).DB;
const unauthorized = { errcode: "M_UNAUTHORIZED" };

describe("X-Matrix authentication of inbound requests", () => {
  it("accepts a request signed by a remote server's key and sets the origin", async () => {
    const origin = uniqueServer("ok");
    const res = await call("GET", "/_matrix/federation/v1/whoami", await signed(origin, "GET", "/_matrix/federation/v1/whoami"));
    expect(res).toMatchObject({ status: 200, body: { origin } });
  });

  it("verifies the body and leaves it readable for the handler", async () => {
    const origin = uniqueServer("ok");
    const content = { pdus: [], nested: { ü: [1, 2, { a: null }] } };
    const uri = "/_matrix/federation/v1/echo/1?x=%20y";
    const res = await call("PUT", uri, await signed(origin, "PUT", uri, content));
    expect(res).toMatchObject({ status: 200, body: { origin, body: content } });
  });

  it("caches the origin's keys: a second request does not fetch them again", async () => {
    const origin = uniqueServer("ok");
    for (let i = 0; i < 2; i++) {
      expect((await call("GET", "/_matrix/federation/v1/whoami", await signed(origin, "GET", "/_matrix/federation/v1/whoami"))).status).toBe(200);
    }
    expect(await counter(`keys:${origin}`)).toBe(1);
  });

  it("accepts a header without destination (signed for this server)", async () => {
    const origin = uniqueServer("ok");
    const { authorization } = await signed(origin, "GET", "/_matrix/federation/v1/whoami");
    const withoutDestination = authorization.replace(/,destination="[^"]*"/, "");
    expect(withoutDestination).not.toContain("destination");
    expect(await call("GET", "/_matrix/federation/v1/whoami", { authorization: withoutDestination })).toMatchObject({ status: 200, body: { origin } });
  });

  it("rejects a destination that is not this server with 401", async () => {
    const origin = uniqueServer("ok");
    const res = await call("GET", "/_matrix/federation/v1/whoami", await signed(origin, "GET", "/_matrix/federation/v1/whoami", undefined, { destination: "other.test" }));
    expect(res).toMatchObject({ status: 401, body: unauthorized });
  });

  it("rejects a forged signature, a tampered body, method or URI with 401", async () => {
    const origin = uniqueServer("ok");
    const uri = "/_matrix/federation/v1/echo/1";
    const good = await signed(origin, "PUT", uri, { a: 1 });
    expect((await call("PUT", uri, good)).status).toBe(200);
    // Body tampered.
    expect(await call("PUT", uri, { ...good, body: JSON.stringify({ a: 2 }) })).toMatchObject({ status: 401, body: unauthorized });
    // URI tampered (query string added, other path).
    expect(await call("PUT", uri + "?x=1", good)).toMatchObject({ status: 401, body: unauthorized });
    expect(await call("PUT", "/_matrix/federation/v1/echo/2", good)).toMatchObject({ status: 401, body: unauthorized });
    // Another request's signature.
    const other = await signed(origin, "GET", "/_matrix/federation/v1/whoami");
    const sig = /sig="([^"]*)"/.exec(other.authorization)![1]!;
    expect(await call("PUT", uri, { ...good, authorization: good.authorization.replace(/sig="[^"]*"/, `sig="${sig}"`) })).toMatchObject({ status: 401 });
    // Not base64, wrong length.
    expect(await call("PUT", uri, { ...good, authorization: good.authorization.replace(/sig="[^"]*"/, 'sig="!!!"') })).toMatchObject({ status: 401 });
    expect(await call("PUT", uri, { ...good, authorization: good.authorization.replace(/sig="[^"]*"/, 'sig="AAAA"') })).toMatchObject({ status: 401 });
    // Origin claims to be another server.
    const impostor = uniqueServer("ok");
    expect(await call("PUT", uri, { ...good, authorization: good.authorization.replace(origin, impostor) })).toMatchObject({ status: 401 });
  });

  it("rejects an unknown key ID with 401 (after one fetch of the origin's keys)", async () => {
    const origin = uniqueServer("ok");
    const good = await signed(origin, "GET", "/_matrix/federation/v1/whoami");
    const res = await call("GET", "/_matrix/federation/v1/whoami", { authorization: good.authorization.replace(/key="[^"]*"/, 'key="ed25519:nope"') });
    expect(res).toMatchObject({ status: 401, body: unauthorized });
    expect(await counter(`keys:${origin}`)).toBe(1);
  });

  it("rejects origins whose key document is unusable: bad self-signature, wrong server_name, keys unavailable", async () => {
    for (const prefix of ["badsig", "wrongname", "down"]) {
      const origin = uniqueServer(prefix);
      const res = await call("GET", "/_matrix/federation/v1/whoami", await signed(origin, "GET", "/_matrix/federation/v1/whoami"));
      expect(res, prefix).toMatchObject({ status: 401, body: unauthorized });
    }
  });

  it("does not ask a server for its keys again within the minimum interval", async () => {
    const origin = uniqueServer("down");
    for (let i = 0; i < 3; i++) {
      expect((await call("GET", "/_matrix/federation/v1/whoami", await signed(origin, "GET", "/_matrix/federation/v1/whoami"))).status).toBe(401);
    }
    expect(await counter(`keys:${origin}`)).toBe(1);
    // This isolate remembers its attempt: it does not even claim a new one in D1 within the interval.
    await db.prepare("UPDATE remote_server_key_documents SET last_attempt_ts = 0 WHERE server_name = ?").bind(origin).run();
    await call("GET", "/_matrix/federation/v1/whoami", await signed(origin, "GET", "/_matrix/federation/v1/whoami"));
    expect(await counter(`keys:${origin}`)).toBe(1);
    expect(await db.prepare("SELECT last_attempt_ts FROM remote_server_key_documents WHERE server_name = ?").bind(origin).first("last_attempt_ts")).toBe(0);
    await db.prepare("UPDATE remote_server_key_documents SET last_attempt_ts = ? WHERE server_name = ?").bind(Date.now(), origin).run();
    // Once the interval has passed, it is asked again.
    await db.prepare("UPDATE remote_server_key_documents SET last_attempt_ts = last_attempt_ts - ? WHERE server_name = ?").bind(MIN_REFETCH_INTERVAL_MS, origin).run();
    clearServerKeyMemo();
    await call("GET", "/_matrix/federation/v1/whoami", await signed(origin, "GET", "/_matrix/federation/v1/whoami"));
    expect(await counter(`keys:${origin}`)).toBe(2);
  });

  it("learns a rotated key once the interval has passed; old keys do not sign requests", async () => {
    const origin = uniqueServer("rotating");
    const uri = "/_matrix/federation/v1/whoami";
    expect((await call("GET", uri, await signed(origin, "GET", uri))).status).toBe(200);
    await remoteControl(`/_test/rotate?name=${origin}`);
    // New key, but the server was asked less than the interval ago.
    expect((await call("GET", uri, await signed(origin, "GET", uri))).status).toBe(401);
    await db.prepare("UPDATE remote_server_key_documents SET last_attempt_ts = 0 WHERE server_name = ?").bind(origin).run();
    clearServerKeyMemo();
    expect((await call("GET", uri, await signed(origin, "GET", uri))).status).toBe(200);
    // The first key is now in old_verify_keys: valid for events, not for requests.
    expect((await call("GET", uri, await signed(origin, "GET", uri, undefined, { version: 1 })))).toMatchObject({ status: 401 });
  });

  it("rejects a key whose cached validity has passed when the server cannot renew it", async () => {
    const origin = uniqueServer("ok");
    const uri = "/_matrix/federation/v1/whoami";
    expect((await call("GET", uri, await signed(origin, "GET", uri))).status).toBe(200);
    // Expired in the cache, and the server was asked just now (no refetch allowed).
    await db.prepare("UPDATE remote_server_keys SET valid_until_ts = ? WHERE server_name = ?").bind(Date.now() - 1, origin).run();
    clearServerKeyMemo();
    expect((await call("GET", uri, await signed(origin, "GET", uri))).status).toBe(401);
    // Once it may be asked again, the fresh document makes the key valid.
    await db.prepare("UPDATE remote_server_key_documents SET last_attempt_ts = 0 WHERE server_name = ?").bind(origin).run();
    clearServerKeyMemo();
    expect((await call("GET", uri, await signed(origin, "GET", uri))).status).toBe(200);
  });

  it("answers missing and garbage headers with 401, never 500", async () => {
    const origin = uniqueServer("ok");
    const good = (await signed(origin, "GET", "/_matrix/federation/v1/whoami")).authorization;
    for (const authorization of [
      undefined,
      "",
      "Bearer abc",
      "X-Matrix",
      "X-Matrix origin=",
      'X-Matrix origin="unterminated',
      "X-Matrix origin=a,key=b",
      'X-Matrix origin="bad name!",key="ed25519:a",sig="b"',
      'X-Matrix origin="x.test:99999",key="ed25519:a",sig="b"',
      'X-Matrix origin="x.test",key="ed25519:a",sig="b"',
      good.replace(/key="[^"]*"/, 'key="nonsense"'),
      good.replace("X-Matrix ", "X-Matrix  ,,"),
      "X-Matrix " + "a".repeat(10000),
    ]) {
      const res = await call("GET", "/_matrix/federation/v1/whoami", authorization === undefined ? {} : { authorization });
      expect(res.status, String(authorization).slice(0, 40)).toBe(401);
      expect(res.body.errcode).toBe("M_UNAUTHORIZED");
    }
  });

  it("accepts one valid X-Matrix among several (repeated Authorization headers)", async () => {
    const origin = uniqueServer("ok");
    const good = (await signed(origin, "GET", "/_matrix/federation/v1/whoami")).authorization;
    const bad = good.replace(/sig="[^"]*"/, 'sig="AAAA"');
    expect((await call("GET", "/_matrix/federation/v1/whoami", { authorization: `${bad}, ${good}` })).status).toBe(200);
  });

  it("answers a body that is not JSON with 400 M_NOT_JSON and floats with 400 M_BAD_JSON", async () => {
    const origin = uniqueServer("ok");
    const uri = "/_matrix/federation/v1/echo/1";
    const { authorization } = await signed(origin, "PUT", uri, {});
    expect(await call("PUT", uri, { authorization, body: "{not json" })).toMatchObject({ status: 400, body: { errcode: "M_NOT_JSON" } });
    expect(await call("PUT", uri, { authorization, body: '{"a":1.5}' })).toMatchObject({ status: 400, body: { errcode: "M_BAD_JSON" } });
  });

  it("answers 403 M_FORBIDDEN when federation is off or the origin is not allowed", async () => {
    const origin = uniqueServer("ok");
    const req = await signed(origin, "GET", "/_matrix/federation/v1/whoami");
    expect(await call("GET", "/_matrix/federation/v1/whoami", req, { ...testEnv, FEDERATION_ENABLED: "false" })).toMatchObject({
      status: 403,
      body: { errcode: "M_FORBIDDEN" },
    });
    expect(await call("GET", "/_matrix/federation/v1/whoami", req, { ...testEnv, FEDERATION_DOMAIN_ALLOWLIST: "other.test" })).toMatchObject({
      status: 403,
      body: { errcode: "M_FORBIDDEN" },
    });
    expect(await call("GET", "/_matrix/federation/v1/whoami", req, { ...testEnv, FEDERATION_DOMAIN_ALLOWLIST: `other.test,${origin}` })).toMatchObject({ status: 200 });
  });

  it("leaves /version unauthenticated", async () => {
    expect(await call("GET", "/_matrix/federation/v1/version")).toMatchObject({ status: 200 });
  });
});

describe("the Worker's federation routes", () => {
  it("serves /version without a signature and refuses unsigned requests elsewhere", async () => {
    expect((await inbound("GET", "/_matrix/federation/v1/version")).status).toBe(200);
    expect(await inbound("GET", "/_matrix/federation/v1/query/profile?user_id=%40a%3Atest.local")).toMatchObject({ status: 401, body: unauthorized });
  });

  it("answers a signed request to an unknown federation endpoint with 404 M_UNRECOGNIZED", async () => {
    const origin = uniqueServer("ok");
    expect(await signedInbound(origin, "GET", "/_matrix/federation/v1/no-such-endpoint")).toMatchObject({ status: 404, body: { errcode: "M_UNRECOGNIZED" } });
  });
});

describe("assertServerAllowedInRoom", () => {
  it("allows everyone without an ACL, then applies the room's current m.room.server_acl", async () => {
    const alice = await newUser("acl");
    const roomId = await createRoom(alice);
    await expect(assertServerAllowedInRoom(testEnv, roomId, "evil.example:8448")).resolves.toBeUndefined();
    expect((await putState(alice, roomId, "m.room.server_acl", "", { allow: ["*"], deny: ["evil.example"], allow_ip_literals: false })).status).toBe(200);
    await expect(assertServerAllowedInRoom(testEnv, roomId, "evil.example:8448")).rejects.toMatchObject({ status: 403, errcode: "M_FORBIDDEN" });
    await expect(assertServerAllowedInRoom(testEnv, roomId, "1.2.3.4")).rejects.toMatchObject({ status: 403 });
    await expect(assertServerAllowedInRoom(testEnv, roomId, "good.example")).resolves.toBeUndefined();
    // The current state counts: a later ACL replaces the first.
    expect((await putState(alice, roomId, "m.room.server_acl", "", { allow: ["*"] })).status).toBe(200);
    await expect(assertServerAllowedInRoom(testEnv, roomId, "evil.example")).resolves.toBeUndefined();
  });

  it("is enforced by the Worker on the room endpoints the spec protects, after authentication", async () => {
    const alice = await newUser("acl");
    const roomId = await createRoom(alice);
    const denied = uniqueServer("ok");
    const allowed = uniqueServer("ok");
    expect((await putState(alice, roomId, "m.room.server_acl", "", { allow: ["*"], deny: [denied] })).status).toBe(200);
    const room = encodeURIComponent(roomId);
    for (const uri of [
      `/_matrix/federation/v1/state_ids/${room}?event_id=%24x`,
      `/_matrix/federation/v1/make_join/${room}/%40bob%3A${denied}?ver=10`,
      `/_matrix/federation/v2/send_join/${room}/%24e`,
      `/_matrix/federation/v1/get_missing_events/${room}`,
    ]) {
      const method = uri.includes("send_join") ? "PUT" : uri.includes("get_missing") ? "POST" : "GET";
      const content = method === "GET" ? undefined : {};
      expect(await signedInbound(denied, method, uri, content), uri).toMatchObject({ status: 403, body: { errcode: "M_FORBIDDEN" } });
      // Not denied: past the ACL (whatever the route answers, it is not the ACL's 403).
      const res = await signedInbound(allowed, method, uri, content);
      expect(res.body?.error ?? "", uri).not.toMatch(/server ACL/);
    }
    // Unsigned requests are refused before the ACL is read.
    expect((await inbound("GET", `/_matrix/federation/v1/state_ids/${room}`)).status).toBe(401);
    // Other endpoints and malformed room IDs are not the ACL's business.
    expect((await signedInbound(denied, "GET", "/_matrix/federation/v1/state_ids/%ZZ")).status).not.toBe(403);
    expect((await signedInbound(denied, "GET", "/_matrix/federation/v1/state_ids/not-a-room")).status).not.toBe(403);
  });

  it("treats an unknown room as having no ACL", async () => {
    await expect(assertServerAllowedInRoom(testEnv, "!unknown:test.local", "evil.example")).resolves.toBeUndefined();
  });
});
