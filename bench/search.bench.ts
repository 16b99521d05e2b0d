// Search benchmarks (POST /search; durable-objects/room/search-index.ts, search.ts), inside workerd:
//  - the cost the index adds to storing a message: one FTS5 insert, timed alone and beside a whole
//    persist of a message through the Room DO's entry point;
//  - POST /search in a room of 10,000 messages: a word every message has and a rare one, by rank and by
//    recency, 10 results, through the Worker's fetch handler;
//  - the lazy indexing of a room stored before the index existed: the first search of those 10,000.
// `npm run bench -- bench/search.bench.ts`.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { it } from "vitest";
import type { RoomEngine } from "../durable-objects/room/engine.js";
import { createLocalEvent } from "../durable-objects/room/local-events.js";
import app from "../worker/index.js";
import { percentile, report } from "./report.js";

const V3 = "/_matrix/client/v3";
const SERVER = "bench.local";
const pending: Promise<unknown>[] = [];
const ctx = { waitUntil: (p: Promise<unknown>) => void pending.push(p.catch(() => undefined)), passThroughOnException() {}, props: {} } as unknown as ExecutionContext;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function api(method: string, path: string, options: { token?: string; body?: unknown } = {}): Promise<{ status: number; body: any }> {
  const headers = new Headers();
  if (options.token !== undefined) headers.set("Authorization", `Bearer ${options.token}`);
  if (options.body !== undefined) headers.set("Content-Type", "application/json");
  const res = await app.fetch(new Request(`https://${SERVER}${path}`, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) }), env, ctx);
  const text = await res.text();
  return { status: res.status, body: text === "" ? null : JSON.parse(text) };
}

const roomDo = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
const engineOf = (instance: unknown) => (instance as { engine: RoomEngine }).engine;

const WORDS = ["apple", "river", "stone", "cloud", "music", "orange", "window", "garden", "yellow", "silver", "planet", "coffee", "winter", "summer"];
/** A message of 8-16 words; every one has "common", one in 1,000 has "zanzibar". */
const bodyOf = (i: number) => {
  const words = ["common"];
  for (let w = 0; w < 8 + (i % 9); w++) words.push(WORDS[(i * 7 + w * 13) % WORDS.length]!);
  if (i % 1000 === 7) words.push("zanzibar");
  return words.join(" ");
};

it("search: index cost on the send path, and POST /search in a room of 10,000 messages", async () => {
  const reg = async () => {
    const localpart = `search-${crypto.randomUUID().slice(0, 8)}`;
    const request = { username: localpart, password: `password-${localpart}` };
    let res = await api("POST", `${V3}/register`, { body: request });
    if (res.status === 401) res = await api("POST", `${V3}/register`, { body: { ...request, auth: { type: "m.login.dummy", session: res.body.session } } });
    return res.body as { user_id: string; access_token: string };
  };
  const alice = await reg();
  const roomId = (await api("POST", `${V3}/createRoom`, { token: alice.access_token, body: {} })).body.room_id as string;

  // 1. The index's share of storing a message.
  const N = 2000;
  const [indexMs, persistMs] = await runInDurableObject(roomDo(roomId), async (instance) => {
    const engine = engineOf(instance);
    let t = performance.now();
    for (let i = 0; i < N; i++) engine.events.search.add(-1_000_000 - i, "m.room.message", { body: bodyOf(i) });
    const index = (performance.now() - t) / N;
    engine.sql.exec("DELETE FROM event_search WHERE rowid <= -1000000");
    t = performance.now();
    for (let i = 0; i < N; i++) await createLocalEvent(engine, env, { type: "m.room.message", sender: alice.user_id, content: { msgtype: "m.text", body: bodyOf(i) } } as never);
    const persist = (performance.now() - t) / N;
    return [index, persist];
  });
  report("search index: one FTS5 insert of a message", indexMs * 1000, "µs", `mean of ${N}, 9-17 words`);
  report("persist of one message (entry point, index included)", persistMs, "ms", `mean of ${N}`);

  // 2. Seed to 10,000 messages, then search.
  const M = 10_000;
  await runInDurableObject(roomDo(roomId), async (instance) => {
    const engine = engineOf(instance);
    for (let i = N; i < M; i++) await createLocalEvent(engine, env, { type: "m.room.message", sender: alice.user_id, content: { msgtype: "m.text", body: bodyOf(i) } } as never);
    engine.sql.exec("UPDATE fan_out SET delivered_upto = (SELECT MAX(stream_ordering) FROM events) WHERE id = 1");
  });
  const search = async (term: string, order: string) => {
    const res = await api("POST", `${V3}/search`, {
      token: alice.access_token,
      body: { search_categories: { room_events: { search_term: term, order_by: order, filter: { limit: 10 } } } },
    });
    if (res.status !== 200) throw new Error(`search: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.search_categories.room_events as { count: number };
  };
  for (const [term, order, what] of [
    ["common", "rank", "every message matches"],
    ["common", "recent", "every message matches"],
    ["zanzibar", "rank", "10 matches"],
    ["zanzibar", "recent", "10 matches"],
  ] as const) {
    const times: number[] = [];
    for (let i = 0; i < 23; i++) {
      const t = performance.now();
      await search(term, order);
      if (i >= 3) times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    report(`POST /search ${order}, "${term}", p50`, percentile(times, 50), "ms", `${M} messages, ${what}`);
  }

  // 3. A room older than its index: every event in the backlog, indexed by the first search.
  await runInDurableObject(roomDo(roomId), async (instance) => {
    const sql = engineOf(instance).sql;
    sql.exec("DELETE FROM event_search");
    sql.exec("UPDATE search_backlog SET low = (SELECT MIN(stream_ordering) FROM events), high = (SELECT MAX(stream_ordering) FROM events) WHERE id = 1");
  });
  let t = performance.now();
  const first = await search("zanzibar", "recent");
  const firstMs = performance.now() - t;
  t = performance.now();
  await search("zanzibar", "recent");
  report("first search of a room stored before its index (lazy indexing)", firstMs, "ms", `${M} messages; ${first.count} found`);
  report("the search after it", performance.now() - t, "ms");
  await Promise.all(pending);
});
