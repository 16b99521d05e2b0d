// Outliers: the state and auth chain of a room joined over federation (engine.ts `persistOutliers`), checked
// in auth order, in chunks, against events of the same batch. Signed as r1.remote.test (its key is fetched
// from test/workers/remote-homeserver.mjs).
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import type { Pdu } from "../../protocol/pdu.js";
import { remotePdu } from "./federation-room-helpers.js";

const REMOTE = "r1.remote.test";
const V = "11";

async function room(roomId: string) {
  const creator = `@creator:${REMOTE}`;
  const base = { room_id: roomId, origin_server_ts: 1, prev_events: [] as string[] };
  const create = await remotePdu(REMOTE, V, { ...base, sender: creator, type: "m.room.create", state_key: "", content: { creator, room_version: V }, depth: 1, auth_events: [] });
  // The creator's first join: its only prev event is the create event (auth rule 4.2.1 looks at that).
  const join = await remotePdu(REMOTE, V, { ...base, sender: creator, type: "m.room.member", state_key: creator, content: { membership: "join" }, depth: 2, prev_events: [create.eventId], auth_events: [create.eventId] });
  const pl = await remotePdu(REMOTE, V, { ...base, sender: creator, type: "m.room.power_levels", state_key: "", content: { users: { [creator]: 100 } }, depth: 3, auth_events: [create.eventId, join.eventId] });
  const jr = await remotePdu(REMOTE, V, { ...base, sender: creator, type: "m.room.join_rules", state_key: "", content: { join_rule: "invite" }, depth: 4, auth_events: [create.eventId, join.eventId, pl.eventId] });
  return { create, join, pl, jr, creator };
}

describe("persistOutliers", () => {
  it("accepts a valid chain in any input order; rejects what fails auth, and what a rejected event authorises", async () => {
    const roomId = `!outliers-${Date.now()}:${REMOTE}`;
    const { create, join, pl, jr } = await room(roomId);
    // Invite-only room: a stranger's join fails auth.
    const stranger = `@stranger:${REMOTE}`;
    const badJoin = await remotePdu(REMOTE, V, { room_id: roomId, sender: stranger, type: "m.room.member", state_key: stranger, content: { membership: "join" }, origin_server_ts: 1, depth: 5, prev_events: [], auth_events: [create.eventId, pl.eventId, jr.eventId] });
    // A topic from the stranger, authorised by the rejected join: rejected too.
    const topic = await remotePdu(REMOTE, V, { room_id: roomId, sender: stranger, type: "m.room.topic", state_key: "", content: { topic: "mine" }, origin_server_ts: 1, depth: 6, prev_events: [], auth_events: [create.eventId, pl.eventId, badJoin.eventId] });
    // A forged event: signed by another server for a user of r1.
    const forged = await remotePdu("r2.remote.test", V, { room_id: roomId, sender: `@creator:${REMOTE}`, type: "m.room.name", state_key: "", content: { name: "forged" }, origin_server_ts: 1, depth: 7, prev_events: [], auth_events: [create.eventId, pl.eventId, join.eventId] });
    const batch: Pdu[] = [topic.pdu, forged.pdu, badJoin.pdu, jr.pdu, pl.pdu, join.pdu, create.pdu];
    const stub = env.ROOMS.get(env.ROOMS.idFromName(roomId));
    await runInDurableObject(stub, async (instance) => {
      const engine = (instance as unknown as { engine: RoomEngine }).engine;
      engine.beginRemoteRoom(roomId, V);
      const result = await engine.persistOutliers(batch);
      expect(new Set(result.stored)).toEqual(new Set([create.eventId, join.eventId, pl.eventId, jr.eventId]));
      const failed = new Map(result.failed.map((f) => [f.eventId, f.reason]));
      expect(failed.get(badJoin.eventId)).toBeDefined();
      expect(failed.get(topic.eventId)).toBeDefined();
      expect(failed.get(forged.eventId)).toMatch(/not signed/);
      // Rejected events are stored (so later events they authorise are rejected too); forged ones are not.
      expect(engine.events.meta(badJoin.eventId)?.rejectedReason).not.toBeNull();
      expect(engine.events.meta(forged.eventId)).toBeUndefined();
      expect(engine.events.meta(create.eventId)?.outlier).toBe(true);
      // Outliers are not in the timeline and are no forward extremities.
      expect(engine.forwardExtremities()).toEqual([]);
      // A second time: nothing new, nothing fails again for the stored ones.
      const again = await engine.persistOutliers([create.pdu, join.pdu]);
      expect(again.stored.length).toBe(2);
    });
  });

  it("an event whose auth event is in neither the batch nor the room is rejected", async () => {
    const roomId = `!outliers2-${Date.now()}:${REMOTE}`;
    const { create, pl } = await room(roomId);
    const stub = env.ROOMS.get(env.ROOMS.idFromName(roomId));
    await runInDurableObject(stub, async (instance) => {
      const engine = (instance as unknown as { engine: RoomEngine }).engine;
      engine.beginRemoteRoom(roomId, V);
      const result = await engine.persistOutliers([create.pdu, pl.pdu]);
      expect(result.stored).toEqual([create.eventId]);
      expect(result.failed[0]!.reason).toMatch(/unknown/);
    });
  });
});
