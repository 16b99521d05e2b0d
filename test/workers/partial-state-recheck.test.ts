// Events received while a room is held with partial state, checked again once the resync has the whole state
// (durable-objects/room/partial-state-recheck.ts; Complement tests/msc3902 "Rejected events remain rejected
// after resync", "State accepted incorrectly", "State rejected incorrectly"). Our user joins a room on
// another server with partial state, inside the Room DO as room.ts does it (joinRemoteRoom, then
// beginPartialState); the resident is played by test/workers/partial-state-resident.ts (its events signed
// with the key the remote stand-in publishes); events arrive through the federation entry point
// (receivePdus), the resync runs step by step (resyncStep), and what clients see is read through the API.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import { receivePdus } from "../../durable-objects/room/federation-inbound.js";
import { beginPartialState, resyncStep, stateIdsAtJoin } from "../../durable-objects/room/partial-state.js";
import { beginRecheck, recheckStep } from "../../durable-objects/room/partial-state-recheck.js";
import { joinRemoteRoom } from "../../durable-objects/room/remote-join.js";
import type { Pdu } from "../../protocol/pdu.js";
import { signingKey } from "../../worker/server-identity.js";
import type { Env } from "../../worker/env.js";
import { SERVER_NAME, uniqueServer } from "./federation-helpers.js";
import { federationApi } from "./federation-room-helpers.js";
import { api, type RegisteredUser } from "./helpers.js";
import { ResidentRoom } from "./partial-state-resident.js";
import { newUser, r } from "./room-helpers.js";

const engineOf = (instance: unknown) => (instance as { engine: RoomEngine }).engine;
const stub = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));

/** Joins `user` to the resident's room with partial state, as room.ts does. */
async function partialJoin(room: ResidentRoom, user: RegisteredUser): Promise<string> {
  const remote = room.remote();
  return runInDurableObject(stub(room.roomId), async (instance) => {
    const engine = engineOf(instance);
    const key = await signingKey(env as unknown as Env);
    const { result, partialStateServers } = await joinRemoteRoom(engine, SERVER_NAME, key, remote, { roomId: room.roomId, userId: user.user_id, servers: [room.server], content: {} });
    expect(partialStateServers).toEqual([room.server]);
    beginPartialState(engine, result.eventId, partialStateServers!, SERVER_NAME);
    return result.eventId;
  });
}

/** Sends the resident's events to us in one transaction; returns each one's stored rejection (null: accepted). */
async function receive(room: ResidentRoom, events: { pdu: Pdu; eventId: string }[]): Promise<(string | null)[]> {
  const remote = room.remote();
  return runInDurableObject(stub(room.roomId), async (instance) => {
    const engine = engineOf(instance);
    const { results } = await receivePdus(engine, room.server, events.map((e) => e.pdu), remote);
    // Every PDU was processed: a rejected one too gets an empty result (as Synapse answers).
    for (const e of events) expect(results[e.eventId]).toEqual({});
    return events.map((e) => engine.events.meta(e.eventId)!.rejectedReason);
  });
}

/** Runs the resync to its end; returns the current state's m.room.test and the forward extremities. */
async function resync(room: ResidentRoom): Promise<{ test: string | undefined; extremities: string[]; partial: boolean }> {
  const remote = room.remote();
  return runInDurableObject(stub(room.roomId), async (instance) => {
    const engine = engineOf(instance);
    for (let i = 0; i < 20 && (await resyncStep(engine, remote)) !== null; i++);
    return {
      test: engine.currentStateEventId("m.room.test", ""),
      extremities: engine.forwardExtremities(),
      partial: engine.inPartialState(),
    };
  });
}

const rejected = (room: ResidentRoom, id: string) =>
  runInDurableObject(stub(room.roomId), async (instance) => engineOf(instance).events.meta(id)!.rejectedReason !== null);
const currentOf = (room: ResidentRoom, type: string, sk: string) =>
  runInDurableObject(stub(room.roomId), async (instance) => engineOf(instance).currentStateEventId(type, sk));
const eventStatus = async (user: RegisteredUser, roomId: string, eventId: string) =>
  (await api("GET", `${r(roomId)}/event/${encodeURIComponent(eventId)}`, { token: user.access_token })).status;

/**
 * Complement's "State accepted incorrectly": derek (power 50) joined and left before our join; then he sends
 * a state event claiming his old join. Our partial state has no member events, so his auth events stand in
 * and it is accepted; charlie's message follows it.
 */
async function acceptedIncorrectly(prefix: string) {
  const alice = await newUser("alice");
  const resident = uniqueServer(prefix);
  const derek = `@derek:${resident}`;
  const room = await ResidentRoom.create(resident, "12", "charlie", { [derek]: 50 });
  const derekJoin = await room.add({ type: "m.room.member", stateKey: derek, sender: derek, content: { membership: "join" } });
  await room.add({ type: "m.room.member", stateKey: derek, sender: derek, content: { membership: "leave" } });
  const joinId = await partialJoin(room, alice);
  const bad = await room.add({ type: "m.room.test", stateKey: "", sender: derek, content: { body: "bad state event" }, auth: [room.id("m.room.power_levels")!, derekJoin.eventId], intoState: false });
  const sentinel = await room.add({ type: "m.room.message", sender: room.user("charlie"), content: { msgtype: "m.text", body: "sentinel" } });
  expect(await receive(room, [bad, sentinel])).toEqual([null, null]);
  return { alice, room, derek, joinId, bad, sentinel };
}

/**
 * A resident's room where derek (power 100) joined and left, then elsie joined, before our user joined it
 * with partial state: the members a wrong kick of elsie by derek needs (Complement msc3902's
 * "incorrectly kicked" tests).
 */
async function leftAdminAndMember(prefix: string) {
  const alice = await newUser("alice");
  const resident = uniqueServer(prefix);
  const [derek, elsie] = [`@derek:${resident}`, `@elsie:${resident}`];
  const room = await ResidentRoom.create(resident, "12", "charlie", { [derek]: 100 });
  const derekJoin = await room.add({ type: "m.room.member", stateKey: derek, sender: derek, content: { membership: "join" } });
  await room.add({ type: "m.room.member", stateKey: derek, sender: derek, content: { membership: "leave" } });
  const elsieJoin = await room.add({ type: "m.room.member", stateKey: elsie, sender: elsie, content: { membership: "join" } });
  await partialJoin(room, alice);
  return { alice, room, derek, elsie, derekJoin, elsieJoin, pl: room.id("m.room.power_levels")! };
}

describe("events of a partial-state join, checked again after the resync", () => {
  it("state accepted incorrectly (its sender had left, which only the whole state says) is rejected, and leaves the current state and the DAG's tips", async () => {
    const { alice, room, derek, bad, sentinel } = await acceptedIncorrectly("psr-accept");
    expect(await currentOf(room, "m.room.test", "")).toBe(bad.eventId);
    expect(await eventStatus(alice, room.roomId, bad.eventId)).toBe(200);
    // Meanwhile the state at our events is not ours to give: /state_ids and /state are refused as Synapse
    // refuses them in a partial-state room.
    const stateIds = () => federationApi(room.server, "GET", `/_matrix/federation/v1/state_ids/${encodeURIComponent(room.roomId)}?event_id=${encodeURIComponent(sentinel.eventId)}`);
    for (const res of [await stateIds(), await federationApi(room.server, "GET", `/_matrix/federation/v1/state/${encodeURIComponent(room.roomId)}?event_id=${encodeURIComponent(sentinel.eventId)}`)]) {
      expect(res.status).toBe(403);
      expect(res.body).toEqual({ errcode: "ORG.MATRIX.MSC3895_UNABLE_DUE_TO_PARTIAL_STATE", error: "Unable to authorise you right now; room is partial-stated here." });
    }

    const after = await resync(room);
    expect(after.partial).toBe(false);
    expect(await rejected(room, bad.eventId)).toBe(true);
    expect(await rejected(room, sentinel.eventId)).toBe(false);
    expect(after.test).toBeUndefined();
    expect(after.extremities).toEqual([sentinel.eventId]);
    expect(await eventStatus(alice, room.roomId, bad.eventId)).toBe(404);
    expect(await eventStatus(alice, room.roomId, sentinel.eventId)).toBe(200);
    expect(await currentOf(room, "m.room.member", derek)).toBe(room.id("m.room.member", derek));
    // Once whole, the state before charlie's message is served: derek's leave, without the bad event.
    const served = await stateIds();
    expect(served.status).toBe(200);
    expect(served.body.pdu_ids).toContain(room.id("m.room.member", derek));
    expect(served.body.pdu_ids).not.toContain(bad.eventId);
  });

  it("state rejected incorrectly (after a kick accepted incorrectly) is accepted, the kick rejected, and the current state follows", async () => {
    const alice = await newUser("alice");
    const resident = uniqueServer("psr-reject");
    const [derek, elsie] = [`@derek:${resident}`, `@elsie:${resident}`];
    const room = await ResidentRoom.create(resident, "12", "charlie", { [derek]: 100, [elsie]: 50 });
    const derekJoin = await room.add({ type: "m.room.member", stateKey: derek, sender: derek, content: { membership: "join" } });
    await room.add({ type: "m.room.member", stateKey: derek, sender: derek, content: { membership: "leave" } });
    const elsieJoin = await room.add({ type: "m.room.member", stateKey: elsie, sender: elsie, content: { membership: "join" } });
    await partialJoin(room, alice);

    const pl = room.id("m.room.power_levels")!;
    const kick = await room.add({ type: "m.room.member", stateKey: elsie, sender: derek, content: { membership: "leave" }, auth: [pl, derekJoin.eventId, elsieJoin.eventId], intoState: false });
    const elsieState = await room.add({ type: "m.room.test", stateKey: "", sender: elsie, content: { body: "rejected state" }, auth: [pl, elsieJoin.eventId] });
    const sentinel = await room.add({ type: "m.room.message", sender: room.user("charlie"), content: { msgtype: "m.text", body: "sentinel" } });
    const during = await receive(room, [kick, elsieState, sentinel]);
    expect(during[0]).toBeNull();
    expect(during[1]).not.toBeNull();
    expect(during[2]).toBeNull();
    expect(await currentOf(room, "m.room.member", elsie)).toBe(kick.eventId);
    expect(await eventStatus(alice, room.roomId, elsieState.eventId)).toBe(404);

    const after = await resync(room);
    expect(after.partial).toBe(false);
    expect(await rejected(room, kick.eventId)).toBe(true);
    expect(await rejected(room, elsieState.eventId)).toBe(false);
    expect(await eventStatus(alice, room.roomId, kick.eventId)).toBe(404);
    expect(await eventStatus(alice, room.roomId, elsieState.eventId)).toBe(200);
    expect(after.test).toBe(elsieState.eventId);
    expect(await currentOf(room, "m.room.member", elsie)).toBe(elsieJoin.eventId);
    expect(after.extremities).toEqual([sentinel.eventId]);
  });

  it("does not soft-fail while partial (as Synapse): a wrongly kicked member's own leave, on a branch without the kick, shows", async () => {
    const { alice, room, derek, elsie, derekJoin, elsieJoin, pl } = await leftAdminAndMember("psr-softfail");
    // derek (who had left) kicks elsie: accepted while partial, on a branch of its own.
    const branch = [...room.head];
    const kick = await room.add({ type: "m.room.member", stateKey: elsie, sender: derek, content: { membership: "leave" }, auth: [pl, derekJoin.eventId, elsieJoin.eventId], intoState: false });
    room.head = branch;
    // elsie leaves for real, after her join but not after the kick: allowed by the state before it, not by
    // the current state (the kick): a soft failure in a room with its whole state.
    const leave = await room.add({ type: "m.room.member", stateKey: elsie, sender: elsie, content: { membership: "leave" }, auth: [pl, elsieJoin.eventId] });
    expect(await receive(room, [kick, leave])).toEqual([null, null]);
    const softFailed = await runInDurableObject(stub(room.roomId), async (instance) => engineOf(instance).events.meta(leave.eventId)!.softFailed);
    expect(softFailed).toBe(false);
    expect(await eventStatus(alice, room.roomId, leave.eventId)).toBe(200);
  });

  it("authorises against the state before resolved with the event's auth events (as Synapse): a wrongly kicked member's real leave after the kick is accepted", async () => {
    const { alice, room, derek, elsie, derekJoin, elsieJoin, pl } = await leftAdminAndMember("psr-resolve");

    // derek (who had left) kicks elsie, naming only his own join among members (as Complement's bad kick
    // does): accepted while partial. elsie's leave comes after it, with her join as its auth event
    // (Complement msc3902 "... incorrectly kicked servers ... even though remote server left room"). By
    // the state before it alone (the kick) a self-leave of a member who is out is refused; resolved with
    // its auth events, her join is not in the kick's auth chain and wins (mainline order after the kick).
    const kick = await room.add({ type: "m.room.member", stateKey: elsie, sender: derek, content: { membership: "leave" }, auth: [pl, derekJoin.eventId], intoState: false });
    const leave = await room.add({ type: "m.room.member", stateKey: elsie, sender: elsie, content: { membership: "leave" }, auth: [pl, elsieJoin.eventId] });
    expect(await receive(room, [kick, leave])).toEqual([null, null]);
    expect(await eventStatus(alice, room.roomId, leave.eventId)).toBe(200);
    expect(await currentOf(room, "m.room.member", elsie)).toBe(leave.eventId);
    // A stranger still cannot claim a membership the state resolution does not give them.
    const stranger = room.user("stranger");
    const forged = await room.add({ type: "m.room.message", sender: stranger, content: { msgtype: "m.text", body: "let me in" }, auth: [pl] });
    expect(await receive(room, [forged])).not.toEqual([null]);
  });

  it("rejected events remain rejected: a stranger's, and a member's whose auth events leave out their membership", async () => {
    const alice = await newUser("alice");
    const resident = uniqueServer("psr-remain");
    const [derek, frank] = [`@derek:${resident}`, `@frank:${resident}`];
    const room = await ResidentRoom.create(resident, "12", "charlie", { [derek]: 50 });
    await room.add({ type: "m.room.member", stateKey: derek, sender: derek, content: { membership: "join" } });
    await partialJoin(room, alice);

    const pl = room.id("m.room.power_levels")!;
    // Frank was never in the room (Complement's case); derek is, but his event's auth events do not say so
    // (check 4 fails, whatever the state says: a second check against the state alone would accept it).
    const stranger = await room.add({ type: "m.room.test", stateKey: "", sender: frank, content: { body: "stranger" }, auth: [pl], intoState: false });
    const unproven = await room.add({ type: "m.room.test", stateKey: "x", sender: derek, content: { body: "unproven" }, auth: [pl], intoState: false });
    const sentinel = await room.add({ type: "m.room.message", sender: derek, content: { msgtype: "m.text", body: "sentinel" } });
    const during = await receive(room, [stranger, unproven, sentinel]);
    expect(during.map((x) => x !== null)).toEqual([true, true, false]);

    const after = await resync(room);
    expect(after.partial).toBe(false);
    expect(await rejected(room, stranger.eventId)).toBe(true);
    expect(await rejected(room, unproven.eventId)).toBe(true);
    expect(await rejected(room, sentinel.eventId)).toBe(false);
    expect(after.test).toBeUndefined();
    expect(await currentOf(room, "m.room.test", "x")).toBeUndefined();
    expect(await eventStatus(alice, room.roomId, stranger.eventId)).toBe(404);
    expect(await eventStatus(alice, room.roomId, unproven.eventId)).toBe(404);
    expect(await eventStatus(alice, room.roomId, sentinel.eventId)).toBe(200);
  });

  it("walks in bounded steps from a cursor kept in storage, and sets the current state only with the last one", async () => {
    const { room, joinId, bad } = await acceptedIncorrectly("psr-steps");
    const remote = room.remote();
    const result = await runInDurableObject(stub(room.roomId), async (instance) => {
      const engine = engineOf(instance);
      const phase = () => engine.sql.exec<{ phase: string }>("SELECT phase FROM partial_state").one().phase;
      for (let i = 0; i < 20 && phase() !== "apply"; i++) await resyncStep(engine, remote);
      const stateAtJoin = () => stateIdsAtJoin(engine);
      beginRecheck(engine, joinId);
      const seen: { done: boolean; changed: string[]; current: string | undefined }[] = [];
      for (let i = 0; i < 10; i++) {
        const step = await recheckStep(engine, stateAtJoin, 1);
        seen.push({ done: step.done, changed: step.changed.filter((c) => c.rejected !== c.wasRejected).map((c) => c.eventId), current: engine.currentStateEventId("m.room.test", "") });
        if (step.done) break;
      }
      return { seen, badRejected: engine.events.meta(bad.eventId)!.rejectedReason !== null };
    });
    // One event per step: the join, the bad event (rejected now), charlie's message; then an empty step ends it.
    expect(result.seen.map((s) => s.done)).toEqual([false, false, false, true]);
    expect(result.seen.map((s) => s.changed)).toEqual([[], [bad.eventId], [], []]);
    // The current state keeps the bad event until the walk is complete.
    expect(result.seen.map((s) => s.current)).toEqual([bad.eventId, bad.eventId, bad.eventId, undefined]);
    expect(result.badRejected).toBe(true);
  });
});
