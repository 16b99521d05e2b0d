// Checks that a test file starts from the state a fresh workerd gives it, although the workers stage runs
// many files in one workerd (vitest.workers.config.ts `isolate: false`, test/workers/fresh-state.ts).
// isolation-1.test.ts and isolation-2.test.ts both check, then leave state of every kind behind: whichever
// runs second in a workerd sees what the first (or any earlier file) left, if the reset misses it.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import { registerUser } from "./helpers.js";
import { remoteControl, testEnv } from "./federation-helpers.js";

/** Module state of this file: evaluated afresh for every test file, like the Worker's own modules. */
let moduleWrites = 0;

const PROBE_SERVER = "isolation-probe.remote.test";
const probeRoom = () => env.ROOMS.get(env.ROOMS.idFromName("!isolation-probe:test.local"));

/** The D1 tables that hold rows (every table but the migrations' own bookkeeping). */
async function d1RowCounts(): Promise<Record<string, number>> {
  const tables = await env.DB.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name <> 'd1_migrations'",
  ).all<{ name: string }>();
  const counts: Record<string, number> = {};
  for (const { name } of tables.results) {
    const row = await env.DB.prepare(`SELECT COUNT(*) AS n FROM "${name}"`).first<{ n: number }>();
    if (row && row.n > 0) counts[name] = row.n;
  }
  return counts;
}

export async function expectFreshStart(): Promise<void> {
  expect(moduleWrites).toBe(0);
  // D1: the schema is there (migrations applied), and no table holds a row.
  const migrated = await env.DB.prepare("SELECT COUNT(*) AS n FROM d1_migrations").first<{ n: number }>();
  expect(migrated?.n).toBeGreaterThan(0);
  expect(await d1RowCounts()).toEqual({});
  // Durable Objects: the probe's own one has no storage and no alarm. (listDurableObjectIds is not checked:
  // it lists the storage files on disk, and an emptied object can keep its file; no test uses it.)
  const stored = await runInDurableObject(probeRoom(), async (_instance, state) => ({
    value: await state.storage.get("isolation-probe"),
    alarm: await state.storage.getAlarm(),
  }));
  expect(stored).toEqual({ value: undefined, alarm: null });
  // R2.
  expect((await env.MEDIA.list()).objects).toEqual([]);
  // The remote servers' stand-in: no counters, no recorded transactions, no key rotation.
  expect(await remoteControl("/_test/counters")).toEqual({});
  expect(await remoteControl(`/_test/transactions?server=${PROBE_SERVER}`)).toEqual([]);
  expect((await remoteControl<{ keyId: string }>(`/_test/sign`, { name: PROBE_SERVER, method: "GET", uri: "/", destination: "test.local" })).keyId).toBe("ed25519:v1");
}

export async function leaveStateBehind(): Promise<void> {
  moduleWrites += 1;
  await registerUser(`isolation-probe-${crypto.randomUUID().slice(0, 8)}`);
  await env.MEDIA.put("isolation-probe", "left behind");
  await runInDurableObject(probeRoom(), async (_instance, state) => {
    await state.storage.put("isolation-probe", "left behind");
    await state.storage.setAlarm(Date.now() + 3_600_000);
  });
  await remoteControl(`/_test/rotate?name=${PROBE_SERVER}`);
  // Counted by the stand-in (a key document fetch).
  await testEnv.FEDERATION_TEST_FETCHER!.fetch(`https://${PROBE_SERVER}/_matrix/key/v2/server`);
  expect(Object.keys(await d1RowCounts()).length).toBeGreaterThan(0);
  expect(await remoteControl("/_test/counters")).not.toEqual({});
}
