// Server keys across the two servers (spec: "Retrieving server keys", "Querying keys through another
// server"). Each server, asked as a notary for the other's key ID, fetches the other's key document over
// TLS federation and answers with it, signed by its owner and co-signed by the notary. Synapse only
// talks to other servers over verified TLS, and Myelin's outbound fetch trusts the test CA only through
// NODE_EXTRA_CA_CERTS, so these prove the TLS path (the local CA, both servers on HTTPS) both ways.
import { describe, expect, inject, it } from "vitest";
import { verifyJsonSignature } from "../../protocol/signing.js";
import type { JsonObject } from "../../protocol/json.js";

const myelin = inject("myelin");
const synapse = inject("synapse");

interface KeyDocument {
  server_name: string;
  valid_until_ts: number;
  verify_keys: Record<string, { key: string }>;
  old_verify_keys: Record<string, unknown>;
  signatures: Record<string, Record<string, string>>;
}

interface OwnKeys {
  serverName: string;
  keyId: string;
  key: string;
}

async function ownKeys(baseUrl: string): Promise<OwnKeys> {
  const res = await fetch(`${baseUrl}/_matrix/key/v2/server`);
  expect(res.status).toBe(200);
  const doc = (await res.json()) as KeyDocument;
  const [keyId, { key }] = Object.entries(doc.verify_keys)[0]!;
  return { serverName: doc.server_name, keyId, key };
}

/** POST /_matrix/key/v2/query on `notaryUrl` for one key of `serverName`. (Synapse serves the notary API
 * on its client listener too: the `federation` resource, plain HTTP.) */
async function askNotary(notaryUrl: string, serverName: string, keyId: string): Promise<KeyDocument[]> {
  const res = await fetch(`${notaryUrl}/_matrix/key/v2/query`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ server_keys: { [serverName]: { [keyId]: { minimum_valid_until_ts: 0 } } } }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { server_keys: KeyDocument[] }).server_keys;
}

/** The notary's answer is the subject's document, with valid signatures by both and by nobody else. */
async function expectCoSigned(docs: KeyDocument[], subject: OwnKeys, notary: OwnKeys): Promise<void> {
  expect(docs).toHaveLength(1);
  const doc = docs[0]!;
  expect(doc.server_name).toBe(subject.serverName);
  expect(doc.verify_keys[subject.keyId]?.key).toBe(subject.key);
  expect(doc.valid_until_ts).toBeGreaterThan(Date.now());
  expect(Object.keys(doc.signatures).sort()).toEqual([subject.serverName, notary.serverName].sort());
  const signed = doc as unknown as JsonObject;
  expect(await verifyJsonSignature(signed, subject.serverName, subject.keyId, subject.key)).toBe(true);
  expect(await verifyJsonSignature(signed, notary.serverName, notary.keyId, notary.key)).toBe(true);
  // Each signature covers the document: a changed expiry verifies under neither.
  const altered = { ...doc, valid_until_ts: doc.valid_until_ts + 1 } as unknown as JsonObject;
  expect(await verifyJsonSignature(altered, subject.serverName, subject.keyId, subject.key)).toBe(false);
  expect(await verifyJsonSignature(altered, notary.serverName, notary.keyId, notary.key)).toBe(false);
}

describe("server keys between Myelin and Synapse", () => {
  it("Synapse fetches Myelin's keys over HTTPS and returns them co-signed", async () => {
    const mine = await ownKeys(myelin.baseUrl);
    const theirs = await ownKeys(synapse.baseUrl);
    expect(mine.serverName).toBe(myelin.serverName);
    expect(theirs.serverName).toBe(synapse.serverName);
    await expectCoSigned(await askNotary(synapse.baseUrl, myelin.serverName, mine.keyId), mine, theirs);
  });

  it("Myelin fetches Synapse's keys over HTTPS and returns them co-signed", async () => {
    const mine = await ownKeys(myelin.baseUrl);
    const theirs = await ownKeys(synapse.baseUrl);
    await expectCoSigned(await askNotary(myelin.baseUrl, synapse.serverName, theirs.keyId), theirs, mine);
  });

  it("neither notary vouches for a server that does not answer", async () => {
    // A port nobody listens on: the fetch fails at once (connection refused), and the answer is empty.
    const nobody = `localhost:${inject("unusedPort")}`;
    expect(await askNotary(myelin.baseUrl, nobody, "ed25519:a_none")).toEqual([]);
    expect(await askNotary(synapse.baseUrl, nobody, "ed25519:a_none")).toEqual([]);
  });
});
