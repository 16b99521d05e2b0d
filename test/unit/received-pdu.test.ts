// The checks of a received PDU that need no room state (protocol/received-pdu.ts): the event ID and the
// signed bytes come from one serialisation, and must agree with event-hashes.ts in every room version.
import { describe, expect, it } from "vitest";
import { eventIdFor, hashAndSignEvent } from "../../protocol/event-hashes.js";
import { checkReceivedPdu, hasValidSignature, identifyPdu, serialisePdu, verifyReceivedPdu, type PduVerifyKey } from "../../protocol/received-pdu.js";
import { canonicalJson } from "../../protocol/canonical-json.js";
import { contentHashBytes } from "../../protocol/event-hashes.js";
import { MAX_PDU_BYTES, validatePduFormat } from "../../protocol/event-validation.js";
import type { JsonObject } from "../../protocol/json.js";
import type { Pdu } from "../../protocol/pdu.js";
import { redactPdu } from "../../protocol/redaction.js";
import { ROOM_VERSIONS, roomVersionRules, type RoomVersionRules } from "../../protocol/room-versions.js";
import { signableBytes, signingKeyFromSeed, type SigningKey } from "../../protocol/signing.js";

const rules = (v: string): RoomVersionRules => roomVersionRules(v)!;
const SERVER = "remote.example.org";
const TS = 1_700_000_000_000;
const key = (fill = 7): Promise<SigningKey> => signingKeyFromSeed(new Uint8Array(32).fill(fill), "k1");
const asVerifyKey = (k: SigningKey, validUntilTs: number | null = null): PduVerifyKey => ({ keyId: k.keyId, publicKey: k.publicKey, validUntilTs });

/** A member event of room version `v` with redactable content, `unsigned` and a top-level `age_ts`. */
function memberEvent(v: string): Pdu {
  const r = rules(v);
  const ref = (id: string) => (r.eventFormat.eventIdInPdu ? [`${id}:${SERVER}`, { sha256: "aGFzaA" }] : id);
  const pdu = {
    type: "m.room.member",
    state_key: `@bob:${SERVER}`,
    room_id: r.roomIdFormat === "create-event-hash" ? "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ" : `!room:${SERVER}`,
    sender: `@bob:${SERVER}`,
    origin_server_ts: TS,
    content: { membership: "join", displayname: "Bob ✓", avatar_url: `mxc://${SERVER}/abc` },
    prev_events: [ref("$prev")],
    auth_events: [ref("$auth1"), ref("$auth2")],
    depth: 12,
    hashes: { sha256: "" },
    signatures: {},
    origin: SERVER,
  } as unknown as Pdu;
  if (r.eventFormat.eventIdInPdu) pdu.event_id = `$member:${SERVER}`;
  return pdu;
}

async function signed(v: string, k?: SigningKey): Promise<Pdu> {
  const pdu = (await hashAndSignEvent(memberEvent(v), SERVER, k ?? (await key()), rules(v))).pdu;
  // Arrives with what servers add after signing.
  return { ...pdu, unsigned: { age: 42 } } as Pdu;
}

describe("identifyPdu", () => {
  for (const v of ROOM_VERSIONS.keys()) {
    it(`v${v}: the same event ID as eventIdFor, and the bytes signatures cover`, async () => {
      const pdu = { ...(await signed(v)), age_ts: TS + 5 } as Pdu;
      const id = await identifyPdu(pdu, rules(v));
      expect(id.eventId).toBe(await eventIdFor(pdu, rules(v)));
      expect(new TextDecoder().decode(id.signedBytes)).toBe(new TextDecoder().decode(signableBytes(redactPdu(pdu, rules(v)) as unknown as JsonObject)));
      // Redactable content, `unsigned` and `age_ts` are not covered.
      const other = { ...pdu, content: { membership: "join", displayname: "someone else" }, unsigned: { age: 1 }, age_ts: 1 } as Pdu;
      expect((await identifyPdu(other, rules(v))).eventId).toBe(id.eventId);
    });
  }

  it("v1-v2: an event without event_id has no ID", async () => {
    const pdu = memberEvent("1");
    delete pdu.event_id;
    await expect(identifyPdu(pdu, rules("1"))).rejects.toThrow();
  });

  it("v6+: a redacted form that is not canonical JSON has no ID", async () => {
    const pdu = { ...memberEvent("10"), depth: 1.5 } as Pdu;
    await expect(identifyPdu(pdu, rules("10"))).rejects.toThrow();
  });
});

describe("hasValidSignature", () => {
  it("verifies the server's signature with its key, the full and the redacted event alike", async () => {
    const k = await key();
    const pdu = await signed("10", k);
    const r = rules("10");
    expect(await hasValidSignature(pdu, await identifyPdu(pdu, r), SERVER, r, [asVerifyKey(k)])).toBe(true);
    const redacted = redactPdu(pdu, r);
    expect(await hasValidSignature(redacted, await identifyPdu(redacted, r), SERVER, r, [asVerifyKey(k)])).toBe(true);
  });

  it("fails with another key, another server, a changed protected field or a bad signature", async () => {
    const k = await key();
    const r = rules("10");
    const pdu = await signed("10", k);
    const id = await identifyPdu(pdu, r);
    expect(await hasValidSignature(pdu, id, SERVER, r, [asVerifyKey(await key(8))].map((x) => ({ ...x, keyId: k.keyId })))).toBe(false);
    expect(await hasValidSignature(pdu, id, "other.example.org", r, [asVerifyKey(k)])).toBe(false);
    const moved = { ...pdu, content: { ...pdu.content, membership: "leave" } } as Pdu;
    expect(await hasValidSignature(moved, await identifyPdu(moved, r), SERVER, r, [asVerifyKey(k)])).toBe(false);
    const sig = pdu.signatures[SERVER]![k.keyId]!;
    const flipped = (sig[0] === "A" ? "B" : "A") + sig.slice(1);
    const bad = { ...pdu, signatures: { [SERVER]: { [k.keyId]: flipped } } } as Pdu;
    expect(await hasValidSignature(bad, await identifyPdu(bad, r), SERVER, r, [asVerifyKey(k)])).toBe(false);
    const short = { ...pdu, signatures: { [SERVER]: { [k.keyId]: "AAAA" } } } as Pdu;
    expect(await hasValidSignature(short, await identifyPdu(short, r), SERVER, r, [asVerifyKey(k)])).toBe(false);
  });

  it("a malformed public key verifies nothing and does not throw", async () => {
    const k = await key();
    const pdu = await signed("10", k);
    const r = rules("10");
    expect(await hasValidSignature(pdu, await identifyPdu(pdu, r), SERVER, r, [{ keyId: k.keyId, publicKey: "AAAA", validUntilTs: null }])).toBe(false);
  });

  it("v5+: the key must be valid at origin_server_ts (equal is valid); v1-v4 ignore validity", async () => {
    const k = await key();
    for (const [v, enforced] of [["5", true], ["10", true], ["4", false]] as const) {
      const r = rules(v);
      const pdu = await signed(v, k);
      const id = await identifyPdu(pdu, r);
      expect(await hasValidSignature(pdu, id, SERVER, r, [asVerifyKey(k, TS)])).toBe(true);
      expect(await hasValidSignature(pdu, id, SERVER, r, [asVerifyKey(k, TS - 1)])).toBe(!enforced);
    }
  });
});

describe("verifyReceivedPdu and checkReceivedPdu", () => {
  it("reports a wrong content hash without failing the signature; names the server that did not sign", async () => {
    const k = await key();
    const r = rules("10");
    const pdu = await signed("10", k);
    const keysFor = async () => [asVerifyKey(k)];
    const changed = { ...pdu, content: { ...pdu.content, displayname: "changed" } } as Pdu;
    expect(await verifyReceivedPdu(pdu, await identifyPdu(pdu, r), r, [SERVER], keysFor)).toEqual({ ok: true, contentHashOk: true });
    expect(await verifyReceivedPdu(changed, await identifyPdu(changed, r), r, [SERVER], keysFor)).toEqual({ ok: true, contentHashOk: false });
    expect(await verifyReceivedPdu(pdu, await identifyPdu(pdu, r), r, [SERVER, "via.example.org"], keysFor)).toEqual({ ok: false, server: "via.example.org" });
  });

  it("runs format, event ID, signatures and hash together", async () => {
    const k = await key();
    const r = rules("10");
    const pdu = await signed("10", k);
    const keysFor = async () => [asVerifyKey(k)];
    expect(await checkReceivedPdu(pdu, r, [SERVER], keysFor)).toEqual({ ok: true, eventId: await eventIdFor(pdu, r), contentHashOk: true });
    const noDepth = { ...pdu } as Partial<Pdu>;
    delete noDepth.depth;
    expect((await checkReceivedPdu(noDepth as Pdu, r, [SERVER], keysFor)).ok).toBe(false);
    expect(await checkReceivedPdu(pdu, r, [SERVER], async () => [])).toEqual({ ok: false, reason: `Event is not signed by ${SERVER}` });
  });
});

describe("serialisePdu: one serialisation for the size and the content hash", () => {
  const utf8 = (text: string) => new TextEncoder().encode(text).length;
  const same = (pdu: Pdu) => {
    const out = serialisePdu(pdu);
    expect(out.size).toEqual({ bytes: utf8(canonicalJson(pdu)) });
    expect(new TextDecoder().decode(out.contentHashBytes)).toBe(new TextDecoder().decode(contentHashBytes(pdu)));
  };

  it("gives the whole event's canonical size, whichever of unsigned, signatures and hashes it has", async () => {
    const pdu = await signed("10");
    same(pdu);
    same({ ...pdu, unsigned: { age: 1, "prev_content": { displayname: "Bøb 😀\n" } } } as Pdu);
    const { unsigned: _u, ...noUnsigned } = pdu;
    same(noUnsigned as Pdu);
    const { unsigned: _u2, signatures: _s, hashes: _h, ...bare } = pdu;
    same(bare as Pdu);
    // Only left-out keys: the content hash covers "{}".
    same({ hashes: { sha256: "x" }, signatures: {} } as unknown as Pdu);
    same({ hashes: { sha256: "x" } } as unknown as Pdu);
    same({} as Pdu);
  });

  it("not canonical JSON anywhere (a float in unsigned): no hash bytes, the error for the format check", async () => {
    const pdu = { ...(await signed("10")), unsigned: { age: 1.5 } } as Pdu;
    const out = serialisePdu(pdu);
    expect(out.contentHashBytes).toBeUndefined();
    expect("error" in out.size).toBe(true);
    expect(validatePduFormat(pdu, rules("10"), out.size)).toEqual(validatePduFormat(pdu, rules("10")));
    expect(validatePduFormat(pdu, rules("10")).ok).toBe(false);
    // v1-v5 do not enforce canonical JSON: the format passes either way.
    const v4 = { ...(await signed("4")), unsigned: { age: 1.5 } } as Pdu;
    expect(validatePduFormat(v4, rules("4"), serialisePdu(v4).size)).toEqual({ ok: true });
    expect(serialisePdu(null as unknown as Pdu).contentHashBytes).toBeUndefined();
  });

  it("the size limit through checkReceivedPdu: at the limit accepted, one byte over refused", async () => {
    const k = await key();
    const r = rules("10");
    const keysFor = async () => [asVerifyKey(k)];
    const sized = async (bytes: number) => {
      // Pad the display name (redactable: the signature stays small) until the whole signed event has `bytes`.
      let pad = 0;
      for (;;) {
        const base = memberEvent("10");
        base.content = { ...base.content, displayname: "x".repeat(pad) };
        const pdu = { ...(await hashAndSignEvent(base, SERVER, k, r)).pdu, unsigned: { age: 42 } } as Pdu;
        const size = new TextEncoder().encode(canonicalJson(pdu)).length;
        if (size === bytes) return pdu;
        pad += bytes - size;
      }
    };
    expect((await checkReceivedPdu(await sized(MAX_PDU_BYTES), r, [SERVER], keysFor)).ok).toBe(true);
    const over = await checkReceivedPdu(await sized(MAX_PDU_BYTES + 1), r, [SERVER], keysFor);
    expect(over).toEqual({ ok: false, reason: `PDU is larger than ${MAX_PDU_BYTES} bytes` });
  });
});
