// A big room's fan-out (docs/fan-out.md, "Big rooms"): a round for more listeners than the room keeps calls
// in flight for (16) goes out in waves and lets queued sends commit first; every listener still gets every
// event once, in commit order. Member counts are kept per change of the current state, not recounted.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import { createRoom, join, membership, newUser, roomStub, send } from "./room-helpers.js";
import { sync } from "./sync-helpers.js";
import type { RegisteredUser } from "./helpers.js";

const rawRoom = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
const userStub = (userId: string) => env.USERS.get(env.USERS.idFromName(userId));

/** Event IDs in a user's inbox for a room, in inbox order. */
async function inboxEventIds(userId: string, roomId: string): Promise<string[]> {
  return runInDurableObject(userStub(userId), (_i, state) => {
    if (state.storage.sql.exec("SELECT 1 FROM sqlite_master WHERE name = 'room_events_inbox'").toArray().length === 0) return [];
    return state.storage.sql
      .exec<{ event_id: string }>("SELECT event_id FROM room_events_inbox WHERE room_id = ? ORDER BY position", roomId)
      .toArray()
      .map((r) => r.event_id);
  });
}

/** A room with `n` members who sync (listeners), besides its creator. */
async function roomWithListeners(n: number): Promise<{ owner: RegisteredUser; roomId: string; listeners: RegisteredUser[] }> {
  const owner = await newUser("owner");
  const roomId = await createRoom(owner, { preset: "public_chat" });
  const listeners: RegisteredUser[] = [];
  for (let i = 0; i < n; i++) {
    const u = await newUser("listener");
    expect((await join(u, roomId)).status).toBe(200);
    listeners.push(u);
  }
  await roomStub(roomId).deliveriesSettled();
  for (const u of listeners) await sync(u);
  expect((await roomStub(roomId).listeners()).length).toBe(n);
  return { owner, roomId, listeners };
}

describe("big room fan-out", () => {
  // 16 listeners: one wave, as before; 17: waves of 16, with queued sends going first.
  for (const n of [16, 17]) {
    it(`${n} listeners each get every event once, in commit order, while sends keep coming`, { timeout: 120_000 }, async () => {
      const { owner, roomId, listeners } = await roomWithListeners(n);
      const sent: string[] = [];
      // Sends one after another and several at once, while rounds are going out.
      for (let i = 0; i < 3; i++) sent.push((await send(owner, roomId, { msgtype: "m.text", body: `serial ${i}` })).body.event_id);
      const concurrent = await Promise.all(Array.from({ length: 5 }, (_, i) => send(owner, roomId, { msgtype: "m.text", body: `at once ${i}` })));
      for (const r of concurrent) expect(r.status).toBe(200);
      await roomStub(roomId).deliveriesSettled();
      // Commit order is the room's stream order.
      const order = await runInDurableObject(rawRoom(roomId), (instance) => {
        const engine = (instance as unknown as { engine: RoomEngine }).engine;
        return engine.sql
          .exec<{ event_id: string }>("SELECT event_id FROM events WHERE type = 'm.room.message' ORDER BY stream_ordering")
          .toArray()
          .map((r) => r.event_id);
      });
      expect(order).toEqual(expect.arrayContaining([...sent, ...concurrent.map((r) => r.body.event_id as string)]));
      expect(order.length).toBe(8);
      for (const u of listeners) {
        const inbox = (await inboxEventIds(u.user_id, roomId)).filter((id) => order.includes(id));
        expect(inbox).toEqual(order);
      }
      expect(await roomStub(roomId).pendingNotifications()).toEqual([]);
    });
  }
});

describe("member counts", () => {
  const counts = (roomId: string) =>
    runInDurableObject(rawRoom(roomId), (instance) => {
      const engine = (instance as unknown as { engine: RoomEngine }).engine;
      return { join: engine.memberCount("join"), invite: engine.memberCount("invite") };
    });

  it("follow joins, invites and leaves (kept per change of the current state)", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const carol = await newUser("carol");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    expect(await counts(roomId)).toEqual({ join: 1, invite: 0 });
    // Asked again with no change in between: the same answer.
    expect(await counts(roomId)).toEqual({ join: 1, invite: 0 });
    await join(bob, roomId);
    expect(await counts(roomId)).toEqual({ join: 2, invite: 0 });
    expect((await membership(alice, roomId, "invite", { user_id: carol.user_id })).status).toBe(200);
    expect(await counts(roomId)).toEqual({ join: 2, invite: 1 });
    await join(carol, roomId);
    expect(await counts(roomId)).toEqual({ join: 3, invite: 0 });
    // A message changes no state: still 3.
    await send(alice, roomId, { msgtype: "m.text", body: "hi" });
    expect(await counts(roomId)).toEqual({ join: 3, invite: 0 });
    expect((await membership(bob, roomId, "leave")).status).toBe(200);
    expect(await counts(roomId)).toEqual({ join: 2, invite: 0 });
    // What /sync's summary reports comes from the same counts.
    const body = await sync(carol);
    expect(body.rooms.join[roomId].summary["m.joined_member_count"]).toBe(2);
  });
});

describe("presence targets", () => {
  it("everyone in a room up to the limit (equal included), only the listeners above it", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const carol = await newUser("carol");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    await roomStub(roomId).deliveriesSettled();
    await sync(bob); // bob listens; alice does not
    const audience = async (max: number) => (await roomStub(roomId).presenceTargets(max)).audience.sort();
    expect(await audience(2)).toEqual([alice.user_id, bob.user_id].sort());
    expect(await audience(1)).toEqual([bob.user_id]);
    // A join moves the room over the limit of 2 (the count is kept per change of the state).
    await join(carol, roomId);
    expect(await audience(2)).toEqual([bob.user_id]);
    expect(await audience(3)).toEqual([alice.user_id, bob.user_id, carol.user_id].sort());
    expect((await roomStub(roomId).presenceTargets(3)).servers).toEqual([]);
  });
});
