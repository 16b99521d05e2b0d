// MSC4348 portable accounts (room version org.matrix.msc4348 = org.matrix.msc4345 + portable accounts):
// rule A (the sender is an account key that signed), rule B (the acting server, named by the account's
// membership, is accepted), rule C (that server co-signed), decision 13 (a membership naming another
// server moves the account: same user ID, same power, the old server's events fail), decision 15
// (participation events spoken by a key through any account), the auth events selection, redaction and
// the formats. Every rule has an allow and a reject side. Signatures are structural here (their
// validity is the signature check before auth).
import { describe, expect, it } from "vitest";
import {
  actingServerKey,
  authEventTypesFor,
  checkAuthEventsSelection,
  checkEventAgainstAuthEvents,
  checkEventAuth,
  hostingServerKey,
  isValidUserIdIn,
  powerLevelOf,
  redactionAllowedAtDelivery,
  serverImplicitPowerLevel,
  type AuthCheckOptions,
  type AuthResult,
  type AuthStateLookup,
} from "../../protocol/auth-rules.js";
import { MEMBER_SERVER_KEY, accountKeyUserId } from "../../protocol/accounts.js";
import { encodeBase64 } from "../../protocol/base64.js";
import { validatePduFormat } from "../../protocol/event-validation.js";
import type { JsonObject } from "../../protocol/json.js";
import { PARTICIPATION_EVENT_TYPE, serverKeyFromPublicKey } from "../../protocol/participation.js";
import { stateKey, type IdentifiedPdu } from "../../protocol/pdu.js";
import { redactPdu } from "../../protocol/redaction.js";
import { requiredSigningServers } from "../../durable-objects/room/verify-keys.js";
import { DagRoom, allowed, keyOf, rejected, rulesOf, type SendOptions } from "./dag-room.js";

const P = PARTICIPATION_EVENT_TYPE;
const MSC4348 = rulesOf("org.matrix.msc4348");
const MSC4345 = rulesOf("org.matrix.msc4345");

const KA = keyOf(0xa1); // server A
const KB = keyOf(0xb2); // server B
const KC = keyOf(0xc3); // server C
const KD = keyOf(0xd4); // server D, never in the room
const ALICE_KEY = keyOf(0x11);
const BOB_KEY = keyOf(0x22);
const MOD_KEY = keyOf(0x33);
const ALICE = accountKeyUserId(ALICE_KEY); // creator, on A
const BOB = accountKeyUserId(BOB_KEY); // 60 in the power levels, on B, moves to C
const MOD = accountKeyUserId(MOD_KEY); // 50, on A
const accountKey = (userId: string): string => userId.slice(1);

/** An org.matrix.msc4348 room (dag-room.ts): A accepted, alice and mod joined from A, power levels and
 * join rules set. An event is signed by its sender's account key and the server acting for it unless the
 * test says otherwise. */
class Room extends DagRoom {
  constructor() {
    super(MSC4348);
    this.addCreate(ALICE, [ALICE_KEY, KA]);
    this.apply(this.send(P, ALICE, { participation: "accepted", unverified_domain: "a.example" }, { stateKey: KA, signers: [ALICE_KEY, KA] }));
    this.apply(this.join(ALICE, KA));
    this.apply(this.send("m.room.power_levels", ALICE, { users: { [MOD]: 50, [BOB]: 60 } }, { stateKey: "" }));
    this.apply(this.send("m.room.join_rules", ALICE, { join_rule: "public" }, { stateKey: "" }));
    this.apply(this.join(MOD, KA));
  }

  protected defaultSigners(e: IdentifiedPdu): string[] {
    return [accountKey(e.sender), actingServerKey(e, this.lookup, this.rules) ?? KA];
  }

  protected override hostingKey(sender: string): string | undefined {
    return hostingServerKey(sender, this.lookup, this.rules);
  }

  /** The account's join naming `server` (signed by the account and that server unless told). */
  join(user: string, server: string | undefined, opts: SendOptions = {}): IdentifiedPdu {
    const content: JsonObject = { membership: "join" };
    if (server !== undefined) content[MEMBER_SERVER_KEY] = server;
    return this.send("m.room.member", user, content, { stateKey: user, signers: [accountKey(user), ...(server ? [server] : [])], ...opts });
  }

  /** Server `key` requests through A (co-signed by A) with `via`'s account, and the creator accepts it. */
  bringIn(key: string, domain: string, via: string = BOB, accept = true): void {
    const content = { participation: "requested", unverified_domain: domain, request_authorised_via_server: KA };
    this.apply(this.send(P, via, content, { stateKey: key, signers: [accountKey(via), key, KA] }));
    if (accept) this.apply(this.send(P, ALICE, { participation: "accepted", unverified_domain: domain }, { stateKey: key }));
  }

  /** B accepted, bob joined from B; C accepted (nobody on it yet). */
  static withBobOnB(): Room {
    const room = new Room();
    room.bringIn(KB, "b.example");
    room.apply(room.join(BOB, KB));
    room.bringIn(KC, "c.example");
    return room;
  }
}

// -------------------------------------------------------------------------------------------------

describe("room version org.matrix.msc4348", () => {
  it("is org.matrix.msc4345 plus the named portable-account rules; org.matrix.msc4345 has none of them", () => {
    expect(MSC4348.stable).toBe(false);
    expect(MSC4348.authorization).toEqual({ ...MSC4345.authorization, portableAccounts: true });
    expect(MSC4348.eventFormat).toEqual({ ...MSC4345.eventFormat, accountKeyIdentity: true });
    expect(MSC4348.redaction).toEqual({ ...MSC4345.redaction, keepsMemberServerKey: true });
    expect(MSC4345.authorization.portableAccounts).toBe(false);
    expect(MSC4345.eventFormat.accountKeyIdentity).toBe(false);
  });

  it("user IDs: @<account key> is valid only in these rooms; the sender's format follows", () => {
    expect(isValidUserIdIn(BOB, MSC4348)).toBe(true);
    expect(isValidUserIdIn(BOB, MSC4345)).toBe(false);
    expect(isValidUserIdIn(`@${BOB_KEY.slice(1)}`, MSC4348)).toBe(false); // 42 characters: not a key
    const pdu = { type: "m.room.message", sender: BOB, room_id: "!r", content: {}, origin_server_ts: 1, depth: 1, prev_events: [], auth_events: [], hashes: { sha256: "x" }, signatures: {} };
    expect(validatePduFormat(pdu, MSC4348)).toEqual({ ok: true });
    expect(validatePduFormat(pdu, MSC4345).ok).toBe(false);
  });

  it("signature check: the account key and every key-form signature present are verified", () => {
    const e = { sender: BOB, type: "m.room.message", content: {}, signatures: { [BOB_KEY]: {}, [KB]: {}, "b.example": {} } } as unknown as IdentifiedPdu;
    expect(requiredSigningServers(e, MSC4348).sort()).toEqual([BOB_KEY, KB].sort());
    // An event without the account's signature still needs it (and so fails the signature check).
    const bare = { ...e, signatures: {} } as IdentifiedPdu;
    expect(requiredSigningServers(bare, MSC4348)).toEqual([BOB_KEY]);
  });
});

describe("rule A: the sender is an account key that signed the event", () => {
  it("allows an account-key sender that signed; rejects domain-form and MSC4345 key-form senders", () => {
    const room = new Room();
    allowed(room.check(room.send("m.room.message", MOD, { body: "hi" })));
    rejected(room.check(room.send("m.room.message", "@mod:a.example", { body: "hi" }, { signers: [KA] })), /account key user ID/);
    rejected(room.check(room.send("m.room.message", `@mod:${KA}`, { body: "hi" }, { signers: [KA] })), /account key user ID/);
  });

  it("rejects an event the account key did not sign, even co-signed by the account's server", () => {
    const room = new Room();
    rejected(room.check(room.send("m.room.message", MOD, { body: "hi" }, { signers: [KA] })), /not signed by the sender's account key/);
  });

  it("applies to the create event", () => {
    const room = new Room();
    const create = (sender: string, signers: string[]) => {
      const e = room.send("m.room.create", sender, { room_version: MSC4348.id }, { stateKey: "", prev: [], signers, auth: [] });
      delete e.room_id;
      return checkEventAuth(e, MSC4348, () => undefined);
    };
    allowed(create(ALICE, [ALICE_KEY, KA]));
    rejected(create(ALICE, [KA]), /not signed by the sender's account key/);
    rejected(create(`@alice:${KA}`, [KA]), /account key user ID/);
  });

  it("an unsigned template (make_join) passes the signature parts, not the sender form", () => {
    const room = Room.withBobOnB();
    const carol = accountKeyUserId(keyOf(0x44));
    const template = room.join(carol, KC, { signers: [] });
    rejected(room.check(template), /not signed by the sender's account key/);
    allowed(room.check(template, { unsignedTemplate: true }));
    rejected(room.check(room.join(`@carol:${KC}`, KC, { signers: [] }), { unsignedTemplate: true }), /account key user ID/);
  });
});

describe("rule B: the server the account's membership names is accepted", () => {
  it("a join must name a server key, and one that is accepted", () => {
    const room = Room.withBobOnB();
    const carol = accountKeyUserId(keyOf(0x44));
    allowed(room.check(room.join(carol, KC)));
    rejected(room.check(room.join(carol, undefined)), /names no server key/);
    rejected(room.check(room.join(carol, "c.example", { signers: [accountKey(carol)] })), /names no server key/);
    rejected(room.check(room.join(carol, KD)), /not accepted/);
  });

  it("a requested (not yet accepted) server cannot speak for an account", () => {
    const room = new Room();
    room.bringIn(KB, "b.example", MOD, false);
    expect(room.lookup(P, KB)?.content.participation).toBe("requested");
    rejected(room.check(room.join(BOB, KB)), /not accepted/);
  });

  it("other events read the server from the sender's current membership; none without one", () => {
    const room = Room.withBobOnB();
    allowed(room.check(room.send("m.room.message", BOB, { body: "from B" }, { signers: [BOB_KEY, KB] })));
    const stranger = accountKeyUserId(keyOf(0x55));
    rejected(room.check(room.send("m.room.message", stranger, { body: "x" }, { signers: [accountKey(stranger), KB] })), /names no server key/);
  });

  it("a revoked server no longer speaks for its accounts", () => {
    const room = Room.withBobOnB();
    room.apply(room.send(P, ALICE, { participation: "revoked" }, { stateKey: KB }));
    rejected(room.check(room.send("m.room.message", BOB, { body: "x" }, { signers: [BOB_KEY, KB] })), /not accepted/);
  });
});

describe("rule C: the account's server co-signed the event", () => {
  it("rejects a message signed by the account but co-signed by another accepted server", () => {
    const room = Room.withBobOnB();
    allowed(room.check(room.send("m.room.message", BOB, { body: "x" }, { signers: [BOB_KEY, KB] })));
    rejected(room.check(room.send("m.room.message", BOB, { body: "x" }, { signers: [BOB_KEY, KA] })), /not co-signed/);
    rejected(room.check(room.send("m.room.message", BOB, { body: "x" }, { signers: [BOB_KEY] })), /not co-signed/);
  });

  it("rejects a join naming a server that did not co-sign it", () => {
    const room = Room.withBobOnB();
    const carol = accountKeyUserId(keyOf(0x44));
    rejected(room.check(room.join(carol, KC, { signers: [accountKey(carol), KB] })), /not co-signed/);
  });

  it("the admin paths of participation need the admin's server to co-sign", () => {
    const room = Room.withBobOnB();
    rejected(room.check(room.send(P, ALICE, { participation: "revoked" }, { stateKey: KC, signers: [ALICE_KEY] })), /not co-signed/);
    allowed(room.check(room.send(P, ALICE, { participation: "revoked" }, { stateKey: KC, signers: [ALICE_KEY, KA] })));
  });
});

describe("decision 15: participation events spoken by the key through any account", () => {
  it("a request is the requesting key's (with the account's signature and the co-signer's)", () => {
    const room = new Room();
    const content = { participation: "requested", unverified_domain: "b.example", request_authorised_via_server: KA };
    allowed(room.check(room.send(P, BOB, content, { stateKey: KB, signers: [BOB_KEY, KB, KA] })));
    // Without the requesting key's signature it is not the key's controller speaking: the admin path
    // (a non-member's server is not accepted).
    rejected(room.check(room.send(P, BOB, content, { stateKey: KB, signers: [BOB_KEY, KA] })), /not accepted/);
  });

  it("a key's self-revocation is final, whichever account carried it", () => {
    const room = Room.withBobOnB();
    room.apply(room.send(P, BOB, { participation: "revoked" }, { stateKey: KB, signers: [BOB_KEY, KB] }));
    rejected(room.check(room.send(P, ALICE, { participation: "revoked", reason: "again" }, { stateKey: KB })), /revoked its own key/);
    rejected(room.check(room.send(P, ALICE, { participation: "accepted", unverified_domain: "b.example" }, { stateKey: KB })), /cannot be accepted again/);
  });
});

describe("decision 13: an account moves to another server and keeps its user ID and power", () => {
  it("a join naming the new server, signed by the account and co-signed by it, moves the account", () => {
    const room = Room.withBobOnB();
    expect(hostingServerKey(BOB, room.lookup, MSC4348)).toBe(KB);
    room.apply(room.join(BOB, KC));
    expect(hostingServerKey(BOB, room.lookup, MSC4348)).toBe(KC);
    expect(room.lookup("m.room.member", BOB)?.content.membership).toBe("join");
    // Power stays with the user ID: 60 is enough for a state event at state_default (50).
    expect(powerLevelOf(BOB, room.lookup, MSC4348)).toBe(60);
    allowed(room.check(room.send("m.room.topic", BOB, { topic: "moved" }, { stateKey: "", signers: [BOB_KEY, KC] })));
    allowed(room.check(room.send("m.room.message", BOB, { body: "from C" }, { signers: [BOB_KEY, KC] })));
  });

  it("the old server can no longer send for the account, nor move it back without the account's key", () => {
    const room = Room.withBobOnB();
    room.apply(room.join(BOB, KC));
    rejected(room.check(room.send("m.room.message", BOB, { body: "still B" }, { signers: [BOB_KEY, KB] })), /not co-signed/);
    rejected(room.check(room.join(BOB, KB, { signers: [KB] })), /not signed by the sender's account key/);
  });

  it("a move to a server that is not accepted, or without the new server's signature, is rejected", () => {
    const room = Room.withBobOnB();
    rejected(room.check(room.join(BOB, KD)), /not accepted/);
    rejected(room.check(room.join(BOB, KC, { signers: [BOB_KEY, KB] })), /not co-signed/);
    expect(hostingServerKey(BOB, room.lookup, MSC4348)).toBe(KB);
  });

  it("a server's implicit power level follows its accounts", () => {
    const room = Room.withBobOnB();
    expect(serverImplicitPowerLevel(KB, room.lookup, MSC4348)).toBe(60);
    expect(serverImplicitPowerLevel(KC, room.lookup, MSC4348)).toBe(0);
    expect(serverImplicitPowerLevel(KA, room.lookup, MSC4348)).toBe(Infinity); // the creator is on A
    room.apply(room.join(BOB, KC));
    expect(serverImplicitPowerLevel(KB, room.lookup, MSC4348)).toBe(0);
    expect(serverImplicitPowerLevel(KC, room.lookup, MSC4348)).toBe(60);
    // Revoking C now needs more than 60: MOD (50) may not; the creator may.
    rejected(room.check(room.send(P, MOD, { participation: "revoked" }, { stateKey: KC })), /below the accept level|not above/);
  });
});

describe("auth events selection", () => {
  it("lists the participation of the server the account's membership names", () => {
    expect(authEventTypesFor("m.room.message", undefined, BOB, {}, MSC4348, KB)).toContainEqual([P, KB]);
    expect(authEventTypesFor("m.room.message", undefined, BOB, {}, MSC4348)).not.toContainEqual([P, KB]);
    // An own membership names its server itself.
    expect(authEventTypesFor("m.room.member", BOB, BOB, { membership: "join", [MEMBER_SERVER_KEY]: KC }, MSC4348, KB)).toContainEqual([P, KC]);
  });

  it("rejects the participation of a server that is not the sender's", () => {
    const room = Room.withBobOnB();
    const msg = room.send("m.room.message", BOB, { body: "x" }, { signers: [BOB_KEY, KB] });
    const authEvents = (ids: string[]) => ids.map((id) => room.events.get(id)!);
    allowed(checkAuthEventsSelection(msg, authEvents(msg.auth_events as string[]), MSC4348));
    const cParticipation = room.lookup(P, KC)!.event_id;
    const listed = [...(msg.auth_events as string[]), cParticipation];
    rejected(checkAuthEventsSelection({ ...msg, auth_events: listed }, authEvents(listed), MSC4348), /not one the auth events selection allows/);
  });
});

describe("redaction", () => {
  it("keeps the membership's server key in org.matrix.msc4348, not in org.matrix.msc4345", () => {
    const room = Room.withBobOnB();
    const join = room.lookup("m.room.member", BOB)!;
    expect(redactPdu({ ...join, content: { ...join.content, displayname: "Bob" } }, MSC4348).content).toEqual({ membership: "join", [MEMBER_SERVER_KEY]: KB });
    expect(redactPdu(join, MSC4345).content).toEqual({ membership: "join" });
  });

  it("without the redact level only the account itself redacts (accounts have no server part)", () => {
    const room = Room.withBobOnB();
    const carol = accountKeyUserId(keyOf(0x44));
    room.apply(room.join(carol, KC));
    const msg = room.apply(room.send("m.room.message", BOB, { body: "x" }, { signers: [BOB_KEY, KB] }));
    const redaction = (sender: string, signers: string[]) => room.send("m.room.redaction", sender, { redacts: msg.event_id }, { signers });
    expect(redactionAllowedAtDelivery(redaction(BOB, [BOB_KEY, KB]), msg, room.lookup, MSC4348)).toBe(true);
    expect(redactionAllowedAtDelivery(redaction(carol, [accountKey(carol), KC]), msg, room.lookup, MSC4348)).toBe(false);
    expect(redactionAllowedAtDelivery(redaction(ALICE, [ALICE_KEY, KA]), msg, room.lookup, MSC4348)).toBe(true); // the creator
  });
});
