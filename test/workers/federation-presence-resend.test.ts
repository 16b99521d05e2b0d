// Presence to other servers beyond changes (durable-objects/user/presence-federation.ts, as Synapse's
// PresenceHandler): a local user who joins a room sends their presence to its other servers; a remote user
// who joins makes local members send theirs to that user's server; a user who stays online is re-sent to
// the servers sharing a room once nothing went out for more than 25 minutes, and not before.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
import { joinFromRemote } from "./federation-room-helpers.js";
import type { RegisteredUser } from "./helpers.js";
import { createRoom, join, newUser } from "./room-helpers.js";
import { sync } from "./sync-helpers.js";

const enc = encodeURIComponent;
const destinationStub = (server: string) => env.DESTINATIONS.get(env.DESTINATIONS.idFromName(server));

type Edu = { edu_type: string; content: any };
/** The presence pushes about `userId` that `server` accepted so far. */
async function presenceOf(server: string, userId: string): Promise<Record<string, unknown>[]> {
  await destinationStub(server).sendsSettled();
  const txns = await remoteControl<{ accepted: boolean; body: { edus?: Edu[] } }[]>(`/_test/transactions?server=${enc(server)}`);
  return txns
    .filter((t) => t.accepted)
    .flatMap((t) => t.body.edus ?? [])
    .filter((e) => e.edu_type === "m.presence")
    .flatMap((e) => e.content.push as Record<string, unknown>[])
    .filter((p) => p.user_id === userId);
}

/** Waits (bounded) until `server` got `n` presence pushes about `userId`: they go out after the sync. */
async function presenceCount(server: string, userId: string, n: number): Promise<number> {
  for (let i = 0; i < 100 && (await presenceOf(server, userId)).length < n; i++) await new Promise((r) => setTimeout(r, 30));
  return (await presenceOf(server, userId)).length;
}

async function remoteJoins(remote: string, roomId: string, userId: string): Promise<void> {
  await joinFromRemote(remote, roomId, userId);
}

/** Moves the time this user's presence last went out back by `ms`. */
async function presenceSentAgo(user: RegisteredUser, ms: number): Promise<void> {
  await runInDurableObject(env.USERS.get(env.USERS.idFromName(user.user_id)), (_instance, state) => {
    state.storage.sql.exec("UPDATE presence_federated SET sent_ts = ? WHERE id = 1", Date.now() - ms);
  });
}

describe("presence to other servers beyond changes", () => {
  it("a remote user's join brings them the local members' presence; a local user's join sends theirs to the room's servers", async () => {
    const remote = uniqueServer("presence-join");
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await sync(alice); // alice is online
    await remoteJoins(remote, roomId, `@bob:${remote}`);
    // alice's next sync sees bob's join; her presence goes to bob's server.
    await sync(alice);
    expect(await presenceCount(remote, alice.user_id, 1)).toBe(1);
    expect((await presenceOf(remote, alice.user_id))[0]).toMatchObject({ presence: "online", currently_active: true });

    const carol = await newUser("carol");
    await sync(carol);
    expect((await join(carol, roomId)).status).toBe(200);
    await sync(carol);
    expect(await presenceCount(remote, carol.user_id, 1)).toBe(1);
  });

  it("re-sends an unchanged presence after more than 25 minutes, not before; only to servers sharing a room", async () => {
    const remote = uniqueServer("presence-ping");
    const elsewhere = uniqueServer("presence-none");
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await sync(alice); // alice goes online
    await remoteJoins(remote, roomId, `@bob:${remote}`);
    await sync(alice); // sees bob's join: her presence goes to his server
    const base = await presenceCount(remote, alice.user_id, 1);
    expect(base).toBe(1);

    // 24 minutes later, still online and syncing: nothing goes out.
    await presenceSentAgo(alice, 24 * 60_000);
    await sync(alice);
    expect(await presenceCount(remote, alice.user_id, base + 1)).toBe(base);

    // Past 25 minutes: the same presence again.
    await presenceSentAgo(alice, 25 * 60_000 + 1_000);
    await sync(alice);
    expect(await presenceCount(remote, alice.user_id, base + 1)).toBe(base + 1);
    expect((await presenceOf(remote, alice.user_id))[base]).toMatchObject({ presence: "online" });
    // And the clock restarted: the next sync sends nothing.
    await sync(alice);
    expect(await presenceCount(remote, alice.user_id, base + 2)).toBe(base + 1);
    expect(await presenceOf(elsewhere, alice.user_id)).toEqual([]);
  });
});
