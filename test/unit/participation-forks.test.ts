/// <reference types="vite/client" />
// MSC4345 (room version org.matrix.msc4345): forks of concurrent participation changes through state
// resolution v2.1, fixture-style (ruma's format: arrays of PDUs with readable event IDs, in
// test/fixtures/msc4345-forks/; see its README). Participation events are power events (decision 8 of
// ../shared/proposals/README.md), so they are ordered by the reverse topological power ordering: the
// sender's power, then origin_server_ts, then the event ID. Every case is resolved the ways different
// servers meet the same forks: all branches in one resolution (in every order), replayed along
// prev_events, and merged one branch at a time in every arrival order; all must agree.
import { describe, expect, it } from "vitest";
import { checkEventAgainstAuthEvents, checkEventAuth, stateLookupFrom } from "../../protocol/auth-rules.js";
import { PARTICIPATION_EVENT_TYPE } from "../../protocol/participation.js";
import { prevEventIds, stateKey, type IdentifiedPdu, type StateMap } from "../../protocol/pdu.js";
import { roomVersionRules } from "../../protocol/room-versions.js";
import { isPowerEvent, resolveState } from "../../protocol/state-res.js";

const DIR = "../fixtures/msc4345-forks";
const files = import.meta.glob<unknown>("../fixtures/msc4345-forks/*.json", { eager: true, import: "default" });
const RULES = roomVersionRules("org.matrix.msc4345")!;
const P = PARTICIPATION_EVENT_TYPE;
const KC = "serverC00000000000000000000000000000000000A";
const KD = "serverD00000000000000000000000000000000000A";

function load(name: string): IdentifiedPdu[] {
  const raw = files[`${DIR}/${name}.json`];
  if (raw === undefined) throw new Error(`missing fixture ${name}`);
  return (raw as Record<string, unknown>[]).map(({ "test-comments": _c, ...fields }) => ({ depth: 0, hashes: { sha256: "" }, signatures: {}, ...fields }) as IdentifiedPdu);
}

const keyOf = (e: IdentifiedPdu): string => stateKey(e.type, e.state_key!);
const bootstrap = load("bootstrap");
const create = bootstrap[0]!;

/** The events of the bootstrap and the given branches, and the state after each branch (each branch's
 * events are checked against that branch's state: every fixture event is allowed where it was sent). */
function room(branches: string[]) {
  const events = new Map<string, IdentifiedPdu>();
  const base: StateMap = new Map();
  const apply = (state: StateMap, e: IdentifiedPdu) => {
    events.set(e.event_id, e);
    const lookup = stateLookupFrom([...state.values()].map((id) => events.get(id)!));
    const own = checkEventAgainstAuthEvents(e, e.auth_events.map((id) => events.get(id as string)!), RULES, { createEvent: create });
    expect(own, `${e.event_id} against its auth events`).toEqual({ allowed: true });
    expect(checkEventAuth(e, RULES, lookup), `${e.event_id} against its branch`).toEqual({ allowed: true });
    state.set(keyOf(e), e.event_id);
  };
  for (const e of bootstrap) apply(base, e);
  const branchEvents = branches.map(load);
  const states = branchEvents.map((list) => {
    const state = new Map(base);
    for (const e of list) apply(state, e);
    return state;
  });
  const getEvent = (id: string) => events.get(id);
  const resolve = (sets: StateMap[]) => resolveState({ rules: RULES, stateSets: sets, getEvent });
  return { events, base, states, branchEvents, resolve };
}

function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items];
  return items.flatMap((x, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [x, ...rest]));
}

/** Replays every event along prev_events (the state before an event is the resolution of the states
 * after its prev events), then resolves the leaves: what a server that saw the whole DAG computes. */
function replay(r: ReturnType<typeof room>, order: IdentifiedPdu[]): StateMap {
  const after = new Map<string, StateMap>();
  const pending = [...bootstrap, ...order];
  while (pending.length > 0) {
    const i = pending.findIndex((e) => prevEventIds(e).every((p) => after.has(p)));
    const [e] = pending.splice(i, 1) as [IdentifiedPdu];
    const prev = prevEventIds(e).map((p) => after.get(p)!);
    const before = prev.length === 0 ? new Map<string, string>() : r.resolve(prev);
    after.set(e.event_id, r.resolve([before, new Map(before).set(keyOf(e), e.event_id)]));
  }
  const referenced = new Set([...bootstrap, ...order].flatMap(prevEventIds));
  return r.resolve(order.filter((e) => !referenced.has(e.event_id)).map((e) => after.get(e.event_id)!));
}

/**
 * Resolves `branches` every way and checks that all agree; returns the one result. `expected` names
 * the state entries the case is about (`null`: absent).
 */
function resolveEveryWay(branches: string[], expected: Record<string, string | null>): StateMap {
  const r = room(branches);
  const results: [how: string, state: StateMap][] = [];
  for (const order of permutations(r.states.map((_, i) => i))) {
    results.push([`one resolution, order ${order}`, r.resolve(order.map((i) => r.states[i]!))]);
    // a server that has one branch and receives the others one at a time
    let merged = r.states[order[0]!]!;
    for (const i of order.slice(1)) merged = r.resolve([merged, r.states[i]!]);
    results.push([`merged in arrival order ${order}`, merged]);
    results.push([`replayed, branches in order ${order}`, replay(r, order.flatMap((i) => r.branchEvents[i]!))]);
  }
  const first = Object.fromEntries(results[0]![1]);
  for (const [how, state] of results) expect(Object.fromEntries(state), how).toEqual(first);
  const resolved = results[0]![1];
  for (const [key, id] of Object.entries(expected)) expect(resolved.get(key) ?? null, key).toBe(id);
  return resolved;
}

const part = (key: string) => stateKey(P, key);
const PL = stateKey("m.room.power_levels", "");

describe("MSC4345 fork fixtures", () => {
  it("the fixtures are what they say: participation events are power events; every event is allowed in its own branch", () => {
    const r = room(["accept-d-mod-ts20", "revoke-d-mod2-ts21", "self-revoke-d", "revoke-c-mod-ts30", "promote-carol-mod2-ts31", "promote-carol-alice-ts51"]);
    for (const e of r.events.values()) if (e.type === P) expect(isPowerEvent(e, RULES)).toBe(true);
    expect(r.events.size).toBe(bootstrap.length + 6);
  });

  describe("accept against revoke: the revocation stands whatever the order", () => {
    it("the acceptance is older (both at power 100): applied first, then revoked", () => {
      resolveEveryWay(["accept-d-mod-ts20", "revoke-d-mod2-ts21"], { [part(KD)]: "$01-participation-revoke-d-mod2" });
    });
    it("the revocation is older: applied first, the acceptance then fails (a revoked key cannot be accepted)", () => {
      resolveEveryWay(["revoke-d-mod2-ts21", "accept-d-mod-ts22"], { [part(KD)]: "$01-participation-revoke-d-mod2" });
    });
    it("the server revokes itself while an admin accepts it: the admin (more power) is ordered first, the self-revocation ends it", () => {
      resolveEveryWay(["self-revoke-d", "accept-d-mod-ts20"], { [part(KD)]: "$01-participation-revoke-d-self" });
    });
  });

  describe("only the tie-break decides: mod revokes C while mod2 (same power) raises carol of C to 100", () => {
    // Revoking needs strictly more power than the server's implicit level (decision 2): after the
    // promotion, mod (100) can no longer revoke C (100). Which event is applied first decides. C's
    // request comes before the first power levels in the bootstrap, so no low-power event lies on the
    // auth paths between the conflicted events (see the D case below) and the tie-break alone orders them.
    it("the revocation has the older timestamp: C is revoked (and carol promoted)", () => {
      resolveEveryWay(["revoke-c-mod-ts30", "promote-carol-mod2-ts31"], { [part(KC)]: "$01-participation-revoke-c-mod", [PL]: "$01-m-room-power_levels-promote-carol-mod2" });
    });
    it("the promotion has the older timestamp: the revocation fails and C stays accepted", () => {
      resolveEveryWay(["promote-carol-mod2-ts31", "revoke-c-mod-ts32"], { [part(KC)]: "$00-participation-accept-c", [PL]: "$01-m-room-power_levels-promote-carol-mod2" });
    });
    it("same timestamp, the revocation has the smaller event ID: revoked", () => {
      resolveEveryWay(["revoke-c-mod-ts40-id03", "promote-carol-mod2-ts40-id04"], { [part(KC)]: "$03-participation-revoke-c-mod" });
    });
    it("same timestamp, the promotion has the smaller event ID: still accepted", () => {
      resolveEveryWay(["promote-carol-mod2-ts40-id04", "revoke-c-mod-ts40-id05"], { [part(KC)]: "$00-participation-accept-c", [PL]: "$04-m-room-power_levels-promote-carol-mod2" });
    });
    it("power before timestamp: the creator's later promotion is applied before mod's older revocation, which fails", () => {
      resolveEveryWay(["promote-carol-alice-ts51", "revoke-c-mod-ts50"], { [part(KC)]: "$00-participation-accept-c", [PL]: "$01-m-room-power_levels-promote-carol-alice" });
    });
  });

  it("the auth DAG before the tie-break: a revocation of D whose auth chain runs through D's request (power 0) comes after the promotion of dave, however old", () => {
    // v2.1's conflicted state subgraph puts D's request (sent by dave, power 0) into the ordering: the
    // revocation waits for it, so mod2's promotion (power 100) is applied first and the revocation fails.
    resolveEveryWay(["revoke-d-mod-ts30", "promote-dave-mod2-ts31"], { [part(KD)]: "$00-participation-request-d", [PL]: "$01-m-room-power_levels-promote-dave-mod2" });
  });

  describe("three servers' branches", () => {
    it("two admins accept D at once and the creator changes the join rules: the older acceptance is the state", () => {
      resolveEveryWay(["accept-d-mod-ts20", "accept-d-mod2-ts19", "join-rules-invite-alice"], {
        [part(KD)]: "$09-participation-accept-d-mod2",
        [stateKey("m.room.join_rules", "")]: "$01-m-room-join_rules-invite",
      });
    });
    it("accept, revoke and a join rules change on three servers: revoked, in every arrival order", () => {
      resolveEveryWay(["accept-d-mod-ts20", "revoke-d-mod2-ts21", "join-rules-invite-alice"], {
        [part(KD)]: "$01-participation-revoke-d-mod2",
        [stateKey("m.room.join_rules", "")]: "$01-m-room-join_rules-invite",
      });
    });
  });
});
