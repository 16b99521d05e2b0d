// Sticky events (MSC4354) over federation: a server that joins a room later gets the room's unexpired sticky
// events that this server originated (durable-objects/room/sticky-outbound.ts, from the hand-over in
// room/outbound.ts), and sticky events from other servers reach our users' /sync `msc4354_sticky` section,
// whatever the room's history visibility. The other servers are played by test/workers/remote-homeserver.mjs.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import { pushStickyEventsDue, remoteHandOverSettled } from "../../durable-objects/room/outbound.js";
import { stickyEventIds } from "../../durable-objects/room/sync-reads.js";
import { eventIdFor } from "../../protocol/event-hashes.js";
import type { Pdu } from "../../protocol/pdu.js";
import { roomVersionRules } from "../../protocol/room-versions.js";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
import { federationApi, joinFromRemote, remotePdu } from "./federation-room-helpers.js";
import { api, type RegisteredUser } from "./helpers.js";
import { createRoom, join, newUser, r, send } from "./room-helpers.js";
import { sync, timeline } from "./sync-helpers.js";

const F1 = "/_matrix/federation/v1";
const enc = encodeURIComponent;
const rawRoom = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
const destinationStub = (server: string) => env.DESTINATIONS.get(env.DESTINATIONS.idFromName(server));

let txn = 0;
function sendSticky(user: RegisteredUser, roomId: string, duration: number, content: Record<string, unknown>) {
  return api("PUT", `${r(roomId)}/send/org.matrix.msc4143.rtc.member/sf${++txn}?org.matrix.msc4354.sticky_duration_ms=${duration}`, {
    token: user.access_token,
    body: content,
  });
}

/** The event IDs of the PDUs a remote server accepted, in arrival order. */
async function receivedIds(server: string): Promise<string[]> {
  const transactions = await remoteControl<{ accepted: boolean; body: { pdus: Pdu[] } }[]>(`/_test/transactions?server=${enc(server)}`);
  const out: string[] = [];
  for (const pdu of transactions.filter((t) => t.accepted).flatMap((t) => t.body.pdus)) {
    out.push(await eventIdFor(pdu, roomVersionRules("12")!));
  }
  return out;
}

/** Waits for the room's hand-over, does the sticky pushes to new servers as if their time had come (they
 * are scheduled a little after the join), and waits for the destinations' sends that follow. */
async function settle(roomId: string, servers: string[]): Promise<void> {
  await runInDurableObject(rawRoom(roomId), async (instance, state) => {
    await remoteHandOverSettled(state);
    await pushStickyEventsDue(state, (instance as unknown as { engine: RoomEngine }).engine, env as never, Date.now() + 60_000);
  });
  for (const s of servers) await destinationStub(s).sendsSettled();
}

/** `@<localpart>:<server>` joins through make_join/send_join (this server is the resident). */
async function remoteJoin(roomId: string, server: string, localpart: string): Promise<{ userId: string; eventId: string; depth: number }> {
  const userId = `@${localpart}:${server}`;
  const signed = await joinFromRemote(server, roomId, userId);
  return { userId, eventId: signed.eventId, depth: signed.pdu.depth };
}

describe("sticky events over federation", () => {
  it("go to a server that joins later: our unexpired ones only, once per server", async () => {
    const alice = await newUser("stickyfed");
    const roomId = await createRoom(alice, { preset: "public_chat", room_version: "12" });
    const live = await sendSticky(alice, roomId, 600_000, { msc4354_sticky_key: "live" });
    await sendSticky(alice, roomId, 0, { msc4354_sticky_key: "expired" });
    await send(alice, roomId, { msgtype: "m.text", body: "not sticky" });
    const one = uniqueServer("stickyone");

    const joinedAt = Date.now();
    await remoteJoin(roomId, one, "first");
    // Not at once (the new server may not know the room yet): the room's alarm pushes them a little later.
    const alarm = await runInDurableObject(rawRoom(roomId), async (_instance, state) => {
      await remoteHandOverSettled(state);
      return state.storage.getAlarm();
    });
    await destinationStub(one).sendsSettled();
    expect(await receivedIds(one)).toEqual([]);
    expect(alarm).not.toBeNull();
    expect(alarm!).toBeGreaterThanOrEqual(joinedAt);
    await settle(roomId, [one]);
    expect(await receivedIds(one)).toEqual([live.body.event_id]);

    // A second member of the same server brings no new server: nothing is sent again.
    await remoteJoin(roomId, one, "second");
    await settle(roomId, [one]);
    expect(await receivedIds(one)).toEqual([live.body.event_id]);

    // Later sticky events go out as any event does; a server joining after them gets both.
    const later = await sendSticky(alice, roomId, 600_000, { msc4354_sticky_key: "later" });
    await settle(roomId, [one]);
    expect(await receivedIds(one)).toEqual([live.body.event_id, later.body.event_id]);
    const two = uniqueServer("stickytwo");
    await remoteJoin(roomId, two, "third");
    await settle(roomId, [one, two]);
    expect(await receivedIds(two)).toEqual([live.body.event_id, later.body.event_id]);
  });

  it("of another server are not passed on to a server that joins later (each server sends its own)", async () => {
    const alice = await newUser("stickyfed");
    const roomId = await createRoom(alice, { preset: "public_chat", room_version: "12" });
    const one = uniqueServer("stickyorigin");
    const bob = await remoteJoin(roomId, one, "bob");
    const auth = await memberAuth(alice, roomId, bob.userId);
    const theirs = await remoteSticky(one, roomId, bob, auth, Date.now(), 600_000);
    const res = await federationApi(one, "PUT", `${F1}/send/st-${Date.now()}`, { origin: one, origin_server_ts: Date.now(), pdus: [theirs.pdu], edus: [] });
    expect(res.body.pdus[theirs.eventId]).toEqual({});
    const two = uniqueServer("stickynew");
    await remoteJoin(roomId, two, "carol");
    await settle(roomId, [one, two]);
    expect(await receivedIds(two)).not.toContain(theirs.eventId);
  });

  it("from another server reach our members' /sync beyond the timeline limit, without history visibility", async () => {
    const alice = await newUser("stickyfed");
    // `joined`: a member who joins later cannot see earlier events, but sticky events are exempt (MSC4354).
    const roomId = await createRoom(alice, { preset: "public_chat", room_version: "12", initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "joined" } }] });
    const one = uniqueServer("stickyin");
    const bob = await remoteJoin(roomId, one, "bob");
    const auth = await memberAuth(alice, roomId, bob.userId);
    const first = await sync(alice);

    // Sent 10 minutes ago, for 15 minutes: about 5 minutes left. One sent 2 hours ago for an hour is over.
    const now = Date.now();
    const fresh = await remoteSticky(one, roomId, bob, auth, now - 10 * 60_000, 15 * 60_000, [bob.eventId]);
    const stale = await remoteSticky(one, roomId, bob, auth, now - 2 * 3_600_000, 3_600_000, [fresh.eventId], 1);
    const res = await federationApi(one, "PUT", `${F1}/send/st-${now}`, { origin: one, origin_server_ts: now, pdus: [fresh.pdu, stale.pdu], edus: [] });
    expect(res.body.pdus[fresh.eventId]).toEqual({});
    expect(res.body.pdus[stale.eventId]).toEqual({});
    for (let i = 0; i < 3; i++) await send(alice, roomId, { msgtype: "m.text", body: `after ${i}` });

    const LIMIT_2 = { room: { timeline: { limit: 2 } } };
    const next = await sync(alice, { since: first.next_batch, filter: LIMIT_2 });
    const room = next.rooms.join[roomId];
    expect(room.timeline.limited).toBe(true);
    expect(room.msc4354_sticky.events.map((e: { event_id: string }) => e.event_id)).toEqual([fresh.eventId]);
    const ttl = room.msc4354_sticky.events[0].unsigned.msc4354_sticky_duration_ttl_ms as number;
    expect(ttl).toBeGreaterThan(4 * 60_000);
    expect(ttl).toBeLessThanOrEqual(5 * 60_000);

    // dave joins after the sticky event; with `joined` history visibility his timeline cannot show it, but
    // his sticky section does.
    const dave = await newUser("stickyfed");
    expect((await join(dave, roomId)).status).toBe(200);
    const initial = await sync(dave, { filter: LIMIT_2 });
    expect(timeline(initial, roomId).map((e) => e.event_id)).not.toContain(fresh.eventId);
    expect(initial.rooms.join[roomId].msc4354_sticky.events.map((e: { event_id: string }) => e.event_id)).toEqual([fresh.eventId]);
    const visible = await api("GET", `${r(roomId)}/event/${enc(fresh.eventId)}`, { token: dave.access_token });
    expect(visible.status).toBe(404); // the ordinary read paths keep history visibility
  });

  it("dated in the future count from their arrival, not from their origin_server_ts", async () => {
    const alice = await newUser("stickyfed");
    const roomId = await createRoom(alice, { preset: "public_chat", room_version: "12" });
    // `longlived-`: its key must still be valid at the event's (future) timestamp (room v5+ key validity).
    const one = uniqueServer("longlived-stickyfuture");
    const bob = await remoteJoin(roomId, one, "bob");
    const auth = await memberAuth(alice, roomId, bob.userId);
    const arrived = Date.now();
    // Dated two hours ahead, sticky for an hour: sticky from its arrival for an hour, not until three hours on.
    const future = await remoteSticky(one, roomId, bob, auth, arrived + 2 * 3_600_000, 3_600_000);
    const res = await federationApi(one, "PUT", `${F1}/send/sf-${arrived}`, { origin: one, origin_server_ts: arrived, pdus: [future.pdu], edus: [] });
    expect(res.body.pdus[future.eventId]).toEqual({});
    const stickyAt = (now: number) =>
      runInDurableObject(rawRoom(roomId), (instance) => {
        const engine = (instance as unknown as { engine: RoomEngine }).engine;
        return stickyEventIds(engine, { mode: "latest", upto: engine.maxStreamOrdering() }, new Set(), now);
      });
    expect(await stickyAt(Date.now() + 30 * 60_000)).toEqual([future.eventId]);
    expect(await stickyAt(arrived + 3_600_000 + 60_000)).toEqual([]);
    const ttl = (await api("GET", `${r(roomId)}/event/${enc(future.eventId)}`, { token: alice.access_token })).body.unsigned.msc4354_sticky_duration_ttl_ms as number;
    expect(ttl).toBeLessThanOrEqual(3_600_000);
    expect(ttl).toBeGreaterThan(3_500_000);
  });
});

/** The auth events of a member's message in a v12 room: power levels and the member's join. */
async function memberAuth(user: RegisteredUser, roomId: string, member: string): Promise<string[]> {
  const state = (await api("GET", `${r(roomId)}/state`, { token: user.access_token })).body as { type: string; state_key: string; event_id: string }[];
  return state.filter((e) => e.type === "m.room.power_levels" || (e.type === "m.room.member" && e.state_key === member)).map((e) => e.event_id);
}

function remoteSticky(server: string, roomId: string, member: { userId: string; eventId: string; depth: number }, auth: string[], ts: number, duration: number, prev = [member.eventId], extraDepth = 0) {
  return remotePdu(server, "12", {
    room_id: roomId,
    sender: member.userId,
    type: "org.matrix.msc4143.rtc.member",
    content: { msc4354_sticky_key: `k${ts}` },
    msc4354_sticky: { duration_ms: duration },
    origin_server_ts: ts,
    depth: member.depth + 1 + extraDepth,
    prev_events: prev,
    auth_events: auth,
  } as never);
}
