// MSC4345 server participation (room version org.matrix.msc4345): the participation rules, the
// sender's participation (rule 2), auth events selection, power level `accept`, redaction, and state
// resolution of concurrent accept/revoke forks. Decision numbers are ../shared/proposals/README.md's.
// Every rule has an allow and a reject side; `>=`/`>` comparisons are tested at the equal value.
import { describe, expect, it } from "vitest";
import {
  authEventTypesFor,
  checkAuthEventsSelection,
  checkEventAuth,
  isValidUserIdIn,
  serverImplicitPowerLevel,
  type AuthStateLookup,
} from "../../protocol/auth-rules.js";
import { encodeBase64 } from "../../protocol/base64.js";
import type { JsonObject } from "../../protocol/json.js";
import {
  PARTICIPATION_EVENT_TYPE,
  isServerKey,
  serverKeyBytes,
  serverKeyFromPublicKey,
  serverKeyOfUser,
} from "../../protocol/participation.js";
import { stateKey, type IdentifiedPdu, type StateMap } from "../../protocol/pdu.js";
import { redactPdu } from "../../protocol/redaction.js";
import { isPowerEvent, resolveState } from "../../protocol/state-res.js";
import { DagRoom, allowed, keyOf, rejected, rulesOf, type SendOptions } from "./dag-room.js";

const P = PARTICIPATION_EVENT_TYPE;
const MSC4345 = rulesOf("org.matrix.msc4345");
const V12 = rulesOf("12");

const KA = keyOf(0xa1);
const KB = keyOf(0xb2);
const KC = keyOf(0xc3);
const ALICE = `@alice:${KA}`; // creator, on A
const MOD = `@mod:${KA}`; // 50 by default in the rooms below
const BOB = `@bob:${KB}`;
const BOB_ADMIN = `@admin:${KB}`;
const CAROL = `@carol:${KC}`;

/** An org.matrix.msc4345 room (dag-room.ts): the creator's server accepted, the creator joined, power
 * levels and join rules set. An event is signed by its sender's server unless the test says otherwise. */
class Room extends DagRoom {
  constructor(opts: { powerLevels?: JsonObject; joinRule?: string; creator?: string } = {}) {
    super(MSC4345);
    const creator = opts.creator ?? ALICE;
    this.addCreate(creator);
    this.apply(this.send(P, creator, { participation: "accepted", unverified_domain: "a.example" }, { stateKey: serverKeyOfUser(creator)! }));
    this.apply(this.send("m.room.member", creator, { membership: "join" }, { stateKey: creator }));
    this.apply(this.send("m.room.power_levels", creator, opts.powerLevels ?? { users: { [MOD]: 50 } }, { stateKey: "" }));
    this.apply(this.send("m.room.join_rules", creator, { join_rule: opts.joinRule ?? "public" }, { stateKey: "" }));
  }

  protected defaultSigners(e: IdentifiedPdu): string[] {
    return [serverKeyOfUser(e.sender) ?? e.sender.slice(e.sender.indexOf(":") + 1)];
  }

  participation(sender: string, target: string, content: JsonObject, opts: SendOptions = {}): IdentifiedPdu {
    return this.send(P, sender, content, { stateKey: target, ...opts });
  }

  /** B requests through A (co-signed by A), optionally accepted by the creator, then bob joins. */
  bringInB(opts: { accept?: boolean; join?: boolean } = {}): void {
    this.apply(this.participation(BOB, KB, { participation: "requested", unverified_domain: "b.example", request_authorised_via_server: KA }, { signers: [KB, KA] }));
    if (opts.accept ?? true) this.apply(this.participation(ALICE, KB, { participation: "accepted", unverified_domain: "b.example" }));
    if (opts.join ?? true) this.apply(this.send("m.room.member", BOB, { membership: "join" }, { stateKey: BOB }));
  }
}

const request = (via: string = KA): JsonObject => ({ participation: "requested", unverified_domain: "b.example", request_authorised_via_server: via });

// -------------------------------------------------------------------------------------------------

describe("room version org.matrix.msc4345", () => {
  it("is version 12 plus the participation flags, listed as unstable; version 12 has none of them", () => {
    expect(MSC4345.stable).toBe(false);
    expect(MSC4345.stateResolution).toBe("v2.1");
    expect(MSC4345.authorization).toEqual({ ...V12.authorization, serverParticipation: true });
    expect(MSC4345.redaction).toEqual({ ...V12.redaction, keepsParticipation: true });
    expect(MSC4345.eventFormat).toEqual({ ...V12.eventFormat, serverKeyIdentity: true });
    expect(V12.authorization.serverParticipation).toBe(false);
  });

  it("server keys: 43 characters of URL-safe base64 of 32 bytes; user IDs may carry one only in these rooms", () => {
    expect(isServerKey(KA)).toBe(true);
    expect(serverKeyBytes(KA)).toEqual(new Uint8Array(32).fill(0xa1));
    expect(isServerKey(KA.slice(1))).toBe(false);
    expect(isServerKey(encodeBase64(new Uint8Array(32).fill(0xff)))).toBe(false); // standard alphabet "/"
    expect(isServerKey(KA.slice(0, 42) + "B")).toBe(false); // not the end of 32 bytes
    expect(serverKeyOfUser(ALICE)).toBe(KA);
    expect(serverKeyOfUser("@alice:a.example")).toBeUndefined();
    const keyId = `@x:${keyOf(0xff)}`; // contains "_", which the server name grammar refuses
    expect(isValidUserIdIn(keyId, MSC4345)).toBe(true);
    expect(isValidUserIdIn(keyId, V12)).toBe(false);
    expect(isValidUserIdIn("@alice:a.example", MSC4345)).toBe(true);
  });
});

describe("room creation: the creator's server accepts itself, then the creator joins", () => {
  it("allows the creator's self-acceptance and first join after it (1.1.1.1)", () => {
    const room = new Room();
    expect(room.lookup(P, KA)?.content.participation).toBe("accepted");
    expect(room.lookup("m.room.member", ALICE)?.content.membership).toBe("join");
  });

  it("rejects a non-creator's self-acceptance (1.1.1.2)", () => {
    const room = new Room();
    rejected(room.check(room.participation(BOB, KB, { participation: "accepted" })), /first participation event must be requested/);
  });

  it("rejects the creator's join straight after the create event: its server is not accepted (rule 2)", () => {
    const room = new Room();
    const join = room.send("m.room.member", ALICE, { membership: "join" }, { stateKey: ALICE, prev: [room.create.event_id] });
    const state: AuthStateLookup = (t, k) => (t === "m.room.create" ? room.create : undefined);
    rejected(checkEventAuth(join, MSC4345, state), /not accepted/);
  });

  it("the creator's first join must follow its own participation event, which follows the create event", () => {
    const room = new Room();
    const own = room.lookup(P, KA)!;
    const state: AuthStateLookup = (t, k) => (t === "m.room.create" ? room.create : t === P && k === KA ? own : undefined);
    allowed(checkEventAuth(room.send("m.room.member", ALICE, { membership: "join" }, { stateKey: ALICE, prev: [own.event_id] }), MSC4345, state));
    rejected(checkEventAuth(room.send("m.room.member", ALICE, { membership: "join" }, { stateKey: ALICE, prev: ["$other"] }), MSC4345, state), /join rule/);
    const late = { ...own, prev_events: ["$other"] };
    const lateState: AuthStateLookup = (t, k) => (t === "m.room.create" ? room.create : t === P && k === KA ? late : undefined);
    rejected(checkEventAuth(room.send("m.room.member", ALICE, { membership: "join" }, { stateKey: ALICE, prev: [own.event_id] }), MSC4345, lateState), /join rule/);
  });
});

describe("requested (1.1.1): self-signed and co-signed by an accepted server", () => {
  it("allows a request co-signed by the accepted server it names (decision 1)", () => {
    const room = new Room();
    allowed(room.check(room.participation(BOB, KB, request(), { signers: [KB, KA] })));
  });

  it("rejects a request without request_authorised_via_server, or naming no server key", () => {
    const room = new Room();
    rejected(room.check(room.participation(BOB, KB, { participation: "requested" }, { signers: [KB, KA] })), /must be a server key/);
    rejected(room.check(room.participation(BOB, KB, request("a.example"), { signers: [KB, KA] })), /must be a server key/);
  });

  it("rejects a request via a server that is not accepted (1.1.1.3)", () => {
    const room = new Room();
    rejected(room.check(room.participation(BOB, KB, request(KC), { signers: [KB, KC] })), /not an accepted server/);
    room.bringInB({ accept: false, join: false }); // KB requested, not accepted
    rejected(room.check(room.participation(CAROL, KC, request(KB), { signers: [KC, KB] })), /not an accepted server/);
  });

  it("rejects a request the named server did not co-sign (1.1.1.4)", () => {
    const room = new Room();
    rejected(room.check(room.participation(BOB, KB, request(), { signers: [KB] })), /not signed by request_authorised_via_server/);
  });

  it("rejects a request for another server's key: only the key's controller requests (1.4)", () => {
    const room = new Room();
    rejected(room.check(room.participation(ALICE, KB, request(), { signers: [KA] })), /only the server itself/);
    // bob's server part is KB but the event is not signed by KB: not the key's controller speaking
    rejected(room.check(room.participation(BOB, KB, request(), { signers: [KA] })), /not accepted/);
  });

  it("rejects a second request once the server has a participation (1.1.3)", () => {
    const room = new Room();
    room.bringInB({ accept: false, join: false });
    rejected(room.check(room.participation(BOB, KB, request(), { signers: [KB, KA] })), /only revoke its own/);
  });

  it("rejects a bad state_key, participation value or unverified_domain", () => {
    const room = new Room();
    rejected(room.check(room.participation(BOB, "b.example", request(), { signers: [KB, KA] })), /state_key must be a server key/);
    rejected(room.check(room.participation(BOB, KB, { ...request(), participation: "joined" }, { signers: [KB, KA] })), /requested, accepted or revoked/);
    rejected(room.check(room.participation(BOB, KB, { ...request(), unverified_domain: "bad host!" }, { signers: [KB, KA] })), /unverified_domain/);
  });
});

describe("self-revocation (1.1.2)", () => {
  it("allows a server to revoke its own key when requested or accepted", () => {
    const requested = new Room();
    requested.bringInB({ accept: false, join: false });
    allowed(requested.check(requested.participation(BOB, KB, { participation: "revoked" })));
    const accepted = new Room();
    accepted.bringInB();
    allowed(accepted.check(accepted.participation(BOB_ADMIN, KB, { participation: "revoked" })));
  });

  it("rejects a self-revocation without any participation (1.1.1.2) and a second one (1.1.2)", () => {
    const room = new Room();
    rejected(room.check(room.participation(BOB, KB, { participation: "revoked" })), /must be requested/);
    room.bringInB();
    room.apply(room.participation(BOB, KB, { participation: "revoked" }));
    rejected(room.check(room.participation(BOB, KB, { participation: "revoked" })), /only revoke its own/);
  });

  it("no admin can accept a key its controller revoked (1.3.2), or revoke it again (decision 3)", () => {
    const room = new Room();
    room.bringInB({ accept: false, join: false });
    room.apply(room.participation(BOB, KB, { participation: "revoked" }));
    rejected(room.check(room.participation(ALICE, KB, { participation: "accepted", unverified_domain: "b.example" })), /cannot be accepted again/);
    rejected(room.check(room.participation(ALICE, KB, { participation: "revoked" })), /final/);
  });
});

describe("accepted by an admin (1.3)", () => {
  it("allows a sender at exactly the accept level, rejects one below it", () => {
    const at = new Room({ powerLevels: { users: { [MOD]: 50 }, accept: 50 } });
    at.apply(at.send("m.room.member", MOD, { membership: "join" }, { stateKey: MOD }));
    at.bringInB({ accept: false, join: false });
    allowed(at.check(at.participation(MOD, KB, { participation: "accepted", unverified_domain: "b.example" })));
    const below = new Room({ powerLevels: { users: { [MOD]: 49 }, accept: 50 } });
    below.apply(below.send("m.room.member", MOD, { membership: "join" }, { stateKey: MOD }));
    below.bringInB({ accept: false, join: false });
    rejected(below.check(below.participation(MOD, KB, { participation: "accepted", unverified_domain: "b.example" })), /below the accept level/);
  });

  it("accept defaults to 100", () => {
    const room = new Room({ powerLevels: { users: { [MOD]: 99 } } });
    room.apply(room.send("m.room.member", MOD, { membership: "join" }, { stateKey: MOD }));
    room.bringInB({ accept: false, join: false });
    rejected(room.check(room.participation(MOD, KB, { participation: "accepted", unverified_domain: "b.example" })), /below the accept level/);
    const hundred = new Room({ powerLevels: { users: { [MOD]: 100 } } });
    hundred.apply(hundred.send("m.room.member", MOD, { membership: "join" }, { stateKey: MOD }));
    hundred.bringInB({ accept: false, join: false });
    allowed(hundred.check(hundred.participation(MOD, KB, { participation: "accepted", unverified_domain: "b.example" })));
  });

  it("rejects accepting an accepted key (1.3.1), a key that never requested, and a changed unverified_domain (decision 6)", () => {
    const room = new Room();
    rejected(room.check(room.participation(ALICE, KB, { participation: "accepted", unverified_domain: "b.example" })), /not requested/);
    room.bringInB({ accept: false, join: false });
    rejected(room.check(room.participation(ALICE, KB, { participation: "accepted", unverified_domain: "evil.example" })), /differs/);
    rejected(room.check(room.participation(ALICE, KB, { participation: "accepted" })), /differs/);
    room.apply(room.participation(ALICE, KB, { participation: "accepted", unverified_domain: "b.example" }));
    rejected(room.check(room.participation(ALICE, KB, { participation: "accepted", unverified_domain: "b.example" })), /already accepted/);
  });

  it("rejects accepting a key an admin revoked (1.3.2)", () => {
    const room = new Room();
    room.bringInB({ accept: false, join: false });
    room.apply(room.participation(ALICE, KB, { participation: "revoked" }));
    rejected(room.check(room.participation(ALICE, KB, { participation: "accepted", unverified_domain: "b.example" })), /cannot be accepted again/);
  });

  it("the admin must be joined and on an accepted server", () => {
    const room = new Room({ powerLevels: { users: { [MOD]: 100, [BOB_ADMIN]: 100 } } });
    room.bringInB({ accept: false, join: false });
    rejected(room.check(room.participation(MOD, KB, { participation: "accepted", unverified_domain: "b.example" })), /not joined/);
    // KB's own admin cannot accept KB: that is the controller speaking (1.1.3)
    rejected(room.check(room.participation(BOB_ADMIN, KB, { participation: "accepted", unverified_domain: "b.example" })), /only revoke its own/);
    // nor can a user of a server that is only requested accept another server
    room.apply(room.participation(CAROL, KC, { participation: "requested", request_authorised_via_server: KA }, { signers: [KC, KA] }));
    rejected(room.check(room.participation(BOB_ADMIN, KC, { participation: "accepted" })), /not accepted/);
  });
});

describe("revoked by an admin (1.2)", () => {
  it("needs at least accept and strictly more than the server's implicit power level (decision 2)", () => {
    // bob's server holds 50 through bob; mod has 50 (equal: rejected), then 51 (allowed)
    const equal = new Room({ powerLevels: { users: { [MOD]: 50, [BOB]: 50 }, accept: 50 } });
    equal.apply(equal.send("m.room.member", MOD, { membership: "join" }, { stateKey: MOD }));
    equal.bringInB();
    expect(serverImplicitPowerLevel(KB, equal.lookup, MSC4345)).toBe(50);
    rejected(equal.check(equal.participation(MOD, KB, { participation: "revoked" })), /not above the server's implicit/);
    const above = new Room({ powerLevels: { users: { [MOD]: 51, [BOB]: 50 }, accept: 50 } });
    above.apply(above.send("m.room.member", MOD, { membership: "join" }, { stateKey: MOD }));
    above.bringInB();
    allowed(above.check(above.participation(MOD, KB, { participation: "revoked" })));
  });

  it("rejects a sender below the accept level even when above the server", () => {
    const room = new Room({ powerLevels: { users: { [MOD]: 59 }, accept: 60 } });
    room.apply(room.send("m.room.member", MOD, { membership: "join" }, { stateKey: MOD }));
    room.bringInB();
    rejected(room.check(room.participation(MOD, KB, { participation: "revoked" })), /below the accept level/);
  });

  it("implicit power level: the highest of the server's users and users_default; a creator's server is out of reach", () => {
    const room = new Room({ powerLevels: { users: { [MOD]: 50, [BOB]: 10, [BOB_ADMIN]: 40 }, users_default: 5 } });
    expect(serverImplicitPowerLevel(KB, room.lookup, MSC4345)).toBe(40);
    expect(serverImplicitPowerLevel(KC, room.lookup, MSC4345)).toBe(5);
    expect(serverImplicitPowerLevel(KA, room.lookup, MSC4345)).toBe(Infinity);
    // so nobody can revoke the creator's server but the server itself
    const other = new Room({ powerLevels: { users: { [BOB]: 100 } } });
    other.bringInB();
    rejected(other.check(other.participation(BOB, KA, { participation: "revoked" })), /not above the server's implicit/);
  });

  it("may revoke a server whose current state is its own request (decision 3), and one that never asked", () => {
    const room = new Room();
    room.bringInB({ accept: false, join: false });
    allowed(room.check(room.participation(ALICE, KB, { participation: "revoked" })));
    allowed(room.check(room.participation(ALICE, KC, { participation: "revoked" })));
  });
});

describe("rule 2: every other event needs the sender's server key accepted (decision 4)", () => {
  it("allows a message and a join from an accepted server", () => {
    const room = new Room();
    room.bringInB({ join: false });
    allowed(room.check(room.send("m.room.member", BOB, { membership: "join" }, { stateKey: BOB })));
    room.apply(room.send("m.room.member", BOB, { membership: "join" }, { stateKey: BOB }));
    allowed(room.check(room.send("m.room.message", BOB, { body: "hi" })));
  });

  it("rejects a join from a server that only requested", () => {
    const room = new Room();
    room.bringInB({ accept: false, join: false });
    rejected(room.check(room.send("m.room.member", BOB, { membership: "join" }, { stateKey: BOB })), /not accepted/);
  });

  it("rejects events from a revoked server", () => {
    const room = new Room();
    room.bringInB();
    room.apply(room.participation(ALICE, KB, { participation: "revoked" }));
    rejected(room.check(room.send("m.room.message", BOB, { body: "still here?" })), /not accepted/);
  });

  it("rejects a domain-form sender (its server cannot have a participation)", () => {
    const room = new Room();
    rejected(room.check(room.send("m.room.message", "@alice:a.example", { body: "x" })), /not a server key/);
  });
});

describe("auth events selection (decision 7)", () => {
  it("adds the sender's participation; for participation events the target's and the co-signer's", () => {
    expect(authEventTypesFor("m.room.message", undefined, BOB, {}, MSC4345)).toContainEqual([P, KB]);
    expect(authEventTypesFor("m.room.message", undefined, BOB, {}, V12)).not.toContainEqual([P, KB]);
    const types = authEventTypesFor(P, KC, CAROL, { request_authorised_via_server: KA }, MSC4345);
    expect(types).toContainEqual([P, KC]);
    expect(types).toContainEqual([P, KA]);
  });

  it("rejects auth events the selection does not allow (another server's participation)", () => {
    const room = new Room();
    room.bringInB({ accept: false, join: false });
    const bParticipation = room.lookup(P, KB)!.event_id;
    const msg = room.send("m.room.message", ALICE, { body: "x" });
    const listed = [...(msg.auth_events as string[]), bParticipation];
    const e = { ...msg, auth_events: listed };
    const authEvents = listed.map((id) => room.events.get(id)!);
    rejected(checkAuthEventsSelection(e, authEvents, MSC4345), /not one the auth events selection allows/);
    allowed(checkAuthEventsSelection(msg, (msg.auth_events as string[]).map((id) => room.events.get(id)!), MSC4345));
  });
});

describe("power level `accept` (decision 9)", () => {
  it("is validated as an integer in these rooms only", () => {
    const room = new Room();
    rejected(room.check(room.send("m.room.power_levels", ALICE, { accept: "50" }, { stateKey: "" })), /accept is not a valid power level/);
    allowed(room.check(room.send("m.room.power_levels", ALICE, { accept: 50 }, { stateKey: "" })));
  });

  it("cannot be set above, or changed from above, the sender's own level", () => {
    const room = new Room({ powerLevels: { users: { [MOD]: 60 }, accept: 70, state_default: 50 } });
    room.apply(room.send("m.room.member", MOD, { membership: "join" }, { stateKey: MOD }));
    rejected(room.check(room.send("m.room.power_levels", MOD, { users: { [MOD]: 60 }, accept: 60, state_default: 50 }, { stateKey: "" })), /cannot change accept/);
    const low = new Room({ powerLevels: { users: { [MOD]: 60 }, accept: 40 } });
    low.apply(low.send("m.room.member", MOD, { membership: "join" }, { stateKey: MOD }));
    rejected(low.check(low.send("m.room.power_levels", MOD, { users: { [MOD]: 60 }, accept: 61 }, { stateKey: "" })), /cannot set accept/);
    allowed(low.check(low.send("m.room.power_levels", MOD, { users: { [MOD]: 60 }, accept: 60 }, { stateKey: "" })));
  });

  it("key-form user IDs are valid in `users`", () => {
    const room = new Room();
    allowed(room.check(room.send("m.room.power_levels", ALICE, { users: { [`@x:${keyOf(0xff)}`]: 10 } }, { stateKey: "" })));
  });
});

describe("redaction (decision 9)", () => {
  const participation = {
    event_id: "$x",
    room_id: "!r",
    sender: BOB,
    type: P,
    state_key: KB,
    content: { participation: "requested", unverified_domain: "b.example", request_authorised_via_server: KA, reason: "hello" },
    origin_server_ts: 1,
    prev_events: [],
    auth_events: [],
    depth: 1,
    hashes: { sha256: "" },
    signatures: {},
  };

  it("keeps participation, unverified_domain and request_authorised_via_server; drops reason", () => {
    expect(redactPdu(participation, MSC4345).content).toEqual({ participation: "requested", unverified_domain: "b.example", request_authorised_via_server: KA });
    expect(redactPdu(participation, V12).content).toEqual({});
  });

  it("keeps power levels' accept", () => {
    const pl = { ...participation, type: "m.room.power_levels", state_key: "", content: { accept: 50, ban: 50, other: 1 } };
    expect(redactPdu(pl, MSC4345).content).toEqual({ accept: 50, ban: 50 });
    expect(redactPdu(pl, V12).content).toEqual({ ban: 50 });
  });
});

describe("state resolution: concurrent accept and revoke (decision 8)", () => {
  it("participation events are power events in these rooms only", () => {
    const room = new Room();
    const e = room.participation(ALICE, KB, { participation: "revoked" });
    expect(isPowerEvent(e, MSC4345)).toBe(true);
    expect(isPowerEvent(e, V12)).toBe(false);
  });

  /**
   * Forks from one state (B requested, mod joined): `forks` returns the events of each branch
   * (applied on a copy of the state); the forks are resolved in every input order, and with the
   * events offered in both orders, and must give one result.
   */
  function resolveForks(makeForks: (room: Room) => IdentifiedPdu[][]): { room: Room; resolved: StateMap } {
    const room = new Room({ powerLevels: { users: { [MOD]: 100 } } });
    room.apply(room.send("m.room.member", MOD, { membership: "join" }, { stateKey: MOD }));
    room.bringInB({ accept: false, join: false });
    const base = new Map(room.state);
    const baseLast = room.last;
    const sets: StateMap[] = [];
    for (const make of makeForks(room)) {
      room.state = new Map(base);
      room.last = baseLast;
      for (const e of make) room.apply(e);
      sets.push(room.stateMap());
    }
    const results = [sets, [...sets].reverse()].map((stateSets) =>
      resolveState({ rules: MSC4345, stateSets, getEvent: (id) => room.events.get(id) }),
    );
    expect(Object.fromEntries(results[1]!)).toEqual(Object.fromEntries(results[0]!));
    return { room, resolved: results[0]! };
  }

  it("an admin's accept against the server's own revocation: the revocation stands", () => {
    const { room, resolved } = resolveForks((room) => {
      const base = room.last;
      return [
        [room.participation(MOD, KB, { participation: "accepted", unverified_domain: "b.example" }, { prev: [base] })],
        [room.participation(BOB, KB, { participation: "revoked" }, { prev: [base] })],
      ];
    });
    expect(room.events.get(resolved.get(stateKey(P, KB))!)!.content.participation).toBe("revoked");
  });

  it("an admin's accept against another admin's revocation: the revocation by the creator (more power) is applied first and the accept fails", () => {
    const { room, resolved } = resolveForks((room) => {
      const base = room.last;
      return [
        [room.participation(MOD, KB, { participation: "accepted", unverified_domain: "b.example" }, { prev: [base] })],
        [room.participation(ALICE, KB, { participation: "revoked" }, { prev: [base] })],
      ];
    });
    expect(room.events.get(resolved.get(stateKey(P, KB))!)!.content.participation).toBe("revoked");
  });

  it("bob's join in the accepting branch does not survive the revocation in the other", () => {
    const { room, resolved } = resolveForks((room) => {
      const base = room.last;
      const revoke = room.participation(ALICE, KB, { participation: "revoked" }, { prev: [base] });
      const accept = room.participation(MOD, KB, { participation: "accepted", unverified_domain: "b.example" }, { prev: [base] });
      room.state.set(stateKey(P, KB), accept); // bob's join is authorised by the accept
      const join = room.send("m.room.member", BOB, { membership: "join" }, { stateKey: BOB, prev: [accept.event_id] });
      return [[accept, join], [revoke]];
    });
    expect(room.events.get(resolved.get(stateKey(P, KB))!)!.content.participation).toBe("revoked");
    expect(resolved.has(stateKey("m.room.member", BOB))).toBe(false);
  });
});
