// Room benchmarks (issue: rooms), inside workerd:
//  - GET /messages, a page of 50, in a room with 100,000 events (at the latest event, deep in history,
//    forwards, and as a late joiner), through HTTP and computed inside the Room DO;
//  - "state at an event" in a room with 10,000 members: the full state map, one member's entry, the
//    history-visibility decisions of a page of 50, and /messages and /members (?at=) through HTTP;
//  - send latency (p50, p99) and events per second into one room with 8 concurrent senders, through the
//    Worker's fetch handler (auth, Room DO, signing, checks, commit, notification of the members' User DOs),
//    one sender at a time and 8 at once.
//
// The big rooms are seeded inside the Room DO (runInDurableObject): every event is still built, signed and
// persisted through the one entry point with all its checks; only the HTTP and RPC hops are skipped.
import { runInDurableObject } from "cloudflare:test";
import { it } from "vitest";
import { EVENT_ROW_COLUMNS, type EventRow } from "../durable-objects/room/event-rows.js";
import { VisibilityChecker } from "../durable-objects/room/history-visibility.js";
import { roomMembers } from "../durable-objects/room/members.js";
import { messages as messagesInDo } from "../durable-objects/room/timeline.js";
import { api, createRoom, engineOf, registerUser, roomDo, seed, send, SERVER, settle, uniqueLocalpart, V3, type RegisteredUser } from "./app-client.js";
import { percentile, report } from "./report.js";

/** The mean time of `fn` over `n` calls, in ms (workerd's clock has millisecond resolution: sub-millisecond
 * operations are timed in bulk). */
async function meanMs(n: number, fn: (i: number) => unknown): Promise<number> {
  for (let i = 0; i < Math.min(5, n); i++) await fn(i);
  const t = performance.now();
  for (let i = 0; i < n; i++) await fn(i);
  return (performance.now() - t) / n;
}

/** Times `fn` `n` times after `warm` warm-up calls; returns the sorted durations in ms. */
async function timed(n: number, fn: (i: number) => Promise<unknown>, warm = 5): Promise<number[]> {
  for (let i = 0; i < warm; i++) await fn(i);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i);
    out.push(performance.now() - t);
  }
  return out.sort((a, b) => a - b);
}

async function messages(user: RegisteredUser, roomId: string, query: string): Promise<{ chunk: unknown[]; end?: string; start: string }> {
  const res = await api("GET", `${V3}/rooms/${encodeURIComponent(roomId)}/messages?${query}`, { token: user.access_token });
  if (res.status !== 200) throw new Error(`messages: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

it("/messages: a page of 50 in a room with 100,000 events", async () => {
  const alice = await registerUser(uniqueLocalpart("alice"));
  const roomId = await createRoom(alice, { preset: "public_chat" });
  const N = 100_000;
  const seconds = await seed(roomId, N, (i) => ({ type: "m.room.message", sender: alice.user_id, content: { msgtype: "m.text", body: `message ${i} with some ordinary text in it` } }));
  report("seeding 100,000 events through persistEvent (in the DO)", seconds, "s", `${(N / seconds).toFixed(0)} events/s`);
  report("waiting for the seeded writes to reach the disk", await settle(roomId), "s");

  const latest = await timed(50, () => messages(alice, roomId, "dir=b&limit=50"));
  report("/messages dir=b limit=50 from the latest event, p50", percentile(latest, 50), "ms");
  report("/messages dir=b limit=50 from the latest event, p99", percentile(latest, 99), "ms");

  const deep = await timed(50, (i) => messages(alice, roomId, `dir=b&limit=50&from=t${1000 + i * 1900}`));
  report("/messages dir=b limit=50 deep in history (random points), p50", percentile(deep, 50), "ms");
  const forwards = await timed(50, (i) => messages(alice, roomId, `dir=f&limit=50&from=t${1000 + i * 1900}`));
  report("/messages dir=f limit=50 deep in history, p50", percentile(forwards, 50), "ms");

  // A user who joins now: every page before their join needs the visibility at those events (shared).
  const bob = await registerUser(uniqueLocalpart("bob"));
  const joined = await api("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/join`, { token: bob.access_token, body: {} });
  if (joined.status !== 200) throw new Error("join failed");
  const late = await timed(50, (i) => messages(bob, roomId, `dir=b&limit=50&from=t${1000 + i * 1900}`));
  report("/messages dir=b limit=50 deep in history as a late joiner, p50", percentile(late, 50), "ms");

  // The same pages computed inside the Room DO (no HTTP, auth or RPC): what the room's code costs.
  await runInDurableObject(roomDo(roomId), async (instance) => {
    const engine = engineOf(instance);
    const reader = { userId: alice.user_id, deviceId: alice.device_id };
    const inDo = await meanMs(200, (i) => messagesInDo(engine, reader, { dir: "b", limit: 50, from: 1000 + ((i * 7919) % 98_000) }));
    report("/messages page of 50 computed in the Room DO (random points), mean", inDo, "ms");
    const late = await meanMs(200, (i) => messagesInDo(engine, { userId: bob.user_id }, { dir: "b", limit: 50, from: 1000 + ((i * 7919) % 98_000) }));
    report("/messages page of 50 in the Room DO as the late joiner, mean", late, "ms");
  });

  // Walk 2,000 events back from the end in pages of 50, as a client scrolling up.
  let from: string | undefined;
  const walkStart = performance.now();
  for (let page = 0; page < 40; page++) {
    const body = await messages(alice, roomId, `dir=b&limit=50${from ? `&from=${from}` : ""}`);
    if (body.chunk.length !== 50) throw new Error(`short page ${body.chunk.length}`);
    from = body.end;
  }
  report("/messages scrolling back 40 pages of 50, per page", (performance.now() - walkStart) / 40, "ms");
});

it("state at an event in a room with 10,000 members", async () => {
  const alice = await registerUser(uniqueLocalpart("alice"));
  const roomId = await createRoom(alice, { preset: "public_chat" });
  const MEMBERS = 10_000;
  const member = (i: number) => `@member${i}:${SERVER}`;
  // Joins, with a message after every 10th so that pages of messages span many state groups.
  const seconds = await seed(roomId, MEMBERS + MEMBERS / 10, (i) => {
    if (i % 11 === 10) return { type: "m.room.message", sender: alice.user_id, content: { msgtype: "m.text", body: `message ${i}` } };
    const m = member(i - Math.floor(i / 11));
    return { type: "m.room.member", stateKey: m, sender: m, content: { membership: "join", displayname: `Member ${i}` } };
  });
  report("seeding 10,000 joins + 1,000 messages (in the DO)", seconds, "s");
  report("waiting for the seeded writes to reach the disk", await settle(roomId), "s");

  await runInDurableObject(roomDo(roomId), async (instance) => {
    const engine = engineOf(instance);
    const max = engine.maxStreamOrdering();
    const rows = (from: number, n: number) =>
      engine.sql.exec<EventRow>(`SELECT ${EVENT_ROW_COLUMNS} FROM events WHERE stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT ?`, from, n).toArray();
    const points = Array.from({ length: 40 }, (_, i) => rows(Math.floor(((i + 1) * max) / 41), 1)[0]!);
    if (engine.currentState().size < MEMBERS) throw new Error(`only ${engine.currentState().size} state entries`);

    // The full state map at an event, without the in-memory cache (the cold cost).
    const full = await timed(points.length, async (i) => {
      engine.stateGroups.clearCache();
      return engine.stateGroups.load(points[i]!.state_group_after).size;
    }, 2);
    const chain = points.map((p) => engine.stateGroups.chainLength(p.state_group_after!)).sort((a, b) => a - b);
    report("state at an event (full map, ~5,000-10,000 entries), cold, p50", percentile(full, 50), "ms", `base chain ${percentile(chain, 50)} groups (p50)`);
    report("state at an event (full map), cold, max", full[full.length - 1]!, "ms");

    // One member's entry at an event (what history visibility and auth checks read).
    const one = await meanMs(2000, (i) => {
      engine.stateGroups.clearCache();
      return engine.stateGroups.lookup(points[i % points.length]!.state_group_before, "m.room.member", member((i * 37) % MEMBERS));
    });
    report("one member's entry in the state at an event, cold, mean", one * 1000, "µs");

    // The visibility decisions of a page of 50 as a late joiner (no shortcut: each event's state is asked).
    const outsider = `@outsider:${SERVER}`;
    let lookups = 0;
    const page = await meanMs(40, (i) => {
      engine.stateGroups.clearCache();
      const checker = new VisibilityChecker(engine, outsider);
      const batch = rows(points[i]!.stream_ordering, 50);
      for (const r of batch) checker.canSee(r);
      lookups = checker.lookups;
    });
    report("history visibility of a page of 50 (non-member), cold, mean", page, "ms", `${lookups} state-group look-ups`);
  });

  await runInDurableObject(roomDo(roomId), async (instance) => {
    const engine = engineOf(instance);
    const reader = { userId: alice.user_id, deviceId: alice.device_id };
    const inDo = await meanMs(10, () => roomMembers(engine, reader, { membership: "join" }).length);
    report("/members (10,000 joined) computed in the Room DO, mean", inDo, "ms");
    const page = await meanMs(100, (i) => messagesInDo(engine, reader, { dir: "b", limit: 50, from: 2000 + ((i * 97) % 9000) }));
    report("/messages page of 50 in the 10,000-member room, in the Room DO, mean", page, "ms");
  });
  const members = await timed(10, () => api("GET", `${V3}/rooms/${encodeURIComponent(roomId)}/members?membership=join`, { token: alice.access_token }), 1);
  report("/members (10,000 joined) through HTTP, p50", percentile(members, 50), "ms");
  const start = (await messages(alice, roomId, "dir=b&limit=1")).start;
  const half = `t${Math.floor(Number(start.slice(1)) / 2)}`;
  const membersAt = await timed(10, () => api("GET", `${V3}/rooms/${encodeURIComponent(roomId)}/members?at=${half}`, { token: alice.access_token }), 1);
  report("/members?at= (state at an event, ~5,000 members) through HTTP, p50", percentile(membersAt, 50), "ms");
  const page = await timed(30, (i) => messages(alice, roomId, `dir=b&limit=50&from=t${2000 + i * 300}`));
  report("/messages dir=b limit=50 in the 10,000-member room, p50", percentile(page, 50), "ms");
  const lazy = await timed(30, (i) => messages(alice, roomId, `dir=b&limit=50&from=t${2000 + i * 300}&filter=${encodeURIComponent('{"lazy_load_members":true}')}`));
  report("/messages limit=50 with lazy_load_members, 10,000 members, p50", percentile(lazy, 50), "ms");
});

it("send: 8 concurrent senders into one room", async () => {
  const owner = await registerUser(uniqueLocalpart("owner"));
  const roomId = await createRoom(owner, { preset: "public_chat" });
  const senders: RegisteredUser[] = [];
  for (let i = 0; i < 8; i++) {
    const u = await registerUser(uniqueLocalpart("sender"));
    const joined = await api("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/join`, { token: u.access_token, body: {} });
    if (joined.status !== 200) throw new Error("join failed");
    senders.push(u);
  }
  // Warm-up.
  for (const u of senders) await send(u, roomId, "warm-up");
  const single = await timed(100, (i) => send(senders[0]!, roomId, `alone ${i}`));
  report("send latency, one sender at a time, p50", percentile(single, 50), "ms", "9 members");
  report("send latency, one sender at a time, p99", percentile(single, 99), "ms");
  const PER_SENDER = 100;
  const latencies: number[] = [];
  const start = performance.now();
  await Promise.all(
    senders.map(async (u, s) => {
      for (let i = 0; i < PER_SENDER; i++) {
        const t = performance.now();
        await send(u, roomId, `sender ${s} message ${i}`);
        latencies.push(performance.now() - t);
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const total = senders.length * PER_SENDER;
  report("send latency, 8 concurrent senders, p50", percentile(latencies, 50), "ms", `${total} sends, 9 members`);
  report("send latency, 8 concurrent senders, p99", percentile(latencies, 99), "ms");
  report("events per second into one room, 8 concurrent senders", total / seconds, "events/s");
});
