/// <reference types="vite/client" />
// State resolution v2 / v2.1 (protocol/state-res.ts) against ruma's fixtures in
// test/fixtures/vectors/state-res (see test/fixtures/vectors/README.md), plus rejected events,
// which the fixtures do not cover.
import { describe, expect, it } from "vitest";
import {
  authChainOf,
  conflictedStateSubgraph,
  resolveState,
  type StateResolutionInput,
} from "../../protocol/state-res.js";
import { prevEventIds, stateKey, type IdentifiedPdu, type StateMap } from "../../protocol/pdu.js";
import { roomVersionRules, type RoomVersionRules } from "../../protocol/room-versions.js";
import type { JsonObject } from "../../protocol/json.js";

// The fixture files, read relative to this file (Vite's import.meta.glob: the project has no Node
// type definitions, and this keeps the paths checked at build time).
const FIXTURES = "../fixtures/vectors/state-res/fixtures";
const SNAPSHOTS = "../fixtures/vectors/state-res/snapshots";
const fixtureFiles = import.meta.glob<unknown>("../fixtures/vectors/state-res/fixtures/**/*.json", {
  eager: true,
  import: "default",
});
const snapshotFiles = import.meta.glob<string>("../fixtures/vectors/state-res/snapshots/*.snap", {
  eager: true,
  query: "?raw",
  import: "default",
});

function fixture(name: string): unknown {
  const value = fixtureFiles[`${FIXTURES}/${name}`];
  if (value === undefined) throw new Error(`missing fixture ${name}`);
  return value;
}

/** A fixture file of PDUs, without the `test-comments` notes; the fixtures omit hashes and
 * signatures, which state resolution does not read. */
function loadPdus(name: string): IdentifiedPdu[] {
  return (fixture(name) as Record<string, unknown>[]).map((raw) => {
    const { "test-comments": _comments, ...fields } = raw;
    return { depth: 0, hashes: { sha256: "" }, signatures: {}, ...fields } as IdentifiedPdu;
  });
}

/** The expected state of a snapshot: a YAML header between `---` lines, then a JSON array. */
function loadSnapshot(test: string): Record<string, string> {
  const text = snapshotFiles[`${SNAPSHOTS}/${test}@resolved_state.snap`];
  if (text === undefined) throw new Error(`missing snapshot ${test}`);
  const parts = text.split(/^---\s*$/m);
  const entries = JSON.parse(parts[2]!) as { type: string; state_key: string; event_id: string }[];
  return Object.fromEntries(entries.map((e) => [`${e.type} ${e.state_key}`, e.event_id]));
}

/** (type, state_key) -> event_id as a plain object, for readable diffs. */
function readable(state: StateMap, events: Map<string, IdentifiedPdu>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const eventId of state.values()) {
    const pdu = events.get(eventId)!;
    out[`${pdu.type} ${pdu.state_key}`] = eventId;
  }
  return out;
}

function rulesOf(pdus: IdentifiedPdu[]): RoomVersionRules {
  const create = pdus[0]!;
  expect(create.type).toBe("m.room.create");
  const rules = roomVersionRules(String(create.content.room_version));
  if (rules === undefined) throw new Error("unknown room version");
  return rules;
}

const keyOf = (pdu: IdentifiedPdu): string => stateKey(pdu.type, pdu.state_key!);
const single = (pdu: IdentifiedPdu): StateMap => new Map([[keyOf(pdu), pdu.event_id]]);

interface Room {
  rules: RoomVersionRules;
  events: Map<string, IdentifiedPdu>;
  getEvent: (id: string) => IdentifiedPdu | undefined;
}

function roomOf(pdus: IdentifiedPdu[], rules = rulesOf(pdus)): Room {
  const events = new Map(pdus.map((p) => [p.event_id, p]));
  return { rules, events, getEvent: (id) => events.get(id) };
}

function resolve(room: Room, stateSets: StateMap[], extra: Partial<StateResolutionInput> = {}): StateMap {
  return resolveState({ rules: room.rules, stateSets, getEvent: room.getEvent, ...extra });
}

/** The per-event auth chain hook, computed independently of the resolution. */
function authChainHook(room: Room): (id: string) => Set<string> {
  const memo = new Map<string, Set<string>>();
  return (id) => {
    let chain = memo.get(id);
    if (chain === undefined) {
      chain = authChainOf([id], room.getEvent, room.rules);
      memo.set(id, chain);
    }
    return chain;
  };
}

/** (b) batches: each file's PDUs alone in one-entry maps, resolved with the previous result. */
function resolveFileByFile(room: Room, batches: IdentifiedPdu[][]): StateMap {
  let previous: StateMap | undefined;
  for (const batch of batches) {
    const sets = batch.map(single);
    if (previous !== undefined) sets.unshift(previous);
    previous = resolve(room, sets);
  }
  return previous!;
}

/** (c) replay along prev_events: the state before each PDU is the resolution of the states after
 * its prev_events; the state after it resolves that state against it plus the PDU; at the end the
 * states after the leaves are resolved. */
function resolveByReplay(room: Room, pdus: IdentifiedPdu[]): StateMap {
  const stateAfter = new Map<string, StateMap>();
  const hasChildren = new Set<string>();
  for (const pdu of pdus) for (const prev of prevEventIds(pdu)) hasChildren.add(prev);
  const pending = [...pdus];
  while (pending.length > 0) {
    const index = pending.findIndex((p) => prevEventIds(p).every((prev) => stateAfter.has(prev)));
    if (index < 0) throw new Error("a prev_event is missing from the fixtures");
    const [pdu] = pending.splice(index, 1) as [IdentifiedPdu];
    const prevStates = prevEventIds(pdu).map((prev) => stateAfter.get(prev)!);
    const before = prevStates.length === 0 ? new Map<string, string>() : resolve(room, prevStates);
    const proposed = new Map(before).set(keyOf(pdu), pdu.event_id);
    stateAfter.set(pdu.event_id, resolve(room, [before, proposed]));
  }
  const leaves = pdus.filter((p) => !hasChildren.has(p.event_id));
  return resolve(room, leaves.map((leaf) => stateAfter.get(leaf.event_id)!));
}

const batchTests: [test: string, files: string[]][] = [
  ["minimal_private_chat", ["bootstrap-private-chat"]],
  ["minimal_public_chat", ["bootstrap-public-chat"]],
  ["origin_server_ts_tiebreak", ["bootstrap-private-chat", "origin-server-ts-tiebreak"]],
  ["ban_vs_power_levels", ["bootstrap-public-chat", "ban-vs-power-levels-alice", "ban-vs-power-levels-bob"]],
  ["topic_vs_power_levels", ["bootstrap-public-chat", "topic-vs-power-levels-alice", "topic-vs-power-levels-bob"]],
  [
    "power_levels_admin_vs_mod",
    ["bootstrap-public-chat", "power-levels-admin-vs-mod-alice", "power-levels-admin-vs-mod-bob"],
  ],
  ["topic_vs_ban", ["bootstrap-public-chat", "topic-vs-ban-common", "topic-vs-ban-alice", "topic-vs-ban-bob"]],
  [
    "join_rules_vs_join",
    ["bootstrap-public-chat", "join-rules-vs-join-common", "join-rules-vs-join-alice", "join-rules-vs-join-ella"],
  ],
  ["concurrent_joins", ["bootstrap-public-chat", "concurrent-joins-charlie", "concurrent-joins-ella"]],
];

describe("state resolution fixtures: batches", () => {
  for (const [test, files] of batchTests) {
    describe(test, () => {
      const batches = files.map((f) => loadPdus(`${f}.json`));
      const all = batches.flat();
      const room = roomOf(all);
      const expected = loadSnapshot(test);

      it("(a) all files in one call", () => {
        expect(readable(resolve(room, all.map(single)), room.events)).toEqual(expected);
      });
      it("(a') all files in one call, with the auth chain hook", () => {
        const state = resolve(room, all.map(single), { authChain: authChainHook(room) });
        expect(readable(state, room.events)).toEqual(expected);
      });
      it("(a'') does not depend on the order of the state sets", () => {
        const sets = all.map(single).reverse();
        expect(readable(resolve(room, sets), room.events)).toEqual(expected);
      });
      it("(b) file by file", () => {
        expect(readable(resolveFileByFile(room, batches), room.events)).toEqual(expected);
      });
      it("(c) replayed along prev_events", () => {
        expect(readable(resolveByReplay(room, all), room.events)).toEqual(expected);
      });
    });
  }
});

const stateMapTests: [test: string, states: string[], pdus: string][] = [
  ["msc4297_problem_a_state_res_v2_0", ["state-bob", "state-charlie"], "pdus-v11"],
  ["msc4297_problem_a_state_res_v2_1", ["state-bob", "state-charlie"], "pdus-v12"],
  ["msc4297_problem_b_state_res_v2_0", ["state-eve", "state-zara"], "pdus-v11"],
  ["msc4297_problem_b_state_res_v2_1", ["state-eve", "state-zara"], "pdus-v12"],
];

function loadStateMapTest(states: string[], pdus: string, dir: string): { room: Room; sets: StateMap[] } {
  const room = roomOf(loadPdus(`${dir}/${pdus}.json`));
  const sets = states.map(
    (name) => new Map((fixture(`${dir}/${name}.json`) as string[]).map((id) => [keyOf(room.events.get(id)!), id])),
  );
  return { room, sets };
}

describe("state resolution fixtures: state maps", () => {
  for (const [test, states, pdus] of stateMapTests) {
    const dir = test.includes("problem_a") ? "MSC4297-problem-A" : "MSC4297-problem-B";
    it(test, () => {
      const { room, sets } = loadStateMapTest(states, pdus, dir);
      expect(room.rules.stateResolution).toBe(pdus === "pdus-v12" ? "v2.1" : "v2");
      const expected = loadSnapshot(test);
      expect(readable(resolve(room, sets), room.events)).toEqual(expected);
      expect(readable(resolve(room, sets, { authChain: authChainHook(room) }), room.events)).toEqual(expected);
      expect(readable(resolve(room, [...sets].reverse()), room.events)).toEqual(expected);
    });
  }
});

describe("v2.0 and v2.1 differ on MSC4297's problems", () => {
  it("problem A: v2.1 starts the iterative auth checks from the empty state, so the join rules survive", () => {
    const v20 = loadStateMapTest(["state-bob", "state-charlie"], "pdus-v11", "MSC4297-problem-A");
    const v21 = loadStateMapTest(["state-bob", "state-charlie"], "pdus-v12", "MSC4297-problem-A");
    const joinRules = stateKey("m.room.join_rules", "");
    // v2.0 checks the join rules change against the unconflicted state, where alice has left.
    expect(resolve(v20.room, v20.sets).has(joinRules)).toBe(false);
    expect(resolve(v21.room, v21.sets).get(joinRules)).toBe("$01-m-room-join_rules");
  });

  it("problem B: v2.1 replays the conflicted state subgraph, so the power levels do not reset", () => {
    const v20 = loadStateMapTest(["state-eve", "state-zara"], "pdus-v11", "MSC4297-problem-B");
    const v21 = loadStateMapTest(["state-eve", "state-zara"], "pdus-v12", "MSC4297-problem-B");
    const powerLevels = stateKey("m.room.power_levels", "");
    expect(resolve(v20.room, v20.sets).get(powerLevels)).toBe("$00-m-room-power_levels");
    expect(resolve(v21.room, v21.sets).get(powerLevels)).toBe("$02-m-room-power_levels");
    // The event between the two conflicted power levels is what v2.1 adds.
    const subgraph = conflictedStateSubgraph(
      ["$00-m-room-power_levels", "$02-m-room-power_levels", "$00-m-room-member-join-zara", "$01-m-room-member-change-display-name-eve"],
      v21.room.getEvent,
      v21.room.rules,
    );
    expect(subgraph.has("$01-m-room-power_levels")).toBe(true);
    expect(subgraph.has("$00-m-room-member-join-alice")).toBe(false);
    expect(subgraph.has("$00-m-room-create")).toBe(false);
  });
});

describe("auth chains", () => {
  it("follows auth_events transitively, without the starting event", () => {
    const room = roomOf(loadPdus("bootstrap-public-chat.json"));
    expect(authChainOf(["$01-m-room-power_levels"], room.getEvent, room.rules)).toEqual(
      new Set(["$00-m-room-create", "$00-m-room-power_levels", "$00-m-room-member-join-alice"]),
    );
    expect(authChainOf(["$00-m-room-create"], room.getEvent, room.rules)).toEqual(new Set());
    // Two events: each is in the chain only if the other's chain reaches it.
    expect(authChainOf(["$00-m-room-member-join-bob", "$00-m-room-power_levels"], room.getEvent, room.rules)).toEqual(
      new Set(["$00-m-room-create", "$00-m-room-power_levels", "$00-m-room-member-join-alice", "$00-m-room-join_rules"]),
    );
  });

  it("includes the implicit create event in room version 12", () => {
    const room = roomOf(loadPdus("MSC4297-problem-A/pdus-v12.json"));
    expect(authChainOf(["$00-m-room-power_levels"], room.getEvent, room.rules)).toEqual(
      new Set(["$00-m-room-create", "$00-m-room-member-join-alice"]),
    );
  });
});

// ---- Rejected events --------------------------------------------------------------------------

/** A small invite-only room (alice creates it) in room version 10 or 12, with fake event IDs. */
function privateRoom(version: "10" | "12") {
  const rules = roomVersionRules(version)!;
  const v12 = rules.authorization.roomCreateEventIdAsRoomId;
  const roomId = v12 ? "!create" : "!room:example.com";
  const events = new Map<string, IdentifiedPdu>();
  let ts = 0;
  const add = (
    id: string,
    sender: string,
    type: string,
    key: string,
    content: JsonObject,
    authEvents: string[],
    prevEvents: string[],
  ): IdentifiedPdu => {
    const pdu: IdentifiedPdu = {
      event_id: id,
      sender,
      type,
      state_key: key,
      content,
      origin_server_ts: ts++,
      // Room version 12 events do not list the create event (MSC4291).
      auth_events: v12 ? authEvents.filter((a) => a !== "$create") : authEvents,
      prev_events: prevEvents,
      depth: ts,
      hashes: { sha256: "" },
      signatures: {},
    };
    if (!(v12 && type === "m.room.create")) pdu.room_id = roomId;
    events.set(id, pdu);
    return pdu;
  };
  const alice = "@alice:example.com";
  const dave = "@dave:example.com";
  const create = add("$create", alice, "m.room.create", "", v12 ? { room_version: "12" } : { creator: alice, room_version: "10" }, [], []);
  const aliceJoin = add("$join-alice", alice, "m.room.member", alice, { membership: "join" }, ["$create"], ["$create"]);
  // Room version 12 creators may not be listed in the power levels (MSC4289).
  const powerLevels = add("$pl", alice, "m.room.power_levels", "", v12 ? {} : { users: { [alice]: 100 } }, ["$create", "$join-alice"], ["$join-alice"]);
  const joinRules = add("$jr", alice, "m.room.join_rules", "", { join_rule: "invite" }, ["$create", "$join-alice", "$pl"], ["$pl"]);
  const base: StateMap = new Map([create, aliceJoin, powerLevels, joinRules].map((p) => [keyOf(p), p.event_id]));
  const inviteDave = add("$invite-dave", alice, "m.room.member", dave, { membership: "invite" }, ["$create", "$pl", "$join-alice", "$jr"], ["$jr"]);
  const joinDave = add("$join-dave", dave, "m.room.member", dave, { membership: "join" }, ["$create", "$pl", "$jr", "$invite-dave"], ["$invite-dave"]);
  const topic = add("$topic", alice, "m.room.topic", "", { topic: "hello" }, ["$create", "$pl", "$join-alice"], ["$jr"]);
  const room: Room = { rules, events, getEvent: (id) => events.get(id) };
  const withEntries = (...pdus: IdentifiedPdu[]): StateMap => {
    const state = new Map(base);
    for (const pdu of pdus) state.set(keyOf(pdu), pdu.event_id);
    return state;
  };
  return { room, base, inviteDave, joinDave, topic, withEntries, daveKey: stateKey("m.room.member", dave) };
}

describe("rejected events", () => {
  for (const version of ["10", "12"] as const) {
    describe(`room version ${version}`, () => {
      const r = privateRoom(version);
      const rejected = (...ids: string[]) => ({ isRejected: (id: string) => ids.includes(id) });

      it("a rejected conflicted event does not enter the result", () => {
        const sets = [r.base, r.withEntries(r.inviteDave)];
        expect(resolve(r.room, sets).get(r.daveKey)).toBe("$invite-dave");
        const state = resolve(r.room, sets, rejected("$invite-dave"));
        expect(state.has(r.daveKey)).toBe(false);
        expect(state.get(stateKey("m.room.join_rules", ""))).toBe("$jr");
      });

      it("a rejected event is not used as an auth event", () => {
        // Dave's join is only allowed through his invite, which the join cites.
        const sets = [r.base, r.withEntries(r.joinDave)];
        expect(resolve(r.room, sets).get(r.daveKey)).toBe("$join-dave");
        expect(resolve(r.room, sets, rejected("$invite-dave")).has(r.daveKey)).toBe(false);
      });

      it("a rejected event in the unconflicted state is dropped and not used", () => {
        const sets = [r.withEntries(r.inviteDave), r.withEntries(r.inviteDave, r.topic)];
        expect(resolve(r.room, sets).get(r.daveKey)).toBe("$invite-dave");
        const state = resolve(r.room, sets, rejected("$invite-dave"));
        expect(state.has(r.daveKey)).toBe(false);
        expect(state.get(stateKey("m.room.topic", ""))).toBe("$topic");
        // Nothing to resolve at all: still no rejected event in the result.
        expect(resolve(r.room, [r.withEntries(r.inviteDave)], rejected("$invite-dave")).has(r.daveKey)).toBe(false);
      });

      it("a join against a rejected invite in the other fork fails", () => {
        const sets = [r.withEntries(r.inviteDave), r.withEntries(r.joinDave)];
        expect(resolve(r.room, sets).get(r.daveKey)).toBe("$join-dave");
        expect(resolve(r.room, sets, rejected("$invite-dave")).has(r.daveKey)).toBe(false);
      });
    });
  }

  it("a rejected ban (a power event) is skipped", () => {
    const room = roomOf([...loadPdus("bootstrap-public-chat.json"), ...loadPdus("ban-vs-power-levels-alice.json")]);
    const base: StateMap = new Map(loadPdus("bootstrap-public-chat.json").map((p) => [keyOf(p), p.event_id]));
    const bobKey = stateKey("m.room.member", "@bob:example.com");
    const banned = new Map(base).set(bobKey, "$00-m-room-member-ban-bob");
    expect(resolve(room, [base, banned]).get(bobKey)).toBe("$00-m-room-member-ban-bob");
    const state = resolve(room, [base, banned], { isRejected: (id) => id === "$00-m-room-member-ban-bob" });
    expect(state.get(bobKey)).toBe("$00-m-room-member-join-bob");
  });
});

/** Extra events on top of the public chat fixture (room version 10), for cases the fixtures miss. */
function publicChatWith(extra: [id: string, sender: string, type: string, key: string, content: JsonObject, auth: string[], ts: number][]) {
  const bootstrap = loadPdus("bootstrap-public-chat.json");
  const pdus = extra.map(([id, sender, type, key, content, auth, ts]): IdentifiedPdu => ({
    event_id: id,
    room_id: "!room:example.com",
    sender: `@${sender}:example.com`,
    type,
    state_key: key.startsWith("@") ? `${key}:example.com` : key,
    content,
    origin_server_ts: ts,
    auth_events: ["$00-m-room-create", ...auth],
    prev_events: [],
    depth: 0,
    hashes: { sha256: "" },
    signatures: {},
  }));
  const room = roomOf([...bootstrap, ...pdus]);
  const base: StateMap = new Map(bootstrap.map((p) => [keyOf(p), p.event_id]));
  const withIds = (...ids: string[]): StateMap => {
    const state = new Map(base);
    for (const id of ids) state.set(keyOf(room.events.get(id)!), id);
    return state;
  };
  return { room, withIds };
}

describe("algorithm details", () => {
  const topicKey = stateKey("m.room.topic", "");
  const powerLevelsKey = stateKey("m.room.power_levels", "");

  it("orders the other events by mainline position before origin_server_ts", () => {
    // The current power levels are $01 (mainline [$01, $00]). The topic citing $01 comes later in
    // mainline order than the one citing $00 despite its smaller origin_server_ts, and the topic
    // citing no power levels at all (position ∞) comes first despite the largest one.
    const { room, withIds } = publicChatWith([
      ["$topic-on-00", "alice", "m.room.topic", "", { topic: "old" }, ["$00-m-room-power_levels", "$00-m-room-member-join-alice"], 100],
      ["$topic-on-01", "alice", "m.room.topic", "", { topic: "new" }, ["$01-m-room-power_levels", "$00-m-room-member-join-alice"], 50],
      ["$topic-no-pl", "alice", "m.room.topic", "", { topic: "none" }, ["$00-m-room-member-join-alice"], 200],
    ]);
    const sets = [withIds("$topic-on-00"), withIds("$topic-on-01"), withIds("$topic-no-pl")];
    expect(resolve(room, sets).get(topicKey)).toBe("$topic-on-01");
    expect(resolve(room, sets.slice(0, 2)).get(topicKey)).toBe("$topic-on-01");
  });

  it("replays the auth difference (v2.0): a power levels event only one fork has seen", () => {
    // Fork 1: alice makes charlie an admin ($pl-2), then charlie changes the power levels ($pl-3).
    // Fork 2 stayed at $01. $pl-2 is in neither state but in the auth difference; without it
    // charlie's change would be checked against $01, where he has no power.
    const users = { "@alice:example.com": 100, "@bob:example.com": 50, "@charlie:example.com": 100 };
    const { room, withIds } = publicChatWith([
      ["$join-charlie", "charlie", "m.room.member", "@charlie", { membership: "join" }, ["$01-m-room-power_levels", "$00-m-room-join_rules"], 10],
      ["$pl-2", "alice", "m.room.power_levels", "", { users }, ["$01-m-room-power_levels", "$00-m-room-member-join-alice"], 11],
      ["$pl-3", "charlie", "m.room.power_levels", "", { users, state_default: 60 }, ["$pl-2", "$join-charlie"], 12],
    ]);
    const sets = [withIds("$join-charlie", "$pl-3"), withIds("$join-charlie")];
    expect(resolve(room, sets).get(powerLevelsKey)).toBe("$pl-3");
    expect(resolve(room, sets, { authChain: authChainHook(room) }).get(powerLevelsKey)).toBe("$pl-3");
  });

  it("passes the pre-verified third-party invite keys to the auth checks", () => {
    const { room, withIds } = publicChatWith([
      ["$3pid", "alice", "m.room.third_party_invite", "tok", { display_name: "d...", key_validity_url: "https://x", public_key: "KEY" }, ["$01-m-room-power_levels", "$00-m-room-member-join-alice"], 10],
      [
        "$invite-dave",
        "alice",
        "m.room.member",
        "@dave",
        {
          membership: "invite",
          third_party_invite: {
            display_name: "d...",
            signed: { mxid: "@dave:example.com", token: "tok", signatures: { "id.example": { "ed25519:0": "sig" } } },
          },
        },
        ["$01-m-room-power_levels", "$00-m-room-member-join-alice", "$3pid"],
        11,
      ],
    ]);
    const daveKey = stateKey("m.room.member", "@dave:example.com");
    const sets = [withIds("$3pid"), withIds("$3pid", "$invite-dave")];
    // Fail closed without verified keys (Ed25519 verification is the caller's, ahead of time).
    expect(resolve(room, sets).has(daveKey)).toBe(false);
    const verified = (id: string) => (id === "$invite-dave" ? new Set(["KEY"]) : undefined);
    expect(resolve(room, sets, { thirdPartyInviteVerifiedKeys: verified }).get(daveKey)).toBe("$invite-dave");
    const wrongKey = () => new Set(["OTHER"]);
    expect(resolve(room, sets, { thirdPartyInviteVerifiedKeys: wrongKey }).has(daveKey)).toBe(false);
  });

  it("leaves out of the auth difference what the unconflicted state's auth chain holds", () => {
    // Bob's topic cites the old power levels $00 (where he has 0); the state says $01 (50). $00 is
    // in the auth chain of the unconflicted state, so it is not replayed over $01.
    const { room, withIds } = publicChatWith([
      ["$topic-bob", "bob", "m.room.topic", "", { topic: "bob's" }, ["$00-m-room-power_levels", "$00-m-room-member-join-bob"], 10],
    ]);
    const sets = [withIds("$topic-bob"), withIds()];
    expect(resolve(room, sets).get(topicKey)).toBe("$topic-bob");
    expect(resolve(room, sets, { authChain: authChainHook(room) }).get(topicKey)).toBe("$topic-bob");
  });
});

describe("input handling", () => {
  it("returns the unconflicted state untouched when nothing conflicts", () => {
    const room = roomOf(loadPdus("bootstrap-public-chat.json"));
    const state: StateMap = new Map(loadPdus("bootstrap-public-chat.json").map((p) => [keyOf(p), p.event_id]));
    expect(resolve(room, [state, new Map(state)])).toEqual(state);
    expect(resolve(room, [])).toEqual(new Map());
  });

  it("refuses room version 1 (state resolution v1)", () => {
    const room = roomOf(loadPdus("bootstrap-public-chat.json"), roomVersionRules("1")!);
    expect(() => resolve(room, [new Map([["a", "$x"]]), new Map([["a", "$y"]])])).toThrow(/v1/);
  });
});
