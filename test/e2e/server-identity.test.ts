// The running server's identity: versions, well-known, and a key document whose signature verifies
// with an independent ed25519 implementation (@noble/ed25519) and a canonical JSON written here.
import * as ed from "@noble/ed25519";
import { describe, expect, inject, it } from "vitest";

const baseUrl = inject("baseUrl");
const serverName = inject("serverName");

/** Independent canonical JSON for the check: sort keys by code point, no whitespace, ASCII-only input. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    const keys = Object.keys(v).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

describe("server identity (running server)", () => {
  it("answers /_matrix/client/versions", async () => {
    const res = await fetch(`${baseUrl}/_matrix/client/versions`);
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    const body = (await res.json()) as { versions: string[] };
    expect(body.versions.length).toBeGreaterThan(0);
  });

  it("serves a self-signed key document that verifies independently", async () => {
    const doc = (await (await fetch(`${baseUrl}/_matrix/key/v2/server`)).json()) as {
      server_name: string;
      valid_until_ts: number;
      verify_keys: Record<string, { key: string }>;
      old_verify_keys: Record<string, unknown>;
      signatures: Record<string, Record<string, string>>;
    };
    expect(doc.server_name).toBe(serverName);
    expect(doc.valid_until_ts).toBeGreaterThan(Date.now());
    expect(doc.old_verify_keys).toEqual({});
    const [keyId, { key }] = Object.entries(doc.verify_keys)[0]!;
    expect(keyId).toMatch(/^ed25519:[a-zA-Z0-9_]+$/);
    const sig = doc.signatures[serverName]![keyId]!;
    const { signatures: _s, ...signed } = doc;
    const message = new TextEncoder().encode(canonical(signed));
    const b64 = (s: string) => Buffer.from(s, "base64");
    expect(await ed.verifyAsync(b64(sig), message, b64(key))).toBe(true);
    // and a tampered document does not verify
    const tampered = new TextEncoder().encode(canonical({ ...signed, valid_until_ts: 1 }));
    expect(await ed.verifyAsync(b64(sig), tampered, b64(key))).toBe(false);
    // the key is stable across requests (kept in D1, not regenerated)
    const again = (await (await fetch(`${baseUrl}/_matrix/key/v2/server`)).json()) as typeof doc;
    expect(Object.keys(again.verify_keys)).toEqual([keyId]);
  });

  it("answers federation version and well-known", async () => {
    const v = (await (await fetch(`${baseUrl}/_matrix/federation/v1/version`)).json()) as { server: { name: string } };
    expect(v.server.name).toBe("Myelin");
    const wk = (await (await fetch(`${baseUrl}/.well-known/matrix/server`)).json()) as Record<string, string>;
    expect(wk["m.server"]).toBe(serverName);
    const wc = (await (await fetch(`${baseUrl}/.well-known/matrix/client`)).json()) as { "m.homeserver": { base_url: string } };
    expect(wc["m.homeserver"].base_url).toBe(baseUrl);
  });
});
