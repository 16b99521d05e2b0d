// Partial-state rooms in /sync (durable-objects/user/partial-state-rooms.ts; Complement tests/msc3902
// "EagerInitialSyncDuringPartialStateJoin", "EagerIncrementalSyncDuringPartialStateJoin",
// "EagerLongPollingSyncWokenWhenResyncCompletes"): as Synapse, a sync that does not lazy-load members leaves
// a room held with partial state out until its resync completes, then shows it as newly joined (its whole
// state, a limited timeline), waking a waiting long-poll; a lazy-loading sync sees the room at once.
// The room is made partial in the Room DO itself (room/partial-state.ts beginPartialState); a local user
// who joins it then is told by the room, and the resync runs through the room's real alarm with a
// stand-in for the resident server.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import type { RemoteFetch } from "../../durable-objects/room/federation-inbound.js";
import { beginPartialState } from "../../durable-objects/room/partial-state.js";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
import { api, SERVER_NAME, type RegisteredUser } from "./helpers.js";
import { createRoom, getState, join, newUser, putState, send } from "./room-helpers.js";

const rawRoom = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
type RoomInstance = { engine: RoomEngine; alarm(): Promise<void> };
const LAZY = JSON.stringify({ room: { state: { lazy_load_members: true } } });

type SyncBody = { next_batch: string; rooms?: { join?: Record<string, { timeline: { limited: boolean; events: { event_id: string; type: string; state_key?: string }[] }; state: { events: { type: string; state_key: string }[] } }> } };

async function sync(user: RegisteredUser, query: Record<string, string> = {}): Promise<SyncBody> {
  const qs = new URLSearchParams(query).toString();
  const res = await api("GET", `/_matrix/client/v3/sync${qs ? `?${qs}` : ""}`, { token: user.access_token });
  expect(res.status).toBe(200);
  return res.body as unknown as SyncBody;
}

/** Puts the room into partial state, with `resident.test` standing for the server that answered the join. */
async function makePartial(roomId: string): Promise<void> {
  await runInDurableObject(rawRoom(roomId), async (instance) => {
    const engine = (instance as unknown as RoomInstance).engine;
    beginPartialState(engine, [...engine.currentState().values()].at(-1)!, ["resident.test"], SERVER_NAME);
  });
}

/** Runs the room's alarm until the resync is complete, the resident answering /state_ids with the state we hold. */
async function completeResync(roomId: string): Promise<void> {
  await runInDurableObject(rawRoom(roomId), async (instance) => {
    const room = instance as unknown as RoomInstance;
    const stateIds = [...room.engine.currentState().values()];
    const remote: RemoteFetch = async () => ({ ok: true, status: 200, body: { pdu_ids: stateIds, auth_chain_ids: [] } });
    // The room's own getters reach the network; this room's resync asks the stand-in instead.
    Object.defineProperty(instance, "remote", { get: () => remote });
    Object.defineProperty(instance, "remoteStream", { get: () => undefined });
    for (let i = 0; i < 10 && room.engine.sql.exec("SELECT 1 FROM partial_state").toArray().length > 0; i++) await room.alarm();
    expect(room.engine.sql.exec("SELECT 1 FROM partial_state").toArray()).toEqual([]);
  });
}

describe("partial-state rooms in /sync", () => {
  it("leaves the room out of eager syncs until the resync completes, shows it to lazy-loading ones, and then shows it as newly joined, waking a long-poll", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const before = (await sync(bob)).next_batch;
    expect((await join(bob, roomId)).status).toBe(200);
    await makePartial(roomId);
    // A join of Bob's while the room is partial (a new join goes through a resident, as a second partial
    // join; a profile change, as here, is local): the room tells his User DO before it answers.
    expect((await putState(bob, roomId, "m.room.member", bob.user_id, { membership: "join", displayname: "Bob" })).status).toBe(200);
    const message = (await send(bob, roomId, { msgtype: "m.text", body: "during the resync" })).body.event_id as string;

    // Lazy-loading syncs see the room, initial and incremental.
    expect((await sync(bob, { filter: LAZY })).rooms?.join?.[roomId]).toBeDefined();
    expect((await sync(bob, { filter: LAZY, since: before })).rooms?.join?.[roomId]).toBeDefined();
    // Eager syncs do not: initial, incremental from before the join, and with full_state.
    const eagerInitial = await sync(bob);
    expect(eagerInitial.rooms?.join?.[roomId]).toBeUndefined();
    expect((await sync(bob, { since: before })).rooms?.join?.[roomId]).toBeUndefined();
    expect((await sync(bob, { since: before, full_state: "true" })).rooms?.join?.[roomId]).toBeUndefined();
    // A member who joined before the room became partial was never told: the room stays in their syncs.
    expect((await sync(alice)).rooms?.join?.[roomId]).toBeDefined();

    // A long-poll waits, and the resync's completion wakes it with the room. (Alice's presence, exchanged
    // on Bob's join in the background, may wake it first: then the next long-poll is the one.)
    let token = eagerInitial.next_batch;
    const polling = (async () => {
      for (let i = 0; i < 5; i++) {
        const body = await sync(bob, { since: token, timeout: "60000" });
        token = body.next_batch;
        if (body.rooms?.join?.[roomId]) return body;
      }
      throw new Error("the room never came");
    })();
    await completeResync(roomId);
    const woken = await polling;
    const room = woken.rooms?.join?.[roomId];
    expect(room).toBeDefined();
    // Shown as newly joined: a limited timeline with the latest events and the whole state.
    expect(room!.timeline.limited).toBe(true);
    expect(room!.timeline.events.map((e) => e.event_id)).toContain(message);
    // (The room is small: its whole state fits the timeline, which starts at the room's creation.)
    const members = [...room!.state.events, ...room!.timeline.events].filter((e) => e.type === "m.room.member").map((e) => e.state_key);
    expect(members).toContain(alice.user_id);
    // Once shown, it is an ordinary room: nothing new, no room.
    expect((await sync(bob, { since: woken.next_batch })).rooms?.join?.[roomId]).toBeUndefined();
    // An eager sync from the token that did not show it still shows it (the completion is in its range).
    expect((await sync(bob, { since: eagerInitial.next_batch })).rooms?.join?.[roomId]).toBeDefined();
    expect((await sync(bob)).rooms?.join?.[roomId]).toBeDefined();
  });

  it("keys the hiding by the join: a completion that arrives first, a repeat, and a second partial join", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const user = env.USERS.get(env.USERS.idFromName(alice.user_id)) as unknown as {
      roomPartialState(roomId: string, joinEventId: string): Promise<void>;
      roomFullState(roomId: string, joinEventId: string): Promise<void>;
    };
    const shown = async () => (await sync(alice)).rooms?.join?.[roomId] !== undefined;
    expect(await shown()).toBe(true);
    // The completion for join $a arrives before the room said $a was partial: the late word changes nothing.
    await user.roomFullState(roomId, "$a");
    await user.roomPartialState(roomId, "$a");
    expect(await shown()).toBe(true);
    // A second partial join ($b) hides the room again; a late completion of the first one does not show it.
    await user.roomPartialState(roomId, "$b");
    expect(await shown()).toBe(false);
    await user.roomFullState(roomId, "$a");
    expect(await shown()).toBe(false);
    const token = (await sync(alice)).next_batch;
    await user.roomFullState(roomId, "$b");
    expect(await shown()).toBe(true);
    // Said twice, the completion takes no new position: the second incremental sync has nothing.
    const after = await sync(alice, { since: token });
    expect(after.rooms?.join?.[roomId]).toBeDefined();
    await user.roomFullState(roomId, "$b");
    expect((await sync(alice, { since: after.next_batch })).rooms?.join?.[roomId]).toBeUndefined();
  });

  it("once the last local member left, a join goes through the servers named only, not the resident (Complement TestRestrictedRoomsRemoteJoinFailOver)", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const resident = uniqueServer("psleft");
    const named = uniqueServer("psnamed");
    await runInDurableObject(rawRoom(roomId), async (instance) => {
      const engine = (instance as unknown as RoomInstance).engine;
      beginPartialState(engine, [...engine.currentState().values()].at(-1)!, [resident], SERVER_NAME);
    });
    expect((await api("POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/leave`, { token: alice.access_token, body: {} })).status).toBe(200);
    await remoteControl("/_test/answer", { server: named, method: "GET", path: `/_matrix/federation/v1/make_join/*`, status: 400, body: { errcode: "M_UNABLE_TO_AUTHORISE_JOIN", error: "cannot tell" } });
    const res = await api("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}?server_name=${named}`, { token: alice.access_token, body: {} });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_UNABLE_TO_AUTHORISE_JOIN");
    const asked = async (server: string) => (await remoteControl<{ path: string }[]>(`/_test/answered?server=${encodeURIComponent(server)}`)).map((a) => a.path.split("/").slice(0, 5).join("/"));
    expect(await asked(named)).toEqual(["/_matrix/federation/v1/make_join"]);
    expect(await asked(resident)).toEqual([]);
  });

  it("a new local join while the room is partial goes through the resident (a second partial join), not around it", async () => {
    const alice = await newUser("alice");
    const carol = await newUser("carol");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const resident = uniqueServer("psjoin");
    await runInDurableObject(rawRoom(roomId), async (instance) => {
      const engine = (instance as unknown as RoomInstance).engine;
      beginPartialState(engine, [...engine.currentState().values()].at(-1)!, [resident], SERVER_NAME);
    });
    // The resident refuses: the join fails with its answer (a local join would have succeeded).
    await remoteControl("/_test/answer", { server: resident, method: "GET", path: `/_matrix/federation/v1/make_join/*`, status: 403, body: { errcode: "M_FORBIDDEN", error: "not you" } });
    expect((await join(carol, roomId)).status).toBe(403);
    const asked = await remoteControl<{ path: string }[]>(`/_test/answered?server=${encodeURIComponent(resident)}`);
    expect(asked.map((a) => a.path.split("/").slice(0, 5).join("/"))).toEqual(["/_matrix/federation/v1/make_join"]);
    // (A local member's state does not wait for the resync; /joined_members would.)
    expect((await getState(alice, roomId, "m.room.member", carol.user_id)).status).toBe(404);
  });
});
