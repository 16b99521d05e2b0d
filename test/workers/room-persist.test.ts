// persistEvent, the one entry point, on the federation path: rejected events are stored but never become
// state, soft-failed events are stored but never extend the room, forks are resolved into the current
// state, redactions apply whichever of the pair arrives first, duplicates and bad signatures.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { buildLocalEvent, type EventTemplate } from "../../durable-objects/room/build-event.js";
import type { IdentifiedPdu, Pdu } from "../../protocol/pdu.js";
import { roomVersionRules } from "../../protocol/room-versions.js";
import { signingKey } from "../../worker/server-identity.js";
import { allState, createRoom, getState, join, membership, newUser, roomStub, send } from "./room-helpers.js";

/** Builds a signed event of this server on top of the given prev events, choosing auth events from `state`. */
async function build(roomId: string, template: EventTemplate, prevIds: string[], stateEntries?: Map<string, string>): Promise<{ pdu: Pdu; eventId: string }> {
  const stub = roomStub(roomId);
  const info = (await stub.roomInfo())!;
  const prevs = (await Promise.all(prevIds.map((id) => stub.getPdu(id)))) as IdentifiedPdu[];
  const current = new Map<string, string>();
  if (stateEntries) for (const [k, v] of stateEntries) current.set(k, v);
  else for (const e of await stub.currentState()) current.set(`${e.type}\u0000${e.stateKey}`, e.eventId);
  const events = new Map<string, IdentifiedPdu>();
  for (const [k, id] of current) events.set(k, (await stub.getPdu(id))!);
  return buildLocalEvent(template, {
    roomId,
    rules: roomVersionRules(info.roomVersion)!,
    serverName: env.SERVER_NAME,
    key: await signingKey(env),
    prevEvents: prevs,
    state: (type, sk) => events.get(`${type}\u0000${sk}`),
    now: Date.now(),
  });
}

/** The current_state table (what membership checks read) must equal the current state group (what state
 * reads and state resolution use). */
async function expectCurrentStateConsistent(roomId: string): Promise<void> {
  const fromGroup = (await roomStub(roomId).currentState()).map((e) => `${e.type}|${e.stateKey}|${e.eventId}`).sort();
  const fromTable = await runInDurableObject(env.ROOMS.get(env.ROOMS.idFromName(roomId)), (_i, state) =>
    state.storage.sql
      .exec<{ type: string; state_key: string; event_id: string }>("SELECT type, state_key, event_id FROM current_state")
      .toArray()
      .map((r) => `${r.type}|${r.state_key}|${r.event_id}`)
      .sort(),
  );
  expect(fromTable).toEqual(fromGroup);
}

async function persist(roomId: string, pdu: Pdu) {
  const outcome = await roomStub(roomId).persistEvent(pdu, { origin: "federation" });
  if ("error" in outcome) throw new Error(`${outcome.error.errcode}: ${outcome.error.error}`);
  return outcome.ok;
}

describe("persistEvent (federation path)", () => {
  it("stores an event that fails auth as rejected: no state change, no extremity, no notification", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { name: "kept" });
    const head = (await send(alice, roomId, { body: "head" })).body.event_id as string;
    // bob is not joined: his name change fails the auth rules.
    const bad = await build(roomId, { type: "m.room.name", stateKey: "", sender: bob.user_id, content: { name: "hijacked" } }, [head]);
    const result = await persist(roomId, bad.pdu);
    expect(result.rejectedReason).toMatch(/not joined/);
    expect(result.softFailed).toBe(false);
    expect(result.fanOut).toBe(false);
    expect((await getState(alice, roomId, "m.room.name")).body).toEqual({ name: "kept" });
    // The next local event does not build on the rejected one.
    const next = (await send(alice, roomId, { body: "next" })).body.event_id as string;
    expect((await roomStub(roomId).getPdu(next))!.prev_events).toEqual([head]);
    // The same event again is a duplicate, not a second row.
    const again = await persist(roomId, bad.pdu);
    expect(again.duplicate).toBe(true);
    expect(again.streamOrdering).toBe(result.streamOrdering);
  });

  it("soft-fails an event allowed by the state before it but not by the current state", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    const beforeBan = (await send(alice, roomId, { body: "before the ban" })).body.event_id as string;
    const stateBeforeBan = new Map((await roomStub(roomId).currentState()).map((e) => [`${e.type}\u0000${e.stateKey}`, e.eventId]));
    expect((await membership(alice, roomId, "ban", { user_id: bob.user_id })).status).toBe(200);

    // bob's message was sent "before" he saw the ban: its prev event predates the ban.
    const late = await build(roomId, { type: "m.room.message", sender: bob.user_id, content: { body: "sneaky" } }, [beforeBan], stateBeforeBan);
    const result = await persist(roomId, late.pdu);
    expect(result.rejectedReason).toBeNull();
    expect(result.softFailed).toBe(true);
    expect(result.fanOut).toBe(false);
    // Soft-failed events are no forward extremity: the next event follows the ban only.
    const next = (await send(alice, roomId, { body: "after" })).body.event_id as string;
    const nextPdu = (await roomStub(roomId).getPdu(next))!;
    expect(nextPdu.prev_events).toHaveLength(1);
    expect(nextPdu.prev_events).not.toContain(late.eventId);
  });

  it("resolves a fork into the current state, and the next local event merges it", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { name: "base" });
    const fork = (await send(alice, roomId, { body: "fork point" })).body.event_id as string;
    const a = await build(roomId, { type: "m.room.topic", stateKey: "", sender: alice.user_id, content: { topic: "from a" } }, [fork]);
    const b = await build(roomId, { type: "org.example.flag", stateKey: "", sender: alice.user_id, content: { on: true } }, [fork]);
    expect((await persist(roomId, a.pdu)).rejectedReason).toBeNull();
    expect((await persist(roomId, b.pdu)).rejectedReason).toBeNull();
    // Both branches are in the current state (no conflict between them).
    const state = (await allState(alice, roomId)).body as { type: string; content: Record<string, unknown> }[];
    expect(state.find((e) => e.type === "m.room.topic")!.content).toEqual({ topic: "from a" });
    expect(state.find((e) => e.type === "org.example.flag")!.content).toEqual({ on: true });
    // The next local event has both branches as prev events, and its state before has both.
    const merged = (await send(alice, roomId, { body: "merge" })).body.event_id as string;
    const pdu = (await roomStub(roomId).getPdu(merged))!;
    expect([...(pdu.prev_events as string[])].sort()).toEqual([a.eventId, b.eventId].sort());
    const at = (await roomStub(roomId).stateAtEvent(merged))!;
    const before = new Map(at.before.map((e) => [`${e.type}|${e.stateKey}`, e.eventId]));
    expect(before.get("m.room.topic|")).toBe(a.eventId);
    expect(before.get("org.example.flag|")).toBe(b.eventId);
    expect((await roomStub(roomId).stateAtEvent(merged))!.after).toEqual(at.before);
    await expectCurrentStateConsistent(roomId);
  });

  it("a conflicting fork is resolved by state resolution: the ban wins over the banned moderator's topic", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat", power_level_content_override: { users: { [bob.user_id]: 50 } } });
    await join(bob, roomId);
    const fork = (await send(alice, roomId, { body: "fork point" })).body.event_id as string;
    const state = new Map((await roomStub(roomId).currentState()).map((e) => [`${e.type}\u0000${e.stateKey}`, e.eventId]));
    // Branch 1: bob (moderator) sets the topic. Branch 2, concurrently: alice bans bob.
    const topic = await build(roomId, { type: "m.room.topic", stateKey: "", sender: bob.user_id, content: { topic: "bob's" } }, [fork], state);
    const ban = await build(roomId, { type: "m.room.member", stateKey: bob.user_id, sender: alice.user_id, content: { membership: "ban" } }, [fork], state);
    const topicResult = await persist(roomId, topic.pdu);
    expect(topicResult.rejectedReason).toBeNull();
    expect((await getState(alice, roomId, "m.room.topic")).body).toEqual({ topic: "bob's" });
    const banResult = await persist(roomId, ban.pdu);
    expect(banResult.rejectedReason).toBeNull();
    expect(banResult.softFailed).toBe(false);
    // State resolution v2.1: power events (the ban) first; bob's topic then fails against the banned state.
    expect((await getState(alice, roomId, "m.room.topic")).status).toBe(404);
    expect((await roomStub(roomId).membership(bob.user_id))?.membership).toBe("ban");
    // The delta log names the removal of the topic at the ban's stream position.
    const delta = await roomStub(roomId).stateDelta(banResult.streamOrdering - 1, banResult.streamOrdering);
    expect(delta).toContainEqual({ streamOrdering: banResult.streamOrdering, type: "m.room.topic", stateKey: "", eventId: null, prevEventId: topic.eventId });
    expect(delta).toContainEqual(expect.objectContaining({ type: "m.room.member", stateKey: bob.user_id, eventId: ban.eventId }));
    await expectCurrentStateConsistent(roomId);
  });

  it("refuses an event without a valid signature of its sender's server", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice);
    const head = (await send(alice, roomId, { body: "head" })).body.event_id as string;
    const e = await build(roomId, { type: "m.room.message", sender: alice.user_id, content: { body: "signed" } }, [head]);
    // A change to a signed field breaks the signature: refused.
    const forged = { ...e.pdu, origin_server_ts: e.pdu.origin_server_ts + 1 };
    const outcome = await roomStub(roomId).persistEvent(forged, { origin: "federation" });
    expect("error" in outcome && outcome.error.status).toBe(403);
    const unsigned = { ...e.pdu, signatures: {} };
    const outcome2 = await roomStub(roomId).persistEvent(unsigned, { origin: "federation" });
    expect("error" in outcome2 && outcome2.error.status).toBe(403);
    // Content is covered by the content hash only (signatures cover the redacted form): a changed
    // content keeps the signature valid, fails the hash check and is stored redacted (spec: checks on receipt).
    const tampered = { ...e.pdu, content: { body: "changed after signing" } };
    const stored = await persist(roomId, tampered);
    expect(stored.rejectedReason).toBeNull();
    expect((await roomStub(roomId).getPdu(stored.eventId))!.content).toEqual({});
    expect(stored.eventId).toBe(e.eventId);
  });

  it("a redaction that arrives before its target redacts the target on arrival", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice);
    const head = (await send(alice, roomId, { body: "head" })).body.event_id as string;
    const target = await build(roomId, { type: "m.room.message", sender: alice.user_id, content: { body: "to be redacted" } }, [head]);
    const redaction = await build(roomId, { type: "m.room.redaction", sender: alice.user_id, content: { reason: "early" }, redacts: target.eventId }, [head]);
    expect((await persist(roomId, redaction.pdu)).rejectedReason).toBeNull();
    expect((await persist(roomId, target.pdu)).rejectedReason).toBeNull();
    const [event] = await roomStub(roomId).clientEvents([target.eventId]);
    expect(event!.content).toEqual({});
    expect(event!.unsigned?.redacted_because?.event_id).toBe(redaction.eventId);
  });
});
