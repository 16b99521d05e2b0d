// lookupStateKeys (durable-objects/room/state-lookup.ts) against StateGroupStore: the same entries for every
// group of a random history with forks and removals, several keys per query.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createRoomSchema } from "../../durable-objects/room/schema.js";
import { StateGroupStore } from "../../durable-objects/room/state-groups.js";
import { lookupStateKeys } from "../../durable-objects/room/state-lookup.js";
import { stateKey } from "../../protocol/pdu.js";

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

describe("lookupStateKeys", () => {
  it("agrees with StateGroupStore.lookup on ~300 groups with forks and removals", async () => {
    await runInDurableObject(env.ROOMS.get(env.ROOMS.idFromName(`!state-lookup-${crypto.randomUUID()}`)), (_instance, state) => {
      const sql = state.storage.sql;
      createRoomSchema(sql);
      const store = new StateGroupStore(sql, 2);
      const random = prng(4242);
      const users = Array.from({ length: 25 }, (_, i) => `@u${i}:x`);
      const groups = [store.create(null, new Map([[stateKey("m.room.create", ""), "$create"]]))];
      let n = 0;
      for (let step = 0; step < 300; step++) {
        const parent = random() < 0.2 ? groups[Math.floor(random() * groups.length)]! : groups[groups.length - 1]!;
        const changes = new Map<string, string | null>();
        const key = random() < 0.15 ? stateKey("m.room.history_visibility", "") : stateKey("m.room.member", users[Math.floor(random() * users.length)]!);
        changes.set(key, random() < 0.1 ? null : `$e${++n}`);
        groups.push(store.create(parent, changes));
      }
      store.clearCache();
      let compared = 0;
      for (const group of groups) {
        const user = users[Math.floor(random() * users.length)]!;
        const other = users[Math.floor(random() * users.length)]!;
        const keys: [string, string][] = [
          ["m.room.history_visibility", ""],
          ["m.room.member", user],
          ["m.room.member", other],
          ["m.room.create", ""],
        ];
        const got = lookupStateKeys(sql, group, keys);
        const want = keys.map(([t, k]) => store.lookup(group, t, k));
        expect(got).toEqual(want);
        compared += want.filter((w) => w !== undefined).length;
      }
      // The comparison covered present and absent keys alike.
      expect(compared).toBeGreaterThan(groups.length);
      expect(lookupStateKeys(sql, null, [["m.room.create", ""]])).toEqual([undefined]);
    });
  });
});
