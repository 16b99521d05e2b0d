// Restart safety of the Room DO: an acknowledged event is there after the object is evicted, and
// notifications to User DOs survive a crash between commit and delivery (outbox + alarm).
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RoomDurableObject } from "../../durable-objects/room.js";
import { allState, createRoom, join, membership, newUser, roomStub, send } from "./room-helpers.js";
import { sync } from "./sync-helpers.js";

const rawRoom = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
const userStub = (userId: string) => env.USERS.get(env.USERS.idFromName(userId));

type InboxRow = {
  position: number;
  room_id: string;
  stream_ordering: number;
  event_id: string;
  type: string;
  state_key: string | null;
  membership: string | null;
};

async function inbox(userId: string, roomId: string): Promise<InboxRow[]> {
  return runInDurableObject(userStub(userId), (_i, state) => {
    const exists = state.storage.sql.exec("SELECT 1 FROM sqlite_master WHERE name = 'room_events_inbox'").toArray().length > 0;
    if (!exists) return [];
    return state.storage.sql.exec<InboxRow>("SELECT * FROM room_events_inbox WHERE room_id = ? ORDER BY position", roomId).toArray();
  });
}

describe("Room DO durability", () => {
  it("keeps acknowledged events, state and extremities across eviction", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { name: "durable" });
    const sent = await send(alice, roomId, { msgtype: "m.text", body: "survives" });
    expect(sent.status).toBe(200);
    const before = await roomStub(roomId).currentStreamOrdering();

    await evictDurableObject(rawRoom(roomId));

    const pdu = await roomStub(roomId).getPdu(sent.body.event_id);
    expect(pdu?.content.body).toBe("survives");
    expect(await roomStub(roomId).currentStreamOrdering()).toBe(before);
    const state = await allState(alice, roomId);
    expect(state.body.find((e: { type: string }) => e.type === "m.room.name").content).toEqual({ name: "durable" });
    // The next event builds on the stored forward extremity.
    const next = await send(alice, roomId, { msgtype: "m.text", body: "after restart" });
    expect(next.status).toBe(200);
    const nextPdu = await roomStub(roomId).getPdu(next.body.event_id);
    expect(nextPdu!.prev_events).toEqual([sent.body.event_id]);
    expect(nextPdu!.depth).toBe(pdu!.depth + 1);
  });

  it("pushes events to the User DOs of syncing members and membership changes to their targets", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const carol = await newUser("carol");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    await sync(bob); // bob's User DO now listens to the room (docs/fan-out.md)
    expect(await roomStub(roomId).listeners()).toEqual([bob.user_id]);
    const msg = await send(alice, roomId, { msgtype: "m.text", body: "hello" });
    const invite = await membership(alice, roomId, "invite", { user_id: carol.user_id });
    expect(invite.status).toBe(200);
    await roomStub(roomId).deliveriesSettled();

    const bobInbox = await inbox(bob.user_id, roomId);
    expect(bobInbox.map((n) => n.event_id)).toContain(msg.body.event_id);
    const bobJoin = bobInbox.find((n) => n.type === "m.room.member" && n.state_key === bob.user_id);
    expect(bobJoin?.membership).toBe("join");
    const carolInbox = await inbox(carol.user_id, roomId);
    // carol hears about her invite, not about the message before it.
    expect(carolInbox.map((n) => n.membership)).toEqual(["invite"]);
    expect(await roomStub(roomId).pendingNotifications()).toEqual([]);
  });

  it("a crash between commit and delivery: the alarm finishes the fan-out after eviction", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    await sync(alice);
    await sync(bob);

    // Simulate the crash: commit, but skip the delivery that follows it.
    await runInDurableObject(rawRoom(roomId), (instance) => {
      (instance as unknown as RoomDurableObject).deliverAfterCommit = false;
    });
    const msg = await send(alice, roomId, { msgtype: "m.text", body: "delayed" });
    expect(msg.status).toBe(200);
    const pending = await roomStub(roomId).pendingNotifications();
    expect(pending.map((p) => p.userId).sort()).toEqual([alice.user_id, bob.user_id].sort());
    expect((await inbox(bob.user_id, roomId)).map((n) => n.event_id)).not.toContain(msg.body.event_id);

    // Also lose the alarm: the constructor reschedules it for an unfinished fan-out.
    await runInDurableObject(rawRoom(roomId), async (_i, state) => {
      await state.storage.deleteAlarm();
    });
    await evictDurableObject(rawRoom(roomId));
    expect(await roomStub(roomId).roomInfo()).not.toBeNull(); // wakes the object
    const alarm = await runInDurableObject(rawRoom(roomId), (_i, state) => state.storage.getAlarm());
    expect(alarm).not.toBeNull();

    expect(await runDurableObjectAlarm(rawRoom(roomId))).toBe(true);
    expect(await roomStub(roomId).pendingNotifications()).toEqual([]);
    const bobInbox = await inbox(bob.user_id, roomId);
    const delivered = bobInbox.filter((n) => n.event_id === msg.body.event_id);
    expect(delivered).toHaveLength(1);
    // The message is the room's latest event.
    expect(delivered[0]!.stream_ordering).toBe(await roomStub(roomId).currentStreamOrdering());
  });

  it("a round that delivered everything stores its cursor with the next commit or the alarm; a restart repeats at most that round", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    await sync(bob);
    await roomStub(roomId).deliveriesSettled();
    const stored = () =>
      runInDurableObject(rawRoom(roomId), (_i, state) => state.storage.sql.exec<{ d: number }>("SELECT delivered_upto AS d FROM fan_out WHERE id = 1").one().d);

    const first = await send(alice, roomId, { msgtype: "m.text", body: "first" });
    await roomStub(roomId).deliveriesSettled();
    const firstOrdering = await roomStub(roomId).currentStreamOrdering();
    // Delivered (nothing pending), but the round wrote nothing: the stored cursor is still before it.
    expect(await roomStub(roomId).pendingNotifications()).toEqual([]);
    expect(await stored()).toBeLessThan(firstOrdering);
    expect((await inbox(bob.user_id, roomId)).map((n) => n.event_id)).toContain(first.body.event_id);

    // The next commit stores it (exactly up to the first message, not past the second).
    const second = await send(alice, roomId, { msgtype: "m.text", body: "second" });
    await roomStub(roomId).deliveriesSettled();
    expect(await stored()).toBe(firstOrdering);

    // A restart before anything stores the second round: the alarm repeats that round only, and bob's
    // User DO keeps one copy of it.
    await evictDurableObject(rawRoom(roomId));
    expect(await roomStub(roomId).roomInfo()).not.toBeNull();
    expect(await runInDurableObject(rawRoom(roomId), (_i, state) => state.storage.getAlarm())).not.toBeNull();
    expect(await runDurableObjectAlarm(rawRoom(roomId))).toBe(true);
    expect(await stored()).toBe(await roomStub(roomId).currentStreamOrdering());
    const rows = await inbox(bob.user_id, roomId);
    expect(rows.filter((n) => n.event_id === second.body.event_id)).toHaveLength(1);
    expect(rows.filter((n) => n.event_id === first.body.event_id)).toHaveLength(1);

    // Without a restart the alarm stores the cursor too.
    await send(alice, roomId, { msgtype: "m.text", body: "third" });
    await roomStub(roomId).deliveriesSettled();
    expect(await stored()).toBeLessThan(await roomStub(roomId).currentStreamOrdering());
    expect(await runDurableObjectAlarm(rawRoom(roomId))).toBe(true);
    expect(await stored()).toBe(await roomStub(roomId).currentStreamOrdering());
  });

  it("a send is acknowledged while delivery to a member is still pending; the member gets the events in order", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    await sync(bob);
    await roomStub(roomId).deliveriesSettled();

    // Hold deliveries to bob's User DO until `release`.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const bobInstance = await runInDurableObject(userStub(bob.user_id), (instance) => instance);
    // RPC calls methods of the class, so the hook goes on the prototype, for bob's instance only.
    const proto = Object.getPrototypeOf(bobInstance) as { onRoomEvents: (this: unknown, batch: unknown[]) => unknown };
    const original = proto.onRoomEvents;
    proto.onRoomEvents = async function (this: unknown, batch: unknown[]) {
      if (this === bobInstance) await held;
      return original.call(this, batch);
    };
    const sent: string[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const res = await send(alice, roomId, { msgtype: "m.text", body: `while held ${i}` });
        expect(res.status).toBe(200);
        sent.push(res.body.event_id);
      }
      // Acknowledged, not yet delivered to bob (alice's own copies may be delivered already).
      const pending = (await roomStub(roomId).pendingNotifications()).filter((p) => p.userId === bob.user_id);
      expect(pending.map((p) => p.notification.eventId)).toEqual(sent);
    } finally {
      release();
      await roomStub(roomId).deliveriesSettled();
      proto.onRoomEvents = original;
    }
    expect(await roomStub(roomId).pendingNotifications()).toEqual([]);
    const rows = (await inbox(bob.user_id, roomId)).filter((n) => sent.includes(n.event_id));
    // Commit order: positions and room stream orderings rise together.
    expect(rows.map((n) => n.event_id)).toEqual(sent);
    const orderings = rows.map((n) => n.stream_ordering);
    expect([...orderings].sort((a, b) => a - b)).toEqual(orderings);
  });

  it("User DOs record a batch of notifications once each, in order", async () => {
    const user = userStub(`@batch-${crypto.randomUUID().slice(0, 8)}:test.local`);
    const n = (o: number) => ({ roomId: "!r:test.local", streamOrdering: o, eventId: `$e${o}`, type: "m.room.message", sender: "@a:test.local" });
    const first = await user.onRoomEvents([n(1), n(2)]);
    expect(first[1]).toBe(first[0]! + 1);
    // A retried batch that overlaps the first: the repeat keeps its position, the new one is next.
    const second = await user.onRoomEvents([n(2), n(3)]);
    expect(second).toEqual([first[1], first[1]! + 1]);
  });

  it("User DOs ignore a repeated notification", async () => {
    const user = userStub(`@dedupe-${crypto.randomUUID().slice(0, 8)}:test.local`);
    const n = { roomId: "!r:test.local", streamOrdering: 7, eventId: "$e", type: "m.room.message", sender: "@a:test.local" };
    const first = await user.onRoomEvent(n);
    const second = await user.onRoomEvent(n);
    expect(second).toBe(first);
    const other = await user.onRoomEvent({ ...n, streamOrdering: 8, eventId: "$f" });
    expect(other).toBeGreaterThan(first);
  });
});
