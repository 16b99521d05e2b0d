// Ed25519 signing of JSON and events against the spec's figures (Appendices, "Cryptographic Test
// Vectors"; test/fixtures/vectors/signing.json), cross-checked with @noble/ed25519.
import * as ed from "@noble/ed25519";
import { describe, expect, it } from "vitest";
import vectors from "../fixtures/vectors/signing.json";
import { decodeBase64, encodeBase64 } from "../../protocol/base64.js";
import { canonicalJsonBytes } from "../../protocol/canonical-json.js";
import { checkContentHash, contentHash, eventIdFor, hashAndSignEvent, verifyEventSignature } from "../../protocol/event-hashes.js";
import type { JsonObject } from "../../protocol/json.js";
import type { Pdu } from "../../protocol/pdu.js";
import { redactPdu } from "../../protocol/redaction.js";
import { roomVersionRules, type RoomVersionRules } from "../../protocol/room-versions.js";
import { nobleSign, noblePublicKey, nobleVerify } from "../../protocol/signing-noble.js";
import {
  formatSigningKeyFile,
  parseSigningKeyFile,
  signBytes,
  signJson,
  signableBytes,
  signingKeyFromSeed,
  verifyBytes,
  verifyJsonSignature,
} from "../../protocol/signing.js";

const { signing_key: K } = vectors;
const seed = decodeBase64(K.seed_unpadded_base64);
const key = () => signingKeyFromSeed(seed, K.version);
const rules = (v: string): RoomVersionRules => roomVersionRules(v)!;
const clone = <T>(v: T): T => structuredClone(v);
type Signed = JsonObject & { signatures: Record<string, Record<string, string>> };
const sigOf = (o: JsonObject) => (o as Signed).signatures[K.entity]![K.key_id]!;

describe("signing key", () => {
  it("derives the spec's public key from the seed on WebCrypto", async () => {
    const k = await key();
    expect(k.keyId).toBe(K.key_id);
    expect(k.publicKey).toBe(K.public_key_unpadded_base64);
  });

  it("derives the same public key with @noble/ed25519", async () => {
    expect(await noblePublicKey(seed)).toBe(K.public_key_unpadded_base64);
    expect(encodeBase64(await ed.getPublicKeyAsync(seed))).toBe(K.public_key_unpadded_base64);
  });

  it("rejects a seed of the wrong length", async () => {
    await expect(signingKeyFromSeed(new Uint8Array(31), "1")).rejects.toThrow();
  });

  it("parses and formats Synapse's signing.key line", async () => {
    const text = `ed25519 a_AbC ${K.seed_unpadded_base64}\n`;
    const parsed = await parseSigningKeyFile(text);
    expect(parsed.keyId).toBe("ed25519:a_AbC");
    expect([...parsed.seed]).toEqual([...seed]);
    expect(parsed.publicKey).toBe(K.public_key_unpadded_base64);
    // The spec writes the seed with non-zero trailing bits ("...XA1"); it decodes to the same 32
    // bytes as the canonical encoding ("...XA0"), which is what we write back.
    expect(K.seed_unpadded_base64.endsWith("XA1")).toBe(true);
    expect(formatSigningKeyFile(parsed)).toBe(`ed25519 a_AbC ${encodeBase64(seed)}`);
    expect(encodeBase64(seed)).toBe(K.seed_unpadded_base64.slice(0, -1) + "0");
    const reparsed = await parseSigningKeyFile(formatSigningKeyFile(parsed));
    expect(reparsed.publicKey).toBe(parsed.publicKey);
  });

  it("rejects malformed signing.key lines", async () => {
    await expect(parseSigningKeyFile(`ed448 1 ${K.seed_unpadded_base64}`)).rejects.toThrow();
    await expect(parseSigningKeyFile(`ed25519 1`)).rejects.toThrow();
    await expect(parseSigningKeyFile(`ed25519 a:b ${K.seed_unpadded_base64}`)).rejects.toThrow();
    await expect(parseSigningKeyFile(`ed25519 1 AAAA`)).rejects.toThrow();
  });
});

describe("signing JSON", () => {
  for (const { input, signature } of vectors.json) {
    it(`signs ${JSON.stringify(input)} as the spec does`, async () => {
      const signed = await signJson(input as JsonObject, K.entity, await key());
      expect(signed.signatures).toEqual({ [K.entity]: { [K.key_id]: signature } });
      expect(await verifyJsonSignature(signed, K.entity, K.key_id, K.public_key_unpadded_base64)).toBe(true);
    });

    it(`gets the same signature from @noble/ed25519 for ${JSON.stringify(input)}`, async () => {
      const bytes = canonicalJsonBytes(input);
      expect(await nobleSign(seed, bytes)).toBe(signature);
      expect(await nobleVerify(K.public_key_unpadded_base64, bytes, signature)).toBe(true);
      expect(await signBytes(await key(), bytes)).toBe(signature);
    });
  }

  it("ignores signatures and unsigned when signing and verifying", async () => {
    const obj: JsonObject = { one: 1, two: "Two", unsigned: { age_ts: 5 }, signatures: { other: { "ed25519:x": "abc" } } };
    const signed = (await signJson(obj, K.entity, await key())) as Signed;
    expect(sigOf(signed)).toBe(vectors.json[1]!.signature);
    expect(signed.signatures["other"]).toEqual({ "ed25519:x": "abc" });
    expect(signed.unsigned).toEqual({ age_ts: 5 });
    const changedUnsigned = { ...signed, unsigned: { age_ts: 99 } };
    expect(await verifyJsonSignature(changedUnsigned, K.entity, K.key_id, K.public_key_unpadded_base64)).toBe(true);
  });

  it("rejects a tampered object, a wrong key, a missing or malformed signature", async () => {
    const signed: JsonObject = await signJson({ one: 1, two: "Two" }, K.entity, await key());
    const pub = K.public_key_unpadded_base64;
    expect(await verifyJsonSignature({ ...signed, two: "two" }, K.entity, K.key_id, pub)).toBe(false);
    expect(await verifyJsonSignature({ ...signed, three: 3 }, K.entity, K.key_id, pub)).toBe(false);
    const other = await signingKeyFromSeed(new Uint8Array(32).fill(7), "1");
    expect(await verifyJsonSignature(signed, K.entity, K.key_id, other.publicKey)).toBe(false);
    expect(await verifyJsonSignature(signed, "elsewhere", K.key_id, pub)).toBe(false);
    expect(await verifyJsonSignature(signed, K.entity, "ed25519:2", pub)).toBe(false);
    const bytes = signableBytes(signed);
    expect(await verifyBytes(pub, bytes, "not base64!")).toBe(false);
    expect(await verifyBytes(pub, bytes, "AAAA")).toBe(false);
    const flipped = decodeBase64(sigOf(signed));
    flipped[10]! ^= 1;
    expect(await verifyBytes(pub, bytes, encodeBase64(flipped))).toBe(false);
    expect(await nobleVerify(pub, bytes, encodeBase64(flipped))).toBe(false);
    expect(await nobleVerify(pub, new TextEncoder().encode("{}"), sigOf(signed))).toBe(false);
    expect(await nobleVerify("AAAA", bytes, sigOf(signed))).toBe(false);
  });

  it("agrees with @noble/ed25519 on a random key and message", async () => {
    const k = await signingKeyFromSeed(crypto.getRandomValues(new Uint8Array(32)), "r");
    const bytes = crypto.getRandomValues(new Uint8Array(300));
    const web = await signBytes(k, bytes);
    expect(await nobleSign(k.seed, bytes)).toBe(web); // Ed25519 signatures are deterministic
    expect(await nobleVerify(k.publicKey, bytes, web)).toBe(true);
    expect(await verifyBytes(k.publicKey, bytes, await nobleSign(k.seed, bytes))).toBe(true);
  });
});

describe("signing events", () => {
  for (const [i, ev] of vectors.events.entries()) {
    describe(`spec event ${i + 1}: ${ev.note}`, () => {
      const input = ev.input as unknown as Pdu;

      it("has the spec's content hash", async () => {
        expect(await contentHash(clone(input))).toBe(ev.content_hash);
      });

      it("is signed as the spec shows under v1-v10 redaction", async () => {
        // v1-v2 need an event_id in the PDU; only the second spec event has one.
        const versions = typeof input.event_id === "string" ? ["1", "3", "10"] : ["3", "10"];
        for (const v of versions) {
          const { pdu } = await hashAndSignEvent(clone(input), K.entity, await key(), rules(v));
          expect(pdu.hashes.sha256).toBe(ev.content_hash);
          expect(pdu.signatures).toEqual({ [K.entity]: { [K.key_id]: ev.signature } });
          // The full event keeps everything, unsigned included.
          expect(pdu.unsigned).toEqual({ age_ts: 1000000 });
          expect(pdu.content).toEqual(input.content);
          expect(pdu.origin).toBe("domain");
          expect(await checkContentHash(pdu)).toBe(true);
          expect(await verifyEventSignature(pdu, K.entity, K.key_id, K.public_key_unpadded_base64, rules(v))).toBe(true);
        }
      });

      it("signs differently under v11 redaction (top-level origin is dropped)", async () => {
        const { pdu } = await hashAndSignEvent(clone(input), K.entity, await key(), rules("11"));
        expect(pdu.hashes.sha256).toBe(ev.content_hash);
        const sig = pdu.signatures[K.entity]![K.key_id]!;
        expect(sig).not.toBe(ev.signature);
        expect(await verifyEventSignature(pdu, K.entity, K.key_id, K.public_key_unpadded_base64, rules("11"))).toBe(true);
        // The v10 signature does not verify under v11 rules, nor the v11 one under v10 rules.
        const v10 = { ...pdu, signatures: { [K.entity]: { [K.key_id]: ev.signature } } };
        expect(await verifyEventSignature(v10, K.entity, K.key_id, K.public_key_unpadded_base64, rules("11"))).toBe(false);
        expect(await verifyEventSignature(pdu, K.entity, K.key_id, K.public_key_unpadded_base64, rules("10"))).toBe(false);
      });

      it("matches @noble/ed25519 over the redacted form", async () => {
        const hashed = { ...clone(input), hashes: { sha256: ev.content_hash } } as Pdu;
        const bytes = signableBytes(redactPdu(hashed, rules("10")) as unknown as JsonObject);
        expect(await nobleSign(seed, bytes)).toBe(ev.signature);
        expect(await nobleVerify(K.public_key_unpadded_base64, bytes, ev.signature)).toBe(true);
      });
    });
  }

  it("refuses to sign a v1 event without an event_id", async () => {
    const noId = vectors.events[0]!.input as unknown as Pdu;
    await expect(hashAndSignEvent(clone(noId), K.entity, await key(), rules("1"))).rejects.toThrow(/event_id/);
  });

  it("computes the jki.re create event's v3 and v4+ event IDs", async () => {
    const [vector] = vectors.event_ids;
    const create = vector!.input as unknown as Pdu;
    expect(await checkContentHash(create)).toBe(true);
    expect(await eventIdFor(clone(create), rules("3"))).toBe(vector!.v3);
    for (const v of ["4", "5", "10"]) expect(await eventIdFor(clone(create), rules(v))).toBe(vector!.v4_and_later);
    // v11 keeps the whole create content and drops origin/prev_state: a different reference hash.
    expect(await eventIdFor(clone(create), rules("11"))).not.toBe(vector!.v4_and_later);
  });
});
