// A long-poll at its token's own position (user/sync.ts SyncHub.sync): nothing can be new there, so it
// waits without reading a plan, and reads one when a write takes a position or the wait ends. A token
// whose to-device part is behind (a batch cut at the limit) still reads the plan at once.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { decodeSyncToken, encodeSyncToken } from "../../durable-objects/user/sync-token.js";
import type { RegisteredUser } from "./helpers.js";
import { createRoom, newUser, send } from "./room-helpers.js";
import { sync, syncRaw, timeline } from "./sync-helpers.js";

type Hub = { plan: (...args: unknown[]) => unknown; waiting(): number };
const userDo = (userId: string) => env.USERS.get(env.USERS.idFromName(userId));

/** Counts the plans the user's SyncHub reads from now on. */
async function countPlans(user: RegisteredUser): Promise<() => Promise<number>> {
  await runInDurableObject(userDo(user.user_id), (instance) => {
    const hub = (instance as unknown as { syncHub: Hub }).syncHub;
    const inner = hub.plan.bind(hub);
    const counted = hub as Hub & { plansRead?: number };
    counted.plansRead = 0;
    hub.plan = (...args: unknown[]) => {
      counted.plansRead! += 1;
      return inner(...args);
    };
  });
  return () => runInDurableObject(userDo(user.user_id), (instance) => ((instance as unknown as { syncHub: Hub & { plansRead: number } }).syncHub.plansRead));
}

async function waitingLongPolls(user: RegisteredUser): Promise<number> {
  return runInDurableObject(userDo(user.user_id), (instance) => (instance as unknown as { syncHub: Hub }).syncHub.waiting());
}

async function untilWaiting(user: RegisteredUser): Promise<void> {
  for (let i = 0; i < 200 && (await waitingLongPolls(user)) === 0; i++) await new Promise((r) => setTimeout(r, 10));
  expect(await waitingLongPolls(user)).toBe(1);
}

describe("long-poll at the token's position", () => {
  it("reads no plan while it waits, and one when an event wakes it", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, {});
    const since = (await sync(alice)).next_batch as string;
    const plans = await countPlans(alice);
    const poll = syncRaw(alice, { since, timeout: 10_000 });
    await untilWaiting(alice);
    expect(await plans()).toBe(0);
    const sent = await send(alice, roomId, { msgtype: "m.text", body: "wake" });
    expect(sent.status).toBe(200);
    const res = await poll;
    expect(res.status).toBe(200);
    expect(timeline(res.body, roomId).map((e) => e.event_id)).toEqual([sent.body.event_id]);
    expect(await plans()).toBe(1);
  });

  it("reads the plan when the wait ends, so the empty answer still carries the key counts", async () => {
    const alice = await newUser("alice");
    const since = (await sync(alice)).next_batch as string;
    const plans = await countPlans(alice);
    const res = await syncRaw(alice, { since, timeout: 50 });
    expect(res.status).toBe(200);
    expect(res.body.next_batch).toBe(since);
    expect(res.body.device_one_time_keys_count).toEqual({ signed_curve25519: 0 });
    expect(await plans()).toBe(1);
  });

  it("reads the plan at once when the token's to-device position is behind its position", async () => {
    const alice = await newUser("alice");
    const since = (await sync(alice)).next_batch as string;
    const token = decodeSyncToken(since)!;
    expect(token.position).toBeGreaterThan(0);
    const behind = encodeSyncToken({ ...token, toDevice: token.position - 1 });
    const plans = await countPlans(alice);
    const poll = syncRaw(alice, { since: behind, timeout: 10_000 });
    await untilWaiting(alice);
    // Nothing to send (no to-device message exists), so it waits, but it read the plan to know that.
    expect(await plans()).toBe(1);
    const roomId = await createRoom(alice, {});
    const res = await poll;
    expect(res.status).toBe(200);
    expect(res.body.rooms.join[roomId]).toBeDefined();
  });
});
