// The partial-state resync's first request (durable-objects/room/partial-state.ts): the state at the join's
// prev event, as Synapse asks it (Complement's tests/msc3902 answers /state_ids and /state only there), with
// the prev event itself added to the state it records (the state after it is the state before the join).
// The resync step runs inside the Room DO with a stand-in for the other servers that records what it is asked.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import type { RemoteFetch, RemoteStream } from "../../durable-objects/room/federation-inbound.js";
import { beginPartialState, resyncBatches, resyncStep, stateIdsAtJoin } from "../../durable-objects/room/partial-state.js";
import { joinRemoteRoom } from "../../durable-objects/room/remote-join.js";
import { isJsonObject } from "../../protocol/json.js";
import type { Env } from "../../worker/env.js";
import { signingKey } from "../../worker/server-identity.js";
import { uniqueServer } from "./federation-helpers.js";
import { SERVER_NAME } from "./helpers.js";
import { ResidentRoom } from "./partial-state-resident.js";
import { createRoom, membership, newUser, send } from "./room-helpers.js";

const rawRoom = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
const engineOf = (instance: unknown) => (instance as unknown as { engine: RoomEngine }).engine;

describe("partial-state resync", () => {
  it("asks /state_ids at the join's prev event, records that event with the state it names, and waits outside the write queue", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    expect((await membership(bob, roomId, "join")).status).toBe(200);
    // Stand-ins: bob's join is "the prev event", the message after it "our join".
    const joinLike = (await send(alice, roomId, { msgtype: "m.text", body: "stands in for the join" })).body.event_id as string;
    const asked: string[] = [];
    const recorded = await runInDurableObject(rawRoom(roomId), async (instance) => {
      const engine = engineOf(instance);
      const pdu = engine.events.pdu(joinLike)!;
      const prev = (pdu.prev_events as string[])[0]!;
      const stateBeforePrev = [...engine.currentState().values()].filter((id) => id !== prev);
      const remote: RemoteFetch = async (_destination, _method, path) => {
        asked.push(path);
        return { ok: true, status: 200, body: { pdu_ids: stateBeforePrev, auth_chain_ids: [] } };
      };
      // Which steps run in the room's write queue (room.ts passes its queue as `locked`).
      const lockedPhases: string[] = [];
      const locked = async <T>(fn: () => Promise<T>): Promise<T> => {
        lockedPhases.push(engine.sql.exec<{ phase: string }>("SELECT phase FROM partial_state").one().phase);
        return fn();
      };
      beginPartialState(engine, joinLike, ["resident.test", SERVER_NAME], SERVER_NAME);
      await resyncStep(engine, remote, undefined, locked);
      const row = { ...engine.sql.exec<{ phase: string }>("SELECT phase FROM partial_state").one(), stateIds: stateIdsAtJoin(engine) };
      // The rest of the resync: nothing is missing, so fetch, check and apply follow, and the room is complete.
      let steps = 0;
      while ((await resyncStep(engine, remote, undefined, locked)) !== null && steps < 10) steps++;
      const left = engine.sql.exec("SELECT 1 FROM partial_state").toArray().length;
      return { prev, stateIds: row.stateIds, phase: row.phase, lockedPhases, left };
    });
    expect(asked).toEqual([`/_matrix/federation/v1/state_ids/${encodeURIComponent(roomId)}?event_id=${encodeURIComponent(recorded.prev)}`]);
    // Every ID is known here: nothing to fetch; the prev event closes the list (it wins its state key).
    expect(recorded.stateIds.at(-1)).toBe(recorded.prev);
    expect(recorded.phase).toBe("fetch");
    // Waiting for other servers (ids, fetch) happens outside the write queue; changing the room inside it.
    expect(recorded.lockedPhases).toEqual(["check", "apply"]);
    expect(recorded.left).toBe(0);
  });

  it("reads /state_ids as a stream in batches: every state ID in order, each ID we lack once; a server that broke off or answered {} leaves nothing behind", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const result = await runInDurableObject(rawRoom(roomId), async (instance) => {
      const engine = engineOf(instance);
      const known = [...engine.currentState().values()];
      // More IDs than one batch (1,000), with unknown ones in both lists and some in both.
      const unknownState = Array.from({ length: 2_400 }, (_, i) => `$unknown-state-${i}`);
      const unknownAuth = Array.from({ length: 300 }, (_, i) => `$unknown-auth-${i}`);
      const pduIds = [...known, ...unknownState];
      const authIds = [...known, ...unknownAuth, ...unknownState.slice(0, 50)];
      const text = JSON.stringify({ pdu_ids: pduIds, auth_chain_ids: authIds });
      // The answer arrives in 7-byte pieces (IDs cut anywhere); `upto` cuts it short (a server breaking off).
      const answerOf = (body: string): Response => {
        const bytes = new TextEncoder().encode(body);
        let at = 0;
        return new Response(new ReadableStream({ pull(c) { if (at >= bytes.length) c.close(); else { c.enqueue(bytes.slice(at, at + 7)); at += 7; } } }));
      };
      const answers: Record<string, string> = { "a.test": text.slice(0, Math.floor(text.length / 2)), "b.test": "{}", "c.test": text };
      const asked: string[] = [];
      const stream: RemoteStream = async (destination) => (asked.push(destination), { ok: true, response: answerOf(answers[destination]!) });
      const unused: RemoteFetch = async () => ({ ok: false, status: null, error: "unused" });
      // Our join stands in as the last state event: /state_ids is asked at it (its prev event is ours).
      beginPartialState(engine, known.at(-1)!, ["a.test", "b.test", "c.test"], SERVER_NAME);
      const phases: string[] = [];
      const phase = () => engine.sql.exec<{ phase: string }>("SELECT phase FROM partial_state").one().phase;
      for (let i = 0; i < 3; i++) {
        await resyncStep(engine, unused, stream);
        phases.push(phase());
      }
      const missing = engine.sql.exec<{ event_id: string }>("SELECT event_id FROM partial_state_missing ORDER BY event_id").toArray().map((r) => r.event_id);
      return { asked, phases, stateIds: stateIdsAtJoin(engine), missing, pduIds, unknown: [...unknownState, ...unknownAuth].sort() };
    });
    expect(result.asked).toEqual(["a.test", "b.test", "c.test"]);
    expect(result.phases).toEqual(["ids", "ids", "state"]);
    // The join's prev event closes the list (the state after it); before it, exactly c's state IDs.
    expect(result.stateIds.slice(0, -1)).toEqual(result.pduIds);
    expect(result.missing).toEqual(result.unknown);
  });

  it("fails over to the next server at once while the round lasts, waits after a whole round failed, and continues with the one that answers", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const result = await runInDurableObject(rawRoom(roomId), async (instance) => {
      const engine = engineOf(instance);
      const stateIds = [...engine.currentState().values()];
      const asked: string[] = [];
      let answering = new Set<string>();
      const remote: RemoteFetch = async (destination) => {
        asked.push(destination);
        // A bogus answer (Complement's PartialStateJoinSyncsUsingOtherHomeservers sends `{}`), or a good one.
        return answering.has(destination) ? { ok: true, status: 200, body: { pdu_ids: stateIds, auth_chain_ids: [] } } : { ok: true, status: 200, body: {} };
      };
      beginPartialState(engine, stateIds.at(-1)!, ["a.test", "b.test", SERVER_NAME], SERVER_NAME);
      const delays = [await resyncStep(engine, remote), await resyncStep(engine, remote), await resyncStep(engine, remote)];
      answering = new Set(["b.test"]);
      delays.push(await resyncStep(engine, remote));
      const phase = engine.sql.exec<{ phase: string }>("SELECT phase FROM partial_state").one().phase;
      return { asked, delays, phase };
    });
    // a (bogus: next at once), b (bogus: the round is over, wait), a again (next at once), then b answers.
    expect(result.asked).toEqual(["a.test", "b.test", "a.test", "b.test"]);
    expect(result.delays.slice(0, 3)).toEqual([10, 5_000, 10]);
    expect(result.phase).toBe("fetch");
  });

  it("a second partial join while the resync runs keeps it, adding only servers it did not know", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const row = await runInDurableObject(rawRoom(roomId), async (instance) => {
      const engine = engineOf(instance);
      const ids = [...engine.currentState().values()];
      beginPartialState(engine, ids[0]!, ["a.test"], SERVER_NAME);
      engine.sql.exec("UPDATE partial_state SET phase = 'fetch'");
      beginPartialState(engine, ids[1]!, ["b.test", "a.test", SERVER_NAME], SERVER_NAME);
      return engine.sql.exec<{ join_event_id: string; servers: string; phase: string }>("SELECT join_event_id, servers, phase FROM partial_state").one();
    });
    expect(JSON.parse(row.servers)).toEqual(["a.test", "b.test"]);
    expect(row.phase).toBe("fetch");
  });

  it("takes typing from a user of a server the resident named while the members are unknown, and no other", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await runInDurableObject(rawRoom(roomId), async (instance) => {
      const engine = engineOf(instance);
      beginPartialState(engine, [...engine.currentState().values()][0]!, ["named.test"], SERVER_NAME);
    });
    const room = env.ROOMS.get(env.ROOMS.idFromName(roomId)) as unknown as {
      setTyping(u: string, t: boolean, ms: number): Promise<{ ok?: null; error?: { errcode: string } }>;
      typingUsers(): Promise<string[]>;
    };
    expect(await room.setTyping("@typist:named.test", true, 30_000)).toEqual({ ok: null });
    expect((await room.setTyping("@stranger:unnamed.test", true, 30_000)).error?.errcode).toBe("M_FORBIDDEN");
    expect(await room.typingUsers()).toEqual(["@typist:named.test"]);
    await runInDurableObject(rawRoom(roomId), async (instance) => {
      engineOf(instance).sql.exec("DELETE FROM partial_state");
    });
    // Complete again: an unknown remote user is refused whatever their server.
    expect((await room.setTyping("@other:named.test", true, 30_000)).error?.errcode).toBe("M_FORBIDDEN");
  });

  it("lets other work of the Durable Object run while it reads a big /state answer", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const result = await runInDurableObject(rawRoom(roomId), async (instance) => {
      const engine = engineOf(instance);
      const pdus = [...engine.currentState().values()].map((id) => engine.events.pdu(id)!);
      // 400 elements in one chunk of text, as a fast server's answer arrives.
      const answer = JSON.stringify({ pdus: Array.from({ length: 400 }, (_, i) => pdus[i % pdus.length]), auth_chain: [] });
      const stream: RemoteStream = async () => ({ ok: true, response: new Response(answer) });
      beginPartialState(engine, pdus.at(-1)!.event_id, ["resident.test"], SERVER_NAME);
      engine.sql.exec("UPDATE partial_state SET phase = 'state'");
      let finished = false;
      let otherWorkRan: boolean | undefined;
      // Other work (a transaction from the resident, a sync) queued as the step starts.
      setTimeout(() => (otherWorkRan = !finished), 0);
      await resyncStep(engine, async () => ({ ok: false, status: null, error: "unused" }), stream);
      finished = true;
      return { otherWorkRan, phase: engine.sql.exec<{ phase: string }>("SELECT phase FROM partial_state").one().phase };
    });
    expect(result.otherWorkRan).toBe(true);
    expect(result.phase).toBe("fetch");
  });

  it("orders a staged event only after its auth events that are not stored yet, and checks it after them", async () => {
    const alice = await newUser("alice");
    const room = await ResidentRoom.create(uniqueServer("stage"), "10", "creator");
    const bob = room.user("bob");
    // bob's first join is only in the auth chain of his second (a partial join omits both).
    const firstJoin = await room.add({ type: "m.room.member", stateKey: bob, sender: bob, content: { membership: "join" } });
    const secondJoin = await room.add({ type: "m.room.member", stateKey: bob, sender: bob, content: { membership: "join", displayname: "Bob again" } });
    const remote = room.remote();
    const result = await runInDurableObject(rawRoom(room.roomId), async (instance) => {
      const engine = engineOf(instance);
      const key = await signingKey(env as unknown as Env);
      const joined = await joinRemoteRoom(engine, SERVER_NAME, key, remote, { roomId: room.roomId, userId: alice.user_id, servers: [room.server], content: {} });
      beginPartialState(engine, joined.result.eventId, joined.partialStateServers!, SERVER_NAME);
      // /state_ids and /state (at the join's prev event, bob's second join), read as streams: /state brings
      // his first join; the second is fetched with /event after it.
      const stream: RemoteStream = async (destination, path) => {
        const answer = await remote(destination, "GET", path);
        if (!answer.ok || !isJsonObject(answer.body)) throw new Error(`the resident did not answer ${path}`);
        return { ok: true, response: new Response(JSON.stringify(answer.body)) };
      };
      const phases: string[] = [];
      let edges: { event_id: string; auth_event_id: string }[] = [];
      // One state ID per apply step: bob's two joins are applied in different steps, the last one first.
      resyncBatches.applyPerStep = 1;
      let stateIdCount = 0;
      let bobAfterApply: string | undefined;
      for (let i = 0; i < 40; i++) {
        const phase = engine.sql.exec<{ phase: string }>("SELECT phase FROM partial_state").toArray()[0]?.phase;
        if (phase === undefined) break;
        phases.push(phase);
        if (phase === "apply" && stateIdCount === 0) stateIdCount = stateIdsAtJoin(engine).length;

        // What the check phase will order by, once everything is staged.
        if (phase === "check" && phases.at(-2) !== "check") edges = engine.sql.exec<{ event_id: string; auth_event_id: string }>("SELECT event_id, auth_event_id FROM partial_state_staged_auth").toArray();
        await resyncStep(engine, remote, stream);
        // What the apply steps made of bob (the last step also starts the recheck of the events since the
        // join, which would correct a wrong entry: looked at before that).
        const after = engine.sql.exec<{ phase: string }>("SELECT phase FROM partial_state").toArray()[0]?.phase;
        if (phase === "apply" && after === "apply") bobAfterApply = engine.currentStateEventId("m.room.member", bob);
      }
      resyncBatches.applyPerStep = 2_000;
      return {
        phases,
        edges,
        rejected: [firstJoin, secondJoin].map((e) => engine.events.meta(e.eventId)?.rejectedReason),
        bobNow: engine.currentStateEventId("m.room.member", bob),
        stateIds: stateIdCount,
        bobAfterApply,
      };
    });
    expect(result.phases.slice(0, 4)).toEqual(["ids", "state", "fetch", "fetch"]);
    // As many apply steps as state IDs (the state before the prev event and the prev event itself).
    expect(result.phases.filter((p) => p === "apply").length).toBe(result.stateIds);
    // The only edge kept: to bob's first join (create, power levels and join rules were stored at the join).
    expect(result.edges).toEqual([{ event_id: secondJoin.eventId, auth_event_id: firstJoin.eventId }]);
    expect(result.rejected).toEqual([null, null]);
    expect(result.bobAfterApply).toBe(secondJoin.eventId);
    expect(result.bobNow).toBe(secondJoin.eventId);
  });
});
