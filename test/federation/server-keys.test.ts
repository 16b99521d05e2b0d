// Server keys across the two servers (spec: "Retrieving server keys", "Querying keys through another
// server"). Each server, asked as a notary for the other's key ID, fetches the other's key document over
// TLS federation and answers with it, signed by its owner and co-signed by the notary. Synapse only
// talks to other servers over verified TLS, and Myelin's outbound fetch trusts the test CA only through
// NODE_EXTRA_CA_CERTS, so these prove the TLS path (the local CA, both servers on HTTPS) both ways.
import { createPublicKey, verify } from "node:crypto";
import { describe, expect, inject, it } from "vitest";

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

/** Canonical JSON for the check, written independently of protocol/: keys sorted by code point, no
 * whitespace (the documents here hold ASCII strings and integers only). */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    const keys = Object.keys(v).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

/** Whether `doc` carries a valid ed25519 signature by `signer` (spec: "Signing JSON"), with Node's crypto. */
function signedBy(doc: KeyDocument, signer: OwnKeys): boolean {
  const sig = doc.signatures[signer.serverName]?.[signer.keyId];
  if (!sig) return false;
  const { signatures: _s, ...signed } = doc;
  const x = Buffer.from(signer.key, "base64").toString("base64url");
  const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x }, format: "jwk" });
  return verify(null, Buffer.from(canonical(signed)), key, Buffer.from(sig, "base64"));
}

/** The notary's answer is the subject's document, with valid signatures by both and by nobody else. */
function expectCoSigned(docs: KeyDocument[], subject: OwnKeys, notary: OwnKeys): void {
  expect(docs).toHaveLength(1);
  const doc = docs[0]!;
  expect(doc.server_name).toBe(subject.serverName);
  expect(doc.verify_keys[subject.keyId]?.key).toBe(subject.key);
  expect(doc.valid_until_ts).toBeGreaterThan(Date.now());
  expect(Object.keys(doc.signatures).sort()).toEqual([subject.serverName, notary.serverName].sort());
  expect(signedBy(doc, subject)).toBe(true);
  expect(signedBy(doc, notary)).toBe(true);
  // Each signature covers the document: a changed expiry verifies under neither.
  const altered = { ...doc, valid_until_ts: doc.valid_until_ts + 1 };
  expect(signedBy(altered, subject)).toBe(false);
  expect(signedBy(altered, notary)).toBe(false);
}

describe("server keys between Myelin and Synapse", () => {
  it("Synapse fetches Myelin's keys over HTTPS and returns them co-signed", async () => {
    const mine = await ownKeys(myelin.baseUrl);
    const theirs = await ownKeys(synapse.baseUrl);
    expect(mine.serverName).toBe(myelin.serverName);
    expect(theirs.serverName).toBe(synapse.serverName);
    expectCoSigned(await askNotary(synapse.baseUrl, myelin.serverName, mine.keyId), mine, theirs);
  });

  it("Myelin fetches Synapse's keys over HTTPS and returns them co-signed", async () => {
    const mine = await ownKeys(myelin.baseUrl);
    const theirs = await ownKeys(synapse.baseUrl);
    expectCoSigned(await askNotary(myelin.baseUrl, synapse.serverName, theirs.keyId), theirs, mine);
  });

  it("neither notary vouches for a server that does not answer", async () => {
    // A port nobody listens on: the fetch fails at once (connection refused), and the answer is empty.
    const nobody = `localhost:${inject("unusedPort")}`;
    expect(await askNotary(myelin.baseUrl, nobody, "ed25519:a_none")).toEqual([]);
    expect(await askNotary(synapse.baseUrl, nobody, "ed25519:a_none")).toEqual([]);
  });
});
