// A user in many rooms whose User DO has not been listening (docs/fan-out.md, "Many rooms"): each commit
// leaves the room's newest activity in D1 (`room_activity`, room/event-index.ts), and a sync that must ask
// BACKGROUND_CATCH_UP_MIN_ROOMS rooms or more waits only for the rooms that hint says have news (/sync) or
// that its response shows (sliding sync); the others catch up in the background. Nothing is lost: what the
// background brings comes in the next response.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { BACKGROUND_CATCH_UP_MIN_ROOMS, BACKGROUND_DELAY_MS, BACKGROUND_FALLBACK_MS } from "../../durable-objects/user/sync.js";
import { parseSyncToken } from "../../durable-objects/user/sync-token.js";
import { syncFilterView } from "../../protocol/event-filter.js";
import { api, type RegisteredUser } from "./helpers.js";
import { createRoom, join, newUser, putState, roomStub, send } from "./room-helpers.js";
import { bodies, sync } from "./sync-helpers.js";

const rawRoom = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
const userStub = (userId: string) => env.USERS.get(env.USERS.idFromName(userId));

type Hint = { stream_ordering: number; bump_ts: number | null };

async function hintOf(roomId: string): Promise<Hint | null> {
  return env.DB.prepare("SELECT stream_ordering, bump_ts FROM room_activity WHERE room_id = ?").bind(roomId).first<Hint>();
}

async function latestOrdering(roomId: string): Promise<number> {
  return runInDurableObject(rawRoom(roomId), (_i, state) => state.storage.sql.exec<{ o: number }>("SELECT MAX(stream_ordering) AS o FROM events").one().o);
}

/** Waits until the room's background D1 write has caught up with its newest event. */
async function hintSettled(roomId: string): Promise<Hint> {
  const latest = await latestOrdering(roomId);
  for (let i = 0; i < 200; i++) {
    const hint = await hintOf(roomId);
    if (hint && hint.stream_ordering >= latest) return hint;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("the room's activity never reached D1");
}

/** Ends a user's lease on a room on both sides, as an expired one that the room swept. */
async function dropLease(userId: string, roomId: string): Promise<void> {
  await runInDurableObject(rawRoom(roomId), (_i, state) => {
    state.storage.sql.exec("DELETE FROM listeners WHERE user_id = ?", userId);
  });
  await runInDurableObject(userStub(userId), (instance) => {
    (instance as unknown as { syncHubInstance: { leases: Map<string, number> } }).syncHubInstance.leases.delete(roomId);
  });
}

/** Waits until every room pushes to the user again (the background catch-ups answered). */
async function listeningToAll(userId: string, rooms: string[]): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const listening = await Promise.all(rooms.map(async (roomId) => (await roomStub(roomId).listeners()).includes(userId)));
    if (listening.every(Boolean)) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("the background catch-up never finished");
}

/** `owner` in `n` public rooms, each with one message of theirs, oldest first. */
async function rooms(owner: RegisteredUser, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const roomId = await createRoom(owner, { preset: "public_chat", name: `room ${i}` });
    expect((await send(owner, roomId, { msgtype: "m.text", body: `mine ${i}` })).status).toBe(200);
    out.push(roomId);
  }
  return out;
}

describe("room activity hint", () => {
  it("follows the room's newest event; only bumping types move bump_ts; it never goes back", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice);
    const sent = await send(alice, roomId, { msgtype: "m.text", body: "hi" });
    const afterMessage = await hintSettled(roomId);
    const ts = await runInDurableObject(rawRoom(roomId), (_i, state) =>
      state.storage.sql.exec<{ j: string }>("SELECT json AS j FROM events WHERE event_id = ?", sent.body.event_id).toArray()[0]?.j,
    );
    expect(afterMessage.bump_ts).toBe(JSON.parse(ts!).origin_server_ts);

    // A topic is not a bumping type: the ordering moves on, the bump time stays.
    expect((await putState(alice, roomId, "m.room.topic", "", { topic: "t" })).status).toBe(200);
    const afterTopic = await hintSettled(roomId);
    expect(afterTopic.stream_ordering).toBeGreaterThan(afterMessage.stream_ordering);
    expect(afterTopic.bump_ts).toBe(afterMessage.bump_ts);

    // A stale write landing late (a restart's flush) does not move the row back.
    await env.DB.prepare("INSERT INTO room_activity (room_id, stream_ordering, bump_ts) VALUES (?, 1, 1) ON CONFLICT (room_id) DO UPDATE SET stream_ordering = MAX(stream_ordering, excluded.stream_ordering), bump_ts = CASE WHEN excluded.bump_ts IS NULL THEN bump_ts ELSE MAX(COALESCE(bump_ts, 0), excluded.bump_ts) END")
      .bind(roomId)
      .run();
    expect(await hintOf(roomId)).toEqual(afterTopic);
  });
});


/** bob in BACKGROUND_CATCH_UP_MIN_ROOMS rooms (alice in the first), synced once, then holding no lease. */
async function bobWithoutLeases() {
  const alice = await newUser("alice");
  const bob = await newUser("bob");
  const list = await rooms(bob, BACKGROUND_CATCH_UP_MIN_ROOMS);
  expect((await join(alice, list[0]!)).status).toBe(200);
  const first = await sync(bob);
  for (const roomId of list) await dropLease(bob.user_id, roomId);
  return { alice, bob, list, first };
}

describe("a sync over many rooms without leases", () => {
  /**
   * bob in `BACKGROUND_CATCH_UP_MIN_ROOMS` rooms; alice in rooms 0 and 1. bob synced once, then every lease
   * lapsed except `keep` of them. alice sends in both rooms while bob is away, and room 0's hint is made
   * stale (as a D1 write that has not landed yet). Returns what bob's next sync shows.
   */
  async function scenario(keep: number) {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const list = await rooms(bob, BACKGROUND_CATCH_UP_MIN_ROOMS);
    for (const roomId of list.slice(0, 2)) expect((await join(alice, roomId)).status).toBe(200);
    const first = await sync(bob);
    for (const roomId of list.slice(keep)) await dropLease(bob.user_id, roomId);
    const before = await hintSettled(list[0]!);
    await hintSettled(list[1]!);
    expect((await send(alice, list[0]!, { msgtype: "m.text", body: "stale hint" })).status).toBe(200);
    expect((await send(alice, list[1]!, { msgtype: "m.text", body: "fresh hint" })).status).toBe(200);
    await hintSettled(list[0]!);
    await hintSettled(list[1]!);
    await env.DB.prepare("UPDATE room_activity SET stream_ordering = ? WHERE room_id = ?").bind(before.stream_ordering, list[0]).run();
    const next = await sync(bob, { since: first.next_batch });
    return { bob, list, next };
  }

  it(`from ${BACKGROUND_CATCH_UP_MIN_ROOMS} rooms to ask: waits for the rooms with news only, and the rest comes next`, async () => {
    const { bob, list, next } = await scenario(0);
    expect(bodies(next, list[1]!)).toEqual(["fresh hint"]);
    // Room 0's hint said "nothing new": it was asked in the background, so its message is in a later response.
    expect(bodies(next, list[0]!)).toEqual([]);
    await listeningToAll(bob.user_id, list);
    const later = await sync(bob, { since: next.next_batch });
    expect(bodies(later, list[0]!)).toEqual(["stale hint"]);
    expect(bodies(later, list[1]!)).toEqual([]);
  });

  it("a /sync's background catch-ups wait until the worker built its response", async () => {
    const { alice, bob, list, first } = await bobWithoutLeases();
    // Asked directly, as the worker asks: the plan says that the background waits for the worker's word.
    const plan = await userStub(bob.user_id).sync({
      userId: bob.user_id,
      deviceId: bob.device_id,
      since: parseSyncToken(first.next_batch),
      timeoutMs: 0,
      fullState: false,
      filter: syncFilterView({}),
      setPresence: "online",
    });
    expect(plan.backgroundAfterResponse).toBe(true);
    // Well past the delay sliding sync uses, and well before the fallback: no room was asked yet.
    expect(2 * BACKGROUND_DELAY_MS).toBeLessThan(BACKGROUND_FALLBACK_MS / 2);
    await new Promise((r) => setTimeout(r, 2 * BACKGROUND_DELAY_MS));
    expect(await roomStub(list[0]!).listeners()).not.toContain(bob.user_id);
    await userStub(bob.user_id).responseBuilt();
    await listeningToAll(bob.user_id, list);
  });

  it("a /sync that waits for news asks the background rooms at once, and what they bring wakes it", async () => {
    const { alice, bob, list, first } = await bobWithoutLeases();
    const before = await hintSettled(list[0]!);
    expect((await send(alice, list[0]!, { msgtype: "m.text", body: "stale hint" })).status).toBe(200);
    await hintSettled(list[0]!);
    await env.DB.prepare("UPDATE room_activity SET stream_ordering = ? WHERE room_id = ?").bind(before.stream_ordering, list[0]).run();
    // Every hint says "nothing new": the long-poll plans nothing and waits. No response is being built, so
    // the background catch-ups start now (not after the fallback, which is longer than this timeout), and
    // room 0's catch-up is the news that wakes it.
    const waited = await sync(bob, { since: first.next_batch, timeout: BACKGROUND_FALLBACK_MS / 2 });
    expect(bodies(waited, list[0]!)).toEqual(["stale hint"]);
  });

  it(`with ${BACKGROUND_CATCH_UP_MIN_ROOMS - 1} rooms to ask: waits for every room, hint or not`, async () => {
    const { list, next } = await scenario(1);
    expect(bodies(next, list[0]!)).toEqual(["stale hint"]);
    expect(bodies(next, list[1]!)).toEqual(["fresh hint"]);
  });
});

describe("sliding sync over many rooms without leases", () => {
  it("orders the list by the rooms' hints, waits for the rooms shown, and the others come with the next request", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const list = await rooms(bob, BACKGROUND_CATCH_UP_MIN_ROOMS + 4);
    await join(alice, list[3]!);
    await join(alice, list[9]!);
    await sync(bob);
    for (const roomId of list) await dropLease(bob.user_id, roomId);
    expect((await send(alice, list[3]!, { msgtype: "m.text", body: "news in 3" })).status).toBe(200);
    expect((await send(alice, list[9]!, { msgtype: "m.text", body: "news in 9" })).status).toBe(200);
    await hintSettled(list[3]!);
    await hintSettled(list[9]!);

    const SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
    const request = (ranges: [number, number][]) => ({ conn_id: "many", lists: { all: { ranges, timeline_limit: 1, required_state: [] } } });
    const first = await api("POST", SS, { token: bob.access_token, body: request([[0, 0]]) });
    expect(first.status).toBe(200);
    // Without the hints bob's own newest room (19) would come first: his DO has not seen alice's messages.
    expect(first.body.lists.all.count).toBe(list.length);
    expect(first.body.lists.all.ops[0].room_ids).toEqual([list[9]]);
    expect(first.body.rooms[list[9]!].timeline.map((e: { content: { body: string } }) => e.content.body)).toEqual(["news in 9"]);

    await listeningToAll(bob.user_id, list);
    const second = await api("POST", `${SS}?pos=${first.body.pos}`, { token: bob.access_token, body: request([[0, 1]]) });
    expect(second.status).toBe(200);
    expect(second.body.lists.all.ops[0].room_ids).toEqual([list[9], list[3]]);
    expect(second.body.rooms[list[3]!].timeline.map((e: { content: { body: string } }) => e.content.body)).toEqual(["news in 3"]);
  });
});
