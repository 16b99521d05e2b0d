// The Room DO's hand-over to the Destination DOs (durable-objects/room/outbound.ts): which events go to
// which servers, after commit, and what a crash between commit and hand-over leaves (nothing lost). The
// remote servers are played by test/workers/remote-homeserver.mjs; a remote user's join is built and signed
// here with that server's key (it serves the key, so our signature check fetches it) and persisted through
// the federation entry point.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { buildLocalEvent } from "../../durable-objects/room/build-event.js";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import { choosePrevEvents, createLocalEvent } from "../../durable-objects/room/local-events.js";
import { remoteHandOverSettled, skipHandOver } from "../../durable-objects/room/outbound.js";
import { decodeBase64 } from "../../protocol/base64.js";
import type { Pdu } from "../../protocol/pdu.js";
import { signingKeyFromSeed } from "../../protocol/signing.js";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
import { createRoom, membership, newUser, roomStub, send } from "./room-helpers.js";

const rawRoom = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
const destinationStub = (server: string) => env.DESTINATIONS.get(env.DESTINATIONS.idFromName(server));

interface ReceivedTransaction {
  txnId: string;
  body: { origin: string; pdus: Pdu[] };
  accepted: boolean;
}
const received = (server: string) => remoteControl<ReceivedTransaction[]>(`/_test/transactions?server=${encodeURIComponent(server)}`);
const receivedPdus = async (server: string) => (await received(server)).filter((t) => t.accepted).flatMap((t) => t.body.pdus);

/** Waits for the room's hand-over and the destinations' sends that follow it. */
async function settle(roomId: string, servers: string[]): Promise<void> {
  await runInDurableObject(rawRoom(roomId), (_instance, state) => remoteHandOverSettled(state));
  for (const s of servers) await destinationStub(s).sendsSettled();
}

const engineOf = (instance: unknown) => (instance as unknown as { engine: RoomEngine }).engine;

/** A join of `@<local>:<server>`, built and signed by that (remote) server, persisted as federation does. */
async function remoteJoin(roomId: string, server: string, localpart = "remote"): Promise<string> {
  const identity = await remoteControl<{ keyId: string; seed: string }>("/_test/sign", { name: server, method: "GET", uri: "/", destination: "test.local" });
  const userId = `@${localpart}:${server}`;
  const pdu = await runInDurableObject(rawRoom(roomId), async (instance) => {
    const engine = engineOf(instance);
    const meta = engine.meta()!;
    const key = await signingKeyFromSeed(decodeBase64(identity.seed), identity.keyId.slice("ed25519:".length));
    const built = await buildLocalEvent(
      { type: "m.room.member", stateKey: userId, sender: userId, content: { membership: "join" } },
      { roomId: meta.roomId, rules: meta.rules, serverName: server, key, prevEvents: choosePrevEvents(engine), state: engine.currentLookup, now: Date.now() },
    );
    return built.pdu;
  });
  const outcome = await roomStub(roomId).persistEvent(pdu, { origin: "federation" });
  if (!("ok" in outcome) || outcome.ok.rejectedReason !== null || outcome.ok.softFailed) throw new Error(`remote join failed: ${JSON.stringify(outcome)}`);
  return outcome.ok.eventId;
}

/** The stored wire form of an event (what a peer must receive). */
async function wire(roomId: string, eventId: string): Promise<Pdu> {
  const { event_id: _id, ...rest } = (await roomStub(roomId).getPdu(eventId))!;
  return rest as Pdu;
}

describe("Room DO: events to remote servers", () => {
  it("sends a local event to every server with joined members, and nothing from before their join", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const before = await send(alice, roomId, { msgtype: "m.text", body: "before" });
    const one = uniqueServer("one");
    const two = uniqueServer("two");
    await remoteJoin(roomId, one);
    await remoteJoin(roomId, two, "r2");
    await remoteJoin(roomId, two, "r3");
    await settle(roomId, [one, two]);
    // The remote joins are theirs: not sent back (and the history before was never for them).
    expect(await receivedPdus(one)).toEqual([]);

    const m1 = await send(alice, roomId, { msgtype: "m.text", body: "hello remote" });
    const m2 = await send(alice, roomId, { msgtype: "m.text", body: "second" });
    await settle(roomId, [one, two]);
    const expected = [await wire(roomId, m1.body.event_id), await wire(roomId, m2.body.event_id)];
    expect(await receivedPdus(one)).toEqual(expected);
    expect(await receivedPdus(two)).toEqual(expected);
    expect((await received(two)).every((t) => t.body.origin === "test.local")).toBe(true);
    expect(before.status).toBe(200);
  });

  it("sends a membership change to the server of its target, even one with no joined member", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const banned = uniqueServer("banned");
    const ban = await membership(alice, roomId, "ban", { user_id: `@someone:${banned}`, reason: "spam" });
    expect(ban.status).toBe(200);
    await send(alice, roomId, { msgtype: "m.text", body: "not for the banned server" });
    await settle(roomId, [banned]);
    const got = await receivedPdus(banned);
    const banEventId = (await roomStub(roomId).membership(`@someone:${banned}`))!.eventId;
    expect(got).toEqual([await wire(roomId, banEventId)]);
    expect(got[0]!.content).toMatchObject({ membership: "ban" });
  });

  it("a room without remote servers moves its cursor along (a later joiner gets no history)", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice);
    await send(alice, roomId, { msgtype: "m.text", body: "local only" });
    await settle(roomId, []);
    const position = await runInDurableObject(rawRoom(roomId), (_i, state) =>
      state.storage.sql.exec<{ position: number }>("SELECT position FROM federation_outbound").one().position,
    );
    expect(position).toBe(await roomStub(roomId).currentStreamOrdering());
  });

  it("a crash between commit and hand-over: the room's alarm hands the event over", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const server = uniqueServer("crash");
    await remoteJoin(roomId, server);
    await settle(roomId, [server]);

    // Commit without the hook that follows it (as a crash right after the commit would leave it).
    const eventId = await runInDurableObject(rawRoom(roomId), async (instance, state) => {
      const result = await createLocalEvent(engineOf(instance), env as never, { type: "m.room.message", sender: alice.user_id, content: { msgtype: "m.text", body: "crashed" } });
      // The room's constructor re-arms the alarm after a restart when notifications are pending.
      await state.storage.setAlarm(Date.now() + 60_000);
      return result.eventId;
    });
    await settle(roomId, [server]);
    expect(await receivedPdus(server)).toEqual([]);

    expect(await runDurableObjectAlarm(rawRoom(roomId))).toBe(true);
    await destinationStub(server).sendsSettled();
    expect(await receivedPdus(server)).toEqual([await wire(roomId, eventId)]);

    // The next event goes alone: the crashed one is not sent twice.
    const next = await send(alice, roomId, { msgtype: "m.text", body: "next" });
    await settle(roomId, [server]);
    expect(await receivedPdus(server)).toEqual([await wire(roomId, eventId), await wire(roomId, next.body.event_id)]);
  });

  it("a room without remote servers moves its cursor without a round, but never past an event still waiting", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const server = uniqueServer("waiting");
    // A ban of a remote user who was never here goes to that user's server; committed without the hook
    // that follows (a crash), it waits behind the cursor.
    const ban = await runInDurableObject(rawRoom(roomId), async (instance) => {
      const result = await createLocalEvent(engineOf(instance), env as never, { type: "m.room.member", stateKey: `@x:${server}`, sender: alice.user_id, content: { membership: "ban" } });
      return result.eventId;
    });
    // The next message goes nowhere (no remote server in the room): no round is needed for it, but the
    // cursor must not jump over the ban.
    const message = await send(alice, roomId, { msgtype: "m.text", body: "local only" });
    await settle(roomId, [server]);
    expect(await receivedPdus(server)).toEqual([await wire(roomId, ban)]);
    const cursor = () => runInDurableObject(rawRoom(roomId), (_i, state) => state.storage.sql.exec<{ p: number }>("SELECT position AS p FROM federation_outbound").one().p);
    const ordering = (eventId: string) =>
      runInDurableObject(rawRoom(roomId), (_i, state) => state.storage.sql.exec<{ o: number }>("SELECT stream_ordering AS o FROM events WHERE event_id = ?", eventId).one().o);
    expect(await cursor()).toBe(await ordering(message.body.event_id));
    // With nothing waiting, the next message moves it at once.
    const later = await send(alice, roomId, { msgtype: "m.text", body: "still local" });
    expect(await cursor()).toBe(await ordering(later.body.event_id));
  });

  it("leaves out an event marked skipHandOver (our join made through a resident's send_join) and sends the next", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const server = uniqueServer("resident");
    await remoteJoin(roomId, server);
    await settle(roomId, [server]);
    // Bob's join committed and marked before its hand-over, as room.ts does after joinRemoteRoom.
    const joinId = await runInDurableObject(rawRoom(roomId), async (instance) => {
      const engine = engineOf(instance);
      const result = await createLocalEvent(engine, env as never, { type: "m.room.member", stateKey: bob.user_id, sender: bob.user_id, content: { membership: "join" } });
      skipHandOver(engine, result.eventId);
      return result.eventId;
    });
    const next = await send(bob, roomId, { msgtype: "m.text", body: "after my join" });
    await settle(roomId, [server]);
    expect(await receivedPdus(server)).toEqual([await wire(roomId, next.body.event_id)]);
    expect(joinId).not.toBe(next.body.event_id);
  });
});
