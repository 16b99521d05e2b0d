// What a Room DO that just started reads for /sync (room/sync-reads.ts; an initial /sync of a user in many
// rooms meets mostly such rooms): the current state comes from `current_state` in one query instead of the
// state-group chain, and member counts from one query. Both must be exactly what the state groups say, and
// follow later changes.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { RoomEngine } from "../../durable-objects/room/engine.js";
import { createRoom, join, membership, newUser, putState } from "./room-helpers.js";
import { sync, timeline } from "./sync-helpers.js";

const rawRoom = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));

/** A fresh engine on the room's storage: the caches of a DO that just started. */
function coldEngine(state: DurableObjectState): RoomEngine {
  return new RoomEngine(state.storage, env);
}

describe("sync reads of a room that just started", () => {
  it("read the current state and member counts the state groups hold, after joins, leaves, bans, invites and changes", async () => {
    const alice = await newUser("coldalice");
    const bob = await newUser("coldbob");
    const carol = await newUser("coldcarol");
    const dave = await newUser("colddave");
    const roomId = await createRoom(alice, { preset: "public_chat", name: "first" });
    expect((await join(bob, roomId)).status).toBe(200);
    expect((await join(carol, roomId)).status).toBe(200);
    expect((await putState(alice, roomId, "m.room.name", "", { name: "second" })).status).toBe(200);
    expect((await putState(alice, roomId, "m.room.topic", "", { topic: "t" })).status).toBe(200);
    expect((await membership(carol, roomId, "leave")).status).toBe(200);
    expect((await membership(alice, roomId, "ban", { user_id: carol.user_id })).status).toBe(200);
    expect((await membership(alice, roomId, "invite", { user_id: dave.user_id })).status).toBe(200);

    await runInDurableObject(rawRoom(roomId), (_i, state) => {
      const engine = coldEngine(state);
      const forReads = engine.currentStateForReads();
      const other = coldEngine(state);
      const fromGroups = other.stateGroups.load(other.meta()!.currentStateGroup);
      expect(new Map(forReads)).toEqual(new Map(fromGroups));
      expect(forReads.size).toBeGreaterThan(8);
      expect(engine.memberCount("join")).toBe(2);
      expect(engine.memberCount("invite")).toBe(1);
      expect(engine.memberCount("ban")).toBe(1);
      expect(engine.memberCount("leave")).toBe(0);
      expect(engine.memberCount("knock")).toBe(0);
      // The reader's membership comes with those rows, as the storage has it.
      for (const user of [alice, bob, carol, dave]) {
        const known = engine.currentMembershipForReads(user.user_id);
        const stored = engine.membershipOf(user.user_id);
        expect(known?.membership).toBe(stored?.membership);
        expect(known?.streamOrdering).toBe(engine.eventMeta(stored!.eventId)!.streamOrdering);
      }
      expect(engine.currentMembershipForReads("@nobody:example.org")).toBeNull();
    });

    // The room's own engine, after a state change it made: the new state and counts, not the cached ones.
    const before = await runInDurableObject(rawRoom(roomId), (instance) => {
      const engine = (instance as unknown as { engine: RoomEngine }).engine;
      return { size: engine.currentStateForReads().size, joined: engine.memberCount("join") };
    });
    expect((await join(dave, roomId)).status).toBe(200);
    expect((await putState(alice, roomId, "m.room.avatar", "", { url: "mxc://example.org/a" })).status).toBe(200);
    await runInDurableObject(rawRoom(roomId), (instance, state) => {
      const engine = (instance as unknown as { engine: RoomEngine }).engine;
      expect(engine.currentStateForReads().size).toBe(before.size + 1);
      expect(engine.memberCount("join")).toBe(before.joined + 1);
      expect(engine.memberCount("invite")).toBe(0);
      const cold = coldEngine(state);
      expect(new Map(cold.currentStateForReads())).toEqual(new Map(engine.stateGroups.load(engine.meta()!.currentStateGroup)));
    });
  });

  it("give an initial /sync the same room whether the room was read before or just started", async () => {
    const alice = await newUser("coldsync");
    const bob = await newUser("coldsyncbob");
    const roomId = await createRoom(alice, { preset: "public_chat", name: "named" });
    expect((await putState(alice, roomId, "m.room.history_visibility", "", { history_visibility: "joined" })).status).toBe(200);
    expect((await putState(alice, roomId, "m.room.topic", "", { topic: "before bob" })).status).toBe(200);
    expect((await join(bob, roomId)).status).toBe(200);
    for (let i = 0; i < 12; i++) expect((await putState(alice, roomId, "m.room.topic", "", { topic: `t${i}` })).status).toBe(200);
    const restart = () =>
      runInDurableObject(rawRoom(roomId), (instance, state) => {
        // The same DO, its caches dropped as at a start (the engine is what a new DO instance builds).
        (instance as unknown as { engine: RoomEngine }).engine = coldEngine(state);
      });
    // bob joined after the history became "joined": the same view of what came before, cold or warm.
    const bobWarm = await sync(bob, { filter: { room: { timeline: { limit: 20 } } } });
    await restart();
    const bobCold = await sync(bob, { filter: { room: { timeline: { limit: 20 } } } });
    expect(timeline(bobCold, roomId).map((e) => e.event_id)).toEqual(timeline(bobWarm, roomId).map((e) => e.event_id));
    expect(timeline(bobCold, roomId).some((e) => e.content.topic === "before bob")).toBe(false);
    const warm = await sync(alice);
    await restart();
    const cold = await sync(alice);
    const room = (body: typeof warm) => {
      const r = body.rooms.join[roomId];
      const strip = (events: { unsigned?: Record<string, unknown> }[]) => events.map((e) => ({ ...e, unsigned: { ...e.unsigned, age: 0 } }));
      return { ...r, timeline: { ...r.timeline, events: strip(r.timeline.events) }, state: { events: strip(r.state.events) } };
    };
    expect(timeline(cold, roomId).length).toBe(10);
    expect(room(cold)).toEqual(room(warm));
    expect(room(cold).state.events.map((e: { type: string }) => e.type)).toContain("m.room.name");
    expect(room(cold).summary).toEqual({ "m.joined_member_count": 2, "m.invited_member_count": 0 });
  });
});
