// Typing and receipts in a room with many local members (durable-objects/room/ephemeral.ts
// EPHEMERAL_PUSH_ALL_MAX): up to 100 local members every one is pushed; above it only the members syncing
// now (the room's listeners), and a member who was not listening gets the receipts with its catch-up
// (room.ts `listen`). The crowd is seeded inside the Room DO (join events of local users without accounts:
// their User DOs exist by name), as bench/fan-out.bench.ts seeds its 10,000 members.
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import { EPHEMERAL_PUSH_ALL_MAX } from "../../durable-objects/room/ephemeral.js";
import { createLocalEvent } from "../../durable-objects/room/local-events.js";
import type { Env } from "../../worker/env.js";
import { api, SERVER_NAME, type RegisteredUser } from "./helpers.js";
import { createRoom, join, newUser, r, send } from "./room-helpers.js";

const roomDo = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
const userDo = (userId: string) => env.USERS.get(env.USERS.idFromName(userId));

/** Joins `n` local users without accounts to the room, inside its DO. Returns their IDs. */
async function seedMembers(roomId: string, n: number): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `@crowd-${crypto.randomUUID().slice(0, 8)}-${i}:${SERVER_NAME}`);
  await runInDurableObject(roomDo(roomId), async (instance) => {
    const engine = (instance as unknown as { engine: RoomEngine }).engine;
    for (const userId of ids) await createLocalEvent(engine, env as unknown as Env, { type: "m.room.member", stateKey: userId, sender: userId, content: { membership: "join" } } as never);
    // Handed out already, as far as the room knows: the crowd's User DOs never hear of the room (they
    // neither sync nor listen), and the test does not wait for 100 deliveries.
    engine.sql.exec("UPDATE fan_out SET delivered_upto = (SELECT MAX(stream_ordering) FROM events) WHERE id = 1");
  });
  return ids;
}

/** The receipts a User DO recorded for the room (none when its sync tables were never made). */
async function receiptsRecorded(userId: string, roomId: string): Promise<string[]> {
  return runInDurableObject(userDo(userId), async (_i, state) => {
    const sql = state.storage.sql;
    if (sql.exec("SELECT 1 FROM sqlite_master WHERE name = 'sync_receipts'").toArray().length === 0) return [];
    return sql.exec<{ event_id: string }>("SELECT event_id FROM sync_receipts WHERE room_id = ?", roomId).toArray().map((r) => r.event_id);
  });
}

async function sync(user: RegisteredUser, since?: string): Promise<{ next_batch: string; rooms?: { join?: Record<string, { ephemeral?: { events: { type: string; content: Record<string, Record<string, Record<string, unknown>>> }[] } }> } }> {
  const res = await api("GET", `/_matrix/client/v3/sync?timeout=0${since ? `&since=${encodeURIComponent(since)}` : ""}`, { token: user.access_token });
  expect(res.status).toBe(200);
  return res.body as never;
}

function receiptReaders(body: Awaited<ReturnType<typeof sync>>, roomId: string, eventId: string): string[] {
  const events = body.rooms?.join?.[roomId]?.ephemeral?.events ?? [];
  return events.filter((e) => e.type === "m.receipt").flatMap((e) => Object.keys(e.content[eventId]?.["m.read"] ?? {}));
}

/** A room with alice (who reads), bob (syncing) and carol (synced once, then not listening), and as many
 * seeded members as make `localMembers` local members in all. */
async function roomOf(localMembers: number) {
  const alice = await newUser("alice");
  const bob = await newUser("bob");
  const carol = await newUser("carol");
  const roomId = await createRoom(alice, { preset: "public_chat" });
  expect((await join(bob, roomId)).status).toBe(200);
  expect((await join(carol, roomId)).status).toBe(200);
  const crowd = await seedMembers(roomId, localMembers - 3);
  const message = (await send(alice, roomId, { msgtype: "m.text", body: "read me" })).body.event_id as string;
  const bobSince = (await sync(bob)).next_batch;
  const carolSince = (await sync(carol)).next_batch;
  // Carol stops syncing: her lease ends in the room, and her User DO forgets it held one.
  await runInDurableObject(roomDo(roomId), async (_i, state) => void state.storage.sql.exec("DELETE FROM listeners WHERE user_id = ?", carol.user_id));
  await evictDurableObject(userDo(carol.user_id));
  expect((await api("POST", `${r(roomId)}/receipt/m.read/${encodeURIComponent(message)}`, { token: alice.access_token, body: {} })).status).toBe(200);
  return { alice, bob, carol, roomId, crowd, message, bobSince, carolSince };
}

describe("typing and receipts in rooms with many local members", () => {
  it(`pushes a receipt to every local member up to ${EPHEMERAL_PUSH_ALL_MAX}`, async () => {
    const { bob, carol, roomId, crowd, message, bobSince, carolSince } = await roomOf(EPHEMERAL_PUSH_ALL_MAX);
    expect(await receiptsRecorded(crowd[0]!, roomId)).toEqual([message]);
    expect(receiptReaders(await sync(bob, bobSince), roomId, message)).toHaveLength(1);
    expect(receiptReaders(await sync(carol, carolSince), roomId, message)).toHaveLength(1);
  });

  it(`above ${EPHEMERAL_PUSH_ALL_MAX} pushes it to the members syncing now; one who was not gets it with the catch-up`, async () => {
    const { alice, bob, carol, roomId, crowd, message, bobSince, carolSince } = await roomOf(EPHEMERAL_PUSH_ALL_MAX + 1);
    expect(await receiptsRecorded(crowd[0]!, roomId)).toEqual([]);
    expect(await receiptsRecorded(carol.user_id, roomId)).toEqual([]);
    expect(await receiptsRecorded(bob.user_id, roomId)).toEqual([message]);
    expect(receiptReaders(await sync(bob, bobSince), roomId, message)).toEqual([alice.user_id]);
    // Carol syncs again: the room's answer to her listen carries the receipt she was not pushed.
    expect(receiptReaders(await sync(carol, carolSince), roomId, message)).toEqual([alice.user_id]);
  });
});
