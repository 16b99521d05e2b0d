// GET /messages, /context, /event and /timestamp_to_event (worker/client/room-messages.ts,
// durable-objects/room/timeline.ts): pagination in both directions without gaps or duplicates, tokens,
// filters, lazy-loaded members, and the errors.
import { describe, expect, it } from "vitest";
import { api, type RegisteredUser } from "./helpers.js";
import { createRoom, join, newUser, r, send } from "./room-helpers.js";
import { sync } from "./sync-helpers.js";

type Ev = { event_id: string; type: string; sender: string; content: Record<string, unknown>; origin_server_ts: number; state_key?: string };

function messages(user: RegisteredUser, roomId: string, query: Record<string, string | number>) {
  const q = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
  return api("GET", `${r(roomId)}/messages?${q}`, { token: user.access_token });
}

async function sendMany(user: RegisteredUser, roomId: string, n: number, prefix = "m"): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await send(user, roomId, { msgtype: "m.text", body: `${prefix}${i}` });
    expect(res.status).toBe(200);
    ids.push(res.body.event_id);
  }
  return ids;
}

/** Pages through /messages until `end` is absent; returns the events in the order served. */
async function paginateAll(user: RegisteredUser, roomId: string, dir: "b" | "f", limit: number, extra: Record<string, string> = {}): Promise<{ events: Ev[]; pages: number }> {
  const events: Ev[] = [];
  let from: string | undefined;
  let pages = 0;
  for (;;) {
    const res = await messages(user, roomId, { dir, limit, ...(from ? { from } : {}), ...extra });
    expect(res.status).toBe(200);
    pages += 1;
    expect(res.body.chunk.length).toBeLessThanOrEqual(limit);
    if (from !== undefined) expect(res.body.start).toBe(from);
    events.push(...res.body.chunk);
    if (res.body.end === undefined) break;
    from = res.body.end;
    if (pages > 100) throw new Error("pagination does not end");
  }
  return { events, pages };
}

describe("GET /rooms/{roomId}/messages", () => {
  it("paginates a few hundred events backwards and forwards without gaps or duplicates", async () => {
    const alice = await newUser("pg");
    const roomId = await createRoom(alice, { name: "pages" });
    const sent = await sendMany(alice, roomId, 250);

    const back = await paginateAll(alice, roomId, "b", 37);
    const backIds = back.events.map((e) => e.event_id);
    expect(new Set(backIds).size).toBe(backIds.length);
    // Newest first, ending with the create event; all the messages in reverse order.
    expect(back.events[0]!.event_id).toBe(sent[249]);
    expect(back.events[back.events.length - 1]!.type).toBe("m.room.create");
    const backMessages = backIds.filter((id) => sent.includes(id));
    expect(backMessages).toEqual([...sent].reverse());
    // One more page than the events fill: the last full or partial page still has `end` (as Synapse), the
    // empty one after it has none.
    expect(back.pages).toBe(Math.ceil(back.events.length / 37) + 1);

    const forward = await paginateAll(alice, roomId, "f", 41);
    expect(forward.events.map((e) => e.event_id)).toEqual([...backIds].reverse());
   }, 120_000);

  it("starts at the latest event without `from`, honours `to`, and hands out tokens that continue", async () => {
    const alice = await newUser("tok");
    const roomId = await createRoom(alice);
    const sent = await sendMany(alice, roomId, 12);

    const first = await messages(alice, roomId, { dir: "b", limit: 5 });
    expect(first.status).toBe(200);
    expect(first.body.chunk.map((e: Ev) => e.event_id)).toEqual(sent.slice(7).reverse());
    expect(first.body.start).toMatch(/^t\d+$/);
    expect(typeof first.body.end).toBe("string");

    const second = await messages(alice, roomId, { dir: "b", limit: 5, from: first.body.end });
    expect(second.body.chunk.map((e: Ev) => e.event_id)).toEqual(sent.slice(2, 7).reverse());

    // Forwards from the end of the first page goes back over the second page in chronological order.
    const forwards = await messages(alice, roomId, { dir: "f", limit: 3, from: second.body.end });
    expect(forwards.body.chunk.map((e: Ev) => e.event_id)).toEqual(sent.slice(2, 5));

    // `to` stops backward pagination at the token: only the events after it.
    const bounded = await messages(alice, roomId, { dir: "b", limit: 50, to: first.body.end });
    expect(bounded.body.chunk.map((e: Ev) => e.event_id)).toEqual(sent.slice(7).reverse());
    // A page with events has `end` (as Synapse); the page after it is empty and has none: nothing is left.
    expect(typeof bounded.body.end).toBe("string");
    const beyond = await messages(alice, roomId, { dir: "b", limit: 50, to: first.body.end, from: bounded.body.end });
    expect(beyond.body.chunk).toEqual([]);
    expect(beyond.body.end).toBeUndefined();

    // The default limit is 10.
    const defaults = await messages(alice, roomId, { dir: "b" });
    expect(defaults.body.chunk).toHaveLength(10);
  });

  it("applies a RoomEventFilter and lazy-loads the senders' member events", async () => {
    const alice = await newUser("flt");
    const bob = await newUser("flt");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    await send(alice, roomId, { msgtype: "m.text", body: "from alice" });
    await send(bob, roomId, { msgtype: "m.image", body: "pic", url: "mxc://test.local/abc" });
    await send(bob, roomId, { body: "custom" }, "org.example.custom");

    const onlyMessages = await messages(alice, roomId, { dir: "b", limit: 50, filter: JSON.stringify({ types: ["m.room.message"] }) });
    expect(onlyMessages.body.chunk.map((e: Ev) => e.content.body)).toEqual(["pic", "from alice"]);

    const wildcard = await messages(alice, roomId, { dir: "b", limit: 50, filter: JSON.stringify({ types: ["org.example.*"] }) });
    expect(wildcard.body.chunk.map((e: Ev) => e.type)).toEqual(["org.example.custom"]);

    const notBob = await messages(alice, roomId, { dir: "b", limit: 50, filter: JSON.stringify({ not_senders: [bob.user_id], types: ["m.room.message"] }) });
    expect(notBob.body.chunk.map((e: Ev) => e.content.body)).toEqual(["from alice"]);

    const withUrl = await messages(alice, roomId, { dir: "b", limit: 50, filter: JSON.stringify({ contains_url: true }) });
    expect(withUrl.body.chunk.map((e: Ev) => e.content.body)).toEqual(["pic"]);

    const otherRoom = await messages(alice, roomId, { dir: "b", limit: 50, filter: JSON.stringify({ not_rooms: [roomId] }) });
    expect(otherRoom.body.chunk).toEqual([]);

    const lazy = await messages(alice, roomId, { dir: "b", limit: 2, filter: JSON.stringify({ lazy_load_members: true }) });
    expect(lazy.body.chunk.every((e: Ev) => e.sender === bob.user_id)).toBe(true);
    expect(lazy.body.state.map((e: Ev) => [e.type, e.state_key])).toEqual([["m.room.member", bob.user_id]]);
    const noLazy = await messages(alice, roomId, { dir: "b", limit: 2 });
    expect(noLazy.body.state).toBeUndefined();
  });

  it("answers 400 for bad parameters and 403 for non-members and unknown rooms", async () => {
    const alice = await newUser("err");
    const mallory = await newUser("err");
    const roomId = await createRoom(alice);
    // Without `dir` the page goes forwards from the room's start (Synapse's default; Complement leaves it out).
    const noDir = await api("GET", `${r(roomId)}/messages`, { token: alice.access_token });
    expect(noDir.status).toBe(200);
    expect(noDir.body.chunk[0].type).toBe("m.room.create");
    expect((await messages(alice, roomId, { dir: "x" })).body.errcode).toBe("M_INVALID_PARAM");
    expect((await messages(alice, roomId, { dir: "b", from: "nonsense" })).body.errcode).toBe("M_INVALID_PARAM");
    expect((await messages(alice, roomId, { dir: "b", limit: -1 })).body.errcode).toBe("M_INVALID_PARAM");
    expect((await messages(alice, roomId, { dir: "b", filter: "{not json" })).body.errcode).toBe("M_NOT_JSON");
    expect((await messages(alice, roomId, { dir: "b", filter: JSON.stringify({ types: "m.room.message" }) })).body.errcode).toBe("M_BAD_JSON");
    const denied = await messages(mallory, roomId, { dir: "b" });
    expect(denied.status).toBe(403);
    expect(denied.body.errcode).toBe("M_FORBIDDEN");
    expect((await messages(alice, "!unknown:test.local", { dir: "b" })).status).toBe(403);
    expect((await api("GET", `${r(roomId)}/messages?dir=b`)).status).toBe(401);
  });
});

describe("GET /rooms/{roomId}/context/{eventId}", () => {
  it("splits the limit around the event, returns the state and tokens that paginate on", async () => {
    const alice = await newUser("ctx");
    const roomId = await createRoom(alice, { name: "ctx room" });
    const sent = await sendMany(alice, roomId, 20);
    const res = await api("GET", `${r(roomId)}/context/${encodeURIComponent(sent[10]!)}?limit=6`, { token: alice.access_token });
    expect(res.status).toBe(200);
    expect(res.body.event.event_id).toBe(sent[10]);
    expect(res.body.events_before.map((e: Ev) => e.event_id)).toEqual([sent[9], sent[8], sent[7]]);
    expect(res.body.events_after.map((e: Ev) => e.event_id)).toEqual([sent[11], sent[12], sent[13]]);
    const stateTypes = new Set(res.body.state.map((e: Ev) => e.type));
    expect(stateTypes).toContain("m.room.create");
    expect(stateTypes).toContain("m.room.name");

    const before = await messages(alice, roomId, { dir: "b", limit: 2, from: res.body.start });
    expect(before.body.chunk.map((e: Ev) => e.event_id)).toEqual([sent[6], sent[5]]);
    const after = await messages(alice, roomId, { dir: "f", limit: 2, from: res.body.end });
    expect(after.body.chunk.map((e: Ev) => e.event_id)).toEqual([sent[14], sent[15]]);

    // limit=0: only the event; a filter applies to the surroundings and the state, not to the event.
    const bare = await api("GET", `${r(roomId)}/context/${encodeURIComponent(sent[10]!)}?limit=0`, { token: alice.access_token });
    expect(bare.body.events_before).toEqual([]);
    expect(bare.body.events_after).toEqual([]);
    const filtered = await api(
      "GET",
      `${r(roomId)}/context/${encodeURIComponent(sent[10]!)}?limit=4&filter=${encodeURIComponent(JSON.stringify({ types: ["m.room.name"], lazy_load_members: true }))}`,
      { token: alice.access_token },
    );
    expect(filtered.body.event.event_id).toBe(sent[10]);
    // The name event is the only m.room.name event before; none after.
    expect(filtered.body.events_before.map((e: Ev) => e.type)).toEqual(["m.room.name"]);
    expect(filtered.body.events_after).toEqual([]);
    expect(filtered.body.state.map((e: Ev) => e.type)).toEqual(["m.room.name"]);
  });

  it("404 for unknown events, 403 for non-members", async () => {
    const alice = await newUser("ctx");
    const mallory = await newUser("ctx");
    const roomId = await createRoom(alice);
    const [id] = await sendMany(alice, roomId, 1);
    expect((await api("GET", `${r(roomId)}/context/${encodeURIComponent("$nope")}`, { token: alice.access_token })).status).toBe(404);
    expect((await api("GET", `${r(roomId)}/context/${encodeURIComponent(id!)}`, { token: mallory.access_token })).status).toBe(403);
  });
});

describe("GET /rooms/{roomId}/event/{eventId}", () => {
  it("returns a visible event in the client format; 404 for unknown, other rooms' and invisible events", async () => {
    const alice = await newUser("ev");
    const mallory = await newUser("ev");
    const roomId = await createRoom(alice);
    const otherRoom = await createRoom(alice);
    const [id] = await sendMany(alice, roomId, 1);
    const res = await api("GET", `${r(roomId)}/event/${encodeURIComponent(id!)}`, { token: alice.access_token });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ event_id: id, room_id: roomId, sender: alice.user_id, type: "m.room.message", content: { body: "m0" } });
    expect(res.body.unsigned.transaction_id).toBeDefined();
    expect(res.body.hashes).toBeUndefined();
    expect(res.body.signatures).toBeUndefined();

    const unknown = await api("GET", `${r(roomId)}/event/${encodeURIComponent("$nope")}`, { token: alice.access_token });
    expect(unknown.status).toBe(404);
    expect(unknown.body.errcode).toBe("M_NOT_FOUND");
    expect((await api("GET", `${r(otherRoom)}/event/${encodeURIComponent(id!)}`, { token: alice.access_token })).status).toBe(404);
    expect((await api("GET", `${r(roomId)}/event/${encodeURIComponent(id!)}`, { token: mallory.access_token })).status).toBe(404);
  });
});

describe("GET /rooms/{roomId}/timestamp_to_event", () => {
  it("finds the nearest event in each direction; 404 past the ends; 400 for bad parameters", async () => {
    const alice = await newUser("ts");
    const mallory = await newUser("ts");
    const roomId = await createRoom(alice);
    const sent = await sendMany(alice, roomId, 3);
    const get = (q: string, user = alice) => api("GET", `/_matrix/client/v1/rooms/${encodeURIComponent(roomId)}/timestamp_to_event?${q}`, { token: user.access_token });
    const events: Ev[] = [];
    for (const id of sent) events.push((await api("GET", `${r(roomId)}/event/${encodeURIComponent(id)}`, { token: alice.access_token })).body);
    const middle = events[1]!;

    const f = await get(`ts=${middle.origin_server_ts}&dir=f`);
    expect(f.status).toBe(200);
    expect(f.body.origin_server_ts).toBeGreaterThanOrEqual(middle.origin_server_ts);
    expect(f.body.origin_server_ts).toBeLessThanOrEqual(events[2]!.origin_server_ts);
    const b = await get(`ts=${middle.origin_server_ts}&dir=b`);
    expect(b.body.origin_server_ts).toBeLessThanOrEqual(middle.origin_server_ts);
    // Past the last event forwards, before the first backwards: nothing.
    const none = await get(`ts=${events[2]!.origin_server_ts + 1}&dir=f`);
    expect(none.status).toBe(404);
    expect(none.body.errcode).toBe("M_NOT_FOUND");
    expect((await get("ts=1&dir=b")).status).toBe(404);
    const last = await get(`ts=${events[2]!.origin_server_ts + 100000}&dir=b`);
    expect(last.body.event_id).toBe(sent[2]);

    expect((await get("dir=f")).body.errcode).toBe("M_MISSING_PARAM");
    expect((await get("ts=abc&dir=f")).body.errcode).toBe("M_INVALID_PARAM");
    expect((await get("ts=1")).body.errcode).toBe("M_MISSING_PARAM");
    expect((await get(`ts=${middle.origin_server_ts}&dir=f`, mallory)).status).toBe(403);
  });
});

describe("tokens from /sync", () => {
  it("prev_batch continues backwards from the timeline; next_batch and prev_batch work as `from`, `to` and `at`", async () => {
    const alice = await newUser("synctok");
    const roomId = await createRoom(alice);
    const sent = await sendMany(alice, roomId, 8);
    const first = await sync(alice, { filter: { room: { timeline: { limit: 3 } } } });
    const room = first.rooms.join[roomId];
    expect(room.timeline.events.map((e: Ev) => e.event_id)).toEqual(sent.slice(5));
    const older = await messages(alice, roomId, { dir: "b", limit: 3, from: room.timeline.prev_batch });
    expect(older.status).toBe(200);
    expect(older.body.chunk.map((e: Ev) => e.event_id)).toEqual(sent.slice(2, 5).reverse());

    // next_batch (a position of the user's stream) names the room's point of that sync.
    const later = await sendMany(alice, roomId, 2, "late");
    const fromNext = await messages(alice, roomId, { dir: "f", limit: 10, from: first.next_batch });
    expect(fromNext.body.chunk.map((e: Ev) => e.event_id)).toEqual(later);
    const toNext = await messages(alice, roomId, { dir: "b", limit: 10, to: first.next_batch });
    expect(toNext.body.chunk.map((e: Ev) => e.event_id)).toEqual([...later].reverse());
    const members = await api("GET", `${r(roomId)}/members?at=${encodeURIComponent(room.timeline.prev_batch)}`, { token: alice.access_token });
    expect(members.status).toBe(200);
    expect(members.body.chunk.map((e: Ev) => e.state_key)).toEqual([alice.user_id]);
  });
});
