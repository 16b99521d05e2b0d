// Simplified sliding sync (MSC4186) at /_matrix/client/unstable/org.matrix.simplified_msc3575/sync:
// connections and `pos`, lists sorted by activity, room data, incremental responses, long-polling, and
// input validation.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, type ApiResponse, type RegisteredUser } from "./helpers.js";
import { createRoom, join, membership, newUser, putState, r, send } from "./room-helpers.js";

const SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

function ssRaw(user: RegisteredUser, body: unknown, params: { pos?: string; timeout?: number } = {}): Promise<ApiResponse> {
  const q = new URLSearchParams();
  if (params.pos !== undefined) q.set("pos", params.pos);
  if (params.timeout !== undefined) q.set("timeout", String(params.timeout));
  const qs = q.toString();
  return api("POST", `${SS}${qs ? `?${qs}` : ""}`, { token: user.access_token, body });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = any;

async function ss(user: RegisteredUser, body: unknown, params: { pos?: string; timeout?: number } = {}): Promise<Body> {
  const res = await ssRaw(user, body, params);
  if (res.status !== 200) throw new Error(`sliding sync failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

const list = (ranges: [number, number][], extra: Record<string, unknown> = {}) => ({
  ranges,
  timeline_limit: 1,
  required_state: [["m.room.create", ""]],
  ...extra,
});

const messages = (room: Body): string[] => (room?.timeline ?? []).filter((e: Body) => e.type === "m.room.message").map((e: Body) => e.content.body);

/** A user in `n` rooms, each with one message, created oldest first (room n-1 is the most recent). */
async function userWithRooms(n: number): Promise<{ user: RegisteredUser; rooms: string[] }> {
  const user = await newUser("ss");
  const rooms: string[] = [];
  for (let i = 0; i < n; i++) {
    const roomId = await createRoom(user, { name: `room ${i}` });
    expect((await send(user, roomId, { msgtype: "m.text", body: `hello ${i}` })).status).toBe(200);
    rooms.push(roomId);
  }
  return { user, rooms };
}

describe("sliding sync: lists and connections", () => {
  it("is advertised in /versions", async () => {
    const res = await api("GET", "/_matrix/client/versions");
    expect(res.body.unstable_features["org.matrix.simplified_msc3575"]).toBe(true);
  });

  it("an initial request returns the range of the list, most recent first, with count and room data", async () => {
    const { user, rooms } = await userWithRooms(3);
    const body = await ss(user, { lists: { all: list([[0, 1]], { timeline_limit: 2, required_state: [["m.room.name", ""], ["m.room.member", "$ME"]] }) } });
    expect(typeof body.pos).toBe("string");
    expect(body.lists.all.count).toBe(3);
    expect(body.lists.all.ops).toEqual([{ op: "SYNC", range: [0, 1], room_ids: [rooms[2], rooms[1]] }]);
    expect(Object.keys(body.rooms).sort()).toEqual([rooms[1], rooms[2]].sort());
    const room = body.rooms[rooms[2]!];
    expect(room.initial).toBe(true);
    expect(room.name).toBe("room 2");
    expect(room.membership).toBe("join");
    expect(room.timeline.length).toBe(2);
    expect(messages(room)).toEqual(["hello 2"]);
    expect(room.limited).toBe(true);
    expect(room.num_live).toBe(0);
    expect(room.joined_count).toBe(1);
    expect(room.invited_count).toBe(0);
    expect(typeof room.bump_stamp).toBe("number");
    expect(room.bump_stamp).toBeGreaterThan(body.rooms[rooms[1]!].bump_stamp);
    expect(room.required_state.map((e: Body) => `${e.type}|${e.state_key}`).sort()).toEqual(["m.room.member|" + user.user_id, "m.room.name|"]);
  });

  it("incremental responses carry only rooms with news, and only the new events", async () => {
    const { user, rooms } = await userWithRooms(3);
    const req = { lists: { all: list([[0, 9]], { timeline_limit: 5 }) } };
    const first = await ss(user, req);
    expect(Object.keys(first.rooms).length).toBe(3);
    // Nothing new: no rooms.
    const idle = await ss(user, req, { pos: first.pos });
    expect(idle.rooms).toEqual({});
    expect(idle.lists.all.count).toBe(3);
    await send(user, rooms[0]!, { msgtype: "m.text", body: "news" });
    const next = await ss(user, req, { pos: idle.pos });
    expect(Object.keys(next.rooms)).toEqual([rooms[0]]);
    const room = next.rooms[rooms[0]!];
    expect(room.initial).toBeUndefined();
    expect(messages(room)).toEqual(["news"]);
    expect(room.timeline.length).toBe(1);
    expect(room.num_live).toBe(1);
    expect(room.limited).toBe(false);
    // The room moved to the top of the list.
    expect(next.lists.all.ops[0].room_ids[0]).toBe(rooms[0]);
    expect(room.required_state).toBeUndefined();
  });

  it("a growing range sends only the rooms not sent before", async () => {
    const { user, rooms } = await userWithRooms(4);
    const first = await ss(user, { lists: { all: list([[0, 1]]) } });
    expect(Object.keys(first.rooms).sort()).toEqual([rooms[3], rooms[2]].sort());
    const second = await ss(user, { lists: { all: list([[0, 3]]) } }, { pos: first.pos });
    expect(Object.keys(second.rooms).sort()).toEqual([rooms[1], rooms[0]].sort());
    expect(second.lists.all.count).toBe(4);
    // An upper bound past the end is fine: the list just ends.
    const third = await ss(user, { lists: { all: list([[0, 99]]) } }, { pos: second.pos });
    expect(third.rooms).toEqual({});
    expect(third.lists.all.ops[0].room_ids.length).toBe(4);
  });

  it("a raised timeline_limit sends the latest events again, marked expanded", async () => {
    const { user, rooms } = await userWithRooms(1);
    for (let i = 0; i < 3; i++) await send(user, rooms[0]!, { msgtype: "m.text", body: `more ${i}` });
    const first = await ss(user, { lists: { all: list([[0, 0]], { timeline_limit: 1 }) } });
    expect(messages(first.rooms[rooms[0]!])).toEqual(["more 2"]);
    const second = await ss(user, { lists: { all: list([[0, 0]], { timeline_limit: 3 }) } }, { pos: first.pos });
    const room = second.rooms[rooms[0]!];
    expect(room.unstable_expanded_timeline).toBe(true);
    expect(messages(room)).toEqual(["more 0", "more 1", "more 2"]);
    // The same limit again: nothing new.
    const third = await ss(user, { lists: { all: list([[0, 0]], { timeline_limit: 3 }) } }, { pos: second.pos });
    expect(third.rooms).toEqual({});
  });

  it("prev_batch continues in /messages", async () => {
    const { user, rooms } = await userWithRooms(1);
    for (let i = 0; i < 4; i++) await send(user, rooms[0]!, { msgtype: "m.text", body: `p${i}` });
    const body = await ss(user, { lists: { all: list([[0, 0]], { timeline_limit: 2 }) } });
    const room = body.rooms[rooms[0]!];
    expect(messages(room)).toEqual(["p2", "p3"]);
    const page = await api("GET", `${r(rooms[0]!)}/messages?dir=b&limit=2&from=${encodeURIComponent(room.prev_batch)}`, { token: user.access_token });
    expect(page.status).toBe(200);
    expect(page.body.chunk.map((e: Body) => e.content.body)).toEqual(["p1", "p0"]);
  });

  it("unknown, foreign and acknowledged-over positions are M_UNKNOWN_POS", async () => {
    const { user } = await userWithRooms(1);
    const req = { conn_id: "main", lists: { all: list([[0, 0]]) } };
    for (const pos of ["12345678", "garbage", "-1"]) {
      const res = await ssRaw(user, req, { pos });
      expect(res.status).toBe(400);
      expect(res.body.errcode).toBe("M_UNKNOWN_POS");
    }
    const first = await ss(user, req);
    // Another connection's position.
    const other = await ssRaw(user, { ...req, conn_id: "other" }, { pos: first.pos });
    expect(other.body.errcode).toBe("M_UNKNOWN_POS");
    // Another user's position.
    const { user: mallory } = await userWithRooms(0);
    expect((await ssRaw(mallory, req, { pos: first.pos })).body.errcode).toBe("M_UNKNOWN_POS");
    // A retry of the same position works; once the next one is used, the first is gone.
    const second = await ss(user, req, { pos: first.pos });
    const retry = await ss(user, req, { pos: first.pos });
    expect(retry.pos).not.toBe(second.pos);
    await ss(user, req, { pos: retry.pos });
    expect((await ssRaw(user, req, { pos: first.pos })).body.errcode).toBe("M_UNKNOWN_POS");
    // Starting over without pos works.
    expect((await ssRaw(user, req)).status).toBe(200);
  });

  it("a request without pos resets the connection, and positions do not pile up", async () => {
    const { user } = await userWithRooms(1);
    const req = { conn_id: "c", lists: { all: list([[0, 0]]) } };
    const first = await ss(user, req);
    let pos = first.pos;
    for (let i = 0; i < 5; i++) pos = (await ss(user, req, { pos })).pos;
    const stub = env.USERS.get(env.USERS.idFromName(user.user_id));
    expect(await stub.slidingPositionCount(user.device_id)).toBe(2);
    const fresh = await ss(user, req);
    expect(Object.keys(fresh.rooms).length).toBe(1);
    expect(await stub.slidingPositionCount(user.device_id)).toBe(1);
    expect((await ssRaw(user, req, { pos })).body.errcode).toBe("M_UNKNOWN_POS");
  });

  it("a waiting request is woken by a new event", async () => {
    const { user, rooms } = await userWithRooms(1);
    const req = { lists: { all: list([[0, 0]], { timeline_limit: 5 }) } };
    const first = await ss(user, req);
    // 30 s: if the send does not wake the request, the test times out.
    const poll = ss(user, req, { pos: first.pos, timeout: 30_000 });
    const sent = await send(user, rooms[0]!, { msgtype: "m.text", body: "wake" });
    const body = await poll;
    expect(messages(body.rooms[rooms[0]!])).toEqual(["wake"]);
    expect(body.rooms[rooms[0]!].timeline[0].event_id).toBe(sent.body.event_id);
  });

  it("marks the user online unless set_presence says otherwise", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    await ss(alice, {});
    await ss(bob, { set_presence: "offline" });
    const presence = async (u: RegisteredUser) => (await api("GET", `/_matrix/client/v3/presence/${encodeURIComponent(u.user_id)}/status`, { token: u.access_token })).body?.presence;
    expect(await presence(alice)).toBe("online");
    expect(await presence(bob)).not.toBe("online");
  });

  it("times out with no rooms and a usable pos", async () => {
    const { user } = await userWithRooms(1);
    const req = { lists: { all: list([[0, 0]]) } };
    const first = await ss(user, req);
    const idle = await ss(user, req, { pos: first.pos, timeout: 50 });
    expect(idle.rooms).toEqual({});
    expect((await ssRaw(user, req, { pos: idle.pos })).status).toBe(200);
  });
});

describe("sliding sync: room data", () => {
  it("required_state: wildcards, $ME and $LAZY", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat", name: "Lazy" });
    await join(bob, roomId);
    await send(bob, roomId, { msgtype: "m.text", body: "from bob" });
    const keys = (room: Body) => (room.required_state ?? []).map((e: Body) => `${e.type}|${e.state_key}`).sort();

    // $LAZY: only the member events the timeline needs (bob's).
    const lazy = await ss(alice, { lists: { l: list([[0, 0]], { timeline_limit: 1, required_state: [["m.room.member", "$LAZY"]] }) } });
    expect(keys(lazy.rooms[roomId])).toEqual([`m.room.member|${bob.user_id}`]);
    // $ME: the user's own.
    const mine = await ss(alice, { lists: { l: list([[0, 0]], { required_state: [["m.room.member", "$ME"]] }) } });
    expect(keys(mine.rooms[roomId])).toEqual([`m.room.member|${alice.user_id}`]);
    // A type with the wildcard state key: every member.
    const members = await ss(alice, { lists: { l: list([[0, 0]], { required_state: [["m.room.member", "*"]] }) } });
    expect(keys(members.rooms[roomId])).toEqual([`m.room.member|${alice.user_id}`, `m.room.member|${bob.user_id}`].sort());
    // Everything.
    const all = await ss(alice, { lists: { l: list([[0, 0]], { required_state: [["*", "*"]] }) } });
    expect(keys(all.rooms[roomId])).toContain("m.room.create|");
    expect(keys(all.rooms[roomId])).toContain("m.room.join_rules|");
    expect(keys(all.rooms[roomId]).length).toBeGreaterThanOrEqual(7);
  });

  it("state changes matching required_state arrive incrementally; a widened required_state sends the new part", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { name: "Before", topic: "t1" });
    const narrow = { lists: { l: list([[0, 0]], { required_state: [["m.room.name", ""]] }) } };
    const first = await ss(alice, narrow);
    expect(first.rooms[roomId].name).toBe("Before");
    expect((await putState(alice, roomId, "m.room.name", "", { name: "After" })).status).toBe(200);
    const second = await ss(alice, narrow, { pos: first.pos });
    const room = second.rooms[roomId];
    expect(room.name).toBe("After");
    expect(room.required_state.map((e: Body) => e.content.name)).toEqual(["After"]);
    // Widen to the topic as well: the topic arrives though it did not change.
    const wide = { lists: { l: list([[0, 0]], { required_state: [["m.room.name", ""], ["m.room.topic", ""]] }) } };
    const third = await ss(alice, wide, { pos: second.pos });
    expect(third.rooms[roomId].required_state.map((e: Body) => e.type)).toEqual(["m.room.topic"]);
    expect(third.rooms[roomId].timeline).toBeUndefined();
  });

  it("a room without a name has heroes with their display names", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    await api("PUT", `/_matrix/client/v3/profile/${encodeURIComponent(bob.user_id)}/displayname`, { token: bob.access_token, body: { displayname: "Bobby" } });
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    const body = await ss(alice, { lists: { l: list([[0, 0]]) } });
    const room = body.rooms[roomId];
    expect(room.name).toBeUndefined();
    expect(room.heroes).toEqual([{ user_id: bob.user_id, displayname: "Bobby" }]);
    expect(room.joined_count).toBe(2);
  });

  it("invites come with invite_state; joining sends the room from scratch", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { name: "Invited" });
    await send(alice, roomId, { msgtype: "m.text", body: "before join" });
    expect((await membership(alice, roomId, "invite", { user_id: bob.user_id })).status).toBe(200);
    const req = { lists: { l: list([[0, 9]], { timeline_limit: 5 }) } };
    const first = await ss(bob, req);
    const invited = first.rooms[roomId];
    expect(invited.membership).toBe("invite");
    expect(invited.initial).toBe(true);
    expect(invited.timeline).toBeUndefined();
    expect(invited.invite_state.some((e: Body) => e.type === "m.room.name" && e.content.name === "Invited")).toBe(true);
    expect(invited.invite_state.some((e: Body) => e.type === "m.room.member" && e.state_key === bob.user_id && e.content.membership === "invite")).toBe(true);
    expect((await join(bob, roomId)).status).toBe(200);
    const second = await ss(bob, req, { pos: first.pos });
    const joined = second.rooms[roomId];
    expect(joined.membership).toBe("join");
    expect(joined.initial).toBe(true);
    expect(joined.invite_state).toBeUndefined();
    expect(joined.timeline.some((e: Body) => e.type === "m.room.member" && e.state_key === bob.user_id)).toBe(true);
  });

  it("a room the user leaves is sent once with the leave, then drops out of the list", async () => {
    const { user, rooms } = await userWithRooms(2);
    const req = { lists: { l: list([[0, 9]], { timeline_limit: 5 }) } };
    const first = await ss(user, req);
    expect(first.lists.l.count).toBe(2);
    expect((await membership(user, rooms[0]!, "leave")).status).toBe(200);
    const second = await ss(user, req, { pos: first.pos });
    const left = second.rooms[rooms[0]!];
    expect(left.membership).toBe("leave");
    expect(left.timeline.at(-1).content.membership).toBe("leave");
    const third = await ss(user, req, { pos: second.pos });
    expect(third.lists.l.count).toBe(1);
    expect(third.lists.l.ops[0].room_ids).toEqual([rooms[1]]);
    expect(third.rooms[rooms[0]!]).toBeUndefined();
    // A new connection does not list it at all.
    const fresh = await ss(user, req);
    expect(fresh.lists.l.count).toBe(1);
  });

  it("a user who is kicked keeps the room in the list", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    expect((await membership(alice, roomId, "kick", { user_id: bob.user_id })).status).toBe(200);
    const body = await ss(bob, { lists: { l: list([[0, 9]], { timeline_limit: 3 }) } });
    expect(body.lists.l.count).toBe(1);
    expect(body.rooms[roomId].membership).toBe("leave");
  });
});

describe("sliding sync: bad input", () => {
  const bad: [string, unknown][] = [
    ["lists not an object", { lists: [] }],
    ["a list not an object", { lists: { a: 1 } }],
    ["a negative range", { lists: { a: list([[-1, 5]]) } }],
    ["an inverted range", { lists: { a: list([[5, 1]]) } }],
    ["a float range", { lists: { a: list([[0, 1.5]]) } }],
    ["a huge range", { lists: { a: list([[0, 2 ** 31]]) } }],
    ["a range of three", { lists: { a: { ranges: [[0, 1, 2]], timeline_limit: 1, required_state: [] } } }],
    ["too many ranges", { lists: { a: list(Array.from({ length: 101 }, () => [0, 1] as [number, number])) } }],
    ["too many lists", { lists: Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`l${i}`, list([[0, 1]])])) }],
    ["a negative timeline_limit", { lists: { a: list([[0, 1]], { timeline_limit: -1 }) } }],
    ["a string timeline_limit", { lists: { a: list([[0, 1]], { timeline_limit: "5" }) } }],
    ["required_state not pairs", { lists: { a: list([[0, 1]], { required_state: [["m.room.name"]] }) } }],
    ["required_state with a number", { lists: { a: list([[0, 1]], { required_state: [["m.room.name", 1]] }) } }],
    ["required_state a string", { lists: { a: list([[0, 1]], { required_state: "all" }) } }],
    ["a bad filter", { lists: { a: list([[0, 1]], { filters: { is_dm: "yes" } }) } }],
    ["a bad room subscription ID", { room_subscriptions: { "not-a-room": { timeline_limit: 1, required_state: [] } } }],
    ["a bad conn_id", { conn_id: 5 }],
    ["a bad to-device since", { extensions: { to_device: { enabled: true, since: "x" } } }],
    ["a bad extension", { extensions: { typing: true } }],
    ["a bad set_presence", { set_presence: "away" }],
  ];
  it("malformed requests are 400 M_INVALID_PARAM (or M_BAD_JSON)", async () => {
    const user = await newUser("bad");
    for (const [what, body] of bad) {
      const res = await ssRaw(user, body);
      expect([what, res.status]).toEqual([what, 400]);
      // A float may be refused by the body reader already (M_BAD_JSON) or by the request's validation.
      expect(what === "a float range" ? ["M_BAD_JSON", "M_INVALID_PARAM"] : ["M_INVALID_PARAM"]).toContain(res.body.errcode);
    }
    // None of them started a connection.
    const stub = env.USERS.get(env.USERS.idFromName(user.user_id));
    expect(await stub.slidingPositionCount(user.device_id)).toBe(0);
  });

  it("a bad timeout, a body that is not JSON, and no token are refused", async () => {
    const user = await newUser("bad");
    expect((await ssRaw(user, {}, { timeout: -5 })).body.errcode).toBe("M_INVALID_PARAM");
    const notJson = await api("POST", SS, { token: user.access_token, body: "{nope" });
    expect(notJson.status).toBe(400);
    expect(notJson.body.errcode).toBe("M_NOT_JSON");
    expect((await api("POST", SS, { body: {} })).status).toBe(401);
  });

  it("an empty body is a valid request with no lists", async () => {
    const user = await newUser("empty");
    const res = await ssRaw(user, {});
    expect(res.status).toBe(200);
    expect(res.body.rooms).toEqual({});
    expect(res.body.lists).toBeUndefined();
  });
});
