// Authorization rules, from the room version documents v1-v12 ("Authorisation rules"), the
// Server-Server API ("Auth events selection") and v3+ "Handling redactions". Each rule is tested on
// its allow side and its reject side, in the room versions where it differs.
import { describe, expect, it } from "vitest";
import {
  authEventTypesFor,
  checkAuthEventsSelection,
  checkEventAgainstAuthEvents,
  checkEventAuth,
  isValidUserId,
  parsePowerLevelValue,
  powerLevelOf,
  redactionAllowedAtDelivery,
  redactsOf,
  requiredPowerLevelFor,
  roomCreators,
  thirdPartyInvitePublicKeys,
  verifyThirdPartyInviteSigned,
  type AuthCheckOptions,
  type AuthResult,
  type AuthStateLookup,
} from "../../protocol/auth-rules.js";
import type { JsonObject } from "../../protocol/json.js";
import { serverNameOf, type IdentifiedPdu } from "../../protocol/pdu.js";
import { roomVersionRules, type RoomVersionRules } from "../../protocol/room-versions.js";
import { generateSigningKey, signJson } from "../../protocol/signing.js";
import bootstrapPublicChat from "../fixtures/vectors/state-res/fixtures/bootstrap-public-chat.json";
import banVsPowerLevelsAlice from "../fixtures/vectors/state-res/fixtures/ban-vs-power-levels-alice.json";
import banVsPowerLevelsBob from "../fixtures/vectors/state-res/fixtures/ban-vs-power-levels-bob.json";
import joinRulesVsJoinCommon from "../fixtures/vectors/state-res/fixtures/join-rules-vs-join-common.json";
import joinRulesVsJoinElla from "../fixtures/vectors/state-res/fixtures/join-rules-vs-join-ella.json";
import problemAv11 from "../fixtures/vectors/state-res/fixtures/MSC4297-problem-A/pdus-v11.json";
import problemAv12 from "../fixtures/vectors/state-res/fixtures/MSC4297-problem-A/pdus-v12.json";
import problemBv12 from "../fixtures/vectors/state-res/fixtures/MSC4297-problem-B/pdus-v12.json";

const ALICE = "@alice:a.example";
const BOB = "@bob:b.example";
const CAROL = "@carol:c.example";
const DAVE = "@dave:a.example";

const rulesOf = (v: string): RoomVersionRules => {
  const r = roomVersionRules(v);
  if (!r) throw new Error(`no room version ${v}`);
  return r;
};

let counter = 0;

interface EventOptions {
  stateKey?: string;
  prev?: string[];
  auth?: string[];
  id?: string;
  roomId?: string | null;
  redacts?: string;
  signatures?: Record<string, Record<string, string>>;
}

/** A test PDU with a fake event ID (`$eN:<sender's server>`, so v1-v2 domain rules can be exercised). */
function pdu(type: string, sender: string, content: JsonObject, roomId: string | undefined, opts: EventOptions = {}): IdentifiedPdu {
  const e: IdentifiedPdu = {
    event_id: opts.id ?? `$e${++counter}:${serverNameOf(sender)}`,
    sender,
    type,
    content,
    origin_server_ts: counter,
    prev_events: opts.prev ?? [],
    auth_events: opts.auth ?? [],
    depth: counter,
    hashes: { sha256: "" },
    signatures: opts.signatures ?? { [serverNameOf(sender)]: { "ed25519:k": "fake" } },
  };
  if (roomId !== undefined) e.room_id = roomId;
  if (opts.stateKey !== undefined) e.state_key = opts.stateKey;
  if (opts.redacts !== undefined) e.redacts = opts.redacts;
  return e;
}

interface RoomSetup {
  creator?: string;
  createContent?: JsonObject;
  joinRule?: string | null;
  powerLevels?: JsonObject | null;
}

/**
 * A room with a state map: create event (by `creator`, default alice), the creator's join, power
 * levels (creator at 100 before v12) and a join rule (public). Events are added to the state
 * directly (`set`), and checked with `check`.
 */
class TestRoom {
  readonly rules: RoomVersionRules;
  readonly roomId: string;
  readonly create: IdentifiedPdu;
  readonly state = new Map<string, IdentifiedPdu>();
  last: string;

  constructor(version: string, setup: RoomSetup = {}) {
    this.rules = rulesOf(version);
    const creator = setup.creator ?? ALICE;
    const v12 = this.rules.authorization.roomCreateEventIdAsRoomId;
    const content: JsonObject = { room_version: version, ...(this.rules.authorization.useRoomCreateSender ? {} : { creator }), ...setup.createContent };
    const createId = v12 ? `$create${++counter}` : `$create${++counter}:${serverNameOf(creator)}`;
    this.roomId = v12 ? "!" + createId.slice(1) : `!room${counter}:${serverNameOf(creator)}`;
    this.create = pdu("m.room.create", creator, content, v12 ? undefined : this.roomId, { stateKey: "", id: createId });
    this.set(this.create);
    this.last = this.create.event_id;
    this.set(this.event("m.room.member", creator, { membership: "join" }, { stateKey: creator }));
    if (setup.powerLevels !== null) {
      const users = v12 ? {} : { [creator]: 100 };
      this.set(this.event("m.room.power_levels", creator, setup.powerLevels ?? { users }, { stateKey: "" }));
    }
    if (setup.joinRule !== null) this.set(this.event("m.room.join_rules", creator, { join_rule: setup.joinRule ?? "public" }, { stateKey: "" }));
  }

  readonly lookup: AuthStateLookup = (type, stateKey) => this.state.get(`${type}|${stateKey}`);

  set(e: IdentifiedPdu): IdentifiedPdu {
    if (e.state_key !== undefined) this.state.set(`${e.type}|${e.state_key}`, e);
    this.last = e.event_id;
    return e;
  }

  event(type: string, sender: string, content: JsonObject, opts: EventOptions = {}): IdentifiedPdu {
    const roomId = opts.roomId === null ? undefined : (opts.roomId ?? this.roomId);
    return pdu(type, sender, content, roomId, { prev: [this.last], ...opts });
  }

  member(user: string, membership: string, extra: JsonObject = {}): IdentifiedPdu {
    return this.set(this.event("m.room.member", user, { membership, ...extra }, { stateKey: user }));
  }

  powerLevels(content: JsonObject): IdentifiedPdu {
    return this.set(this.event("m.room.power_levels", this.create.sender, content, { stateKey: "" }));
  }

  joinRule(rule: string): IdentifiedPdu {
    return this.set(this.event("m.room.join_rules", this.create.sender, { join_rule: rule }, { stateKey: "" }));
  }

  check(e: IdentifiedPdu, options?: AuthCheckOptions): AuthResult {
    return checkEventAuth(e, this.rules, this.lookup, options);
  }

  memberEvent(sender: string, target: string, membership: string, extra: JsonObject = {}, opts: EventOptions = {}): IdentifiedPdu {
    return this.event("m.room.member", sender, { membership, ...extra }, { stateKey: target, ...opts });
  }
}

function allowed(r: AuthResult): void {
  expect(r).toEqual({ allowed: true });
}
function rejected(r: AuthResult, reason?: RegExp): void {
  expect(r.allowed).toBe(false);
  if (reason && !r.allowed) expect(r.reason).toMatch(reason);
}

// -------------------------------------------------------------------------------------------------

describe("m.room.create", () => {
  const createIn = (version: string, content: JsonObject, opts: { roomId?: string | null; prev?: string[]; sender?: string } = {}) => {
    const sender = opts.sender ?? ALICE;
    const roomId = opts.roomId === null ? undefined : (opts.roomId ?? "!r:a.example");
    return checkEventAuth(pdu("m.room.create", sender, content, roomId, { stateKey: "", prev: opts.prev ?? [] }), rulesOf(version), () => undefined);
  };

  it("v1: allows a create event with creator, rejects one without (v1-v10 need `creator`)", () => {
    allowed(createIn("1", { creator: ALICE }));
    rejected(createIn("1", {}), /creator/);
    rejected(createIn("10", { room_version: "10" }), /creator/);
  });

  it("v11: no `creator` needed", () => {
    allowed(createIn("11", { room_version: "11" }));
  });

  it("rejects prev_events", () => {
    rejected(createIn("10", { creator: ALICE }, { prev: ["$x"] }), /prev_events/);
    rejected(createIn("12", {}, { roomId: null, prev: ["$x"] }), /prev_events/);
  });

  it("v1-v11: room_id's server must be the sender's", () => {
    allowed(createIn("6", { creator: ALICE }, { roomId: "!r:a.example" }));
    rejected(createIn("6", { creator: ALICE }, { roomId: "!r:b.example" }), /server name/);
    rejected(createIn("11", {}, { roomId: "!r:b.example" }), /server name/);
    rejected(createIn("11", {}, { roomId: null }), /room_id/);
  });

  it("rejects an unrecognised room_version, accepts a known one", () => {
    allowed(createIn("3", { creator: ALICE, room_version: "3" }));
    rejected(createIn("3", { creator: ALICE, room_version: "999" }), /room_version/);
    rejected(createIn("11", { room_version: 11 }), /room_version/);
  });

  it("v12: rejects a room_id, allows none", () => {
    allowed(createIn("12", { room_version: "12" }, { roomId: null }));
    rejected(createIn("12", { room_version: "12" }, { roomId: "!r:a.example" }), /room_id/);
  });

  it("v12: additional_creators must be an array of valid user IDs", () => {
    allowed(createIn("12", { additional_creators: [BOB, CAROL] }, { roomId: null }));
    allowed(createIn("12", { additional_creators: [] }, { roomId: null }));
    rejected(createIn("12", { additional_creators: BOB }, { roomId: null }), /additional_creators/);
    rejected(createIn("12", { additional_creators: [BOB, 5] }, { roomId: null }), /additional_creators/);
    rejected(createIn("12", { additional_creators: ["bob:b.example"] }, { roomId: null }), /additional_creators/);
    rejected(createIn("12", { additional_creators: ["@bob:bad host!"] }, { roomId: null }), /additional_creators/);
  });

  it("v11: additional_creators is not a rule yet and is ignored", () => {
    allowed(createIn("11", { additional_creators: "junk" }));
  });
});

describe("auth events selection", () => {
  it("authEventTypesFor lists create, power levels and sender (v1-v11); no create in v12", () => {
    expect(authEventTypesFor("m.room.message", undefined, BOB, {}, rulesOf("11"))).toEqual([
      ["m.room.create", ""],
      ["m.room.power_levels", ""],
      ["m.room.member", BOB],
    ]);
    expect(authEventTypesFor("m.room.message", undefined, BOB, {}, rulesOf("12"))).toEqual([
      ["m.room.power_levels", ""],
      ["m.room.member", BOB],
    ]);
    expect(authEventTypesFor("m.room.create", "", ALICE, {}, rulesOf("12"))).toEqual([]);
  });

  it("authEventTypesFor adds target, join rules, third-party invite and the authorising user for members", () => {
    const invite = authEventTypesFor("m.room.member", CAROL, BOB, { membership: "invite", third_party_invite: { signed: { token: "tok", mxid: CAROL } } }, rulesOf("10"));
    expect(invite).toContainEqual(["m.room.member", CAROL]);
    expect(invite).toContainEqual(["m.room.join_rules", ""]);
    expect(invite).toContainEqual(["m.room.third_party_invite", "tok"]);
    const leave = authEventTypesFor("m.room.member", CAROL, BOB, { membership: "leave" }, rulesOf("10"));
    expect(leave).not.toContainEqual(["m.room.join_rules", ""]);
    const join = { membership: "join", join_authorised_via_users_server: DAVE };
    expect(authEventTypesFor("m.room.member", BOB, BOB, join, rulesOf("8"))).toContainEqual(["m.room.member", DAVE]);
    expect(authEventTypesFor("m.room.member", BOB, BOB, join, rulesOf("7"))).not.toContainEqual(["m.room.member", DAVE]);
    // Self-membership is listed once.
    expect(authEventTypesFor("m.room.member", BOB, BOB, { membership: "join" }, rulesOf("10")).filter(([t]) => t === "m.room.member")).toHaveLength(1);
  });

  const setup = (version: string) => {
    const room = new TestRoom(version);
    room.member(BOB, "join");
    const pl = room.lookup("m.room.power_levels", "")!;
    const bobJoin = room.lookup("m.room.member", BOB)!;
    const topic = room.set(room.event("m.room.topic", ALICE, { topic: "t" }, { stateKey: "" }));
    return { room, pl, bobJoin, topic };
  };

  it("allows the right selection, rejects a duplicate (type, state_key)", () => {
    const { room, pl, bobJoin } = setup("10");
    const good = room.event("m.room.message", BOB, { body: "hi" }, { auth: [room.create.event_id, pl.event_id, bobJoin.event_id] });
    allowed(checkAuthEventsSelection(good, [room.create, pl, bobJoin], room.rules));
    const pl2 = room.event("m.room.power_levels", ALICE, { users: {} }, { stateKey: "" });
    const dup = room.event("m.room.message", BOB, { body: "hi" }, { auth: [room.create.event_id, pl.event_id, pl2.event_id, bobJoin.event_id] });
    rejected(checkAuthEventsSelection(dup, [room.create, pl, pl2, bobJoin], room.rules), /duplicate/);
  });

  it("rejects an entry the selection does not allow", () => {
    const { room, pl, bobJoin, topic } = setup("10");
    const e = room.event("m.room.message", BOB, { body: "hi" }, { auth: [room.create.event_id, pl.event_id, bobJoin.event_id, topic.event_id] });
    rejected(checkAuthEventsSelection(e, [room.create, pl, bobJoin, topic], room.rules), /selection/);
  });

  it("v1-v11 need the create event; v12 must not list it", () => {
    const v11 = setup("11");
    const noCreate = v11.room.event("m.room.message", BOB, {}, { auth: [v11.pl.event_id, v11.bobJoin.event_id] });
    rejected(checkAuthEventsSelection(noCreate, [v11.pl, v11.bobJoin], v11.room.rules), /m.room.create/);

    const v12 = setup("12");
    const withCreate = v12.room.event("m.room.message", BOB, {}, { auth: [v12.room.create.event_id, v12.pl.event_id, v12.bobJoin.event_id] });
    rejected(checkAuthEventsSelection(withCreate, [v12.room.create, v12.pl, v12.bobJoin], v12.room.rules), /selection/);
    const without = v12.room.event("m.room.message", BOB, {}, { auth: [v12.pl.event_id, v12.bobJoin.event_id] });
    allowed(checkAuthEventsSelection(without, [v12.pl, v12.bobJoin], v12.room.rules));
  });

  it("rejects rejected auth events, auth events from another room, and missing ones", () => {
    const { room, pl, bobJoin } = setup("10");
    const e = room.event("m.room.message", BOB, {}, { auth: [room.create.event_id, pl.event_id, bobJoin.event_id] });
    rejected(checkAuthEventsSelection(e, [room.create, pl, bobJoin], room.rules, { isRejected: (id) => id === pl.event_id }), /rejected/);
    const foreignPl = { ...pl, room_id: "!other:a.example" };
    rejected(checkAuthEventsSelection(e, [room.create, foreignPl, bobJoin], room.rules), /another room/);
    rejected(checkAuthEventsSelection(e, [room.create, bobJoin], room.rules), /not supplied/);
  });

  it("checkEventAgainstAuthEvents runs both the selection and the rules against the auth events' state", () => {
    const { room, pl, bobJoin } = setup("12");
    const e = room.event("m.room.message", BOB, { body: "hi" }, { auth: [pl.event_id, bobJoin.event_id] });
    allowed(checkEventAgainstAuthEvents(e, [pl, bobJoin], room.rules, { createEvent: room.create }));
    // Without the create event the v12 rules cannot run.
    rejected(checkEventAgainstAuthEvents(e, [pl, bobJoin], room.rules), /m.room.create/);
    // Without the sender's membership among the auth events the sender is not joined.
    const e2 = room.event("m.room.message", BOB, { body: "hi" }, { auth: [pl.event_id] });
    rejected(checkEventAgainstAuthEvents(e2, [pl], room.rules, { createEvent: room.create }), /not joined/);
  });
});

describe("room ID and m.federate", () => {
  it("v12: the room_id must be the create event's ID with `!`", () => {
    const room = new TestRoom("12");
    room.member(BOB, "join");
    allowed(room.check(room.event("m.room.message", BOB, { body: "x" })));
    rejected(room.check(room.event("m.room.message", BOB, { body: "x" }, { roomId: "!somethingelse" })), /room_id/);
  });

  it("v10: the create event in the state must belong to the event's room", () => {
    const room = new TestRoom("10");
    room.member(BOB, "join");
    rejected(room.check(room.event("m.room.message", BOB, { body: "x" }, { roomId: "!other:a.example" })), /another room/);
  });

  it("m.federate false: only users of the creator's server may send", () => {
    const room = new TestRoom("10", { createContent: { "m.federate": false } });
    room.member(DAVE, "join");
    allowed(room.check(room.memberEvent(DAVE, DAVE, "leave")));
    rejected(room.check(room.memberEvent(BOB, BOB, "join")), /federated/);
    const open = new TestRoom("10", { createContent: { "m.federate": true } });
    allowed(open.check(open.memberEvent(BOB, BOB, "join")));
  });
});

describe("m.room.aliases (v1-v5 special case)", () => {
  it("v1: authorised by the sender's server name alone, even for a non-member", () => {
    const room = new TestRoom("1");
    allowed(room.check(room.event("m.room.aliases", BOB, { aliases: ["#x:b.example"] }, { stateKey: "b.example" })));
    rejected(room.check(room.event("m.room.aliases", BOB, { aliases: [] }, { stateKey: "a.example" })), /server name/);
    rejected(room.check(room.event("m.room.aliases", BOB, { aliases: [] })), /state_key/);
  });

  it("v6: an ordinary state event (sender must be joined and have state_default)", () => {
    const room = new TestRoom("6");
    rejected(room.check(room.event("m.room.aliases", BOB, { aliases: [] }, { stateKey: "b.example" })), /not joined/);
    room.member(BOB, "join");
    rejected(room.check(room.event("m.room.aliases", BOB, { aliases: [] }, { stateKey: "b.example" })), /power level/);
    allowed(room.check(room.event("m.room.aliases", ALICE, { aliases: [] }, { stateKey: "a.example" })));
  });
});

describe("m.room.member: join", () => {
  it("the creator's first join after the create event (v1: content.creator)", () => {
    const rules = rulesOf("1");
    const create = pdu("m.room.create", ALICE, { creator: ALICE }, "!r:a.example", { stateKey: "" });
    const state: AuthStateLookup = (t, k) => (t === "m.room.create" && k === "" ? create : undefined);
    const join = pdu("m.room.member", ALICE, { membership: "join" }, "!r:a.example", { stateKey: ALICE, prev: [create.event_id] });
    allowed(checkEventAuth(join, rules, state));
    // Someone else cannot use that rule (and there is no join rule: invite is assumed).
    const other = pdu("m.room.member", BOB, { membership: "join" }, "!r:a.example", { stateKey: BOB, prev: [create.event_id] });
    rejected(checkEventAuth(other, rules, state));
  });

  it("v11: the creator is the create event's sender, `creator` in content is ignored", () => {
    const rules = rulesOf("11");
    const create = pdu("m.room.create", ALICE, { creator: BOB }, "!r:a.example", { stateKey: "" });
    const state: AuthStateLookup = (t, k) => (t === "m.room.create" && k === "" ? create : undefined);
    allowed(checkEventAuth(pdu("m.room.member", ALICE, { membership: "join" }, "!r:a.example", { stateKey: ALICE, prev: [create.event_id] }), rules, state));
    rejected(checkEventAuth(pdu("m.room.member", BOB, { membership: "join" }, "!r:a.example", { stateKey: BOB, prev: [create.event_id] }), rules, state));
    // v10 reads content.creator instead.
    const v10 = rulesOf("10");
    allowed(checkEventAuth(pdu("m.room.member", BOB, { membership: "join" }, "!r:a.example", { stateKey: BOB, prev: [create.event_id] }), v10, state));
  });

  it("v12: the create sender's first join (with a room ID derived from the create event)", () => {
    const rules = rulesOf("12");
    const create = pdu("m.room.create", ALICE, { room_version: "12" }, undefined, { stateKey: "", id: "$abc" });
    const state: AuthStateLookup = (t, k) => (t === "m.room.create" && k === "" ? create : undefined);
    allowed(checkEventAuth(pdu("m.room.member", ALICE, { membership: "join" }, "!abc", { stateKey: ALICE, prev: ["$abc"] }), rules, state));
  });

  it("the creator rule needs the create event as the only previous event", () => {
    const room = new TestRoom("10", { joinRule: "invite" });
    room.member(ALICE, "leave");
    // Alice left an invite-only room: re-joining later is not her "first join".
    rejected(room.check(room.memberEvent(ALICE, ALICE, "join")));
    rejected(room.check(room.memberEvent(ALICE, ALICE, "join", {}, { prev: [room.create.event_id, room.last] })));
    allowed(room.check(room.memberEvent(ALICE, ALICE, "join", {}, { prev: [room.create.event_id] })));
  });

  it("the sender must be the target", () => {
    const room = new TestRoom("10");
    rejected(room.check(room.memberEvent(ALICE, BOB, "join")), /another user/);
  });

  it("a banned user cannot join, even a public room", () => {
    const room = new TestRoom("10");
    allowed(room.check(room.memberEvent(BOB, BOB, "join")));
    room.member(BOB, "ban");
    rejected(room.check(room.memberEvent(BOB, BOB, "join")), /banned/);
  });

  it("invite join rule: only invited or joined users", () => {
    const room = new TestRoom("6", { joinRule: "invite" });
    rejected(room.check(room.memberEvent(BOB, BOB, "join")));
    room.member(BOB, "invite");
    allowed(room.check(room.memberEvent(BOB, BOB, "join")));
  });

  it("no join rules event counts as invite", () => {
    const room = new TestRoom("10", { joinRule: null });
    rejected(room.check(room.memberEvent(BOB, BOB, "join")));
    room.member(BOB, "invite");
    allowed(room.check(room.memberEvent(BOB, BOB, "join")));
  });

  it("knock join rule: invited users may join from v7; before v7 `knock` is no join rule", () => {
    const v7 = new TestRoom("7", { joinRule: "knock" });
    rejected(v7.check(v7.memberEvent(BOB, BOB, "join")));
    v7.member(BOB, "invite");
    allowed(v7.check(v7.memberEvent(BOB, BOB, "join")));
    const v6 = new TestRoom("6", { joinRule: "knock" });
    v6.member(BOB, "invite");
    rejected(v6.check(v6.memberEvent(BOB, BOB, "join")));
  });

  const restrictedJoin = (room: TestRoom, via: string, signed = true) =>
    room.memberEvent(BOB, BOB, "join", { join_authorised_via_users_server: via }, {
      signatures: signed ? { "b.example": { "ed25519:k": "s" }, [serverNameOf(via)]: { "ed25519:k": "s" } } : { "b.example": { "ed25519:k": "s" } },
    });

  it("v8 restricted: allowed via a joined user with invite power whose server signed", () => {
    const room = new TestRoom("8", { joinRule: "restricted", powerLevels: { users: { [ALICE]: 100 }, invite: 50 } });
    room.member(DAVE, "join");
    allowed(room.check(restrictedJoin(room, ALICE)));
    rejected(room.check(restrictedJoin(room, DAVE)), /may not invite/);
    rejected(room.check(restrictedJoin(room, CAROL)), /not joined/);
    rejected(room.check(restrictedJoin(room, ALICE, false)), /signed/);
    rejected(room.check(room.memberEvent(BOB, BOB, "join")), /join_authorised_via_users_server/);
  });

  it("v8 restricted: invited or joined users need no authoriser", () => {
    const room = new TestRoom("8", { joinRule: "restricted" });
    room.member(BOB, "invite");
    allowed(room.check(room.memberEvent(BOB, BOB, "join")));
  });

  it("v7 has no restricted join rule", () => {
    const room = new TestRoom("7", { joinRule: "restricted" });
    rejected(room.check(restrictedJoin(room, ALICE)), /join rule/);
  });

  it("knock_restricted joins: allowed in v10 via an authoriser, not a join rule in v9", () => {
    const v10 = new TestRoom("10", { joinRule: "knock_restricted" });
    allowed(v10.check(restrictedJoin(v10, ALICE)));
    rejected(v10.check(v10.memberEvent(BOB, BOB, "join")));
    const v9 = new TestRoom("9", { joinRule: "knock_restricted" });
    rejected(v9.check(restrictedJoin(v9, ALICE)), /join rule/);
  });

  it("v12 restricted: a creator authorises with infinite power", () => {
    const room = new TestRoom("12", { joinRule: "restricted", powerLevels: { invite: 100 } });
    allowed(room.check(restrictedJoin(room, ALICE)));
  });

  it("private and unknown join rules refuse joins", () => {
    const room = new TestRoom("10", { joinRule: "private" });
    rejected(room.check(room.memberEvent(BOB, BOB, "join")), /join rule/);
  });

  it("member events need a state_key and a membership, and a known membership", () => {
    const room = new TestRoom("10");
    rejected(room.check(room.event("m.room.member", BOB, { membership: "join" })), /state_key/);
    rejected(room.check(room.event("m.room.member", BOB, {}, { stateKey: BOB })), /membership/);
    rejected(room.check(room.memberEvent(BOB, BOB, "dance")), /unknown membership/);
  });
});

describe("m.room.member: invite", () => {
  it("a joined user with invite power may invite", () => {
    const room = new TestRoom("3");
    allowed(room.check(room.memberEvent(ALICE, BOB, "invite")));
  });

  it("the sender must be joined", () => {
    const room = new TestRoom("3");
    room.member(CAROL, "invite");
    rejected(room.check(room.memberEvent(CAROL, BOB, "invite")), /not joined/);
  });

  it("the sender needs the invite level", () => {
    const room = new TestRoom("10", { powerLevels: { users: { [ALICE]: 100 }, invite: 50 } });
    room.member(CAROL, "join");
    rejected(room.check(room.memberEvent(CAROL, BOB, "invite")), /invite level/);
    allowed(room.check(room.memberEvent(ALICE, BOB, "invite")));
  });

  it("joined or banned targets cannot be invited", () => {
    const room = new TestRoom("10");
    room.member(BOB, "join");
    rejected(room.check(room.memberEvent(ALICE, BOB, "invite")), /joined/);
    room.member(BOB, "ban");
    rejected(room.check(room.memberEvent(ALICE, BOB, "invite")), /banned/);
  });
});

describe("m.room.member: third-party invite", () => {
  const KEY = "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd28";
  const setup = (version = "10") => {
    const room = new TestRoom(version);
    room.set(room.event("m.room.third_party_invite", ALICE, { display_name: "b…", public_key: KEY, public_keys: [{ public_key: "other" }] }, { stateKey: "tok" }));
    return room;
  };
  const tpInvite = (room: TestRoom, sender: string, signed: JsonObject | undefined, target = BOB) =>
    room.memberEvent(sender, target, "invite", { third_party_invite: signed === undefined ? { display_name: "b" } : { display_name: "b", signed } });
  const signed = (over: JsonObject = {}): JsonObject => ({ mxid: BOB, token: "tok", signatures: { "id.example": { "ed25519:0": "sig" } }, ...over });
  const verified: AuthCheckOptions = { thirdPartyInviteVerifiedKeys: new Set([KEY]) };

  it("allowed when a signature in `signed` verified with a key of the invite event", () => {
    const room = setup();
    allowed(room.check(tpInvite(room, ALICE, signed()), verified));
    allowed(room.check(tpInvite(room, ALICE, signed()), { thirdPartyInviteVerifiedKeys: new Set(["other"]) }));
  });

  it("rejected without a verified key (fail closed) or with a key that is not the invite's", () => {
    const room = setup();
    rejected(room.check(tpInvite(room, ALICE, signed())), /signature/);
    rejected(room.check(tpInvite(room, ALICE, signed()), { thirdPartyInviteVerifiedKeys: new Set(["unrelated"]) }), /signature/);
  });

  it("structural rules: signed, mxid and token, mxid = state_key, token event, same sender, target not banned", () => {
    const room = setup();
    rejected(room.check(tpInvite(room, ALICE, undefined), verified), /signed/);
    rejected(room.check(tpInvite(room, ALICE, signed({ token: undefined as unknown as string })), verified));
    rejected(room.check(tpInvite(room, ALICE, { mxid: BOB, signatures: {} }), verified), /mxid and token/);
    rejected(room.check(tpInvite(room, ALICE, signed({ mxid: CAROL })), verified), /mxid/);
    rejected(room.check(tpInvite(room, ALICE, signed({ token: "nope" })), verified), /token/);
    room.member(DAVE, "join");
    rejected(room.check(tpInvite(room, DAVE, signed()), verified), /sender/);
    room.member(BOB, "ban");
    rejected(room.check(tpInvite(room, ALICE, signed()), verified), /banned/);
  });

  it("verifyThirdPartyInviteSigned checks real ed25519 signatures of `signed`", async () => {
    const identityKey = await generateSigningKey("0");
    const otherKey = await generateSigningKey("1");
    const room = new TestRoom("11");
    room.set(room.event("m.room.third_party_invite", ALICE, { display_name: "b", public_keys: [{ public_key: identityKey.publicKey }] }, { stateKey: "tok" }));
    const inviteEvent = room.lookup("m.room.third_party_invite", "tok")!;
    const keys = thirdPartyInvitePublicKeys(inviteEvent);
    expect(keys).toEqual([identityKey.publicKey]);

    const goodSigned = await signJson({ mxid: BOB, token: "tok" }, "id.example", identityKey);
    const good = tpInvite(room, ALICE, goodSigned);
    const goodKeys = await verifyThirdPartyInviteSigned(good, [...keys, otherKey.publicKey, "not base64!"]);
    expect([...goodKeys]).toEqual([identityKey.publicKey]);
    allowed(room.check(good, { thirdPartyInviteVerifiedKeys: goodKeys }));

    const forged = await signJson({ mxid: BOB, token: "tok" }, "id.example", otherKey);
    const bad = tpInvite(room, ALICE, forged);
    const badKeys = await verifyThirdPartyInviteSigned(bad, keys);
    expect(badKeys.size).toBe(0);
    rejected(room.check(bad, { thirdPartyInviteVerifiedKeys: badKeys }), /signature/);

    // Tampering with `signed` after signing breaks the signature.
    const tampered = tpInvite(room, ALICE, { ...goodSigned, mxid: CAROL });
    expect((await verifyThirdPartyInviteSigned(tampered, keys)).size).toBe(0);
  });
});

describe("m.room.member: leave, kick, unban", () => {
  it("a joined or invited user may leave; a user who never joined may not", () => {
    const room = new TestRoom("3");
    room.member(BOB, "join");
    allowed(room.check(room.memberEvent(BOB, BOB, "leave")));
    room.member(CAROL, "invite");
    allowed(room.check(room.memberEvent(CAROL, CAROL, "leave")));
    rejected(room.check(room.memberEvent(DAVE, DAVE, "leave")), /cannot leave/);
    room.member(DAVE, "ban");
    rejected(room.check(room.memberEvent(DAVE, DAVE, "leave")), /cannot leave/);
  });

  it("v7+: a knocking user may withdraw the knock; before v7 `knock` is no membership to leave from", () => {
    const v7 = new TestRoom("7", { joinRule: "knock" });
    v7.member(BOB, "knock");
    allowed(v7.check(v7.memberEvent(BOB, BOB, "leave")));
    const v6 = new TestRoom("6", { joinRule: "knock" });
    v6.member(BOB, "knock");
    rejected(v6.check(v6.memberEvent(BOB, BOB, "leave")), /cannot leave/);
  });

  it("kick: needs the kick level and a higher level than the target", () => {
    const room = new TestRoom("10", { powerLevels: { users: { [ALICE]: 100, [DAVE]: 50, [CAROL]: 50 } } });
    room.member(BOB, "join");
    room.member(CAROL, "join");
    room.member(DAVE, "join");
    allowed(room.check(room.memberEvent(DAVE, BOB, "leave")));
    rejected(room.check(room.memberEvent(DAVE, CAROL, "leave")), /kick/);
    rejected(room.check(room.memberEvent(BOB, CAROL, "leave")), /kick/);
    allowed(room.check(room.memberEvent(ALICE, DAVE, "leave")));
  });

  it("kick: the sender must be joined", () => {
    const room = new TestRoom("10", { powerLevels: { users: { [ALICE]: 100, [DAVE]: 50 } } });
    room.member(BOB, "join");
    room.member(DAVE, "invite");
    rejected(room.check(room.memberEvent(DAVE, BOB, "leave")), /not joined/);
  });

  it("unban: needs the ban level as well as the kick level", () => {
    const room = new TestRoom("10", { powerLevels: { users: { [ALICE]: 100, [DAVE]: 50 }, ban: 75, kick: 50 } });
    room.member(DAVE, "join");
    room.member(BOB, "ban");
    rejected(room.check(room.memberEvent(DAVE, BOB, "leave")), /unban/);
    allowed(room.check(room.memberEvent(ALICE, BOB, "leave")));
  });
});

describe("m.room.member: ban", () => {
  it("needs the ban level and a higher level than the target, and a joined sender", () => {
    const room = new TestRoom("10", { powerLevels: { users: { [ALICE]: 100, [DAVE]: 50, [CAROL]: 50 } } });
    room.member(DAVE, "join");
    room.member(CAROL, "join");
    allowed(room.check(room.memberEvent(DAVE, BOB, "ban")));
    rejected(room.check(room.memberEvent(DAVE, CAROL, "ban")), /ban/);
    room.member(BOB, "join");
    rejected(room.check(room.memberEvent(BOB, DAVE, "ban")), /ban/);
    room.member(DAVE, "leave");
    rejected(room.check(room.memberEvent(DAVE, BOB, "ban")), /not joined/);
  });
});

describe("m.room.member: knock", () => {
  it("v7: allowed on a knock room for a user not invited, joined or banned", () => {
    const room = new TestRoom("7", { joinRule: "knock" });
    allowed(room.check(room.memberEvent(BOB, BOB, "knock")));
  });

  it("before v7 knock is an unknown membership", () => {
    const room = new TestRoom("6", { joinRule: "knock" });
    rejected(room.check(room.memberEvent(BOB, BOB, "knock")), /unknown membership/);
  });

  it("rejected on other join rules, for other users, and for invited, joined or banned users", () => {
    const pub = new TestRoom("7");
    rejected(pub.check(pub.memberEvent(BOB, BOB, "knock")), /knocking/);
    const room = new TestRoom("7", { joinRule: "knock" });
    rejected(room.check(room.memberEvent(ALICE, BOB, "knock")), /another user/);
    room.member(BOB, "invite");
    rejected(room.check(room.memberEvent(BOB, BOB, "knock")), /invite/);
    room.member(BOB, "ban");
    rejected(room.check(room.memberEvent(BOB, BOB, "knock")), /ban/);
    rejected(room.check(room.memberEvent(ALICE, ALICE, "knock")), /join/);
  });

  it("knock_restricted: knocking allowed from v10, not in v8", () => {
    const v10 = new TestRoom("10", { joinRule: "knock_restricted" });
    allowed(v10.check(v10.memberEvent(BOB, BOB, "knock")));
    const v8 = new TestRoom("8", { joinRule: "knock_restricted" });
    rejected(v8.check(v8.memberEvent(BOB, BOB, "knock")), /knocking/);
  });
});

describe("non-member events", () => {
  it("the sender must be joined", () => {
    const room = new TestRoom("10");
    rejected(room.check(room.event("m.room.message", BOB, { body: "x" })), /not joined/);
    room.member(BOB, "invite");
    rejected(room.check(room.event("m.room.message", BOB, { body: "x" })), /not joined/);
    room.member(BOB, "join");
    allowed(room.check(room.event("m.room.message", BOB, { body: "x" })));
  });

  it("m.room.third_party_invite needs the invite level (not state_default)", () => {
    const room = new TestRoom("10", { powerLevels: { users: { [ALICE]: 100 }, invite: 10, state_default: 50 } });
    room.member(BOB, "join");
    rejected(room.check(room.event("m.room.third_party_invite", BOB, { display_name: "x" }, { stateKey: "t" })), /invite level/);
    room.powerLevels({ users: { [ALICE]: 100, [BOB]: 10 }, invite: 10, state_default: 50 });
    allowed(room.check(room.event("m.room.third_party_invite", BOB, { display_name: "x" }, { stateKey: "t" })));
  });

  it("the required power level: events, events_default and state_default", () => {
    const room = new TestRoom("10", { powerLevels: { users: { [ALICE]: 100, [BOB]: 20 }, events: { "m.room.topic": 10, "m.room.encrypted": 30 }, events_default: 5 } });
    room.member(BOB, "join");
    allowed(room.check(room.event("m.room.topic", BOB, { topic: "x" }, { stateKey: "" })));
    rejected(room.check(room.event("m.room.name", BOB, { name: "x" }, { stateKey: "" })), /power level/);
    allowed(room.check(room.event("m.room.message", BOB, { body: "x" })));
    rejected(room.check(room.event("m.room.encrypted", BOB, {})), /power level/);
    room.member(CAROL, "join");
    rejected(room.check(room.event("m.room.message", CAROL, { body: "x" })), /power level/);
  });

  it("without power levels the creator has 100, everybody else 0 (state needs 50)", () => {
    const room = new TestRoom("10", { powerLevels: null });
    room.member(BOB, "join");
    allowed(room.check(room.event("m.room.name", ALICE, { name: "x" }, { stateKey: "" })));
    rejected(room.check(room.event("m.room.name", BOB, { name: "x" }, { stateKey: "" })), /power level/);
    allowed(room.check(room.event("m.room.message", BOB, { body: "x" })));
  });

  it("a state_key that is a user ID must be the sender's", () => {
    const room = new TestRoom("10", { powerLevels: { users: { [ALICE]: 100 }, state_default: 0 } });
    room.member(BOB, "join");
    allowed(room.check(room.event("org.example.status", BOB, {}, { stateKey: BOB })));
    rejected(room.check(room.event("org.example.status", BOB, {}, { stateKey: ALICE })), /another user/);
    allowed(room.check(room.event("org.example.status", BOB, {}, { stateKey: "not-a-user" })));
  });
});

describe("m.room.power_levels", () => {
  const plEvent = (room: TestRoom, sender: string, content: JsonObject) => room.event("m.room.power_levels", sender, content, { stateKey: "" });

  it("v9 accepts string power levels; v10 rejects them", () => {
    const v9 = new TestRoom("9");
    allowed(v9.check(plEvent(v9, ALICE, { users: { [ALICE]: "100", [BOB]: " +50 " }, ban: "50", events: { "m.room.name": "50" } })));
    const v10 = new TestRoom("10");
    rejected(v10.check(plEvent(v10, ALICE, { users: { [ALICE]: "100" } })), /users/);
    rejected(v10.check(plEvent(v10, ALICE, { users: { [ALICE]: 100 }, ban: "50" })), /ban/);
    rejected(v10.check(plEvent(v10, ALICE, { users: { [ALICE]: 100 }, events: { "m.room.name": "50" } })), /events/);
    rejected(v10.check(plEvent(v10, ALICE, { users: { [ALICE]: 100 }, notifications: { room: "50" } })), /notifications/);
    allowed(v10.check(plEvent(v10, ALICE, { users: { [ALICE]: 100 }, ban: 50, notifications: { room: 50 } })));
  });

  it("values that are not integers at all are rejected in every version", () => {
    const v3 = new TestRoom("3");
    rejected(v3.check(plEvent(v3, ALICE, { users: { [ALICE]: "a hundred" } })), /users/);
    rejected(v3.check(plEvent(v3, ALICE, { users: { [ALICE]: 100 }, kick: {} })), /kick/);
    rejected(v3.check(plEvent(v3, ALICE, { users: { [ALICE]: 100 }, events: 5 })), /events/);
    rejected(v3.check(plEvent(v3, ALICE, { users: [] })), /users/);
  });

  it("users keys must be user IDs", () => {
    const room = new TestRoom("10");
    rejected(room.check(plEvent(room, ALICE, { users: { [ALICE]: 100, "bob:b.example": 50 } })), /user ID/);
    rejected(room.check(plEvent(room, ALICE, { users: { [ALICE]: 100, "@bob": 50 } })), /user ID/);
  });

  it("the first power levels event is allowed whatever its levels", () => {
    const room = new TestRoom("10", { powerLevels: null });
    allowed(room.check(plEvent(room, ALICE, { users: { [ALICE]: 1000, [BOB]: 1000 }, ban: 9000 })));
  });

  it("users: may raise others up to one's own level, not above", () => {
    const room = new TestRoom("10", { powerLevels: { users: { [ALICE]: 100, [DAVE]: 50 } } });
    room.member(DAVE, "join");
    allowed(room.check(plEvent(room, DAVE, { users: { [ALICE]: 100, [DAVE]: 50, [BOB]: 50 } })));
    rejected(room.check(plEvent(room, DAVE, { users: { [ALICE]: 100, [DAVE]: 50, [BOB]: 51 } })), /users/);
    rejected(room.check(plEvent(room, DAVE, { users: { [ALICE]: 100, [DAVE]: 60 } })), /users/);
  });

  it("users: may not change or remove someone at or above one's level, but may demote oneself", () => {
    const room = new TestRoom("10", { powerLevels: { users: { [ALICE]: 100, [DAVE]: 50, [CAROL]: 50, [BOB]: 10 } } });
    room.member(DAVE, "join");
    rejected(room.check(plEvent(room, DAVE, { users: { [ALICE]: 100, [DAVE]: 50, [CAROL]: 0, [BOB]: 10 } })), /users/);
    rejected(room.check(plEvent(room, DAVE, { users: { [ALICE]: 100, [DAVE]: 50, [BOB]: 10 } })), /users/);
    allowed(room.check(plEvent(room, DAVE, { users: { [ALICE]: 100, [DAVE]: 50, [CAROL]: 50, [BOB]: 0 } })));
    allowed(room.check(plEvent(room, DAVE, { users: { [ALICE]: 100, [DAVE]: 0, [CAROL]: 50, [BOB]: 10 } })));
  });

  it("named levels: cannot change one above the sender's level, nor set one above it", () => {
    const room = new TestRoom("10", { powerLevels: { users: { [ALICE]: 100, [DAVE]: 50 }, ban: 80, kick: 50 } });
    room.member(DAVE, "join");
    const base = { users: { [ALICE]: 100, [DAVE]: 50 } };
    rejected(room.check(plEvent(room, DAVE, { ...base, ban: 40, kick: 50 })), /ban/);
    rejected(room.check(plEvent(room, DAVE, { ...base, ban: 80, kick: 60 })), /kick/);
    rejected(room.check(plEvent(room, DAVE, { ...base, kick: 50 })), /ban/);
    allowed(room.check(plEvent(room, DAVE, { ...base, ban: 80, kick: 20 })));
  });

  it("v9: equal values written differently are no change", () => {
    const room = new TestRoom("9", { powerLevels: { users: { [ALICE]: 100, [DAVE]: 50 }, ban: 80 } });
    room.member(DAVE, "join");
    allowed(room.check(plEvent(room, DAVE, { users: { [ALICE]: "100", [DAVE]: 50 }, ban: "080" })));
  });

  it("events: cannot change an entry above one's level, nor add one above it", () => {
    const room = new TestRoom("10", { powerLevels: { users: { [ALICE]: 100, [DAVE]: 50 }, events: { "m.room.tombstone": 100 } } });
    room.member(DAVE, "join");
    const base = { users: { [ALICE]: 100, [DAVE]: 50 } };
    rejected(room.check(plEvent(room, DAVE, { ...base, events: { "m.room.tombstone": 50 } })), /events/);
    rejected(room.check(plEvent(room, DAVE, { ...base, events: {} })), /events/);
    rejected(room.check(plEvent(room, DAVE, { ...base, events: { "m.room.tombstone": 100, "m.room.name": 75 } })), /events/);
    allowed(room.check(plEvent(room, DAVE, { ...base, events: { "m.room.tombstone": 100, "m.room.name": 50 } })));
  });

  it("notifications are limited from v6, free before", () => {
    const pl = { users: { [ALICE]: 100, [DAVE]: 50 }, notifications: { room: 100 } };
    const change = { users: { [ALICE]: 100, [DAVE]: 50 }, notifications: { room: 0 } };
    const v6 = new TestRoom("6", { powerLevels: pl });
    v6.member(DAVE, "join");
    rejected(v6.check(plEvent(v6, DAVE, change)), /notifications/);
    const v3 = new TestRoom("3", { powerLevels: pl });
    v3.member(DAVE, "join");
    allowed(v3.check(plEvent(v3, DAVE, change)));
  });

  it("v1: float power levels are truncated", () => {
    const room = new TestRoom("1", { powerLevels: { users: { [ALICE]: 100, [DAVE]: 50.9 } } });
    room.member(DAVE, "join");
    expect(powerLevelOf(DAVE, room.lookup, room.rules)).toBe(50);
    allowed(room.check(plEvent(room, DAVE, { users: { [ALICE]: 100, [DAVE]: 50.9, [BOB]: 50 } })));
  });

  it("v12: creators may not appear in users; v11 creators may", () => {
    const v12 = new TestRoom("12", { createContent: { additional_creators: [CAROL] } });
    allowed(v12.check(plEvent(v12, ALICE, { users: { [BOB]: 50 } })));
    rejected(v12.check(plEvent(v12, ALICE, { users: { [ALICE]: 100 } })), /creator/);
    rejected(v12.check(plEvent(v12, ALICE, { users: { [CAROL]: 100 } })), /creator/);
    const v11 = new TestRoom("11");
    allowed(v11.check(plEvent(v11, ALICE, { users: { [ALICE]: 100 } })));
  });

  it("v12: a creator's infinite level allows any integer level", () => {
    const room = new TestRoom("12", { powerLevels: { users: { [BOB]: 9000 }, ban: 9000 } });
    allowed(room.check(plEvent(room, ALICE, { users: { [BOB]: 2 ** 53 - 1 }, ban: 2 ** 53 - 1 })));
  });
});

describe("v12 room creators", () => {
  const room12 = () => {
    const room = new TestRoom("12", { createContent: { additional_creators: [CAROL] }, powerLevels: { users: { [DAVE]: 100 } } });
    room.member(CAROL, "join");
    room.member(DAVE, "join");
    room.member(BOB, "join");
    return room;
  };

  it("roomCreators: v12 sender plus additional_creators; v11 sender; v10 content.creator", () => {
    const room = room12();
    expect(roomCreators(room.create, room.rules)).toEqual([ALICE, CAROL]);
    const create = pdu("m.room.create", ALICE, { creator: BOB, additional_creators: [CAROL] }, "!r:a.example", { stateKey: "" });
    expect(roomCreators(create, rulesOf("11"))).toEqual([ALICE]);
    expect(roomCreators(create, rulesOf("10"))).toEqual([BOB]);
  });

  it("creators have infinite power; others read from power levels", () => {
    const room = room12();
    expect(powerLevelOf(ALICE, room.lookup, room.rules)).toBe(Infinity);
    expect(powerLevelOf(CAROL, room.lookup, room.rules)).toBe(Infinity);
    expect(powerLevelOf(DAVE, room.lookup, room.rules)).toBe(100);
    expect(powerLevelOf(BOB, room.lookup, room.rules)).toBe(0);
  });

  it("a PL-100 admin cannot kick or ban a creator; a creator can ban the admin", () => {
    const room = room12();
    rejected(room.check(room.memberEvent(DAVE, ALICE, "ban")), /ban/);
    rejected(room.check(room.memberEvent(DAVE, CAROL, "leave")), /kick/);
    allowed(room.check(room.memberEvent(CAROL, DAVE, "ban")));
    allowed(room.check(room.memberEvent(ALICE, DAVE, "leave")));
  });

  it("creators cannot ban each other (equal, infinite levels)", () => {
    const room = room12();
    rejected(room.check(room.memberEvent(ALICE, CAROL, "ban")), /ban/);
  });

  it("a creator can send anything whatever the required levels", () => {
    const room = new TestRoom("12", { powerLevels: { events_default: 2 ** 53 - 1, state_default: 2 ** 53 - 1, events: { "m.room.tombstone": 2 ** 53 - 1 } } });
    allowed(room.check(room.event("m.room.tombstone", ALICE, { body: "bye" }, { stateKey: "" })));
    allowed(room.check(room.event("m.room.message", ALICE, { body: "x" })));
    room.member(BOB, "join");
    rejected(room.check(room.event("m.room.message", BOB, { body: "x" })), /power level/);
  });

  it("v11: the creator has no special power once power levels exist", () => {
    const room = new TestRoom("11", { powerLevels: { users: { [DAVE]: 100 } } });
    room.member(DAVE, "join");
    expect(powerLevelOf(ALICE, room.lookup, room.rules)).toBe(0);
    allowed(room.check(room.memberEvent(DAVE, ALICE, "ban")));
  });
});

describe("m.room.redaction", () => {
  it("v1: allowed with the redact level, or for an event whose ID has the redaction's domain", () => {
    const room = new TestRoom("1");
    room.member(BOB, "join");
    room.member(CAROL, "join");
    const bobsMessage = room.event("m.room.message", BOB, { body: "x" });
    const alicesMessage = room.event("m.room.message", ALICE, { body: "x" });
    allowed(room.check(room.event("m.room.redaction", BOB, {}, { redacts: bobsMessage.event_id })));
    rejected(room.check(room.event("m.room.redaction", BOB, {}, { redacts: alicesMessage.event_id })), /redact/);
    rejected(room.check(room.event("m.room.redaction", CAROL, {}, { redacts: bobsMessage.event_id })), /redact/);
    allowed(room.check(room.event("m.room.redaction", ALICE, {}, { redacts: bobsMessage.event_id })));
  });

  it("v3+: the auth rules ignore the redact level; delivery checks it", () => {
    const room = new TestRoom("3");
    room.member(BOB, "join");
    room.member(DAVE, "join");
    const alicesMessage = room.set(room.event("m.room.message", ALICE, { body: "x" }));
    const redaction = room.event("m.room.redaction", BOB, {}, { redacts: alicesMessage.event_id });
    allowed(room.check(redaction));
    expect(redactionAllowedAtDelivery(redaction, alicesMessage, room.lookup, room.rules)).toBe(false);
    // Same server as the original sender.
    const byDave = room.event("m.room.redaction", DAVE, {}, { redacts: alicesMessage.event_id });
    expect(redactionAllowedAtDelivery(byDave, alicesMessage, room.lookup, room.rules)).toBe(true);
    // With the redact level.
    const bobsMessage = room.event("m.room.message", BOB, { body: "x" });
    const byAlice = room.event("m.room.redaction", ALICE, {}, { redacts: bobsMessage.event_id });
    expect(redactionAllowedAtDelivery(byAlice, bobsMessage, room.lookup, room.rules)).toBe(true);
    // The redaction must name the event.
    expect(redactionAllowedAtDelivery(byAlice, alicesMessage, room.lookup, room.rules)).toBe(false);
  });

  it("v3+: redactions still need their event type's required level", () => {
    const room = new TestRoom("6", { powerLevels: { users: { [ALICE]: 100 }, events: { "m.room.redaction": 10 } } });
    room.member(BOB, "join");
    rejected(room.check(room.event("m.room.redaction", BOB, {}, { redacts: "$x" })), /power level/);
  });

  it("v11: redacts is read from content", () => {
    const room = new TestRoom("11");
    const message = room.set(room.event("m.room.message", ALICE, { body: "x" }));
    const redaction = room.event("m.room.redaction", ALICE, { redacts: message.event_id });
    expect(redactsOf(redaction, room.rules)).toBe(message.event_id);
    expect(redactsOf(redaction, rulesOf("10"))).toBeUndefined();
    allowed(room.check(redaction));
    expect(redactionAllowedAtDelivery(redaction, message, room.lookup, room.rules)).toBe(true);
  });

  it("v12: a creator may redact anyone's event at delivery", () => {
    const room = new TestRoom("12", { powerLevels: { redact: 2 ** 53 - 1 } });
    room.member(BOB, "join");
    const message = room.set(room.event("m.room.message", BOB, { body: "x" }));
    const redaction = room.event("m.room.redaction", ALICE, { redacts: message.event_id });
    allowed(room.check(redaction));
    expect(redactionAllowedAtDelivery(redaction, message, room.lookup, room.rules)).toBe(true);
  });
});

describe("helpers", () => {
  it("requiredPowerLevelFor uses the defaults without a power levels event", () => {
    const room = new TestRoom("10", { powerLevels: null });
    expect(requiredPowerLevelFor("m.room.name", true, room.lookup, room.rules)).toBe(50);
    expect(requiredPowerLevelFor("m.room.message", false, room.lookup, room.rules)).toBe(0);
    room.powerLevels({ users: { [ALICE]: 100 }, events: { "m.room.message": 7 }, state_default: 20 });
    expect(requiredPowerLevelFor("m.room.message", false, room.lookup, room.rules)).toBe(7);
    expect(requiredPowerLevelFor("m.room.name", true, room.lookup, room.rules)).toBe(20);
  });

  it("powerLevelOf falls back to users_default", () => {
    const room = new TestRoom("10", { powerLevels: { users: { [ALICE]: 100 }, users_default: 3 } });
    expect(powerLevelOf(BOB, room.lookup, room.rules)).toBe(3);
  });

  it("parsePowerLevelValue follows the version's format", () => {
    expect(parsePowerLevelValue(" -007 ", rulesOf("9"))).toBe(-7);
    expect(parsePowerLevelValue("1.5", rulesOf("9"))).toBeUndefined();
    expect(parsePowerLevelValue("50", rulesOf("10"))).toBeUndefined();
    expect(parsePowerLevelValue(12.7, rulesOf("1"))).toBe(12);
    expect(parsePowerLevelValue(12.7, rulesOf("10"))).toBeUndefined();
  });

  it("isValidUserId accepts historical localparts and checks the server name", () => {
    expect(isValidUserId("@alice:example.org")).toBe(true);
    expect(isValidUserId("@Alice!:example.org:8448")).toBe(true);
    expect(isValidUserId("@a:[1234:5678::abcd]:5678")).toBe(true);
    expect(isValidUserId("@a:exa mple.org")).toBe(false);
    expect(isValidUserId("@a:example.org:port")).toBe(false);
    expect(isValidUserId("alice:example.org")).toBe(false);
    expect(isValidUserId("@" + "a".repeat(250) + ":example.org")).toBe(false);
  });
});

// Real-shaped data: every PDU of ruma's state-resolution fixtures (rooms v10, v11, v12) was
// authored legitimately, so each must pass the auth events selection and the rules against the
// state formed by its own auth events (plus the create event in v12).
describe("state-resolution fixtures pass auth against their auth events", () => {
  const groups: Record<string, unknown[][]> = {
    "v10 public chat, bans, join rules": [bootstrapPublicChat, banVsPowerLevelsAlice, banVsPowerLevelsBob, joinRulesVsJoinCommon, joinRulesVsJoinElla],
    "v11 MSC4297 problem A": [problemAv11],
    "v12 MSC4297 problem A": [problemAv12],
    "v12 MSC4297 problem B": [problemBv12],
  };
  for (const [name, files] of Object.entries(groups)) {
    it(name, () => {
      const byId = new Map<string, IdentifiedPdu>();
      for (const file of files) for (const p of file as IdentifiedPdu[]) byId.set(p.event_id, p);
      const create = [...byId.values()].find((e) => e.type === "m.room.create")!;
      const rules = rulesOf(String(create.content.room_version));
      expect(byId.size).toBeGreaterThan(3);
      for (const p of byId.values()) {
        const authEvents = (p.auth_events as string[]).map((id) => byId.get(id)!);
        const createEvent = rules.authorization.roomCreateEventIdAsRoomId ? create : undefined;
        expect({ id: p.event_id, ...checkEventAgainstAuthEvents(p, authEvents, rules, { createEvent }) }).toEqual({ id: p.event_id, allowed: true });
      }
    });
  }

  it("and the same events fail when their auth events are taken away", () => {
    const byId = new Map((problemAv12 as unknown as IdentifiedPdu[]).map((p) => [p.event_id, p]));
    const create = byId.get("$00-m-room-create")!;
    const rules = rulesOf("12");
    const nonMember = [...byId.values()].filter((p) => p.type !== "m.room.create" && p.type !== "m.room.member");
    expect(nonMember.length).toBeGreaterThan(0);
    for (const p of nonMember) {
      const stripped = { ...p, auth_events: [] };
      rejected(checkEventAgainstAuthEvents(stripped, [], rules, { createEvent: create }), /not joined/);
    }
  });
});
