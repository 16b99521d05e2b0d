// Synapse fetches Myelin's server keys over HTTPS federation (spec: "Retrieving server keys", "Querying
// keys through another server"): asked as a notary for Myelin's key ID, Synapse answers with Myelin's
// key document, signed by Myelin and co-signed by Synapse. Synapse only talks to other servers over
// verified TLS, so this proves the TLS path (the local CA, Myelin served over HTTPS) end to end.
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

async function ownKeys(baseUrl: string): Promise<{ keyId: string; key: string; doc: KeyDocument }> {
  const res = await fetch(`${baseUrl}/_matrix/key/v2/server`);
  expect(res.status).toBe(200);
  const doc = (await res.json()) as KeyDocument;
  const [keyId, { key }] = Object.entries(doc.verify_keys)[0]!;
  return { keyId, key, doc };
}

async function askNotary(serverName: string, keyId: string): Promise<{ status: number; body: { server_keys?: KeyDocument[] } }> {
  // Synapse serves the notary API on its client listener too (`federation` resource, plain HTTP).
  const res = await fetch(`${synapse.baseUrl}/_matrix/key/v2/query`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ server_keys: { [serverName]: { [keyId]: { minimum_valid_until_ts: 0 } } } }),
  });
  return { status: res.status, body: (await res.json()) as { server_keys?: KeyDocument[] } };
}

describe("Synapse fetches Myelin's keys over federation", () => {
  it("returns Myelin's key document, signed by Myelin and co-signed by Synapse", async () => {
    const mine = await ownKeys(myelin.baseUrl);
    const theirs = await ownKeys(synapse.baseUrl);
    expect(mine.doc.server_name).toBe(myelin.serverName);

    const { status, body } = await askNotary(myelin.serverName, mine.keyId);
    expect(status).toBe(200);
    expect(body.server_keys).toHaveLength(1);
    const doc = body.server_keys![0]!;
    expect(doc.server_name).toBe(myelin.serverName);
    expect(doc.verify_keys[mine.keyId]?.key).toBe(mine.key);
    expect(doc.valid_until_ts).toBeGreaterThan(Date.now());
    expect(Object.keys(doc.signatures).sort()).toEqual([myelin.serverName, synapse.serverName].sort());

    const signed = doc as unknown as JsonObject;
    expect(await verifyJsonSignature(signed, myelin.serverName, mine.keyId, mine.key)).toBe(true);
    expect(await verifyJsonSignature(signed, synapse.serverName, theirs.keyId, theirs.key)).toBe(true);
    // Each signature covers the document: a changed expiry verifies under neither.
    const altered = { ...doc, valid_until_ts: doc.valid_until_ts + 1 } as unknown as JsonObject;
    expect(await verifyJsonSignature(altered, myelin.serverName, mine.keyId, mine.key)).toBe(false);
    expect(await verifyJsonSignature(altered, synapse.serverName, theirs.keyId, theirs.key)).toBe(false);
  });
});
