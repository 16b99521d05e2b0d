// State groups (durable-objects/room/state-groups.ts) against a brute-force replay: a random sequence of
// ~500 state changes with forks, every group read back with and without the cache, and the bounds that
// make the structure worth having (chain length ≤ popcount(depth) + 1 groups, delta ≤ lowbit(depth)
// changes, O(N log N) stored entries).
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createRoomSchema } from "../../durable-objects/room/schema.js";
import { StateGroupStore, baseDepth, diffStates } from "../../durable-objects/room/state-groups.js";
import { stateKey } from "../../protocol/pdu.js";

/** Deterministic PRNG (mulberry32), so a failure reproduces. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const popcount = (n: number): number => n.toString(2).replace(/0/g, "").length;
const lowbit = (n: number): number => n & -n;

function freshRoomStub() {
  return env.ROOMS.get(env.ROOMS.idFromName(`!state-groups-${crypto.randomUUID()}`));
}

describe("state groups", () => {
  it("match a brute-force replay of ~500 changes with forks, within the chain and size bounds", async () => {
    await runInDurableObject(freshRoomStub(), (_instance, state) => {
      const sql = state.storage.sql;
      createRoomSchema(sql);
      const store = new StateGroupStore(sql, 4);
      const random = prng(12345);
      const MAX_CHANGES = 3;

      const expected = new Map<number, Map<string, string>>();
      const depthOf = new Map<number, number>();
      const groups: number[] = [];
      let eventCounter = 0;

      const root = store.create(null, new Map([[stateKey("m.room.create", ""), "$create"]]));
      expected.set(root, new Map([[stateKey("m.room.create", ""), "$create"]]));
      depthOf.set(root, 0);
      groups.push(root);

      for (let step = 0; step < 500; step++) {
        // Mostly extend a recent group (long chains), sometimes fork from an older one.
        const fork = random() < 0.15;
        const parent = fork ? groups[Math.floor(random() * groups.length)]! : groups[Math.max(0, groups.length - 1 - Math.floor(random() * 3))]!;
        const changes = new Map<string, string | null>();
        const n = 1 + Math.floor(random() * MAX_CHANGES);
        for (let i = 0; i < n; i++) {
          const key = stateKey("m.room.member", `@u${Math.floor(random() * 60)}:x`);
          // A few removals (what a state resolution can produce).
          changes.set(key, random() < 0.1 ? null : `$e${++eventCounter}`);
        }
        const g = store.create(parent, changes);
        const state = new Map(expected.get(parent)!);
        for (const [k, v] of changes) {
          if (v === null) state.delete(k);
          else state.set(k, v);
        }
        expected.set(g, state);
        depthOf.set(g, depthOf.get(parent)! + 1);
        groups.push(g);
      }

      // Every group reads back exactly, through the cache-aware store and through a cold one.
      const cold = new StateGroupStore(sql, 0);
      let totalEntries = 0;
      for (const g of groups) {
        const want = expected.get(g)!;
        expect(diffStates(store.load(g), want).size, `group ${g}`).toBe(0);
        expect(new Map(cold.load(g))).toEqual(want);
        for (let u = 0; u < 60; u += 7) {
          expect(cold.lookup(g, "m.room.member", `@u${u}:x`)).toBe(want.get(stateKey("m.room.member", `@u${u}:x`)));
        }
        const d = depthOf.get(g)!;
        expect(store.depthOf(g)).toBe(d);
        // Reading a group touches the groups on its base chain: popcount(d) hops plus the root.
        expect(cold.chainLength(g)).toBe(popcount(d) + 1);
        const size = cold.deltaSize(g);
        if (d > 0) expect(size, `delta of depth ${d}`).toBeLessThanOrEqual(MAX_CHANGES * lowbit(d));
        totalEntries += size;
      }
      const N = groups.length;
      expect(totalEntries).toBeLessThanOrEqual(MAX_CHANGES * N * (Math.log2(N) + 1));
      // The skip structure stores far less than full snapshots would.
      let snapshotEntries = 0;
      for (const s of expected.values()) snapshotEntries += s.size;
      expect(totalEntries).toBeLessThan(snapshotEntries / 2);
    });
  });

  it("the base of depth d is the ancestor at depth d & (d - 1)", () => {
    expect(baseDepth(1)).toBe(0);
    expect(baseDepth(6)).toBe(4);
    expect(baseDepth(8)).toBe(0);
    expect(baseDepth(13)).toBe(12);
  });

  it("the empty state is the state before the create event", async () => {
    await runInDurableObject(freshRoomStub(), (_instance, state) => {
      createRoomSchema(state.storage.sql);
      const store = new StateGroupStore(state.storage.sql);
      expect(store.load(null).size).toBe(0);
      expect(store.lookup(null, "m.room.create", "")).toBeUndefined();
    });
  });
});
