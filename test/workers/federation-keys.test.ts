// Server keys (spec: Server-Server API, "Retrieving server keys"): our key document served as canonical
// JSON, the remote key cache (direct fetch, notary fallback, old keys), the Room DO's key look-up, and our
// notary endpoints. The remote servers and the notary are test/workers/remote-homeserver.mjs.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../protocol/canonical-json.js";
import type { JsonObject } from "../../protocol/json.js";
import { verifyJsonSignature } from "../../protocol/signing.js";
import { MAX_KEY_VALIDITY_MS, clearServerKeyMemo, verifyKeysFor } from "../../federation-client/server-keys.js";
import { verifyKeysFor as roomVerifyKeysFor, verifyKeysForEvent } from "../../durable-objects/room/verify-keys.js";
import type { Pdu } from "../../protocol/pdu.js";
import { roomVersionRules } from "../../protocol/room-versions.js";
import type { Env } from "../../worker/env.js";
import { SERVER_NAME, counter, inbound, remoteControl, testEnv, uniqueServer } from "./federation-helpers.js";

const db = (env as unknown as Env).DB;
const NOTARY = "notary.remote.test";
const withNotary: Env = { ...testEnv, FEDERATION_TRUSTED_KEY_SERVERS: NOTARY };

async function ownKey(): Promise<{ keyId: string; key: string }> {
  const doc = (await inbound("GET", "/_matrix/key/v2/server")).body as { verify_keys: Record<string, { key: string }> };
  const [keyId, { key }] = Object.entries(doc.verify_keys)[0]!;
  return { keyId, key };
}

describe("GET /_matrix/key/v2/server", () => {
  it("serves our self-signed key document as canonical JSON, byte for byte", async () => {
    const res = await inbound("GET", "/_matrix/key/v2/server");
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toMatch(/^application\/json/);
    expect(res.text).toBe(canonicalJson(JSON.parse(res.text)));
    const doc = res.body as JsonObject & { verify_keys: Record<string, { key: string }>; valid_until_ts: number };
    expect(doc.server_name).toBe(SERVER_NAME);
    expect(doc.valid_until_ts).toBeGreaterThan(Date.now());
    const [keyId, { key }] = Object.entries(doc.verify_keys)[0]!;
    expect(await verifyJsonSignature(doc, SERVER_NAME, keyId, key)).toBe(true);
  });
});

describe("verifyKeysFor", () => {
  it("answers our own keys without the network", async () => {
    const { keyId, key } = await ownKey();
    const offline: Env = { ...testEnv, FEDERATION_TEST_FETCHER: undefined, FEDERATION_ENABLED: "false" };
    expect(await verifyKeysFor(offline, SERVER_NAME)).toEqual([{ keyId, publicKey: key, validUntilTs: null }]);
  });

  it("fetches a server's keys, checks them and caches them in D1 until valid_until_ts", async () => {
    const name = uniqueServer("ok");
    const { keyId, publicKey } = await remoteControl(`/_test/identity?name=${name}`);
    const before = Date.now();
    const keys = await verifyKeysFor(testEnv, name);
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ keyId, publicKey });
    expect(keys[0]!.validUntilTs).toBeGreaterThan(before);
    expect(await verifyKeysFor(testEnv, name)).toEqual(keys);
    expect(await counter(`keys:${name}`)).toBe(1);
    const row = await db.prepare("SELECT public_key, valid_until_ts, expired_ts FROM remote_server_keys WHERE server_name = ?").bind(name).first();
    expect(row).toEqual({ public_key: publicKey, valid_until_ts: keys[0]!.validUntilTs, expired_ts: null });
  });

  it("refetches when a named key is missing or the cached keys are not valid long enough", async () => {
    const name = uniqueServer("ok");
    await verifyKeysFor(testEnv, name);
    await db.prepare("UPDATE remote_server_key_documents SET last_attempt_ts = 0 WHERE server_name = ?").bind(name).run();
    clearServerKeyMemo();
    await verifyKeysFor(testEnv, name, { keyIds: ["ed25519:v1"] });
    expect(await counter(`keys:${name}`)).toBe(1); // known: no fetch
    await verifyKeysFor(testEnv, name, { minimumValidUntilTs: Date.now() + 10 * 24 * 3600_000 });
    expect(await counter(`keys:${name}`)).toBe(2); // not valid that long: fetch
    await db.prepare("UPDATE remote_server_key_documents SET last_attempt_ts = 0 WHERE server_name = ?").bind(name).run();
    clearServerKeyMemo();
    await verifyKeysFor(testEnv, name, { keyIds: ["ed25519:other"] });
    expect(await counter(`keys:${name}`)).toBe(3); // unknown key: fetch
  });

  it("keeps rotated-out keys with their expired_ts as validity", async () => {
    const name = uniqueServer("rotating");
    const first = await verifyKeysFor(testEnv, name);
    await remoteControl(`/_test/rotate?name=${name}`);
    await db.prepare("UPDATE remote_server_key_documents SET last_attempt_ts = 0 WHERE server_name = ?").bind(name).run();
    clearServerKeyMemo();
    const keys = await verifyKeysFor(testEnv, name, { keyIds: ["ed25519:v2"] });
    const byId = Object.fromEntries(keys.map((k) => [k.keyId, k]));
    expect(byId["ed25519:v1"]).toEqual({ keyId: "ed25519:v1", publicKey: first[0]!.publicKey, validUntilTs: 1_000_001 });
    expect(byId["ed25519:v2"]!.validUntilTs).toBeGreaterThan(Date.now());
  });

  it("caps a key's validity at 7 days from the fetch (keys.yaml valid_until_ts)", async () => {
    const name = uniqueServer("longlived");
    const before = Date.now();
    const [key] = await verifyKeysFor(testEnv, name);
    expect(key!.validUntilTs).toBeGreaterThanOrEqual(before + MAX_KEY_VALIDITY_MS);
    expect(key!.validUntilTs).toBeLessThanOrEqual(Date.now() + MAX_KEY_VALIDITY_MS);
  });

  it("refuses documents with a bad self-signature or another server's name", async () => {
    expect(await verifyKeysFor(testEnv, uniqueServer("badsig"))).toEqual([]);
    expect(await verifyKeysFor(testEnv, uniqueServer("wrongname"))).toEqual([]);
  });

  it("asks the trusted notary when the server does not answer, checking both signatures", async () => {
    const name = uniqueServer("hidden");
    expect(await verifyKeysFor(testEnv, name)).toEqual([]); // no notary configured
    await db.prepare("UPDATE remote_server_key_documents SET last_attempt_ts = 0 WHERE server_name = ?").bind(name).run();
    clearServerKeyMemo();
    const { keyId, publicKey } = await remoteControl(`/_test/identity?name=${name}`);
    expect(await verifyKeysFor(withNotary, name)).toMatchObject([{ keyId, publicKey }]);
    expect(await counter(`notary:${NOTARY}`)).toBeGreaterThanOrEqual(1);
    // A document the notary did not sign, or signed by the server wrongly, is refused.
    expect(await verifyKeysFor(withNotary, uniqueServer("hidden-unnotarised"))).toEqual([]);
    expect(await verifyKeysFor(withNotary, uniqueServer("badsig"))).toEqual([]);
  });

  it("is what the Room DO uses (durable-objects/room/verify-keys.ts)", async () => {
    const name = uniqueServer("ok");
    expect(await roomVerifyKeysFor(testEnv, name)).toEqual(await verifyKeysFor(testEnv, name));
    expect(await roomVerifyKeysFor(testEnv, name)).toHaveLength(1);
  });

  it("for an event: fetches the key it is signed with, and applies valid_until_ts only in v5+ rooms", async () => {
    const name = uniqueServer("rotating");
    await verifyKeysFor(testEnv, name);
    await remoteControl(`/_test/rotate?name=${name}`);
    await db.prepare("UPDATE remote_server_key_documents SET last_attempt_ts = 0 WHERE server_name = ?").bind(name).run();
    clearServerKeyMemo();
    const pdu = (keyId: string, ts: number) => ({ origin_server_ts: ts, signatures: { [name]: { [keyId]: "sig" } } }) as unknown as Pdu;
    // Signed with the key known since the first fetch, long after its validity: v1-v4 ignore valid_until_ts.
    const far = Date.now() + 30 * 24 * 3600_000;
    expect((await verifyKeysForEvent(testEnv, pdu("ed25519:v1", far), name, roomVersionRules("4")!)).map((k) => k.keyId)).toEqual(["ed25519:v1"]);
    expect(await counter(`keys:${name}`)).toBe(1);
    // In v5+, the same event needs a key valid at its time: the server is asked again.
    await verifyKeysForEvent(testEnv, pdu("ed25519:v1", far), name, roomVersionRules("10")!);
    expect(await counter(`keys:${name}`)).toBe(2);
    // A key the event names and the cache lacks is fetched (here: v2 arrived with the refetch above).
    const keys = await verifyKeysForEvent(testEnv, pdu("ed25519:v2", Date.now()), name, roomVersionRules("10")!);
    expect(keys.map((k) => k.keyId).sort()).toEqual(["ed25519:v1", "ed25519:v2"]);
  });
});

describe("notary endpoints (/_matrix/key/v2/query)", () => {
  it("GET returns a server's document signed by it and by us, as canonical JSON", async () => {
    const name = uniqueServer("ok");
    const res = await inbound("GET", `/_matrix/key/v2/query/${name}`);
    expect(res.status).toBe(200);
    expect(res.text).toBe(canonicalJson(JSON.parse(res.text)));
    const docs = res.body.server_keys as JsonObject[];
    expect(docs).toHaveLength(1);
    const { keyId, publicKey } = await remoteControl(`/_test/identity?name=${name}`);
    expect(await verifyJsonSignature(docs[0]!, name, keyId, publicKey)).toBe(true);
    const own = await ownKey();
    expect(await verifyJsonSignature(docs[0]!, SERVER_NAME, own.keyId, own.key)).toBe(true);
  });

  it("POST answers several servers, with our own document for our name and nothing for unreachable servers", async () => {
    const name = uniqueServer("ok");
    const res = await inbound("POST", "/_matrix/key/v2/query", {
      body: JSON.stringify({ server_keys: { [name]: { "ed25519:v1": { minimum_valid_until_ts: 0 } }, [SERVER_NAME]: {}, [uniqueServer("down")]: {} } }),
    });
    expect(res.status).toBe(200);
    const names = (res.body.server_keys as { server_name: string }[]).map((d) => d.server_name).sort();
    expect(names).toEqual([name, SERVER_NAME].sort());
  });

  it("serves its copy for half of the document's lifetime, then asks the server again", async () => {
    const name = uniqueServer("ok");
    await inbound("GET", `/_matrix/key/v2/query/${name}`);
    await db.prepare("UPDATE remote_server_key_documents SET last_attempt_ts = 0 WHERE server_name = ?").bind(name).run();
    clearServerKeyMemo();
    await inbound("GET", `/_matrix/key/v2/query/${name}`);
    expect(await counter(`keys:${name}`)).toBe(1);
    // Fetched so long ago that half of its lifetime has passed.
    const row = await db.prepare("SELECT fetched_ts, valid_until_ts FROM remote_server_key_documents WHERE server_name = ?").bind(name).first<{ fetched_ts: number; valid_until_ts: number }>();
    const lifetime = row!.valid_until_ts - row!.fetched_ts;
    await db.prepare("UPDATE remote_server_key_documents SET fetched_ts = ?, last_attempt_ts = 0 WHERE server_name = ?").bind(Date.now() - lifetime, name).run();
    clearServerKeyMemo();
    await inbound("GET", `/_matrix/key/v2/query/${name}`);
    expect(await counter(`keys:${name}`)).toBe(2);
  });

  it("returns the last document it holds when the server has become unreachable", async () => {
    const name = uniqueServer("ok");
    await inbound("GET", `/_matrix/key/v2/query/${name}`);
    const res = await inbound("GET", `/_matrix/key/v2/query/${name}?minimum_valid_until_ts=${Date.now() + 30 * 24 * 3600_000}`);
    expect(res.body.server_keys).toHaveLength(1);
  });

  it("answers bad queries with Matrix errors", async () => {
    expect(await inbound("POST", "/_matrix/key/v2/query", { body: "{nope" })).toMatchObject({ status: 400, body: { errcode: "M_NOT_JSON" } });
    expect(await inbound("POST", "/_matrix/key/v2/query", { body: "{}" })).toMatchObject({ status: 400, body: { errcode: "M_BAD_JSON" } });
    expect(await inbound("POST", "/_matrix/key/v2/query", { body: '{"server_keys":{"a.test":{"k":{"minimum_valid_until_ts":"x"}}}}' })).toMatchObject({
      status: 400,
      body: { errcode: "M_BAD_JSON" },
    });
    expect(await inbound("GET", "/_matrix/key/v2/query/a.test?minimum_valid_until_ts=abc")).toMatchObject({ status: 400, body: { errcode: "M_INVALID_PARAM" } });
    expect(await inbound("GET", "/_matrix/key/v2/query/not%20a%20name")).toMatchObject({ status: 200, body: { server_keys: [] } });
    expect(await inbound("POST", "/_matrix/key/v2/query", { body: '{"server_keys":{}}' })).toMatchObject({ status: 200, body: { server_keys: [] } });
  });
});
