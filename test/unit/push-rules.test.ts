import { describe, expect, it } from "vitest";
import { MatrixError } from "../../protocol/errors.js";
import type { JsonObject, JsonValue } from "../../protocol/json.js";
import {
  conditionMatches,
  copyRoomRules,
  defaultPushRules,
  deleteRule,
  effectiveRuleset,
  evaluatePushRules,
  getRule,
  interpretActions,
  isPushRuleKind,
  lookupPath,
  parseActions,
  putRule,
  setActions,
  setEnabled,
  splitKeyPath,
  type PushCondition,
  type PushContext,
  type StoredPushRules,
} from "../../protocol/push-rules.js";

const ALICE = "@alice:example.org";
const BOB = "@bob:example.org";
const ROOM = "!room:example.org";

const ctx = (over: Partial<PushContext> = {}): PushContext => ({
  userId: ALICE,
  displayName: "Alice Liddell",
  roomMemberCount: 5,
  senderPowerLevel: 0,
  notificationPowerLevels: {},
  ...over,
});

const message = (body: string, extra: JsonObject = {}, sender = BOB): JsonObject => ({
  type: "m.room.message",
  room_id: ROOM,
  sender,
  event_id: "$e",
  content: { msgtype: "m.text", body, ...extra },
});

function expectMatrixError(fn: () => unknown, status: number, errcode: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(MatrixError);
    expect((e as MatrixError).status).toBe(status);
    expect((e as MatrixError).errcode).toBe(errcode);
    return;
  }
  throw new Error(`expected ${errcode}`);
}

const ids = (rules: { rule_id: string }[]) => rules.map((r) => r.rule_id);

describe("default ruleset", () => {
  it("has the spec's rules in the right kinds and order (with the legacy mention rules)", () => {
    const rs = defaultPushRules(ALICE, "alice");
    expect(ids(rs.override)).toEqual([
      ".m.rule.master",
      ".m.rule.suppress_notices",
      ".m.rule.invite_for_me",
      ".m.rule.member_event",
      ".m.rule.is_user_mention",
      ".m.rule.contains_display_name",
      ".m.rule.is_room_mention",
      ".m.rule.roomnotif",
      ".m.rule.tombstone",
      ".m.rule.reaction",
      ".m.rule.room.server_acl",
      ".m.rule.suppress_edits",
    ]);
    expect(ids(rs.content)).toEqual([".m.rule.contains_user_name"]);
    expect(rs.content[0].pattern).toBe("alice");
    expect(rs.room).toEqual([]);
    expect(rs.sender).toEqual([]);
    expect(ids(rs.underride)).toEqual([
      ".m.rule.call",
      ".m.rule.encrypted_room_one_to_one",
      ".m.rule.room_one_to_one",
      ".m.rule.message",
      ".m.rule.encrypted",
    ]);
    for (const kind of ["override", "content", "underride"] as const) {
      for (const r of rs[kind]) {
        expect(r.default).toBe(true);
        expect(r.enabled).toBe(r.rule_id !== ".m.rule.master");
        if (kind === "content") expect(r.conditions).toBeUndefined();
        else expect(Array.isArray(r.conditions)).toBe(true);
      }
    }
  });

  it("follows the v1.17 list exactly without the legacy rules", () => {
    const rs = defaultPushRules(ALICE, "alice", { legacyMentionRules: false });
    expect(ids(rs.override)).not.toContain(".m.rule.contains_display_name");
    expect(ids(rs.override)).not.toContain(".m.rule.roomnotif");
    expect(rs.override).toHaveLength(10);
    expect(rs.content).toEqual([]);
  });

  it("fills in the user ID and is JSON (as GET /pushrules/ returns it)", () => {
    const rs = defaultPushRules(ALICE, "alice");
    const invite = rs.override.find((r) => r.rule_id === ".m.rule.invite_for_me")!;
    expect(invite.conditions).toContainEqual({ kind: "event_match", key: "state_key", pattern: ALICE });
    const mention = rs.override.find((r) => r.rule_id === ".m.rule.is_user_mention")!;
    expect(mention.conditions).toEqual([{ kind: "event_property_contains", key: "content.m\\.mentions.user_ids", value: ALICE }]);
    expect(mention.actions).toEqual(["notify", { set_tweak: "sound", value: "default" }, { set_tweak: "highlight" }]);
    const call = rs.underride.find((r) => r.rule_id === ".m.rule.call")!;
    expect(call.actions).toEqual(["notify", { set_tweak: "sound", value: "ring" }]);
    const asJson: JsonValue = { global: rs };
    expect(JSON.parse(JSON.stringify(asJson))).toEqual({ global: rs });
  });
});

describe("conditions", () => {
  const m = (c: PushCondition, ev: JsonObject, c2: Partial<PushContext> = {}) => conditionMatches(c, ev, ctx(c2));

  it("event_match: whole value, case-insensitive, * and ?", () => {
    const topic = (t: JsonValue): JsonObject => ({ type: "m.room.topic", sender: BOB, state_key: "", content: { topic: t } });
    const c: PushCondition = { kind: "event_match", key: "content.topic", pattern: "lunc?*" };
    expect(m(c, topic("Lunch plans"))).toBe(true);
    expect(m(c, topic("LUNCH"))).toBe(true);
    expect(m(c, topic(" lunch"))).toBe(false);
    expect(m(c, topic("lunc"))).toBe(false);
    expect(m(c, topic(null))).toBe(false);
    expect(m({ kind: "event_match", key: "content.missing", pattern: "*" }, topic("x"))).toBe(false);
    expect(m({ kind: "event_match", key: "type", pattern: "m.room.topic" }, topic("x"))).toBe(true);
    expect(m({ kind: "event_match", key: "type", pattern: "m.room" }, topic("x"))).toBe(false);
    // An empty pattern matches only the empty string (tombstone/server_acl state_key checks).
    expect(m({ kind: "event_match", key: "state_key", pattern: "" }, topic("x"))).toBe(true);
    expect(m({ kind: "event_match", key: "state_key", pattern: "" }, { ...topic("x"), state_key: "a" })).toBe(false);
    // Regex metacharacters in patterns are literal.
    expect(m({ kind: "event_match", key: "content.topic", pattern: "a.c" }, topic("abc"))).toBe(false);
    expect(m({ kind: "event_match", key: "content.topic", pattern: "a.c" }, topic("A.C"))).toBe(true);
  });

  it("event_match on content.body matches at word boundaries", () => {
    const c: PushCondition = { kind: "event_match", key: "content.body", pattern: "ex*ple" };
    expect(m(c, message("An example event."))).toBe(true);
    expect(m(c, message("exple"))).toBe(true);
    expect(m(c, message("An exciting triple-whammy"))).toBe(true);
    expect(m(c, message("examples"))).toBe(false);
    expect(m(c, message("reexample"))).toBe(false);
    expect(m({ kind: "event_match", key: "content.body", pattern: "cake" }, message("I like CAKE!"))).toBe(true);
    expect(m({ kind: "event_match", key: "content.body", pattern: "cake" }, message("cupcake"))).toBe(false);
  });

  it("glob matching is linear, not exponential, on hostile patterns", () => {
    const pattern = "*a*a*a*a*a*a*a*a*a*a*a*a*b";
    const body = "a".repeat(20000);
    expect(m({ kind: "event_match", key: "content.body", pattern }, message(body))).toBe(false);
    expect(m({ kind: "event_match", key: "content.body", pattern }, message(body + "b"))).toBe(true);
  });

  it("dotted keys honour escaped dots and backslashes", () => {
    expect(splitKeyPath("content.m\\.relates_to.rel_type")).toEqual(["content", "m.relates_to", "rel_type"]);
    expect(splitKeyPath("content.m\\\\foo")).toEqual(["content", "m\\foo"]);
    expect(splitKeyPath("content.m\\x")).toEqual(["content", "m\\x"]);
    const ev: JsonObject = { content: { "m.relates_to": { rel_type: "m.replace" }, m: { relates_to: { rel_type: "x" } } } };
    expect(lookupPath(ev, "content.m\\.relates_to.rel_type")).toBe("m.replace");
    expect(lookupPath(ev, "content.m.relates_to.rel_type")).toBe("x");
    expect(lookupPath(ev, "content.constructor")).toBeUndefined();
  });

  it("event_property_is: exact, typed match", () => {
    const create = (v: JsonValue): JsonObject => ({ type: "m.room.create", sender: BOB, state_key: "", content: { "m.federate": v } });
    const c: PushCondition = { kind: "event_property_is", key: "content.m\\.federate", value: true };
    expect(m(c, create(true))).toBe(true);
    expect(m(c, create("true"))).toBe(false);
    expect(m(c, create(1))).toBe(false);
    expect(m(c, { type: "m.room.create", sender: BOB, content: {} })).toBe(false);
    expect(m({ kind: "event_property_is", key: "content.x", value: null }, { content: { x: null } })).toBe(true);
    expect(m({ kind: "event_property_is", key: "content.x", value: null }, { content: {} })).toBe(false);
    expect(m({ kind: "event_property_is", key: "content.x", value: 3 }, { content: { x: 3 } })).toBe(true);
    expect(m({ kind: "event_property_is", key: "content.x", value: "Abc" }, { content: { x: "abc" } })).toBe(false);
  });

  it("event_property_contains: array membership", () => {
    const alias = (alt: JsonValue): JsonObject => ({ type: "m.room.canonical_alias", sender: BOB, content: { alt_aliases: alt } });
    const c: PushCondition = { kind: "event_property_contains", key: "content.alt_aliases", value: "#myroom:example.com" };
    expect(m(c, alias(["#somewhere:example.org", "#myroom:example.com"]))).toBe(true);
    expect(m(c, alias([":example.com"]))).toBe(false);
    expect(m(c, alias("#myroom:example.com"))).toBe(false);
    expect(m(c, alias([["#myroom:example.com"]]))).toBe(false);
  });

  it("contains_display_name: word-boundary match of the display name in the body", () => {
    const c: PushCondition = { kind: "contains_display_name" };
    expect(m(c, message("hey alice liddell, look"))).toBe(true);
    expect(m(c, message("hey Alice Liddellish"))).toBe(false);
    expect(m(c, message("Alice"))).toBe(false);
    expect(m(c, message("hi Alice Liddell"), { displayName: "" })).toBe(false);
    expect(m(c, message("hi Alice Liddell"), { displayName: null })).toBe(false);
    // The display name is literal text, not a glob.
    expect(m(c, message("hi Bob"), { displayName: "*" })).toBe(false);
    expect(m(c, message("hi *"), { displayName: "*" })).toBe(true);
  });

  it("room_member_count with ==, <, >, <=, >=", () => {
    const rc = (is: string, n: number) => m({ kind: "room_member_count", is }, message("x"), { roomMemberCount: n });
    expect(rc("2", 2)).toBe(true);
    expect(rc("2", 3)).toBe(false);
    expect(rc("==2", 2)).toBe(true);
    expect(rc("<10", 9)).toBe(true);
    expect(rc("<10", 10)).toBe(false);
    expect(rc("<=10", 10)).toBe(true);
    expect(rc("<=10", 11)).toBe(false);
    expect(rc(">2", 3)).toBe(true);
    expect(rc(">2", 2)).toBe(false);
    expect(rc(">=2", 2)).toBe(true);
    expect(rc(">=2", 1)).toBe(false);
    expect(rc("=2", 2)).toBe(false);
    expect(rc("two", 2)).toBe(false);
    expect(m({ kind: "room_member_count" }, message("x"), { roomMemberCount: 2 })).toBe(false);
  });

  it("sender_notification_permission compares with notifications[key] (default 50)", () => {
    const c: PushCondition = { kind: "sender_notification_permission", key: "room" };
    expect(m(c, message("x"), { senderPowerLevel: 50 })).toBe(true);
    expect(m(c, message("x"), { senderPowerLevel: 49 })).toBe(false);
    expect(m(c, message("x"), { senderPowerLevel: 10, notificationPowerLevels: { room: 10 } })).toBe(true);
    expect(m(c, message("x"), { senderPowerLevel: 99, notificationPowerLevels: { room: 100 } })).toBe(false);
    expect(m(c, message("x"), { senderPowerLevel: undefined })).toBe(false);
  });

  it("unknown or malformed conditions never match", () => {
    expect(m({ kind: "org.example.always" }, message("x"))).toBe(false);
    expect(m({ kind: "event_match", key: "type" }, message("x"))).toBe(false);
    expect(m({ kind: "event_property_is", key: "content.x", value: 1.5 }, { content: { x: 1.5 } })).toBe(false);
  });
});

describe("evaluation with the default rules", () => {
  const rules = defaultPushRules(ALICE, "alice");

  it("a plain group message notifies without sound or highlight", () => {
    const r = evaluatePushRules(rules, message("hello everyone"), ctx());
    expect(r).toMatchObject({ notify: true, highlight: false, rule: { kind: "underride", rule_id: ".m.rule.message" } });
    expect(r.sound).toBeUndefined();
  });

  it("a 1:1 room message notifies with sound", () => {
    const r = evaluatePushRules(rules, message("hello"), ctx({ roomMemberCount: 2 }));
    expect(r).toMatchObject({ notify: true, highlight: false, sound: "default", rule: { rule_id: ".m.rule.room_one_to_one" } });
    const enc = evaluatePushRules(rules, { type: "m.room.encrypted", sender: BOB, room_id: ROOM, content: { ciphertext: "x" } }, ctx({ roomMemberCount: 2 }));
    expect(enc).toMatchObject({ notify: true, sound: "default", rule: { rule_id: ".m.rule.encrypted_room_one_to_one" } });
    const encGroup = evaluatePushRules(rules, { type: "m.room.encrypted", sender: BOB, room_id: ROOM, content: {} }, ctx());
    expect(encGroup).toMatchObject({ notify: true, rule: { rule_id: ".m.rule.encrypted" } });
    expect(encGroup.sound).toBeUndefined();
  });

  it("a call invite rings", () => {
    const r = evaluatePushRules(rules, { type: "m.call.invite", sender: BOB, room_id: ROOM, content: {} }, ctx());
    expect(r).toMatchObject({ notify: true, sound: "ring", highlight: false });
  });

  it("a message with the user's display name highlights (legacy rule)", () => {
    const r = evaluatePushRules(rules, message("Alice Liddell: tea?"), ctx());
    expect(r).toMatchObject({ notify: true, highlight: true, sound: "default", rule: { rule_id: ".m.rule.contains_display_name" } });
  });

  it("the localpart in the body highlights via the content rule", () => {
    const r = evaluatePushRules(rules, message("ping ALICE please"), ctx({ displayName: "Someone" }));
    expect(r).toMatchObject({ notify: true, highlight: true, rule: { kind: "content", rule_id: ".m.rule.contains_user_name" } });
  });

  it("m.mentions switches off the legacy body matching", () => {
    const withEmpty = evaluatePushRules(rules, message("Alice Liddell and alice", { "m.mentions": {} }), ctx());
    expect(withEmpty).toMatchObject({ notify: true, highlight: false, rule: { rule_id: ".m.rule.message" } });
    const mentioned = evaluatePushRules(rules, message("hi", { "m.mentions": { user_ids: [ALICE] } }), ctx());
    expect(mentioned).toMatchObject({ notify: true, highlight: true, sound: "default", rule: { rule_id: ".m.rule.is_user_mention" } });
    const other = evaluatePushRules(rules, message("hi", { "m.mentions": { user_ids: [BOB] } }), ctx());
    expect(other.highlight).toBe(false);
  });

  it("room mentions need the notifications power level", () => {
    const mention = message("hi all", { "m.mentions": { room: true } });
    expect(evaluatePushRules(rules, mention, ctx({ senderPowerLevel: 50 }))).toMatchObject({
      notify: true,
      highlight: true,
      rule: { rule_id: ".m.rule.is_room_mention" },
    });
    expect(evaluatePushRules(rules, mention, ctx({ senderPowerLevel: 0 }))).toMatchObject({
      notify: true,
      highlight: false,
      rule: { rule_id: ".m.rule.message" },
    });
    // Legacy "@room" in the body (no m.mentions): same power check.
    expect(evaluatePushRules(rules, message("@room lunch"), ctx({ senderPowerLevel: 100 }))).toMatchObject({
      highlight: true,
      rule: { rule_id: ".m.rule.roomnotif" },
    });
    expect(evaluatePushRules(rules, message("@room lunch"), ctx({ senderPowerLevel: 0 })).highlight).toBe(false);
    // ...and it is skipped when m.mentions is present.
    expect(evaluatePushRules(rules, message("@room lunch", { "m.mentions": {} }), ctx({ senderPowerLevel: 100 })).highlight).toBe(false);
  });

  it("notices, reactions, edits and member events are silent", () => {
    const notice = evaluatePushRules(rules, message("Alice Liddell build failed", { msgtype: "m.notice" }), ctx());
    expect(notice).toMatchObject({ notify: false, highlight: false, actions: [], rule: { rule_id: ".m.rule.suppress_notices" } });
    expect(evaluatePushRules(rules, { type: "m.reaction", sender: BOB, content: {} }, ctx()).notify).toBe(false);
    const edit = message("* fixed", { "m.relates_to": { rel_type: "m.replace", event_id: "$x" } });
    expect(evaluatePushRules(rules, edit, ctx())).toMatchObject({ notify: false, rule: { rule_id: ".m.rule.suppress_edits" } });
    const join = { type: "m.room.member", sender: BOB, state_key: BOB, content: { membership: "join" } };
    expect(evaluatePushRules(rules, join, ctx())).toMatchObject({ notify: false, rule: { rule_id: ".m.rule.member_event" } });
  });

  it("an invite for the user notifies with sound; a tombstone highlights", () => {
    const invite = { type: "m.room.member", sender: BOB, state_key: ALICE, content: { membership: "invite" } };
    expect(evaluatePushRules(rules, invite, ctx())).toMatchObject({ notify: true, sound: "default", rule: { rule_id: ".m.rule.invite_for_me" } });
    const otherInvite = { ...invite, state_key: "@carol:example.org" };
    expect(evaluatePushRules(rules, otherInvite, ctx()).notify).toBe(false);
    const tomb = { type: "m.room.tombstone", sender: BOB, state_key: "", content: { replacement_room: "!n:x" } };
    expect(evaluatePushRules(rules, tomb, ctx())).toMatchObject({ notify: true, highlight: true });
    expect(evaluatePushRules(rules, { ...tomb, state_key: "x" }, ctx()).notify).toBe(false);
  });

  it("the user's own events never notify", () => {
    expect(evaluatePushRules(rules, message("hi", {}, ALICE), ctx({ roomMemberCount: 2 }))).toMatchObject({ notify: false, actions: [] });
  });

  it("unknown event types match nothing", () => {
    const r = evaluatePushRules(rules, { type: "org.example.thing", sender: BOB, content: {} }, ctx());
    expect(r).toEqual({ notify: false, highlight: false, tweaks: {}, actions: [] });
  });

  it("the master rule is disabled by default; enabled it silences everything, even user rules", () => {
    expect(rules.override[0]).toMatchObject({ rule_id: ".m.rule.master", enabled: false, actions: [] });
    let stored: StoredPushRules = {};
    stored = putRule(stored, "override", "loud", { conditions: [], actions: ["notify", { set_tweak: "highlight" }] });
    stored = setEnabled(stored, "override", ".m.rule.master", true);
    const rs = effectiveRuleset(stored, ALICE, "alice");
    expect(ids(rs.override).slice(0, 2)).toEqual([".m.rule.master", "loud"]);
    for (const ev of [message("Alice Liddell"), message("hi", { "m.mentions": { user_ids: [ALICE] } }), message("x")]) {
      expect(evaluatePushRules(rs, ev, ctx({ roomMemberCount: 2 }))).toMatchObject({
        notify: false,
        highlight: false,
        rule: { rule_id: ".m.rule.master" },
      });
    }
  });
});

describe("actions", () => {
  it("highlight without a value is true; false when absent or false", () => {
    expect(interpretActions(["notify", { set_tweak: "highlight" }]).highlight).toBe(true);
    expect(interpretActions(["notify", { set_tweak: "highlight", value: true }]).highlight).toBe(true);
    expect(interpretActions(["notify", { set_tweak: "highlight", value: false }]).highlight).toBe(false);
    expect(interpretActions(["notify"]).highlight).toBe(false);
    expect(interpretActions([]).notify).toBe(false);
    expect(interpretActions(["notify", { set_tweak: "sound", value: "bing" }, { set_tweak: "x", value: 3 }])).toMatchObject({
      sound: "bing",
      tweaks: { sound: "bing", x: 3 },
    });
  });

  it("dont_notify and coalesce are kept as given (and ignored by evaluation); unknown actions rejected", () => {
    expect(parseActions(["dont_notify"])).toEqual(["dont_notify"]);
    expect(parseActions(["notify", "coalesce", { set_tweak: "sound", value: "a" }])).toEqual(["notify", "coalesce", { set_tweak: "sound", value: "a" }]);
    expect(interpretActions(["dont_notify"])).toMatchObject({ notify: false, highlight: false, actions: [] });
    expectMatrixError(() => parseActions(["explode"]), 400, "M_BAD_JSON");
    expectMatrixError(() => parseActions([{ value: 1 }]), 400, "M_BAD_JSON");
    expectMatrixError(() => parseActions("notify"), 400, "M_BAD_JSON");
  });
});

describe("user changes", () => {
  const rule = (id: string, stored: StoredPushRules = {}, before?: string, after?: string) =>
    putRule(stored, "override", id, { conditions: [{ kind: "event_match", key: "type", pattern: id }], actions: ["notify"] }, before, after);

  it("places new rules first, or before/after another user rule", () => {
    let s = rule("a");
    s = rule("b", s); // new rules go first
    expect(ids(s.user!.override!)).toEqual(["b", "a"]);
    s = rule("c", s, "a"); // before a
    expect(ids(s.user!.override!)).toEqual(["b", "c", "a"]);
    s = rule("d", s, undefined, "b"); // after b
    expect(ids(s.user!.override!)).toEqual(["b", "d", "c", "a"]);
    s = rule("e", s, "b", "a"); // before wins when both are given
    expect(ids(s.user!.override!)).toEqual(["e", "b", "d", "c", "a"]);
    s = rule("b", s, undefined, "a"); // moving an existing rule
    expect(ids(s.user!.override!)).toEqual(["e", "d", "c", "a", "b"]);
    s = rule("d", s); // updating without before/after keeps the place
    expect(ids(s.user!.override!)).toEqual(["e", "d", "c", "a", "b"]);
    const rs = effectiveRuleset(s, ALICE, "alice");
    expect(ids(rs.override)).toEqual([".m.rule.master", "e", "d", "c", "a", "b", ...ids(defaultPushRules(ALICE, "alice").override).slice(1)]);
    expect(rs.override[1]).toEqual({
      rule_id: "e",
      default: false,
      enabled: true,
      actions: ["notify"],
      conditions: [{ kind: "event_match", key: "type", pattern: "e" }],
    });
  });

  it("user rules outrank the defaults of their kind", () => {
    let s: StoredPushRules = putRule({}, "content", "cake", { pattern: "cake", actions: ["notify", { set_tweak: "sound", value: "cakealarm.wav" }] });
    s = putRule(s, "content", "nocake", { pattern: "cake*lie", actions: ["notify"] }, "cake");
    const rs = effectiveRuleset(s, ALICE, "alice");
    expect(ids(rs.content)).toEqual(["nocake", "cake", ".m.rule.contains_user_name"]);
    expect(rs.content[0]).toEqual({ rule_id: "nocake", default: false, enabled: true, actions: ["notify"], pattern: "cake*lie" });
    const lie = evaluatePushRules(rs, message("the cake is a lie"), ctx());
    expect(lie).toMatchObject({ notify: true, rule: { rule_id: "nocake" } });
    expect(lie.sound).toBeUndefined();
    expect(evaluatePushRules(rs, message("cake for alice"), ctx())).toMatchObject({ sound: "cakealarm.wav", highlight: false });
  });

  it("room and sender rules match by their rule ID", () => {
    let s = putRule({}, "room", ROOM, { actions: [] });
    s = putRule(s, "sender", "@spambot:example.org", { actions: [], conditions: [{ kind: "x" }] });
    const rs = effectiveRuleset(s, ALICE, "alice");
    expect(rs.room).toEqual([{ rule_id: ROOM, default: false, enabled: true, actions: [] }]);
    expect(rs.sender).toEqual([{ rule_id: "@spambot:example.org", default: false, enabled: true, actions: [] }]);
    expect(evaluatePushRules(rs, message("hello"), ctx())).toMatchObject({ notify: false, rule: { kind: "room" } });
    const elsewhere = { ...message("hello"), room_id: "!other:example.org" };
    expect(evaluatePushRules(rs, elsewhere, ctx())).toMatchObject({ notify: true, rule: { rule_id: ".m.rule.message" } });
    const spam = { ...message("buy", {}, "@spambot:example.org"), room_id: "!other:example.org" };
    expect(evaluatePushRules(rs, spam, ctx())).toMatchObject({ notify: false, rule: { kind: "sender" } });
    // A client-format event without room_id uses context.roomId.
    const { room_id: _omit, ...noRoom } = message("hello");
    expect(evaluatePushRules(rs, noRoom, ctx({ roomId: ROOM })).rule?.kind).toBe("room");
  });

  it("enabled and actions of default and user rules", () => {
    let s = setEnabled({}, "underride", ".m.rule.message", false);
    s = setActions(s, "override", ".m.rule.is_user_mention", ["notify", "dont_notify"]);
    s = putRule(s, "underride", "mine", { actions: ["notify"] });
    s = setEnabled(s, "underride", "mine", false);
    s = setActions(s, "underride", "mine", [{ set_tweak: "sound", value: "x" }]);
    const rs = effectiveRuleset(s, ALICE, "alice");
    expect(getRule(s, "underride", ".m.rule.message", ALICE, "alice")).toMatchObject({ enabled: false, default: true, actions: ["notify"] });
    expect(getRule(s, "override", ".m.rule.is_user_mention", ALICE, "alice")).toMatchObject({ enabled: true, actions: ["notify", "dont_notify"] });
    expect(getRule(s, "underride", "mine", ALICE, "alice")).toEqual({
      rule_id: "mine",
      default: false,
      enabled: false,
      actions: [{ set_tweak: "sound", value: "x" }],
      conditions: [],
    });
    expect(evaluatePushRules(rs, message("hello"), ctx()).notify).toBe(false);
    expect(evaluatePushRules(rs, message("hi", { "m.mentions": { user_ids: [ALICE] } }), ctx())).toMatchObject({ notify: true, highlight: false });
    // An update keeps the enabled flag; disabling one rule leaves the stored input untouched.
    const s2 = putRule(s, "underride", "mine", { actions: [] });
    expect(getRule(s2, "underride", "mine", ALICE, "alice").enabled).toBe(false);
    expect(getRule(s, "underride", "mine", ALICE, "alice").actions).toEqual([{ set_tweak: "sound", value: "x" }]);
  });

  it("deletes user rules", () => {
    let s = rule("a");
    s = rule("b", s);
    s = deleteRule(s, "override", "a");
    expect(ids(s.user!.override!)).toEqual(["b"]);
    expectMatrixError(() => deleteRule(s, "override", "a"), 404, "M_NOT_FOUND");
    expectMatrixError(() => getRule(s, "override", "a", ALICE, "alice"), 404, "M_NOT_FOUND");
  });

  it("errors", () => {
    const s = rule("a");
    // Unknown rules.
    expectMatrixError(() => getRule(s, "override", "nope", ALICE, "alice"), 404, "M_NOT_FOUND");
    expectMatrixError(() => getRule(s, "content", ".m.rule.message", ALICE, "alice"), 404, "M_NOT_FOUND");
    expectMatrixError(() => setEnabled(s, "override", "nope", true), 404, "M_NOT_FOUND");
    expectMatrixError(() => setActions(s, "override", "nope", ["notify"]), 404, "M_NOT_FOUND");
    expectMatrixError(() => setActions(s, "override", "nope", "garbage"), 404, "M_NOT_FOUND");
    expectMatrixError(() => setEnabled(s, "override", ".m.rule.roomnotif", true, { legacyMentionRules: false }), 404, "M_NOT_FOUND");
    expectMatrixError(() => deleteRule(s, "room", "!nope:x"), 404, "M_NOT_FOUND");
    // Server-default rules cannot be created over or deleted.
    expectMatrixError(() => putRule(s, "override", ".m.rule.master", { conditions: [], actions: [] }), 400, "M_INVALID_PARAM");
    expectMatrixError(() => deleteRule(s, "override", ".m.rule.master"), 400, "M_INVALID_PARAM");
    // Bad rule IDs.
    expectMatrixError(() => putRule(s, "override", ".mine", { actions: [] }), 400, "M_INVALID_PARAM");
    expectMatrixError(() => putRule(s, "override", "a/b", { actions: [] }), 400, "M_INVALID_PARAM");
    expectMatrixError(() => putRule(s, "override", "a\\b", { actions: [] }), 400, "M_INVALID_PARAM");
    expectMatrixError(() => putRule(s, "override", "", { actions: [] }), 400, "M_INVALID_PARAM");
    // Bad before/after.
    expectMatrixError(() => rule("b", s, "missing"), 400, "M_UNKNOWN");
    expectMatrixError(() => rule("b", s, undefined, "missing"), 400, "M_UNKNOWN");
    expectMatrixError(() => rule("b", s, ".m.rule.suppress_notices"), 400, "M_INVALID_PARAM");
    expectMatrixError(() => rule("a", s, "a"), 400, "M_INVALID_PARAM");
    expectMatrixError(() => putRule(s, "underride", "b", { actions: [] }, "a"), 400, "M_UNKNOWN"); // a is an override rule
    // Bad bodies.
    expectMatrixError(() => putRule(s, "override", "b", { conditions: [] }), 400, "M_BAD_JSON");
    expectMatrixError(() => putRule(s, "content", "b", { actions: [] }), 400, "M_BAD_JSON");
    expectMatrixError(() => putRule(s, "content", "b", { actions: [], pattern: 3 }), 400, "M_BAD_JSON");
    expectMatrixError(() => putRule(s, "override", "b", { actions: [], conditions: [{ key: "type" }] }), 400, "M_BAD_JSON");
    expectMatrixError(() => putRule(s, "override", "b", { actions: [], conditions: "all" }), 400, "M_BAD_JSON");
    expectMatrixError(() => setActions(s, "override", "a", { actions: [] }), 400, "M_BAD_JSON");
    // Nothing changed on failure: the input is never mutated.
    expect(ids(s.user!.override!)).toEqual(["a"]);
  });

  it("knows the rule kinds", () => {
    expect(isPushRuleKind("underride")).toBe(true);
    expect(isPushRuleKind("global")).toBe(false);
  });
});

describe("copyRoomRules (room upgrades)", () => {
  it("copies rules naming the old room under the new room's ID, once, just before the original", () => {
    let s = putRule({}, "room", "!old:x", { actions: ["dont_notify"] });
    s = putRule(s, "override", "about-!old:x", { actions: ["notify"], conditions: [{ kind: "event_match", key: "room_id", pattern: "!old:x" }] });
    s = putRule(s, "override", "other", { actions: ["notify"], conditions: [{ kind: "event_match", key: "room_id", pattern: "!else:x" }] });
    const copied = copyRoomRules(s, "!old:x", "!new:x");
    expect(copied.user!.room!.map((r) => [r.rule_id, r.actions])).toEqual([["!new:x", ["dont_notify"]], ["!old:x", ["dont_notify"]]]);
    const override = copied.user!.override!;
    // (putRule puts a new rule first, so "other" leads.)
    expect(override.map((r) => r.rule_id)).toEqual(["other", "about-!new:x", "about-!old:x"]);
    expect(override[1]!.conditions).toEqual([{ kind: "event_match", key: "room_id", pattern: "!new:x" }]);
    // Again: nothing more.
    expect(copyRoomRules(copied, "!old:x", "!new:x")).toBe(copied);
    // Nothing about the room: the same value back.
    expect(copyRoomRules(s, "!none:x", "!new:x")).toBe(s);
  });
});

describe("event_match on whole values: the length shortcut (one code point per token)", () => {
  const m = (key: string, pattern: string, value: string) => conditionMatches({ kind: "event_match", key, pattern }, { type: "x", content: { msgtype: value } } as JsonObject, ctx());
  it("matches case-insensitively at equal length and refuses other lengths", () => {
    expect(m("content.msgtype", "m.notice", "M.NOTICE")).toBe(true);
    expect(m("content.msgtype", "m.notice", "m.notic")).toBe(false);
    expect(m("content.msgtype", "m.notice", "m.notices")).toBe(false);
    // Wildcards are not literal: the shortcut does not apply.
    expect(m("content.msgtype", "m.*", "m.notice")).toBe(true);
    expect(m("content.msgtype", "m.notic?", "m.notice")).toBe(true);
  });
  it("counts code points, not UTF-16 units, when the value has surrogate pairs", () => {
    expect(m("content.msgtype", "a😀", "a😀")).toBe(true);
    expect(m("content.msgtype", "a😀b", "a😀")).toBe(false);
    expect(m("content.msgtype", "ab", "a😀")).toBe(false);
  });
});

describe("content.body at word boundaries: printable ASCII bodies take a shortcut, others do not", () => {
  const word = (pattern: string, body: string) =>
    conditionMatches({ kind: "event_match", key: "content.body", pattern }, { type: "m.room.message", content: { body } } as JsonObject, ctx());
  const name = (displayName: string, body: string) =>
    conditionMatches({ kind: "contains_display_name" }, { type: "m.room.message", content: { body } } as JsonObject, ctx({ displayName }));
  it("folds case and finds words in ASCII bodies, with _ and digits as word characters", () => {
    expect(word("alice", "Hello ALICE!")).toBe(true);
    expect(word("alice", "hello alice_x")).toBe(false);
    expect(word("alice", "alice2 and more")).toBe(false);
    expect(word("alice", "(alice)")).toBe(true);
    expect(word("al*ce", "say ALiiiCE now")).toBe(true);
    expect(name("Bob Smith", "hey bob smith, hi")).toBe(true);
    expect(name("Bob Smith", "hey bob smithy")).toBe(false);
  });
  it("the same answers for bodies outside printable ASCII (a tab, a letter with an accent, an emoji)", () => {
    expect(word("alice", "Hello\tALICE!")).toBe(true);
    expect(word("alice", "héllo alice_x")).toBe(false);
    expect(word("alice", "😀alice😀")).toBe(true);
    expect(word("élan", "ÉLAN vital")).toBe(true);
    expect(name("Zoë", "hi ZOË!")).toBe(true);
    expect(name("Zoë", "hi zoëy")).toBe(false);
  });
});
