// The room's fan-out (docs/fan-out.md, durable-objects/room/fan-out.ts): a send pushes to the User DOs of
// members whose users sync (listeners) and to the user a membership event is about; everyone else reads
// the room's events when their user syncs. Sync stays gap-free and unread counts stay right either way.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createRoom, join, membership, newUser, roomStub, send } from "./room-helpers.js";
import { bodies, sync, timeline } from "./sync-helpers.js";

const rawRoom = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
const userStub = (userId: string) => env.USERS.get(env.USERS.idFromName(userId));

/** Event IDs in a user's inbox for a room (empty if the User DO has none). */
async function inboxEventIds(userId: string, roomId: string): Promise<string[]> {
  return runInDurableObject(userStub(userId), (_i, state) => {
    const exists = state.storage.sql.exec("SELECT 1 FROM sqlite_master WHERE name = 'room_events_inbox'").toArray().length > 0;
    if (!exists) return [];
    return state.storage.sql
      .exec<{ event_id: string }>("SELECT event_id FROM room_events_inbox WHERE room_id = ? ORDER BY position", roomId)
      .toArray()
      .map((r) => r.event_id);
  });
}

/** Rows in every table of a Room DO. */
async function roomRows(roomId: string): Promise<number> {
  return runInDurableObject(rawRoom(roomId), (_i, state) => {
    const sql = state.storage.sql;
    let n = 0;
    for (const t of sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'").toArray()) {
      n += sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM "${t.name}"`).one().n;
    }
    return n;
  });
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

describe("room fan-out", () => {
  it("a member who does not sync costs a send nothing and reads the events when they sync", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    const msg = await send(alice, roomId, { msgtype: "m.text", body: "while bob is away" });
    expect(msg.status).toBe(200);
    await roomStub(roomId).deliveriesSettled();

    // Nobody syncs: nothing is pushed and nothing waits to be.
    expect(await roomStub(roomId).listeners()).toEqual([]);
    expect(await roomStub(roomId).pendingNotifications()).toEqual([]);
    expect(await inboxEventIds(bob.user_id, roomId)).not.toContain(msg.body.event_id);

    // bob's first sync reads the room (and starts listening); counts come with the catch-up.
    const first = await sync(bob);
    expect(bodies(first, roomId)).toEqual(["while bob is away"]);
    expect(first.rooms.join[roomId].unread_notifications.notification_count).toBe(1);
    expect(await roomStub(roomId).listeners()).toEqual([bob.user_id]);

    // From now on bob's User DO is pushed the room's events.
    const next = await send(alice, roomId, { msgtype: "m.text", body: "pushed" });
    await roomStub(roomId).deliveriesSettled();
    expect(await inboxEventIds(bob.user_id, roomId)).toContain(next.body.event_id);
    const inc = await sync(bob, { since: first.next_batch });
    expect(bodies(inc, roomId)).toEqual(["pushed"]);
    expect(inc.rooms.join[roomId].unread_notifications.notification_count).toBe(2);
  });

  it("a lapsed lease: the next sync catches up every event after its token exactly once, with counts", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    await send(alice, roomId, { msgtype: "m.text", body: "before" });
    const first = await sync(bob);
    expect(bodies(first, roomId)).toEqual(["before"]);

    await dropLease(bob.user_id, roomId);
    for (const body of ["one", "two", "three"]) expect((await send(alice, roomId, { msgtype: "m.text", body })).status).toBe(200);
    await roomStub(roomId).deliveriesSettled();
    expect(await roomStub(roomId).listeners()).toEqual([]);

    const inc = await sync(bob, { since: first.next_batch });
    expect(bodies(inc, roomId)).toEqual(["one", "two", "three"]);
    expect(timeline(inc, roomId).length).toBe(3);
    expect(inc.rooms.join[roomId].timeline.limited).toBe(false);
    expect(inc.rooms.join[roomId].unread_notifications.notification_count).toBe(4);
    // Listening again, and the caught-up events are not repeated.
    expect(await roomStub(roomId).listeners()).toEqual([bob.user_id]);
    const again = await sync(bob, { since: inc.next_batch });
    expect(again.rooms?.join?.[roomId]).toBeUndefined();
  });

  it("a long-poll started while the lease was lapsed is woken by the next event", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    const first = await sync(bob);
    await dropLease(bob.user_id, roomId);

    const poll = sync(bob, { since: first.next_batch, timeout: 20_000 });
    // The long-poll listens before it waits.
    while ((await userStub(bob.user_id).waitingSyncs()) === 0) await new Promise((r) => setTimeout(r, 5));
    expect(await roomStub(roomId).listeners()).toEqual([bob.user_id]);
    await send(alice, roomId, { msgtype: "m.text", body: "wake up" });
    expect(bodies(await poll, roomId)).toEqual(["wake up"]);
  });

  it("invites, kicks and leaves reach their users whether or not they sync; leaving ends the lease", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const carol = await newUser("carol");
    const dave = await newUser("dave");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    await join(dave, roomId);
    await sync(dave);
    expect(await roomStub(roomId).listeners()).toEqual([dave.user_id]);

    const invite = await membership(alice, roomId, "invite", { user_id: carol.user_id });
    const kick = await membership(alice, roomId, "kick", { user_id: bob.user_id, reason: "bye" });
    const leave = await membership(dave, roomId, "leave");
    expect([invite.status, kick.status, leave.status]).toEqual([200, 200, 200]);
    await roomStub(roomId).deliveriesSettled();

    const inviteEvent = (await roomStub(roomId).membership(carol.user_id))!;
    expect(inviteEvent.membership).toBe("invite");
    expect(await inboxEventIds(carol.user_id, roomId)).toEqual([inviteEvent.eventId]);
    const kickEvent = (await roomStub(roomId).membership(bob.user_id))!;
    expect(kickEvent.membership).toBe("leave");
    expect(await inboxEventIds(bob.user_id, roomId)).toContain(kickEvent.eventId);
    expect(await roomStub(roomId).listeners()).toEqual([]);
    // The syncs agree: carol is invited, bob and dave have left.
    expect(Object.keys((await sync(carol)).rooms.invite ?? {})).toEqual([roomId]);
    const bobSync = await sync(bob, { filter: { room: { include_leave: true } } });
    expect(Object.keys(bobSync.rooms.leave ?? {})).toEqual([roomId]);
    expect(await roomStub(roomId).listeners()).toEqual([]);
  });

  it("a catch-up answers at most its limit of the newest events and says what it left out", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const from = await roomStub(roomId).currentStreamOrdering();
    const sent: string[] = [];
    for (let i = 0; i < 3; i++) sent.push((await send(alice, roomId, { msgtype: "m.text", body: `m${i}` })).body.event_id);

    const exact = await roomStub(roomId).listen(alice.user_id, from, 3);
    if (!exact.joined) throw new Error("alice is joined");
    expect(exact.events.map((e) => e.eventId)).toEqual(sent);
    expect(exact.gap).toBe(false);
    expect(exact.continuous).toBe(false);

    await dropLease(alice.user_id, roomId);
    const cut = await roomStub(roomId).listen(alice.user_id, from, 2);
    if (!cut.joined) throw new Error("alice is joined");
    expect(cut.events.map((e) => e.eventId)).toEqual(sent.slice(1));
    expect(cut.gap).toBe(true);
    // Her own events carry no push inputs (they never notify her); others' would.
    expect(cut.events[0]!.push).toBeUndefined();

    // While the lease holds, listening again from a position at or after it is a renewal.
    const renewed = await roomStub(roomId).listen(alice.user_id, cut.upto, 2);
    expect(renewed).toMatchObject({ joined: true, continuous: true, events: [] });
    // A position before the lease began needs a catch-up again.
    const behind = await roomStub(roomId).listen(alice.user_id, from, 5);
    expect(behind).toMatchObject({ joined: true, continuous: false });

    const stranger = await newUser("stranger");
    expect(await roomStub(roomId).listen(stranger.user_id, 0, 5)).toEqual({ joined: false });
  });

  it("storage written by a send does not grow with the number of members", async () => {
    const written = async (members: number): Promise<number> => {
      const owner = await newUser("owner");
      const roomId = await createRoom(owner, { preset: "public_chat" });
      for (let i = 0; i < members; i++) await join(await newUser("member"), roomId);
      await send(owner, roomId, { msgtype: "m.text", body: "warm" });
      await roomStub(roomId).deliveriesSettled();
      // What the commit itself writes (delivery would delete what it no longer needs).
      await runInDurableObject(rawRoom(roomId), (instance) => {
        (instance as unknown as { deliverAfterCommit: boolean }).deliverAfterCommit = false;
      });
      const before = await roomRows(roomId);
      await send(owner, roomId, { msgtype: "m.text", body: "counted" });
      return (await roomRows(roomId)) - before;
    };
    const small = await written(1);
    const large = await written(12);
    expect(small).toBeGreaterThan(0);
    expect(large).toBe(small);
  });
});
