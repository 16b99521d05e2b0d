// Sticky events (MSC4354) between Myelin and a real Synapse (the stage's Synapse runs with
// `experimental_features: msc4354_enabled`, global-setup.ts). Myelin pushes its own unexpired sticky events to
// a server that joins later (durable-objects/room/sticky-outbound.ts), and a sticky event from Synapse reaches
// a Myelin user's /sync `msc4354_sticky` section when the timeline leaves it out. (Synapse 1.163.2 does not
// push its own sticky events to a server that joins later, only after an outage, so the opposite direction
// of the first test is not tested here.)
import { describe, expect, inject, it } from "vitest";
import { call, createRoom, enc, eventually, join, membership, messageBodies, newUser, sendText, type Server, type User } from "./client.js";

const A: Server = inject("myelin");
const S: Server = inject("synapse");

let txn = 0;
async function sendSticky(user: User, roomId: string, durationMs: number, key: string): Promise<string> {
  const res = await call(user, "PUT", `/rooms/${enc(roomId)}/send/org.matrix.msc4143.rtc.member/st${Date.now()}-${++txn}?org.matrix.msc4354.sticky_duration_ms=${durationMs}`, {
    msc4354_sticky_key: key,
  });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.event_id as string;
}

type SyncRoom = { timeline?: { events: { event_id: string }[]; limited?: boolean }; msc4354_sticky?: { events: { event_id: string; unsigned?: Record<string, unknown> }[] } };
async function syncRoom(user: User, roomId: string, params: string): Promise<{ room: SyncRoom | undefined; nextBatch: string }> {
  const res = await call(user, "GET", `/sync?${params}`);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return { room: res.body.rooms?.join?.[roomId] as SyncRoom | undefined, nextBatch: res.body.next_batch as string };
}
const LIMIT_2 = enc(JSON.stringify({ room: { timeline: { limit: 2 } } }));

describe("sticky events with Synapse", () => {
  it("Myelin's unexpired sticky event reaches a Synapse user who joins later", async () => {
    const alice = await newUser(A, "stickya");
    const bob = await newUser(S, "stickys");
    const alias = `sticky${Math.random().toString(36).slice(2, 10)}`;
    const roomId = await createRoom(alice, { preset: "public_chat", room_alias_name: alias });
    const sticky = await sendSticky(alice, roomId, 600_000, "alice-laptop");
    for (let i = 0; i < 4; i++) await sendText(alice, roomId, `before ${i}`);

    const joined = await join(bob, `#${alias}:${A.serverName}`);
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    await eventually("bob joined on Myelin", async () => (await membership(alice, roomId, bob.userId)) === "join");
    // Synapse receives the old sticky event with unknown prev events and fetches the gap; its /sync then
    // carries it, in the timeline or the sticky section (Synapse caches initial syncs: incremental ones here).
    let since = (await syncRoom(bob, roomId, `filter=${LIMIT_2}`)).nextBatch;
    const sections: string[] = [];
    await eventually(
      "the sticky event in bob's /sync on Synapse",
      async () => {
        const { room, nextBatch } = await syncRoom(bob, roomId, `filter=${LIMIT_2}&timeout=1000&since=${enc(since)}`);
        since = nextBatch;
        if (room?.msc4354_sticky?.events.some((e) => e.event_id === sticky)) sections.push("sticky");
        if (room?.timeline?.events.some((e) => e.event_id === sticky)) sections.push("timeline");
        return sections.length > 0;
      },
      45_000,
    );
    expect(sections).toHaveLength(1);
  });

  it("a Synapse user's sticky event reaches a Myelin user's /sync beyond the timeline limit", async () => {
    const alice = await newUser(A, "stickya");
    const bob = await newUser(S, "stickys");
    const alias = `stickyin${Math.random().toString(36).slice(2, 10)}`;
    const roomId = await createRoom(bob, { preset: "public_chat", room_alias_name: alias });
    const joined = await join(alice, `#${alias}:${S.serverName}`);
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    const { nextBatch } = await syncRoom(alice, roomId, `filter=${LIMIT_2}`);

    const sticky = await sendSticky(bob, roomId, 600_000, "bob-phone");
    for (let i = 0; i < 4; i++) await sendText(bob, roomId, `after ${i}`);
    await eventually("bob's messages on Myelin", async () => (await messageBodies(alice, roomId)).includes("after 3"));

    const { room } = await syncRoom(alice, roomId, `since=${enc(nextBatch)}&filter=${LIMIT_2}`);
    expect(room?.timeline?.limited).toBe(true);
    const delivered = room?.msc4354_sticky?.events ?? [];
    expect(delivered.map((e) => e.event_id)).toEqual([sticky]);
    const ttl = delivered[0]!.unsigned?.msc4354_sticky_duration_ttl_ms as number;
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(600_000);
  });
});
