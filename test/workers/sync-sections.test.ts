// GET /sync: filters, the invite/leave/knock sections, state_after, full_state, account data, ephemeral
// data (typing, receipts), presence, to-device, device lists, unread counts.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { generateSigningKey, signJson } from "../../protocol/signing.js";
import { api, type RegisteredUser } from "./helpers.js";
import { V3, createRoom, join, membership, newUser, putState, r, send } from "./room-helpers.js";
import { bodies, sync, timeline, type SyncBody } from "./sync-helpers.js";

type Ev = { type: string; state_key?: string; sender: string; content: Record<string, unknown>; event_id?: string };

const stateOf = (body: SyncBody, roomId: string, section = "join"): Ev[] => body.rooms?.[section]?.[roomId]?.state?.events ?? [];

async function twoInRoom(preset = "public_chat"): Promise<{ alice: RegisteredUser; bob: RegisteredUser; roomId: string }> {
  const alice = await newUser("alice");
  const bob = await newUser("bob");
  const roomId = await createRoom(alice, { preset });
  expect((await join(bob, roomId)).status).toBe(200);
  return { alice, bob, roomId };
}

describe("/sync filters", () => {
  it("applies types, not_types, senders and not_senders to the timeline", async () => {
    const { alice, bob, roomId } = await twoInRoom();
    const since = (await sync(alice)).next_batch;
    await send(alice, roomId, { msgtype: "m.text", body: "from alice" });
    await send(bob, roomId, { msgtype: "m.text", body: "from bob" });
    await send(bob, roomId, { foo: 1 }, "org.example.custom");

    const onlyMessages = await sync(alice, { since, filter: { room: { timeline: { types: ["m.room.*"] } } } });
    expect(timeline(onlyMessages, roomId).map((e) => e.type)).toEqual(["m.room.message", "m.room.message"]);
    const notMessages = await sync(alice, { since, filter: { room: { timeline: { not_types: ["m.room.message"] } } } });
    expect(timeline(notMessages, roomId).map((e) => e.type)).toEqual(["org.example.custom"]);
    const fromBob = await sync(alice, { since, filter: { room: { timeline: { senders: [bob.user_id], types: ["m.room.message"] } } } });
    expect(bodies(fromBob, roomId)).toEqual(["from bob"]);
    const notBob = await sync(alice, { since, filter: { room: { timeline: { not_senders: [bob.user_id] } } } });
    expect(bodies(notBob, roomId)).toEqual(["from alice"]);
  });

  it("applies rooms / not_rooms, and stored filters by ID", async () => {
    const alice = await newUser("alice");
    const roomA = await createRoom(alice, { name: "A" });
    const roomB = await createRoom(alice, { name: "B" });
    const onlyA = await sync(alice, { filter: { room: { rooms: [roomA] } } });
    expect(Object.keys(onlyA.rooms.join)).toEqual([roomA]);
    const notA = await sync(alice, { filter: { room: { not_rooms: [roomA] } } });
    expect(Object.keys(notA.rooms.join)).toEqual([roomB]);

    const created = await api("POST", `${V3}/user/${encodeURIComponent(alice.user_id)}/filter`, {
      token: alice.access_token,
      body: { room: { rooms: [roomB], timeline: { limit: 1 } } },
    });
    expect(created.status).toBe(200);
    const byId = await sync(alice, { filter: created.body.filter_id });
    expect(Object.keys(byId.rooms.join)).toEqual([roomB]);
    expect(byId.rooms.join[roomB].timeline.events).toHaveLength(1);
    expect(byId.rooms.join[roomB].timeline.limited).toBe(true);
  });

  it("event_fields keeps only the named fields; event_format federation returns PDUs", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, {});
    await send(alice, roomId, { msgtype: "m.text", body: "fields" });
    const slim = await sync(alice, { filter: { event_fields: ["type", "content.body"], room: { timeline: { limit: 1 } } } });
    expect(timeline(slim, roomId)).toEqual([{ type: "m.room.message", content: { body: "fields" } }]);
    const fed = await sync(alice, { filter: { event_format: "federation", room: { timeline: { limit: 1 } } } });
    const pdu = timeline(fed, roomId)[0] as unknown as Record<string, unknown>;
    expect(pdu.signatures).toBeDefined();
    expect(pdu.hashes).toBeDefined();
    expect(pdu.auth_events).toBeDefined();
    expect(pdu.depth).toBeGreaterThan(1);
    expect(pdu.event_id).toMatch(/^\$/);
  });

  it("lazy_load_members only returns the members the timeline needs", async () => {
    const { alice, bob, roomId } = await twoInRoom();
    const carol = await newUser("carol");
    expect((await join(carol, roomId)).status).toBe(200);
    // A named room has no heroes (whose member events lazy-loading would have to include).
    await putState(alice, roomId, "m.room.name", "", { name: "lazy" });
    for (let i = 0; i < 3; i++) await send(bob, roomId, { msgtype: "m.text", body: `b${i}` });
    const lazy = await sync(alice, { filter: { room: { timeline: { limit: 2 }, state: { lazy_load_members: true } } } });
    const members = stateOf(lazy, roomId)
      .filter((e) => e.type === "m.room.member")
      .map((e) => e.state_key)
      .sort();
    // bob (sender) and alice (own membership); carol is neither.
    expect(members).toEqual([alice.user_id, bob.user_id].sort());
    const full = await sync(alice, { filter: { room: { timeline: { limit: 2 } } } });
    expect(stateOf(full, roomId).filter((e) => e.type === "m.room.member")).toHaveLength(3);
  });
});

describe("/sync lazy-loading members", () => {
  it("does not send a member event again unless include_redundant_members", async () => {
    const { alice, bob, roomId } = await twoInRoom();
    await putState(alice, roomId, "m.room.name", "", { name: "lazy" });
    // Timeline limit 1: bob's join is never in the timeline, so his member event has to come in `state`.
    const lazy = { room: { timeline: { limit: 1 }, state: { lazy_load_members: true } } };
    const redundant = { room: { timeline: { limit: 1 }, state: { lazy_load_members: true, include_redundant_members: true } } };
    await send(bob, roomId, { msgtype: "m.text", body: "one" });
    const first = await sync(alice, { filter: lazy });
    expect(stateOf(first, roomId).some((e) => e.type === "m.room.member" && e.state_key === bob.user_id)).toBe(true);
    await send(bob, roomId, { msgtype: "m.text", body: "two" });
    const second = await sync(alice, { since: first.next_batch, filter: lazy });
    expect(bodies(second, roomId)).toEqual(["two"]);
    expect(stateOf(second, roomId).filter((e) => e.type === "m.room.member")).toEqual([]);
    const again = await sync(alice, { since: first.next_batch, filter: redundant });
    expect(stateOf(again, roomId).filter((e) => e.type === "m.room.member").map((e) => e.state_key)).toEqual([bob.user_id]);
    // A changed member event is news again.
    await api("PUT", `${V3}/profile/${encodeURIComponent(bob.user_id)}/displayname`, { token: bob.access_token, body: { displayname: "New Bob" } });
    await send(bob, roomId, { msgtype: "m.text", body: "three" });
    const third = await sync(alice, { since: second.next_batch, filter: { room: { ...lazy.room, timeline: { limit: 1, types: ["m.room.message"] } } } });
    expect(stateOf(third, roomId).find((e) => e.type === "m.room.member" && e.state_key === bob.user_id)?.content.displayname).toBe("New Bob");
  });
});

describe("/sync sections", () => {
  it("invite shows stripped state; joining moves the room to join with its full state", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { name: "Invite only" });
    const since = (await sync(bob)).next_batch;
    expect((await membership(alice, roomId, "invite", { user_id: bob.user_id })).status).toBe(200);
    const invited = await sync(bob, { since });
    const inviteState: Ev[] = invited.rooms.invite[roomId].invite_state.events;
    expect(inviteState.find((e) => e.type === "m.room.name")?.content.name).toBe("Invite only");
    expect(inviteState.find((e) => e.type === "m.room.member" && e.state_key === bob.user_id)?.sender).toBe(alice.user_id);
    expect(inviteState.every((e) => e.event_id === undefined)).toBe(true);
    expect(invited.rooms.join?.[roomId]).toBeUndefined();

    expect((await join(bob, roomId)).status).toBe(200);
    const joined = await sync(bob, { since: invited.next_batch });
    expect(joined.rooms.invite?.[roomId]).toBeUndefined();
    const all = [...stateOf(joined, roomId), ...timeline(joined, roomId)];
    expect(all.some((e) => e.type === "m.room.create")).toBe(true);
    expect(all.some((e) => e.type === "m.room.member" && e.state_key === bob.user_id && e.content.membership === "join")).toBe(true);
  });

  it("leave shows the room's final events; later events do not appear", async () => {
    const { alice, bob, roomId } = await twoInRoom();
    const since = (await sync(bob)).next_batch;
    await send(alice, roomId, { msgtype: "m.text", body: "before leaving" });
    expect((await membership(bob, roomId, "leave")).status).toBe(200);
    const left = await sync(bob, { since });
    expect(left.rooms.join?.[roomId]).toBeUndefined();
    const events = timeline(left, roomId, "leave");
    expect(events.map((e) => e.type)).toEqual(["m.room.message", "m.room.member"]);
    expect(events[1]!.content.membership).toBe("leave");
    await send(alice, roomId, { msgtype: "m.text", body: "after leaving" });
    const after = await sync(bob, { since: left.next_batch });
    expect(after.rooms.leave?.[roomId]).toBeUndefined();
    // An initial sync lists left rooms only with include_leave.
    expect((await sync(bob)).rooms.leave?.[roomId]).toBeUndefined();
    const archived = await sync(bob, { filter: { room: { include_leave: true } } });
    expect(timeline(archived, roomId, "leave").at(-1)!.content.membership).toBe("leave");
  });

  it("a forgotten room leaves initial and full-state syncs; a leave after the token still shows; a rejoin undoes it", async () => {
    const { alice, bob, roomId } = await twoInRoom();
    const since = (await sync(bob)).next_batch;
    expect((await membership(bob, roomId, "leave")).status).toBe(200);
    expect((await api("POST", `${r(roomId)}/forget`, { token: bob.access_token, body: {} })).status).toBe(200);
    await send(alice, roomId, { msgtype: "m.text", body: "after forgetting" });
    const includeLeave = { room: { include_leave: true } };
    expect((await sync(bob, { filter: includeLeave })).rooms.leave?.[roomId]).toBeUndefined();
    const incremental = await sync(bob, { since, filter: includeLeave });
    expect(timeline(incremental, roomId, "leave").at(-1)!.content.membership).toBe("leave");
    expect((await sync(bob, { since, filter: includeLeave, full_state: true })).rooms.leave?.[roomId]).toBeDefined();
    expect((await sync(bob, { since: incremental.next_batch, filter: includeLeave, full_state: true })).rooms.leave?.[roomId]).toBeUndefined();
    // Forgotten rooms cannot be read any more.
    expect((await api("GET", `${r(roomId)}/messages?dir=b`, { token: bob.access_token })).status).toBe(403);
    // Joining and leaving again lists the room again.
    expect((await join(bob, roomId)).status).toBe(200);
    expect((await membership(bob, roomId, "leave")).status).toBe(200);
    expect(timeline(await sync(bob, { filter: includeLeave }), roomId, "leave").at(-1)!.content.membership).toBe("leave");
  });

  it("a rejected invite appears in leave", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, {});
    await membership(alice, roomId, "invite", { user_id: bob.user_id });
    const since = (await sync(bob)).next_batch;
    expect((await membership(bob, roomId, "leave")).status).toBe(200);
    const body = await sync(bob, { since });
    expect(body.rooms.invite?.[roomId]).toBeUndefined();
    expect(timeline(body, roomId, "leave").map((e) => e.content.membership)).toEqual(["leave"]);
  });

  it("a token ahead of the user's stream (another user's) answers everything since the start, incrementally", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    // Alice's stream runs well ahead of bob's.
    for (let i = 0; i < 5; i++) await send(alice, roomId, { msgtype: "m.text", body: `m${i}` });
    const aliceToken = (await sync(alice)).next_batch;
    await membership(alice, roomId, "invite", { user_id: bob.user_id });
    expect((await membership(bob, roomId, "leave")).status).toBe(200);
    const toDevice = await api("PUT", `${V3}/sendToDevice/m.test/foreign1`, { token: alice.access_token, body: { messages: { [bob.user_id]: { [bob.device_id]: { n: 1 } } } } });
    expect(toDevice.status).toBe(200);
    const rejected = await sync(bob, { since: aliceToken, full_state: true });
    expect(rejected.rooms.leave?.[roomId]).toBeDefined();
    expect(timeline(rejected, roomId, "leave").at(-1)!.content.membership).toBe("leave");
    expect((rejected.to_device?.events ?? []).map((e: { content: { n: number } }) => e.content.n)).toEqual([1]);
    // From bob's own token on, the usual rules: after joining, the room is joined, not left.
    expect((await join(bob, roomId)).status).toBe(200);
    const joined = await sync(bob, { since: rejected.next_batch, full_state: true });
    expect(joined.rooms.leave?.[roomId]).toBeUndefined();
    expect(joined.rooms.join?.[roomId]).toBeDefined();
  });

  it("hides invites from ignored users, in incremental and initial syncs", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const chris = await newUser("chris");
    const ignore = await api("PUT", `${V3}/user/${encodeURIComponent(alice.user_id)}/account_data/m.ignored_user_list`, {
      token: alice.access_token,
      body: { ignored_users: { [bob.user_id]: {} } },
    });
    expect(ignore.status).toBe(200);
    const since = (await sync(alice)).next_batch;
    const bobRoom = await createRoom(bob, { preset: "private_chat", invite: [alice.user_id] });
    const chrisRoom = await createRoom(chris, { preset: "private_chat", invite: [alice.user_id] });
    for (const body of [await sync(alice, { since }), await sync(alice)]) {
      expect(body.rooms?.invite?.[bobRoom]).toBeUndefined();
      expect(body.rooms?.invite?.[chrisRoom]).toBeDefined();
    }
  });

  it("knock shows knock_state", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { room_version: "11", initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }] });
    const since = (await sync(bob)).next_batch;
    const knocked = await api("POST", `${V3}/knock/${encodeURIComponent(roomId)}`, { token: bob.access_token, body: {} });
    expect(knocked.status).toBe(200);
    const body = await sync(bob, { since });
    const knockState: Ev[] = body.rooms.knock[roomId].knock_state.events;
    expect(knockState.find((e) => e.type === "m.room.join_rules")?.content.join_rule).toBe("knock");
    expect(knockState.find((e) => e.type === "m.room.member")?.content.membership).toBe("knock");
  });

  it("use_state_after returns state_after (state at the end of the timeline) instead of state", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { name: "one" });
    const since = (await sync(alice)).next_batch;
    await putState(alice, roomId, "m.room.name", "", { name: "two" });
    await send(alice, roomId, { msgtype: "m.text", body: "x" });
    const body = await sync(alice, { since, use_state_after: true });
    const room = body.rooms.join[roomId];
    expect(room.state).toBeUndefined();
    expect(room.state_after.events.map((e: Ev) => [e.type, e.content.name])).toEqual([["m.room.name", "two"]]);
    const initial = await sync(alice, { use_state_after: true, filter: { room: { timeline: { limit: 1 } } } });
    expect(initial.rooms.join[roomId].state_after.events.find((e: Ev) => e.type === "m.room.name").content.name).toBe("two");
    // The unstable parameter name (matrix-js-sdk) is answered under the unstable key.
    const unstable = await api("GET", `${V3}/sync?since=${since}&org.matrix.msc4222.use_state_after=true`, { token: alice.access_token });
    expect(unstable.body.rooms.join[roomId]["org.matrix.msc4222.state_after"].events).toHaveLength(1);
    expect(unstable.body.rooms.join[roomId].state).toBeUndefined();
  });

  it("a limited incremental sync returns the state changed in the gap; full_state returns all of it", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { name: "one" });
    const since = (await sync(alice)).next_batch;
    await putState(alice, roomId, "m.room.topic", "", { topic: "gap topic" });
    for (let i = 0; i < 5; i++) await send(alice, roomId, { msgtype: "m.text", body: `g${i}` });
    const body = await sync(alice, { since, filter: { room: { timeline: { limit: 2 } } } });
    expect(body.rooms.join[roomId].timeline.limited).toBe(true);
    expect(stateOf(body, roomId).map((e) => e.type)).toEqual(["m.room.topic"]);
    const full = await sync(alice, { since, full_state: true, filter: { room: { timeline: { limit: 2 } } } });
    const types = stateOf(full, roomId).map((e) => e.type);
    expect(types).toContain("m.room.create");
    expect(types).toContain("m.room.name");
  });
});

describe("/sync account data, ephemeral and presence", () => {
  it("reports global and room account data written after the token", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, {});
    const since = (await sync(alice)).next_batch;
    const u = encodeURIComponent(alice.user_id);
    await api("PUT", `${V3}/user/${u}/account_data/org.example.global`, { token: alice.access_token, body: { a: 1 } });
    await api("PUT", `${V3}/user/${u}/rooms/${encodeURIComponent(roomId)}/account_data/m.tag`, { token: alice.access_token, body: { tags: {} } });
    const body = await sync(alice, { since });
    expect(body.account_data.events).toEqual([{ type: "org.example.global", content: { a: 1 } }]);
    expect(body.rooms.join[roomId].account_data.events).toEqual([{ type: "m.tag", content: { tags: {} } }]);
    const again = await sync(alice, { since: body.next_batch });
    expect(again.account_data.events).toEqual([]);
  });

  it("delivers typing to room members, waking a long-poll", async () => {
    const { alice, bob, roomId } = await twoInRoom();
    const since = (await sync(alice)).next_batch;
    const poll = sync(alice, { since, timeout: 30_000 });
    const res = await api("PUT", `${r(roomId)}/typing/${encodeURIComponent(bob.user_id)}`, { token: bob.access_token, body: { typing: true, timeout: 20_000 } });
    expect(res.status).toBe(200);
    const body = await poll;
    expect(body.rooms.join[roomId].ephemeral.events).toEqual([{ type: "m.typing", content: { user_ids: [bob.user_id] } }]);
    await api("PUT", `${r(roomId)}/typing/${encodeURIComponent(bob.user_id)}`, { token: bob.access_token, body: { typing: false } });
    const stopped = await sync(alice, { since: body.next_batch });
    expect(stopped.rooms.join[roomId].ephemeral.events).toEqual([{ type: "m.typing", content: { user_ids: [] } }]);
    // Someone else's typing state cannot be set; non-members cannot type.
    expect((await api("PUT", `${r(roomId)}/typing/${encodeURIComponent(alice.user_id)}`, { token: bob.access_token, body: { typing: true } })).status).toBe(403);
    const carol = await newUser("carol");
    expect((await api("PUT", `${r(roomId)}/typing/${encodeURIComponent(carol.user_id)}`, { token: carol.access_token, body: { typing: true } })).status).toBe(403);
  });

  it("delivers read receipts; private receipts only to their sender; unread counts reset", async () => {
    const { alice, bob, roomId } = await twoInRoom();
    const since = (await sync(alice)).next_batch;
    const msg = await send(alice, roomId, { msgtype: "m.text", body: "read me" });
    const eventId = msg.body.event_id as string;
    const bobSince = (await sync(bob)).next_batch;
    expect((await sync(bob, { since: bobSince })).rooms.join?.[roomId]).toBeUndefined();
    // bob has one unread notification (one-to-one room rule).
    expect((await sync(bob)).rooms.join[roomId].unread_notifications.notification_count).toBe(1);

    const res = await api("POST", `${r(roomId)}/receipt/m.read/${encodeURIComponent(eventId)}`, { token: bob.access_token, body: {} });
    expect(res.status).toBe(200);
    const body = await sync(alice, { since });
    const receipt = body.rooms.join[roomId].ephemeral.events.find((e: Ev) => e.type === "m.receipt");
    expect(receipt.content[eventId]["m.read"][bob.user_id].ts).toBeGreaterThan(0);
    const bobAfter = await sync(bob, { since: bobSince });
    expect(bobAfter.rooms.join[roomId].unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });

    // A private receipt reaches only bob.
    const msg2 = await send(alice, roomId, { msgtype: "m.text", body: "private" });
    const aliceSince = body.next_batch;
    const priv = await api("POST", `${r(roomId)}/receipt/m.read.private/${encodeURIComponent(msg2.body.event_id)}`, { token: bob.access_token, body: {} });
    expect(priv.status).toBe(200);
    const aliceView = await sync(alice, { since: aliceSince });
    const aliceReceipts = (aliceView.rooms.join?.[roomId]?.ephemeral.events ?? []).filter((e: Ev) => e.type === "m.receipt");
    expect(aliceReceipts).toEqual([]);
    const bobView = await sync(bob, { since: bobAfter.next_batch });
    const mine = bobView.rooms.join[roomId].ephemeral.events.find((e: Ev) => e.type === "m.receipt");
    expect(mine.content[msg2.body.event_id]["m.read.private"][bob.user_id]).toBeDefined();
    expect(bobView.rooms.join[roomId].unread_notifications.notification_count).toBe(0);

    // Bad receipt requests.
    expect((await api("POST", `${r(roomId)}/receipt/m.bogus/${encodeURIComponent(eventId)}`, { token: bob.access_token, body: {} })).status).toBe(400);
    expect((await api("POST", `${r(roomId)}/receipt/m.read/%24unknown`, { token: bob.access_token, body: {} })).status).toBe(404);
    expect((await api("POST", `${r(roomId)}/receipt/m.read/${encodeURIComponent(eventId)}`, { token: bob.access_token, body: { thread_id: "" } })).status).toBe(400);
  });

  it("counts notifications and highlights from push rules", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const carol = await newUser("carol");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    // The display name is copied into bob's member event when he joins (contains_display_name reads it).
    await api("PUT", `${V3}/profile/${encodeURIComponent(bob.user_id)}/displayname`, { token: bob.access_token, body: { displayname: "Bobby" } });
    await join(bob, roomId);
    await join(carol, roomId);
    const since = (await sync(bob)).next_batch;
    await send(alice, roomId, { msgtype: "m.text", body: "nothing special" }); // .m.rule.message: notify
    await send(alice, roomId, { msgtype: "m.text", body: "hello Bobby, look" }); // contains_display_name: highlight
    await send(carol, roomId, { msgtype: "m.text", body: "mention", "m.mentions": { user_ids: [bob.user_id] } }); // is_user_mention: highlight
    await send(carol, roomId, { msgtype: "m.text", body: "@room everyone", "m.mentions": { room: true } }); // carol (PL 0) may not @room
    await send(alice, roomId, { foo: "bar" }, "org.example.silent"); // no rule notifies for unknown types
    const body = await sync(bob, { since });
    expect(body.rooms.join[roomId].unread_notifications).toEqual({ notification_count: 4, highlight_count: 2 });
    // alice (PL 100) may @room.
    await send(alice, roomId, { msgtype: "m.text", body: "@room now", "m.mentions": { room: true } });
    const more = await sync(bob, { since: body.next_batch });
    expect(more.rooms.join[roomId].unread_notifications).toEqual({ notification_count: 5, highlight_count: 3 });
    // bob's own message clears the counts.
    await send(bob, roomId, { msgtype: "m.text", body: "read it all" });
    const after = await sync(bob, { since: more.next_batch });
    expect(after.rooms.join[roomId].unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });
  });

  it("unread_thread_notifications splits the counts per thread", async () => {
    const { alice, bob, roomId } = await twoInRoom();
    const root = await send(alice, roomId, { msgtype: "m.text", body: "root" });
    await send(alice, roomId, { msgtype: "m.text", body: "in thread", "m.relates_to": { rel_type: "m.thread", event_id: root.body.event_id } });
    await send(alice, roomId, { msgtype: "m.text", body: "in thread 2", "m.relates_to": { rel_type: "m.thread", event_id: root.body.event_id } });
    const body = await sync(bob, { filter: { room: { timeline: { unread_thread_notifications: true } } } });
    const room = body.rooms.join[roomId];
    expect(room.unread_notifications.notification_count).toBe(1);
    expect(room.unread_thread_notifications[root.body.event_id].notification_count).toBe(2);
    const plain = await sync(bob);
    expect(plain.rooms.join[roomId].unread_notifications.notification_count).toBe(3);
    expect(plain.rooms.join[roomId].unread_thread_notifications).toBeUndefined();
  });

  it("presence: PUT/GET status and the presence section of room-mates", async () => {
    const { alice, bob } = await twoInRoom();
    const since = (await sync(alice, { set_presence: "offline" })).next_batch;
    const p = `${V3}/presence/${encodeURIComponent(bob.user_id)}/status`;
    expect((await api("PUT", p, { token: bob.access_token, body: { presence: "unavailable", status_msg: "lunch" } })).status).toBe(200);
    expect((await api("PUT", p, { token: alice.access_token, body: { presence: "online" } })).status).toBe(403);
    expect((await api("PUT", p, { token: bob.access_token, body: { presence: "busy" } })).status).toBe(400);
    const got = await api("GET", p, { token: alice.access_token });
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ presence: "unavailable", status_msg: "lunch" });
    // The fan-out runs after the PUT answered: a long-poll returns once it arrives.
    let body = await sync(alice, { since, set_presence: "offline", timeout: 10_000 });
    while (!body.presence.events.some((e: Ev) => e.sender === bob.user_id && e.content.presence === "unavailable")) {
      body = await sync(alice, { since: body.next_batch, set_presence: "offline", timeout: 10_000 });
    }
    const event = body.presence.events.find((e: Ev) => e.sender === bob.user_id && e.content.presence === "unavailable");
    expect(event).toMatchObject({ type: "m.presence", content: { presence: "unavailable", status_msg: "lunch" } });
    // A stranger may not read bob's presence.
    const stranger = await newUser("stranger");
    expect((await api("GET", p, { token: stranger.access_token })).status).toBe(403);
  });
});

describe("/sync presence of new room-mates", () => {
  it("joining a room shows the members' presence, and the members see the newcomer's", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const p = (u: RegisteredUser) => `${V3}/presence/${encodeURIComponent(u.user_id)}/status`;
    expect((await api("PUT", p(alice), { token: alice.access_token, body: { presence: "unavailable", status_msg: "away" } })).status).toBe(200);
    expect((await api("PUT", p(bob), { token: bob.access_token, body: { presence: "online", status_msg: "here" } })).status).toBe(200);
    const aliceSince = (await sync(alice, { set_presence: "offline" })).next_batch;
    let body = await sync(bob, { set_presence: "offline" });
    expect((await join(bob, roomId)).status).toBe(200);
    while (!body.presence.events.some((e: Ev) => e.sender === alice.user_id)) {
      body = await sync(bob, { since: body.next_batch, timeout: 10_000, set_presence: "offline" });
    }
    expect(body.presence.events.find((e: Ev) => e.sender === alice.user_id).content).toMatchObject({ presence: "unavailable", status_msg: "away" });
    let aliceView = await sync(alice, { since: aliceSince, set_presence: "offline" });
    while (!aliceView.presence.events.some((e: Ev) => e.sender === bob.user_id)) {
      aliceView = await sync(alice, { since: aliceView.next_batch, timeout: 10_000, set_presence: "offline" });
    }
    expect(aliceView.presence.events.find((e: Ev) => e.sender === bob.user_id).content).toMatchObject({ presence: "online", status_msg: "here" });

    // A second room: both know each other's presence already and it did not change; the join still shows
    // it to both (Complement's TestSync "presence for newly joined members").
    const second = await createRoom(alice, { preset: "public_chat" });
    const aliceSince2 = (await sync(alice, { since: aliceView.next_batch, set_presence: "offline" })).next_batch;
    let bobView = await sync(bob, { since: body.next_batch, set_presence: "offline" });
    expect((await join(bob, second)).status).toBe(200);
    while (!bobView.presence.events.some((e: Ev) => e.sender === alice.user_id)) {
      bobView = await sync(bob, { since: bobView.next_batch, timeout: 10_000, set_presence: "offline" });
    }
    let aliceView2 = await sync(alice, { since: aliceSince2, set_presence: "offline" });
    while (!aliceView2.presence.events.some((e: Ev) => e.sender === bob.user_id)) {
      aliceView2 = await sync(alice, { since: aliceView2.next_batch, timeout: 10_000, set_presence: "offline" });
    }
    expect(aliceView2.presence.events.find((e: Ev) => e.sender === bob.user_id).content).toMatchObject({ presence: "online", status_msg: "here" });
  });
});

describe("/sync presence timeout", () => {
  it("a user whose clients stopped syncing goes offline when the alarm runs", async () => {
    const { alice, bob } = await twoInRoom();
    await sync(bob); // set_presence defaults to online
    // The fan-out to alice runs after bob's sync answered: wait until she has it.
    let seen = await sync(alice, { set_presence: "offline" });
    while (!seen.presence.events.some((e: Ev) => e.sender === bob.user_id && e.content.presence === "online")) {
      seen = await sync(alice, { since: seen.next_batch, timeout: 10_000, set_presence: "offline" });
    }
    const since = seen.next_batch;
    const stub = env.USERS.get(env.USERS.idFromName(bob.user_id));
    // Too early: the alarm only reschedules itself.
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await sync(alice, { since, set_presence: "offline" })).presence.events.filter((e: Ev) => e.sender === bob.user_id)).toEqual([]);
    // Pretend bob's last sync was two minutes ago.
    await runInDurableObject(stub, (instance: unknown, state) => {
      state.storage.sql.exec("UPDATE sync_presence SET last_active_ts = ? WHERE user_id = ?", Date.now() - 120_000, bob.user_id);
      (instance as { syncHubInstance: { lastSyncEnd: number } }).syncHubInstance.lastSyncEnd = 0;
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const body = await sync(alice, { since, set_presence: "offline" });
    expect(body.presence.events.find((e: Ev) => e.sender === bob.user_id)?.content.presence).toBe("offline");
  });
});

describe("/sync to-device and device lists", () => {
  // 105 sends in order, one request each: seconds on a quiet machine, over 30 s when the machine is busy.
  it("delivers to-device messages exactly once, in batches of at most 100", { timeout: 120_000 }, async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    let since = (await sync(bob)).next_batch;
    const messages = { [bob.user_id]: { [bob.device_id]: { n: 0 } } };
    for (let i = 0; i < 105; i++) {
      messages[bob.user_id]![bob.device_id] = { n: i };
      const res = await api("PUT", `${V3}/sendToDevice/org.example.test/tx${i}`, { token: alice.access_token, body: { messages } });
      expect(res.status).toBe(200);
    }
    const ns = (body: SyncBody): number[] => body.to_device.events.map((e: { content: { n: number } }) => e.content.n);
    const start = since;
    const first = await sync(bob, { since });
    expect(ns(first)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(first.next_batch).toMatch(/^s\d+_\d+$/); // the to-device part lags behind
    // Not acknowledged yet (the client did not use the new token): the same batch again.
    expect(ns(await sync(bob, { since: start }))).toEqual(ns(first));
    const seen: number[] = [...ns(first)];
    since = first.next_batch;
    for (let round = 0; round < 2; round++) {
      const body = await sync(bob, { since });
      seen.push(...ns(body));
      since = body.next_batch;
    }
    expect(seen).toEqual(Array.from({ length: 105 }, (_, i) => i));
    // Syncing with the later tokens dropped what they acknowledged: the old token finds nothing left.
    expect(ns(await sync(bob, { since: start }))).toEqual([]);
    expect(ns(await sync(bob, { since }))).toEqual([]);
  });

  it("a new room-mate is in device_lists.changed, both ways", async () => {
    const alice = await newUser("alice");
    const carol = await newUser("carol");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const aliceSince = (await sync(alice)).next_batch;
    const carolFirst = await sync(carol);
    expect((await join(carol, roomId)).status).toBe(200);
    // alice records carol with the join notification itself.
    expect((await sync(alice, { since: aliceSince })).device_lists.changed).toContain(carol.user_id);
    // carol records the members she meets right after her join (one Room DO read): wait for it.
    let body = await sync(carol, { since: carolFirst.next_batch });
    let changed: string[] = body.device_lists.changed;
    while (!changed.includes(alice.user_id)) {
      body = await sync(carol, { since: body.next_batch, timeout: 10_000 });
      changed = body.device_lists.changed;
    }
    expect(changed).toContain(alice.user_id);
    // Her own user too, as Synapse lists every member of a newly joined room (her other devices may need
    // to know; Complement's TestDeviceListsUpdateOverFederation expects it), and in the same batch.
    expect(changed).toContain(carol.user_id);
  });

  it("lists a room-mate whose device keys changed in device_lists.changed, and left when they leave", async () => {
    const { alice, bob, roomId } = await twoInRoom();
    const since = (await sync(alice)).next_batch;
    const key = await generateSigningKey(bob.device_id);
    const deviceKeys = await signJson(
      {
        user_id: bob.user_id,
        device_id: bob.device_id,
        algorithms: ["m.olm.v1.curve25519-aes-sha2"],
        keys: { [`curve25519:${bob.device_id}`]: "curve", [`ed25519:${bob.device_id}`]: key.publicKey },
      },
      bob.user_id,
      key,
    );
    const up = await api("POST", `${V3}/keys/upload`, { token: bob.access_token, body: { device_keys: deviceKeys, one_time_keys: {} } });
    expect(up.status).toBe(200);
    const body = await sync(alice, { since });
    expect(body.device_lists.changed).toContain(bob.user_id);

    // bob's own sync counts his one-time keys.
    const otk = await signJson({ key: "otk" }, bob.user_id, key);
    await api("POST", `${V3}/keys/upload`, { token: bob.access_token, body: { one_time_keys: { "signed_curve25519:AAAA": otk } } });
    expect((await sync(bob)).device_one_time_keys_count.signed_curve25519).toBe(1);

    expect((await membership(bob, roomId, "leave")).status).toBe(200);
    let left: SyncBody = { device_lists: { left: [] } };
    // The `left` bookkeeping runs right after the leave is delivered; wait for it with a long-poll.
    let token = body.next_batch;
    for (let i = 0; i < 5 && !left.device_lists.left.includes(bob.user_id); i++) {
      left = await sync(alice, { since: token, timeout: 10_000 });
      token = left.next_batch;
    }
    expect(left.device_lists.left).toContain(bob.user_id);
  });
});

describe("User DO stream", () => {
  it("wakes no one when nothing waits, and counts waiters", async () => {
    const alice = await newUser("alice");
    const stub = env.USERS.get(env.USERS.idFromName(alice.user_id));
    expect(await stub.waitingSyncs()).toBe(0);
  });
});
