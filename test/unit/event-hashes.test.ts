// Event IDs, room IDs, content hashes, event signatures per room version, and PDU format checks
// (spec: Server-Server API, "Signing Events"; room versions, "Event IDs"; v12 / MSC4291 room IDs;
// Client-Server API, "Size limits").
import { describe, expect, it } from "vitest";
import { decodeBase64, encodeBase64, encodeBase64Url } from "../../protocol/base64.js";
import { canonicalJsonBytes } from "../../protocol/canonical-json.js";
import {
  checkContentHash,
  contentHash,
  eventIdFor,
  hashAndSignEvent,
  referenceHash,
  roomIdFromCreateEvent,
  verifyEventSignature,
} from "../../protocol/event-hashes.js";
import { validatePduFormat } from "../../protocol/event-validation.js";
import type { Pdu } from "../../protocol/pdu.js";
import { redactPdu } from "../../protocol/redaction.js";
import { ROOM_VERSIONS, roomVersionRules, type RoomVersionRules } from "../../protocol/room-versions.js";
import { signingKeyFromSeed, type SigningKey } from "../../protocol/signing.js";

const rules = (v: string): RoomVersionRules => roomVersionRules(v)!;
const ALL = [...ROOM_VERSIONS.keys()];
const SERVER = "example.org";
const key = (): Promise<SigningKey> => signingKeyFromSeed(new Uint8Array(32).fill(42), "a1");

/** An unsigned message PDU in the shape of room version `v`. */
function message(v: string, body = "hello"): Pdu {
  const r = rules(v);
  const ref = (id: string) => (r.eventFormat.eventIdInPdu ? [id, { sha256: "aGFzaA" }] : id);
  const pdu: Pdu = {
    type: "m.room.message",
    room_id: r.roomIdFormat === "create-event-hash" ? "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ" : "!room:example.org",
    sender: "@alice:example.org",
    origin_server_ts: 1_700_000_000_000,
    content: { msgtype: "m.text", body },
    prev_events: [ref(r.eventFormat.eventIdInPdu ? "$prev:example.org" : "$prev")] as Pdu["prev_events"],
    auth_events: [ref(r.eventFormat.eventIdInPdu ? "$auth:example.org" : "$auth")] as Pdu["auth_events"],
    depth: 7,
    hashes: {} as Pdu["hashes"],
    signatures: {},
    unsigned: { age: 5 },
  };
  if (r.eventFormat.eventIdInPdu) pdu.event_id = "$abc:example.org";
  return pdu;
}

function createEvent(v: string): Pdu {
  const r = rules(v);
  const pdu: Pdu = {
    type: "m.room.create",
    state_key: "",
    sender: "@alice:example.org",
    origin_server_ts: 1_700_000_000_000,
    content: { room_version: v },
    prev_events: [],
    auth_events: [],
    depth: 1,
    hashes: {} as Pdu["hashes"],
    signatures: {},
  };
  if (r.roomIdFormat !== "create-event-hash") pdu.room_id = "!room:example.org";
  if (r.eventFormat.eventIdInPdu) pdu.event_id = "$create:example.org";
  return pdu;
}

describe("event IDs", () => {
  it("v1-v2: the event_id the PDU carries", async () => {
    for (const v of ["1", "2"]) {
      const { pdu, eventId } = await hashAndSignEvent(message(v), SERVER, await key(), rules(v));
      expect(eventId).toBe("$abc:example.org");
      expect(await eventIdFor(pdu, rules(v))).toBe("$abc:example.org");
    }
    await expect(eventIdFor({ ...message("1"), event_id: undefined }, rules("1"))).rejects.toThrow();
  });

  it("v3: $ + standard unpadded base64 of the reference hash", async () => {
    const { pdu, eventId } = await hashAndSignEvent(message("3"), SERVER, await key(), rules("3"));
    const hash = await referenceHash(pdu, rules("3"));
    expect(hash.length).toBe(32);
    expect(eventId).toBe("$" + encodeBase64(hash));
    expect(eventId).toMatch(/^\$[A-Za-z0-9+/]{43}$/);
  });

  it("v4+: $ + URL-safe unpadded base64 of the reference hash", async () => {
    for (const v of ALL.filter((x) => Number(x) >= 4)) {
      const { pdu, eventId } = await hashAndSignEvent(message(v), SERVER, await key(), rules(v));
      expect(eventId).toBe("$" + encodeBase64Url(await referenceHash(pdu, rules(v))));
      expect(eventId).toMatch(/^\$[A-Za-z0-9_-]{43}$/);
    }
  });

  it("the reference hash covers the redacted form, not signatures, unsigned or redactable content", async () => {
    const r = rules("11");
    const { pdu, eventId } = await hashAndSignEvent(message("11"), SERVER, await key(), r);
    const { signatures: _s, ...withoutSignatures } = redactPdu(pdu, r);
    const digest = await crypto.subtle.digest("SHA-256", canonicalJsonBytes(withoutSignatures));
    const expected = "$" + encodeBase64Url(new Uint8Array(digest));
    expect(eventId).toBe(expected);
    // Same ID after redaction, with other signatures or other unsigned data.
    expect(await eventIdFor(redactPdu(pdu, r), r)).toBe(eventId);
    expect(await eventIdFor({ ...pdu, unsigned: { age: 1 }, signatures: { x: { "ed25519:1": "y" } } }, r)).toBe(eventId);
    // Changing the content changes the content hash, which the reference hash covers.
    const other = await hashAndSignEvent(message("11", "bye"), SERVER, await key(), r);
    expect(other.eventId).not.toBe(eventId);
    // Changing a kept key changes the ID.
    expect(await eventIdFor({ ...pdu, depth: 8 }, r)).not.toBe(eventId);
  });
});

describe("v12 room IDs (MSC4291)", () => {
  it("is ! + the URL-safe reference hash of the create event, i.e. its event ID with ! for $", async () => {
    const r = rules("12");
    const { pdu, eventId } = await hashAndSignEvent(createEvent("12"), SERVER, await key(), r);
    const roomId = await roomIdFromCreateEvent(pdu, r);
    expect(roomId).toBe("!" + eventId.slice(1));
    expect(roomId).toBe("!" + encodeBase64Url(await referenceHash(pdu, r)));
    expect(roomId).toMatch(/^![A-Za-z0-9_-]{43}$/);
    expect(roomId).not.toContain(":");
    expect(validatePduFormat(pdu, r)).toEqual({ ok: true });
  });

  it("differs for a different create event", async () => {
    const r = rules("12");
    const a = (await hashAndSignEvent(createEvent("12"), SERVER, await key(), r)).pdu;
    const b = (await hashAndSignEvent({ ...createEvent("12"), origin_server_ts: 1 }, SERVER, await key(), r)).pdu;
    expect(await roomIdFromCreateEvent(a, r)).not.toBe(await roomIdFromCreateEvent(b, r));
  });

  it("older versions: the room_id the create event carries", async () => {
    expect(await roomIdFromCreateEvent(createEvent("11"), rules("11"))).toBe("!room:example.org");
    await expect(roomIdFromCreateEvent(message("12"), rules("12"))).rejects.toThrow();
  });
});

describe("content hashes", () => {
  it("is the SHA-256 of the event without unsigned, signatures and hashes", async () => {
    const pdu = message("10");
    const { unsigned: _u, signatures: _s, hashes: _h, ...rest } = pdu;
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", canonicalJsonBytes(rest)));
    expect(await contentHash(pdu)).toBe(encodeBase64(digest));
    expect(await contentHash({ ...pdu, unsigned: { x: 1 }, signatures: { a: { b: "c" } }, hashes: { sha256: "x" } })).toBe(encodeBase64(digest));
  });

  it("passes on a signed event and fails after a content change", async () => {
    for (const v of ALL) {
      const { pdu } = await hashAndSignEvent(message(v), SERVER, await key(), rules(v));
      expect(await checkContentHash(pdu), `v${v}`).toBe(true);
      expect(await checkContentHash({ ...pdu, content: { ...pdu.content, body: "changed" } }), `v${v}`).toBe(false);
      expect(await checkContentHash({ ...pdu, unsigned: { age: 999 } }), `v${v}`).toBe(true);
    }
  });

  it("fails on a redacted event, a missing, malformed or padded-wrong hash, and non-canonical JSON", async () => {
    const r = rules("11");
    const { pdu } = await hashAndSignEvent(message("11"), SERVER, await key(), r);
    expect(await checkContentHash(redactPdu(pdu, r))).toBe(false);
    expect(await checkContentHash({ ...pdu, hashes: {} as Pdu["hashes"] })).toBe(false);
    expect(await checkContentHash({ ...pdu, hashes: { sha256: "!!" } })).toBe(false);
    expect(await checkContentHash({ ...pdu, hashes: { sha256: pdu.hashes.sha256.slice(0, -2) } })).toBe(false);
    expect(await checkContentHash({ ...pdu, content: { n: 1.5 } })).toBe(false);
    // Padded base64 of the right hash is accepted (the spec compares decoded bytes).
    expect(await checkContentHash({ ...pdu, hashes: { sha256: pdu.hashes.sha256 + "=" } })).toBe(true);
  });

  it("keeps other hash algorithms and other servers' signatures when signing", async () => {
    const input = { ...message("11"), hashes: { sha256: "old", blake3: "b" } as Pdu["hashes"], signatures: { "other.org": { "ed25519:x": "sig" } } };
    const k = await key();
    const { pdu } = await hashAndSignEvent(input, SERVER, k, rules("11"));
    expect((pdu.hashes as Record<string, string>)["blake3"]).toBe("b");
    expect(pdu.hashes.sha256).toBe(await contentHash(input));
    expect(pdu.signatures["other.org"]).toEqual({ "ed25519:x": "sig" });
    expect(Object.keys(pdu.signatures[SERVER]!)).toEqual([k.keyId]);
    expect(input.hashes.sha256).toBe("old"); // the input is not modified
  });
});

describe("event signatures", () => {
  for (const v of ALL) {
    it(`v${v}: sign then verify, full and redacted; tampering fails`, async () => {
      const r = rules(v);
      const k = await key();
      const { pdu } = await hashAndSignEvent(message(v), SERVER, k, r);
      const sig = pdu.signatures[SERVER]![k.keyId]!;
      expect(decodeBase64(sig).length).toBe(64);
      expect(await verifyEventSignature(pdu, SERVER, k.keyId, k.publicKey, r)).toBe(true);
      // The signature covers only the redacted form: it survives redaction and content changes
      // (which the content hash catches instead).
      expect(await verifyEventSignature(redactPdu(pdu, r), SERVER, k.keyId, k.publicKey, r)).toBe(true);
      expect(await verifyEventSignature({ ...pdu, content: { body: "other" } }, SERVER, k.keyId, k.publicKey, r)).toBe(true);
      // Tampering with kept keys breaks it.
      expect(await verifyEventSignature({ ...pdu, sender: "@mallory:example.org" }, SERVER, k.keyId, k.publicKey, r)).toBe(false);
      expect(await verifyEventSignature({ ...pdu, hashes: { sha256: "AAAA" } }, SERVER, k.keyId, k.publicKey, r)).toBe(false);
      expect(await verifyEventSignature({ ...pdu, origin_server_ts: 1 }, SERVER, k.keyId, k.publicKey, r)).toBe(false);
      // Wrong server, key ID, public key, or a malformed signature.
      const other = await signingKeyFromSeed(new Uint8Array(32).fill(1), "a1");
      expect(await verifyEventSignature(pdu, "other.org", k.keyId, k.publicKey, r)).toBe(false);
      expect(await verifyEventSignature(pdu, SERVER, "ed25519:zz", k.publicKey, r)).toBe(false);
      expect(await verifyEventSignature(pdu, SERVER, k.keyId, other.publicKey, r)).toBe(false);
      expect(await verifyEventSignature(pdu, SERVER, k.keyId, "AAAA", r)).toBe(false);
      const bad = { ...pdu, signatures: { [SERVER]: { [k.keyId]: sig.slice(0, -4) + "AAAA" } } };
      expect(await verifyEventSignature(bad, SERVER, k.keyId, k.publicKey, r)).toBe(false);
    });
  }

  it("v1-v10 signatures cover top-level origin, v11+ ones do not", async () => {
    const k = await key();
    for (const [v, covered] of [["10", true], ["11", false]] as const) {
      const r = rules(v);
      const { pdu } = await hashAndSignEvent({ ...message(v), origin: SERVER }, SERVER, k, r);
      const changed = { ...pdu, origin: "elsewhere.org" };
      expect(await verifyEventSignature(changed, SERVER, k.keyId, k.publicKey, r)).toBe(!covered);
    }
  });

  it("v11+ signatures cover content.redacts of a redaction; v1-v10 ones do not", async () => {
    const k = await key();
    for (const [v, covered] of [["10", false], ["11", true]] as const) {
      const r = rules(v);
      const input = { ...message(v), type: "m.room.redaction", content: { redacts: "$target" } };
      const { pdu } = await hashAndSignEvent(input, SERVER, k, r);
      const changed = { ...pdu, content: { redacts: "$other" } };
      expect(await verifyEventSignature(changed, SERVER, k.keyId, k.publicKey, r)).toBe(!covered);
    }
  });

  it("returns false for an event that is not canonical JSON", async () => {
    const k = await key();
    const r = rules("11");
    const { pdu } = await hashAndSignEvent(message("11"), SERVER, k, r);
    expect(await verifyEventSignature({ ...pdu, depth: 1.5 }, SERVER, k.keyId, k.publicKey, r)).toBe(false);
  });
});

describe("PDU format (validatePduFormat)", () => {
  async function signed(v: string, pdu: Pdu = message(v)): Promise<Pdu> {
    return (await hashAndSignEvent(pdu, SERVER, await key(), rules(v))).pdu;
  }
  const reject = (pdu: unknown, v: string, reason: RegExp) => {
    const result = validatePduFormat(pdu, rules(v));
    expect(result.ok, JSON.stringify(result)).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(reason);
  };

  it("accepts well-formed events of every version", async () => {
    for (const v of ALL) {
      expect(validatePduFormat(await signed(v), rules(v)), `v${v}`).toEqual({ ok: true });
      expect(validatePduFormat(await signed(v, createEvent(v)), rules(v)), `v${v} create`).toEqual({ ok: true });
    }
  });

  it("accepts the spec's jki.re create event as a v5 event", async () => {
    const { default: vectors } = await import("../fixtures/vectors/signing.json");
    expect(validatePduFormat(vectors.event_ids[0]!.input, rules("5"))).toEqual({ ok: true });
  });

  it("rejects non-objects", () => {
    for (const x of [null, [], "pdu", 3]) reject(x, "11", /JSON object/);
  });

  it("rejects an event over 65536 bytes of canonical JSON, accepts one at the limit", async () => {
    const base = await signed("11");
    const size = (p: unknown) => canonicalJsonBytes(p).length;
    const pad = (n: number) => ({ ...base, content: { ...base.content, pad: "x".repeat(n) } });
    const atLimit = pad(65536 - size(pad(0)));
    expect(size(atLimit)).toBe(65536);
    expect(validatePduFormat(atLimit, rules("11"))).toEqual({ ok: true });
    reject(pad(65537 - size(pad(0))), "11", /65536 bytes/);
    // Multi-byte characters count in UTF-8 bytes, signatures count too.
    reject({ ...base, content: { pad: "é".repeat(33000) } }, "11", /65536 bytes/);
    reject({ ...base, signatures: { [SERVER]: { "ed25519:x": "s".repeat(66000) } } }, "11", /65536 bytes/);
  });

  it("limits state_key, type, sender, room_id and event_id to 255 bytes", async () => {
    const base = await signed("11");
    expect(validatePduFormat({ ...base, state_key: "a".repeat(255) }, rules("11"))).toEqual({ ok: true });
    reject({ ...base, state_key: "a".repeat(256) }, "11", /state_key/);
    reject({ ...base, state_key: "é".repeat(128) }, "11", /state_key/); // 256 bytes, 128 characters
    reject({ ...base, type: "t".repeat(256) }, "11", /type/);
    reject({ ...base, sender: "@" + "a".repeat(250) + ":b.org" }, "11", /sender/);
    reject({ ...base, room_id: "!" + "a".repeat(250) + ":b.org" }, "11", /room_id/);
    const v1 = await signed("1");
    reject({ ...v1, event_id: "$" + "a".repeat(250) + ":b.org" }, "1", /event_id/);
  });

  it("checks sigils of sender and room_id", async () => {
    const base = await signed("11");
    reject({ ...base, sender: "alice:example.org" }, "11", /sender/);
    reject({ ...base, sender: "!alice:example.org" }, "11", /sender/);
    reject({ ...base, sender: "@alice" }, "11", /sender/);
    reject({ ...base, sender: "@alice:" }, "11", /sender/);
    reject({ ...base, sender: 5 }, "11", /sender/);
    // Historical user IDs: odd localparts, even an empty one, must be accepted.
    expect(validatePduFormat({ ...base, sender: "@Alice Ü:example.org" }, rules("11"))).toEqual({ ok: true });
    expect(validatePduFormat({ ...base, sender: "@:example.org" }, rules("11"))).toEqual({ ok: true });
    reject({ ...base, room_id: "#room:example.org" }, "11", /room_id/);
    reject({ ...base, room_id: "!nodomain" }, "11", /room_id/); // pre-v12 room IDs have a domain
    const v12 = await signed("12");
    reject({ ...v12, room_id: "$Nhcu5BS" }, "12", /room_id/);
    reject({ ...v12, room_id: undefined }, "12", /room_id/);
  });

  it("v12: the create event must not have a room_id; earlier versions require it", async () => {
    const create12 = await signed("12", createEvent("12"));
    expect(validatePduFormat(create12, rules("12"))).toEqual({ ok: true });
    reject({ ...create12, room_id: "!abc:example.org" }, "12", /must not have a room_id/);
    const create11 = await signed("11", createEvent("11"));
    reject({ ...create11, room_id: undefined }, "11", /room_id/);
  });

  it("requires type, content, hashes, signatures, prev/auth events, depth and origin_server_ts", async () => {
    const base = (await signed("11")) as Record<string, unknown>;
    for (const k of ["type", "content", "hashes", "signatures", "prev_events", "auth_events", "depth", "origin_server_ts"]) {
      const { [k]: _drop, ...rest } = base;
      reject(rest, "11", new RegExp(k.replace("_events", "")));
    }
    reject({ ...base, content: [] }, "11", /content/);
    reject({ ...base, hashes: { sha256: 1 } }, "11", /hashes/);
    reject({ ...base, signatures: { [SERVER]: "sig" } }, "11", /signatures/);
    reject({ ...base, signatures: { [SERVER]: { k: 1 } } }, "11", /signatures/);
    reject({ ...base, unsigned: "x" }, "11", /unsigned/);
    reject({ ...base, state_key: 1 }, "11", /state_key/);
  });

  it("checks depth and origin_server_ts ranges", async () => {
    const base = await signed("11");
    reject({ ...base, depth: -1 }, "11", /depth/);
    reject({ ...base, depth: "7" }, "11", /depth/);
    expect(validatePduFormat({ ...base, depth: 2 ** 53 - 1 }, rules("11"))).toEqual({ ok: true });
    reject({ ...base, depth: 2 ** 53 }, "11", /canonical JSON/); // v6+: out of the canonical range
    reject({ ...base, origin_server_ts: "1" }, "11", /origin_server_ts/);
    // v1-v5 allow depth up to 2^63 - 1 (no strict canonical JSON).
    const v5 = await signed("5");
    expect(validatePduFormat({ ...v5, depth: 2 ** 60 }, rules("5"))).toEqual({ ok: true });
    reject({ ...v5, depth: 2 ** 63 }, "5", /depth/);
    reject({ ...v5, depth: 1.5 }, "5", /depth/);
    reject({ ...v5, origin_server_ts: 2 ** 64 }, "5", /origin_server_ts/);
  });

  it("prev_events/auth_events: event IDs in v3+, [id, hashes] pairs in v1-v2, bounded counts", async () => {
    const v11 = await signed("11");
    reject({ ...v11, prev_events: [["$a", { sha256: "x" }]] }, "11", /prev_events/);
    reject({ ...v11, auth_events: ["noSigil"] }, "11", /auth_events/);
    reject({ ...v11, prev_events: "$a" }, "11", /prev_events/);
    expect(validatePduFormat({ ...v11, prev_events: Array.from({ length: 20 }, (_, i) => `$p${i}`) }, rules("11"))).toEqual({ ok: true });
    reject({ ...v11, prev_events: Array.from({ length: 21 }, (_, i) => `$p${i}`) }, "11", /prev_events has 21/);
    reject({ ...v11, auth_events: Array.from({ length: 11 }, (_, i) => `$a${i}`) }, "11", /auth_events has 11/);
    const v1 = await signed("1");
    reject({ ...v1, prev_events: ["$a:example.org"] }, "1", /pairs/);
    reject({ ...v1, auth_events: [["$a:example.org"]] }, "1", /pairs/);
    reject({ ...v1, auth_events: [["$a:example.org", "hash"]] }, "1", /hashes/);
    reject({ ...v1, auth_events: [["nosigil", {}]] }, "1", /event ID/);
    reject({ ...v1, event_id: undefined }, "1", /event_id/);
  });

  it("strict canonical JSON from v6: floats and big integers rejected there, tolerated in v1-v5", async () => {
    for (const v of ["1", "5"]) {
      const base = await signed(v);
      expect(validatePduFormat({ ...base, content: { ...base.content, ratio: 1.5 } }, rules(v)), `v${v}`).toEqual({ ok: true });
      expect(validatePduFormat({ ...base, content: { big: 2 ** 60 } }, rules(v)), `v${v}`).toEqual({ ok: true });
    }
    for (const v of ["6", "11", "12"]) {
      const base = await signed(v);
      reject({ ...base, content: { ...base.content, ratio: 1.5 } }, v, /canonical JSON/);
      reject({ ...base, content: { big: 2 ** 53 } }, v, /canonical JSON/);
      reject({ ...base, content: { s: "\ud800" } }, v, /canonical JSON/);
    }
  });

  it("a v5 event with a float in its content fails the content hash check but keeps a valid signature", async () => {
    const k = await key();
    const r = rules("5");
    const { pdu } = await hashAndSignEvent(message("5"), SERVER, k, r);
    const floaty = { ...pdu, content: { ...pdu.content, ratio: 1.5 } };
    expect(validatePduFormat(floaty, r)).toEqual({ ok: true });
    expect(await checkContentHash(floaty)).toBe(false);
    expect(await verifyEventSignature(floaty, SERVER, k.keyId, k.publicKey, r)).toBe(true);
    await expect(contentHash(floaty)).rejects.toThrow();
  });
});
