// Server discovery (spec: Server-Server API, "Resolving server names"), against the .well-known files and the
// DNS-over-HTTPS resolver played by test/workers/remote-homeserver.mjs.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { clearWellKnownMemo, pickSrv, resolveServer, wellKnownDelegation } from "../../federation-client/discovery.js";
import type { Env } from "../../worker/env.js";
import { counter, testEnv, uniqueServer } from "./federation-helpers.js";

const db = (env as unknown as Env).DB;
const wellKnownRow = (name: string) =>
  db.prepare("SELECT delegated_server, expires_ts, failures FROM federation_well_known WHERE server_name = ?").bind(name).first<{
    delegated_server: string | null;
    expires_ts: number;
    failures: number;
  }>();

describe("resolveServer", () => {
  it("uses an IP literal directly (port or 8448), Host = server name, no SNI, no look-ups", async () => {
    expect(await resolveServer(testEnv, "1.2.3.4")).toEqual({ url: "https://1.2.3.4:8448", host: "1.2.3.4" });
    expect(await resolveServer(testEnv, "1.2.3.4:443")).toEqual({ url: "https://1.2.3.4:443", host: "1.2.3.4:443" });
    expect(await resolveServer(testEnv, "[2001:db8::1]:8449")).toEqual({ url: "https://[2001:db8::1]:8449", host: "[2001:db8::1]:8449" });
    expect(await counter("well-known:1.2.3.4")).toBe(0);
  });

  it("uses an explicit port directly, Host = server name, certificate for the hostname", async () => {
    const name = uniqueServer("plain");
    expect(await resolveServer(testEnv, `${name}:1234`)).toEqual({ url: `https://${name}:1234`, host: `${name}:1234`, tlsServerName: name });
    expect(await counter(`well-known:${name}`)).toBe(0);
    expect(await counter(`doh:_matrix-fed._tcp.${name}`)).toBe(0);
  });

  it("rejects names outside the grammar", async () => {
    await expect(resolveServer(testEnv, "no spaces.test")).rejects.toThrow(/invalid server name/);
  });

  it("follows .well-known to a delegated name with a port, and caches the answer (Cache-Control max-age)", async () => {
    clearWellKnownMemo();
    const before = Date.now();
    const first = await resolveServer(testEnv, "delegated.remote.test");
    expect(first).toEqual({ url: "https://target.remote.test:8448", host: "target.remote.test:8448", tlsServerName: "target.remote.test" });
    const fetched = await counter("well-known:delegated.remote.test");
    expect(await resolveServer(testEnv, "delegated.remote.test")).toEqual(first);
    clearWellKnownMemo(); // the D1 copy answers too
    expect(await resolveServer(testEnv, "delegated.remote.test")).toEqual(first);
    expect(await counter("well-known:delegated.remote.test")).toBe(fetched);
    const row = await wellKnownRow("delegated.remote.test");
    expect(row?.delegated_server).toBe("target.remote.test:8448");
    expect(row!.expires_ts).toBeGreaterThanOrEqual(before + 600_000);
    expect(row!.expires_ts).toBeLessThanOrEqual(Date.now() + 600_000);
  });

  it("uses a delegated IP literal with 8448 and Host = the delegated name", async () => {
    expect(await resolveServer(testEnv, "delegated-ip.remote.test")).toEqual({ url: "https://10.1.2.3:8448", host: "10.1.2.3" });
  });

  it("looks up SRV for a delegated name without port: lowest priority first, Host = delegated hostname", async () => {
    expect(await resolveServer(testEnv, "delegated-srv.remote.test")).toEqual({
      url: "https://low.remote.test:9000",
      host: "srv-target.remote.test",
      tlsServerName: "srv-target.remote.test",
    });
  });

  it("without .well-known: SRV _matrix-fed._tcp first, then the deprecated _matrix._tcp, then 8448", async () => {
    expect(await resolveServer(testEnv, "srv.remote.test")).toEqual({ url: "https://fed-target.remote.test:8448", host: "srv.remote.test", tlsServerName: "srv.remote.test" });
    expect(await resolveServer(testEnv, "legacy-srv.remote.test")).toEqual({
      url: "https://legacy-only.remote.test:2222",
      host: "legacy-srv.remote.test",
      tlsServerName: "legacy-srv.remote.test",
    });
    const plain = uniqueServer("plain");
    expect(await resolveServer(testEnv, plain)).toEqual({ url: `https://${plain}:8448`, host: plain, tlsServerName: plain });
    expect(await counter(`doh:_matrix-fed._tcp.${plain}`)).toBe(1);
    expect(await counter(`doh:_matrix._tcp.${plain}`)).toBe(1);
  });

  it("treats an SRV target of '.' as no service", async () => {
    expect(await resolveServer(testEnv, "srv-dot.remote.test")).toMatchObject({ url: "https://srv-dot.remote.test:8448" });
  });

  it("follows .well-known redirects", async () => {
    expect(await resolveServer(testEnv, "wk-redirect.remote.test")).toEqual({
      url: "https://after-redirect.remote.test:443",
      host: "after-redirect.remote.test:443",
      tlsServerName: "after-redirect.remote.test",
    });
  });

  it("skips invalid .well-known answers (bad JSON, bad m.server) and caches them for an hour", async () => {
    for (const name of ["wk-badjson.remote.test", "wk-badserver.remote.test"]) {
      clearWellKnownMemo();
      const before = Date.now();
      expect(await resolveServer(testEnv, name)).toEqual({ url: `https://${name}:8448`, host: name, tlsServerName: name });
      const row = await wellKnownRow(name);
      expect(row).toMatchObject({ delegated_server: null, failures: 0 });
      expect(row!.expires_ts).toBeGreaterThanOrEqual(before + 3600_000);
      const n = await counter(`well-known:${name}`);
      await resolveServer(testEnv, name);
      expect(await counter(`well-known:${name}`)).toBe(n);
    }
  });

  it("backs off exponentially while .well-known fails with 5xx", async () => {
    const name = "wk-500.remote.test";
    clearWellKnownMemo();
    let before = Date.now();
    await resolveServer(testEnv, name);
    let row = await wellKnownRow(name);
    expect(row).toMatchObject({ delegated_server: null, failures: 1 });
    expect(row!.expires_ts - before).toBeGreaterThanOrEqual(2 * 60_000);
    expect(row!.expires_ts - Date.now()).toBeLessThanOrEqual(2 * 60_000);
    // Let the entry expire: the next failure doubles the wait.
    await db.prepare("UPDATE federation_well_known SET expires_ts = 0 WHERE server_name = ?").bind(name).run();
    clearWellKnownMemo();
    before = Date.now();
    await resolveServer(testEnv, name);
    row = await wellKnownRow(name);
    expect(row).toMatchObject({ failures: 2 });
    expect(row!.expires_ts - before).toBeGreaterThanOrEqual(4 * 60_000);
    expect(row!.expires_ts - Date.now()).toBeLessThanOrEqual(4 * 60_000);
    // Capped at an hour.
    await db.prepare("UPDATE federation_well_known SET expires_ts = 0, failures = 20 WHERE server_name = ?").bind(name).run();
    clearWellKnownMemo();
    before = Date.now();
    await resolveServer(testEnv, name);
    row = await wellKnownRow(name);
    expect(row!.expires_ts - Date.now()).toBeLessThanOrEqual(3600_000);
    expect(row!.expires_ts - before).toBeGreaterThanOrEqual(3600_000);
  });

  it("keeps a known delegation while .well-known is down", async () => {
    const name = "wk-500.remote.test";
    await db
      .prepare("UPDATE federation_well_known SET expires_ts = 0, failures = 0, delegated_server = 'kept.remote.test:8448' WHERE server_name = ?")
      .bind(name)
      .run();
    clearWellKnownMemo();
    expect(await wellKnownDelegation(testEnv, name)).toBe("kept.remote.test:8448");
  });

  it("falls back to port 8448 when the resolver fails", async () => {
    const offline: Env = { ...testEnv, FEDERATION_DOH_URL: "https://doh-missing.test/dns-query" };
    const name = uniqueServer("plain");
    expect(await resolveServer(offline, name)).toEqual({ url: `https://${name}:8448`, host: name, tlsServerName: name });
  });
});

describe("pickSrv", () => {
  const answer = (...data: string[]) => ({ Status: 0, Answer: data.map((d) => ({ type: 33, TTL: 120, data: d })) });

  it("picks the lowest priority, weighted at random within it", () => {
    const body = answer("10 0 1 c.test.", "5 1 2 a.test.", "5 3 3 b.test.");
    expect(pickSrv(body, () => 0).result).toEqual({ target: "a.test", port: 2 });
    expect(pickSrv(body, () => 0.24).result).toEqual({ target: "a.test", port: 2 });
    expect(pickSrv(body, () => 0.25).result).toEqual({ target: "b.test", port: 3 });
    expect(pickSrv(body, () => 0.99).result).toEqual({ target: "b.test", port: 3 });
    expect(pickSrv(body).ttlMs).toBe(120_000);
  });

  it("ignores malformed records and answers without records", () => {
    expect(pickSrv({ Status: 3 }).result).toBeNull();
    expect(pickSrv({ Status: 0, Answer: [{ type: 5, data: "x." }] }).result).toBeNull();
    expect(pickSrv(answer("10 0 99999 a.test.", "nonsense", "1 0 0 .")).result).toBeNull();
    expect(pickSrv(answer("nonsense", "1 0 8448 ok.test")).result).toEqual({ target: "ok.test", port: 8448 });
    expect(pickSrv(null).result).toBeNull();
  });
});
