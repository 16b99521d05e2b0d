// The outbound federation client (federation-client/request.ts): requests signed with X-Matrix and checked by
// an independent remote server (test/workers/remote-homeserver.mjs), configuration switches that refuse
// without touching the network, and every failure answered as a value.
import { describe, expect, it } from "vitest";
import { federationRequest } from "../../federation-client/request.js";
import type { Env } from "../../worker/env.js";
import { counter, testEnv, uniqueServer } from "./federation-helpers.js";

const profilePath = "/_matrix/federation/v1/query/profile?user_id=%40a%3Aremote";

describe("federationRequest", () => {
  it("sends a signed GET that the remote server verifies with our published key", async () => {
    const remote = uniqueServer("plain") + ":8448";
    const res = await federationRequest(testEnv, { destination: remote, method: "GET", path: profilePath });
    expect(res).toEqual({ ok: true, status: 200, body: { displayname: `profile on ${remote}`, user_id: "@a:remote", host: remote } });
  });

  it("signs the body of a PUT", async () => {
    const remote = uniqueServer("plain") + ":8448";
    const body = { origin: "test.local", origin_server_ts: 1, pdus: [], edus: [{ edu_type: "m.typing", content: { é: "ü" } }] };
    const res = await federationRequest(testEnv, { destination: remote, method: "PUT", path: "/_matrix/federation/v1/send/txn1", body });
    expect(res).toEqual({ ok: true, status: 200, body: { pdus: {}, received: body } });
  });

  it("follows .well-known delegation and signs for the delegating server name", async () => {
    const res = await federationRequest(testEnv, { destination: "delegated.remote.test", method: "GET", path: profilePath });
    expect(res).toMatchObject({ ok: true, body: { displayname: "profile on delegated.remote.test", host: "target.remote.test:8448" } });
  });

  it("follows SRV and sends the spec's Host header (the hostname, without the SRV port)", async () => {
    const res = await federationRequest(testEnv, { destination: "srv.remote.test", method: "GET", path: profilePath });
    expect(res).toMatchObject({ ok: true, body: { displayname: "profile on srv.remote.test", host: "srv.remote.test" } });
  });

  it("answers HTTP errors with the remote's errcode, and non-JSON with M_NOT_JSON", async () => {
    const remote = uniqueServer("plain") + ":8448";
    expect(await federationRequest(testEnv, { destination: remote, method: "GET", path: "/_matrix/federation/v1/nope" })).toEqual({
      ok: false,
      status: 404,
      errcode: "M_UNRECOGNIZED",
      error: "Unrecognized request",
    });
    expect(await federationRequest(testEnv, { destination: remote, method: "GET", path: "/_matrix/federation/v1/not-json" })).toMatchObject({
      ok: false,
      status: 200,
      errcode: "M_NOT_JSON",
    });
  });

  it("answers a timeout as status null", async () => {
    const remote = uniqueServer("plain") + ":8448";
    const res = await federationRequest(testEnv, { destination: remote, method: "GET", path: "/_matrix/federation/v1/slow", timeoutMs: 50 });
    expect(res).toMatchObject({ ok: false, status: null });
  });

  it("answers a network error as status null (a real fetch to a closed loopback port)", async () => {
    const offline: Env = { ...testEnv, FEDERATION_TEST_FETCHER: undefined };
    const res = await federationRequest(offline, { destination: "127.0.0.1:1", method: "GET", path: profilePath, timeoutMs: 5000 });
    expect(res).toMatchObject({ ok: false, status: null });
  });

  it("refuses invalid destinations, paths and bodies without throwing", async () => {
    expect(await federationRequest(testEnv, { destination: "bad name!", method: "GET", path: profilePath })).toMatchObject({ ok: false, status: null });
    expect(await federationRequest(testEnv, { destination: "a.remote.test:8448", method: "GET", path: "_matrix/x" })).toMatchObject({ ok: false, status: null });
    expect(
      await federationRequest(testEnv, { destination: "a.remote.test:8448", method: "PUT", path: "/_matrix/federation/v1/send/1", body: { n: 1.5 } }),
    ).toMatchObject({ ok: false, status: null, errcode: "M_BAD_JSON" });
    expect(
      await federationRequest(testEnv, { destination: "a.remote.test:8448", method: "PUT", path: "/_matrix/federation/v1/send/1", body: { f: () => 1 } }),
    ).toMatchObject({ ok: false, status: null, errcode: "M_BAD_JSON" });
  });

  it("with FEDERATION_ENABLED=false refuses without a request", async () => {
    const remote = uniqueServer("plain") + ":8448";
    const off: Env = { ...testEnv, FEDERATION_ENABLED: "false" };
    expect(await federationRequest(off, { destination: remote, method: "GET", path: profilePath })).toMatchObject({ ok: false, status: null, errcode: "M_FORBIDDEN" });
    expect(await counter(`federation:${remote}`)).toBe(0);
    // Anything else is on (the default).
    const on: Env = { ...testEnv, FEDERATION_ENABLED: "true" };
    expect(await federationRequest(on, { destination: remote, method: "GET", path: profilePath })).toMatchObject({ ok: true });
    expect(await counter(`federation:${remote}`)).toBe(1);
  });

  it("with FEDERATION_DOMAIN_ALLOWLIST talks only to listed servers (port or not)", async () => {
    const listed = uniqueServer("plain");
    const unlisted = uniqueServer("plain");
    const closed: Env = { ...testEnv, FEDERATION_DOMAIN_ALLOWLIST: ` other.test , ${listed.toUpperCase()}` };
    expect(await federationRequest(closed, { destination: `${unlisted}:8448`, method: "GET", path: profilePath })).toMatchObject({
      ok: false,
      status: null,
      errcode: "M_FORBIDDEN",
    });
    expect(await counter(`federation:${unlisted}:8448`)).toBe(0);
    expect(await federationRequest(closed, { destination: `${listed}:8448`, method: "GET", path: profilePath })).toMatchObject({ ok: true });
  });
});
