// The room's part of a /sync response carried by the push that wakes it (room/pushed-sync-part.ts,
// docs/fan-out.md "The wake"): a woken sync answers without asking the room, and its response is the one
// the room would have given; requests it was not built for still ask the room.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { login, type RegisteredUser } from "./helpers.js";
import { createRoom, join, newUser, putState, send } from "./room-helpers.js";
import { sync, timeline, type SyncBody, type SyncParams } from "./sync-helpers.js";
import { PUSHED_PART_MAX_RECIPIENTS } from "../../durable-objects/room/pushed-sync-part.js";

const rawRoom = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
const userStub = (userId: string) => env.USERS.get(env.USERS.idFromName(userId));

/** Counts the room's `syncRoom` calls (the hook goes on the prototype, for this room's instance only). */
const restores: (() => void)[] = [];
async function countSyncRoom(roomId: string): Promise<() => number> {
  const instance = await runInDurableObject(rawRoom(roomId), (i) => i);
  const proto = Object.getPrototypeOf(instance) as { syncRoom: (this: unknown, request: unknown) => unknown };
  const original = proto.syncRoom;
  let calls = 0;
  proto.syncRoom = function (this: unknown, request: unknown) {
    if (this === instance) calls += 1;
    return original.call(this, request);
  };
  restores.push(() => (proto.syncRoom = original));
  return () => calls;
}
afterEach(() => {
  for (const restore of restores.splice(0)) restore();
});

/** The parts a User DO keeps (in memory), by room. */
function pushedParts(userId: string): Promise<string[]> {
  return runInDurableObject(userStub(userId), (instance) => {
    const hub = (instance as unknown as { syncHubInstance?: { pushedParts: Map<string, unknown> } }).syncHubInstance;
    return [...(hub?.pushedParts.keys() ?? [])];
  });
}
function forgetPushedParts(userId: string): Promise<void> {
  return runInDurableObject(userStub(userId), (instance) => {
    (instance as unknown as { syncHubInstance?: { pushedParts: Map<string, unknown> } }).syncHubInstance?.pushedParts.clear();
  });
}

/** Long-polls from `since` until a response shows `eventId` in the room (others may wake it first). */
async function wokenBy(user: RegisteredUser, since: string, roomId: string, act: () => Promise<string>, params: SyncParams = {}): Promise<{ body: SyncBody; since: string }> {
  let from = since;
  let poll = sync(user, { ...params, since: from, timeout: 20_000 });
  while ((await userStub(user.user_id).waitingSyncs()) === 0) await new Promise((r) => setTimeout(r, 5));
  const eventId = await act();
  for (;;) {
    const body = await poll;
    if (timeline(body, roomId).some((e) => e.event_id === eventId)) return { body, since: from };
    from = body.next_batch;
    poll = sync(user, { ...params, since: from, timeout: 20_000 });
  }
}

/** A joined room's section without `unsigned.age` (it depends on when the response was made). */
function withoutAges(room: SyncBody): SyncBody {
  return JSON.parse(JSON.stringify(room), (key, value) => (key === "age" ? undefined : value));
}

describe("pushed sync part", () => {
  it("a woken sync answers from the push, exactly as the room would", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat", name: "pushed" });
    expect((await join(bob, roomId)).status).toBe(200);
    let since = (await sync(bob)).next_batch as string;
    const syncRoomCalls = await countSyncRoom(roomId);

    const steps: (() => Promise<string>)[] = [
      async () => (await send(alice, roomId, { msgtype: "m.text", body: "hello" })).body.event_id,
      async () => (await putState(alice, roomId, "m.room.topic", "", { topic: "a topic" })).body.event_id,
      async () => (await send(alice, roomId, { msgtype: "m.text", body: "with a reply", "m.relates_to": { "m.in_reply_to": { event_id: "$x" } } })).body.event_id,
    ];
    for (const step of steps) {
      const calls = syncRoomCalls();
      const woken = await wokenBy(bob, since, roomId, step);
      expect(syncRoomCalls()).toBe(calls); // the room was not asked
      expect(timeline(woken.body, roomId)[0]!).toHaveProperty("unsigned.age");

      // The same request answered by the room.
      await forgetPushedParts(bob.user_id);
      const again = await sync(bob, { since: woken.since });
      expect(syncRoomCalls()).toBe(calls + 1);
      expect(withoutAges(woken.body.rooms.join[roomId])).toEqual(withoutAges(again.rooms.join[roomId]));
      expect(woken.body.next_batch).toBe(again.next_batch);
      since = woken.body.next_batch;
    }
  });

  it("lazy-loading members: the part's member events, without those the device has, as the room gives them", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const carol = await newUser("carol");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    const syncRoomCalls = await countSyncRoom(roomId);
    // Member events stay out of the timeline, so the state is what tells bob's device who carol is.
    const timelineFilter = { not_types: ["m.room.member"] };
    const redundant = { room: { timeline: timelineFilter, state: { lazy_load_members: true, include_redundant_members: true } } };
    const lazy = { room: { timeline: timelineFilter, state: { lazy_load_members: true } } };
    let since = (await sync(bob, { filter: lazy })).next_batch as string;
    expect((await join(carol, roomId)).status).toBe(200);
    since = (await sync(bob, { since, filter: lazy })).next_batch as string;

    // With redundant members: carol's member event every time, from the push and from the room alike.
    let calls = syncRoomCalls();
    let woken = await wokenBy(bob, since, roomId, async () => (await send(carol, roomId, { msgtype: "m.text", body: "hi" })).body.event_id, { filter: redundant });
    expect(syncRoomCalls()).toBe(calls);
    const state = (body: SyncBody) => (body.rooms.join[roomId].state.events as { type: string; state_key: string }[]).map((e) => `${e.type}|${e.state_key}`);
    // (not alice's, a hero of the room: the summary, and with it its heroes' member events, comes only
    // when the range changed a member event, the name or the alias, room/sync-reads.ts)
    expect(state(woken.body)).toEqual([`m.room.member|${carol.user_id}`]);
    await forgetPushedParts(bob.user_id);
    let again = await sync(bob, { since: woken.since, filter: redundant });
    expect(syncRoomCalls()).toBe(calls + 1);
    expect(withoutAges(woken.body.rooms.join[roomId])).toEqual(withoutAges(again.rooms.join[roomId]));
    since = woken.body.next_batch;

    // Without: what bob's device has is left out. A second device with the same history asks the room
    // for each response (the pushed part forgotten first); both must get the same.
    const localpart = bob.user_id.slice(1, bob.user_id.indexOf(":"));
    const other = await login(bob.user_id, `password-${localpart}`);
    expect(other.status).toBe(200);
    const bob2 = { ...bob, access_token: other.body.access_token as string, device_id: other.body.device_id as string };
    for (const device of [bob, bob2]) await sync(device, { since: (await sync(device, { filter: lazy })).next_batch, filter: lazy });
    since = (await sync(bob, { filter: lazy })).next_batch as string;
    await sync(bob2, { filter: lazy });
    for (const body of ["one", "two"]) {
      calls = syncRoomCalls();
      woken = await wokenBy(bob, since, roomId, async () => (await send(carol, roomId, { msgtype: "m.text", body })).body.event_id, { filter: lazy });
      expect(syncRoomCalls()).toBe(calls);
      await forgetPushedParts(bob.user_id);
      again = await sync(bob2, { since: woken.since, filter: lazy });
      expect(syncRoomCalls()).toBe(calls + 1);
      expect(withoutAges(woken.body.rooms.join[roomId])).toEqual(withoutAges(again.rooms.join[roomId]));
      since = woken.body.next_batch;
    }
  });

  it("asks the room for what the part was not built for: own events, state_after, a filter on content, more events", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    let since = (await sync(bob)).next_batch as string;
    const syncRoomCalls = await countSyncRoom(roomId);

    // bob's own message: its transaction ID is for the device that sent it.
    let calls = syncRoomCalls();
    let woken = await wokenBy(bob, since, roomId, async () => (await send(bob, roomId, { msgtype: "m.text", body: "mine" }, "m.room.message", "txn-own")).body.event_id);
    expect(syncRoomCalls()).toBe(calls + 1);
    expect(timeline(woken.body, roomId)[0]!).toHaveProperty("unsigned.transaction_id", "txn-own");
    since = woken.body.next_batch;

    // MSC4222 state_after: the state at the end of the timeline.
    calls = syncRoomCalls();
    woken = await wokenBy(bob, since, roomId, async () => (await send(alice, roomId, { msgtype: "m.text", body: "after" })).body.event_id, { use_state_after: true });
    expect(syncRoomCalls()).toBe(calls + 1);
    since = woken.body.next_batch;

    // contains_url needs the content.
    calls = syncRoomCalls();
    woken = await wokenBy(bob, since, roomId, async () => (await send(alice, roomId, { msgtype: "m.file", body: "f", url: "mxc://x/y" })).body.event_id, {
      filter: { room: { timeline: { contains_url: true } } },
    });
    expect(syncRoomCalls()).toBe(calls + 1);
    since = woken.body.next_batch;

    // Two events since the token, pushed in two rounds: the last part has one of them.
    const first = await send(alice, roomId, { msgtype: "m.text", body: "one" });
    await runInDurableObject(rawRoom(roomId), async (instance) => {
      await (instance as unknown as { deliveriesSettled(): Promise<void> }).deliveriesSettled();
    });
    const second = await send(alice, roomId, { msgtype: "m.text", body: "two" });
    await runInDurableObject(rawRoom(roomId), async (instance) => {
      await (instance as unknown as { deliveriesSettled(): Promise<void> }).deliveriesSettled();
    });
    calls = syncRoomCalls();
    const both = await sync(bob, { since });
    expect(timeline(both, roomId).map((e) => e.event_id)).toEqual([first.body.event_id, second.body.event_id]);
    expect(syncRoomCalls()).toBe(calls + 1);
  });

  it(`rounds with up to ${PUSHED_PART_MAX_RECIPIENTS} recipients carry a part each, bigger ones share parts that answer as the room would`, async () => {
    const alice = await newUser("alice");
    // No name: the summary's heroes (and the lazy state's) differ between the first members and the others.
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const listeners: RegisteredUser[] = [];
    for (let i = 0; i <= PUSHED_PART_MAX_RECIPIENTS; i++) listeners.push(await newUser(`l${i}`));
    for (const u of listeners) expect((await join(u, roomId)).status).toBe(200);
    const settled = () =>
      runInDurableObject(rawRoom(roomId), async (instance) => {
        await (instance as unknown as { deliveriesSettled(): Promise<void> }).deliveriesSettled();
      });

    // Exactly the limit: every recipient keeps the part.
    for (const u of listeners.slice(0, PUSHED_PART_MAX_RECIPIENTS)) await sync(u);
    await settled();
    await send(alice, roomId, { msgtype: "m.text", body: "at the limit" });
    await settled();
    for (const u of listeners.slice(0, PUSHED_PART_MAX_RECIPIENTS)) expect(await pushedParts(u.user_id)).toEqual([roomId]);

    // One more: the parts are shared, and each woken response is the room's answer to the same request,
    // with and without lazy-loading (heroes and lazy members differ per recipient).
    const syncRoomCalls = await countSyncRoom(roomId);
    for (const params of [{}, { filter: { room: { state: { lazy_load_members: true } } } }] as SyncParams[]) {
      for (const u of listeners) await forgetPushedParts(u.user_id);
      const since = new Map<string, string>();
      for (const u of listeners) since.set(u.user_id, (await sync(u, params)).next_batch as string);
      await settled();
      const text = `past the limit ${crypto.randomUUID()}`;
      // Each long-polls until a response shows the message (other news may wake it first: it polls again).
      const polls = listeners.map(async (u) => {
        for (;;) {
          const body = await sync(u, { ...params, since: since.get(u.user_id), timeout: 20_000 });
          if (timeline(body, roomId).some((e) => (e as { content?: { body?: string } }).content?.body === text)) return body;
          since.set(u.user_id, body.next_batch as string);
        }
      });
      for (const u of listeners) while ((await userStub(u.user_id).waitingSyncs()) === 0) await new Promise((r) => setTimeout(r, 5));
      const calls = syncRoomCalls();
      const eventId = (await send(alice, roomId, { msgtype: "m.text", body: text })).body.event_id;
      const bodies = await Promise.all(polls);
      await settled();
      for (const body of bodies) expect(timeline(body, roomId).map((e) => e.event_id)).toEqual([eventId]);
      expect(syncRoomCalls()).toBe(calls); // no woken sync asked the room
      for (const [i, u] of listeners.entries()) {
        expect(await pushedParts(u.user_id)).toEqual([roomId]);
        await forgetPushedParts(u.user_id);
        const again = await sync(u, { ...params, since: since.get(u.user_id) });
        expect(withoutAges(bodies[i]!.rooms.join[roomId])).toEqual(withoutAges(again.rooms.join[roomId]));
      }
      expect(syncRoomCalls()).toBe(calls + listeners.length);
    }
  });
});
