// The room summary's heroes (spec: /sync `summary`, "m.heroes"; room/sync-reads.ts roomSummary): in a room
// without a name or canonical alias, up to 5 joined or invited members other than the user, in the stream
// order of their current membership (ties by user ID), and left or banned members when there are none. They
// are read with one indexed walk per membership, not a scan of every member.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import { roomSummary } from "../../durable-objects/room/sync-reads.js";
import type { RegisteredUser } from "./helpers.js";
import { createRoom, join, membership, newUser, putState } from "./room-helpers.js";

const engineOf = (instance: unknown) => (instance as { engine: RoomEngine }).engine;
const rawRoom = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
const heroesOf = (roomId: string, userId: string) =>
  runInDurableObject(rawRoom(roomId), async (instance) => roomSummary(engineOf(instance), userId)["m.heroes"]);

async function users(n: number): Promise<RegisteredUser[]> {
  const out: RegisteredUser[] = [];
  for (let i = 0; i < n; i++) out.push(await newUser(`hero${i}`));
  return out;
}

describe("room summary heroes", () => {
  it("are the first five joined or invited members but the user, in stream order across both memberships", async () => {
    const owner = await newUser("owner");
    const [invitee, ...joiners] = await users(7);
    const roomId = await createRoom(owner, { preset: "public_chat" });
    // The invite comes between the owner's join and the others': the two memberships' lists merge.
    expect((await membership(owner, roomId, "invite", { user_id: invitee!.user_id })).status).toBe(200);
    for (const u of joiners) expect((await join(u, roomId)).status).toBe(200);
    const ids = joiners.map((u) => u.user_id);
    expect(await heroesOf(roomId, owner.user_id)).toEqual([invitee!.user_id, ...ids.slice(0, 4)]);
    // A user among the first five is left out, and the sixth comes in.
    expect(await heroesOf(roomId, ids[1]!)).toEqual([owner.user_id, invitee!.user_id, ids[0], ids[2], ids[3]]);
    // A member who leaves drops out; one who rejoins comes back at their new place, last.
    expect((await membership(joiners[0]!, roomId, "leave")).status).toBe(200);
    expect(await heroesOf(roomId, owner.user_id)).toEqual([invitee!.user_id, ...ids.slice(1, 5)]);
    expect((await join(joiners[0]!, roomId)).status).toBe(200);
    expect(await heroesOf(roomId, owner.user_id)).toEqual([invitee!.user_id, ...ids.slice(1, 5)]);
    expect(await heroesOf(roomId, ids[1]!)).toEqual([owner.user_id, invitee!.user_id, ...ids.slice(2, 5)]);
    // A named room has none.
    expect((await putState(owner, roomId, "m.room.name", "", { name: "named" })).status).toBe(200);
    expect(await heroesOf(roomId, owner.user_id)).toBeUndefined();
  });

  it("are the left and banned members when nobody else is joined or invited", async () => {
    const owner = await newUser("owner");
    const [a, b, c] = await users(3);
    const roomId = await createRoom(owner, { preset: "public_chat" });
    for (const u of [a!, b!]) expect((await join(u, roomId)).status).toBe(200);
    expect((await membership(owner, roomId, "ban", { user_id: c!.user_id })).status).toBe(200);
    expect((await membership(b!, roomId, "leave")).status).toBe(200);
    expect((await membership(a!, roomId, "leave")).status).toBe(200);
    // Stream order of the current memberships: c's ban, then b's leave, then a's.
    expect(await heroesOf(roomId, owner.user_id)).toEqual([c!.user_id, b!.user_id, a!.user_id]);
  });

  it("orders members whose membership rows share a stream ordering by user ID, and walks the index without sorting", async () => {
    const owner = await newUser("owner");
    const joiners = await users(3);
    const roomId = await createRoom(owner, { preset: "public_chat" });
    for (const u of joiners) expect((await join(u, roomId)).status).toBe(200);
    const result = await runInDurableObject(rawRoom(roomId), async (instance) => {
      const engine = engineOf(instance);
      // State resolution can set several rows at one stream ordering: made so here directly.
      engine.sql.exec("UPDATE current_state SET stream_ordering = 1 WHERE type = 'm.room.member' AND state_key != ?", owner.user_id);
      const plan = engine.sql
        .exec<{ detail: string }>("EXPLAIN QUERY PLAN SELECT state_key, stream_ordering FROM current_state WHERE membership = ? AND type = 'm.room.member' ORDER BY stream_ordering, state_key LIMIT 6", "join")
        .toArray()
        .map((r) => r.detail)
        .join("; ");
      return { heroes: roomSummary(engine, owner.user_id)["m.heroes"], plan };
    });
    expect(result.heroes).toEqual(joiners.map((u) => u.user_id).sort());
    expect(result.plan).toContain("current_state_by_membership_order");
    expect(result.plan).not.toContain("TEMP B-TREE");
  });
});
