// POST /_matrix/client/v3/search (worker/client/search.ts, durable-objects/room/search.ts, search-index.ts;
// spec: "Server Side Search"): full-text search in each Room DO's FTS5 index across the user's joined rooms,
// order_by rank and recent with their tie-breaks, next_batch pagination within and across rooms, the
// filter, event_context, include_state, groupings, history visibility, redactions, upgraded rooms, the
// lazy indexing of events stored before the index existed, and the errors.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, type RegisteredUser } from "./helpers.js";
import { V3, createRoom, join, membership, newUser, putState, r, send } from "./room-helpers.js";

type Ev = { event_id: string; room_id: string; sender: string; type: string; origin_server_ts: number; content: Record<string, unknown> };
type Result = { rank: number; result: Ev; context: Record<string, any> };

function search(user: RegisteredUser, roomEvents: Record<string, unknown>, nextBatch?: string) {
  const q = nextBatch === undefined ? "" : `?next_batch=${encodeURIComponent(nextBatch)}`;
  return api("POST", `${V3}/search${q}`, { token: user.access_token, body: { search_categories: { room_events: roomEvents } } });
}

async function ok(user: RegisteredUser, roomEvents: Record<string, unknown>, nextBatch?: string) {
  const res = await search(user, roomEvents, nextBatch);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.search_categories.room_events as { results: Result[]; count: number; highlights: string[]; next_batch?: string; state?: Record<string, Ev[]>; groups?: Record<string, Record<string, { results: string[]; order?: number; next_batch?: string }>> };
}

async function text(user: RegisteredUser, roomId: string, body: string): Promise<string> {
  const res = await send(user, roomId, { msgtype: "m.text", body });
  expect(res.status).toBe(200);
  return res.body.event_id as string;
}

const ids = (results: Result[]) => results.map((x) => x.result.event_id);
const bodies = (events: Ev[]) => events.map((e) => e.content.body as string);

/** All pages of a search, following next_batch. */
async function allPages(user: RegisteredUser, roomEvents: Record<string, unknown>): Promise<Result[][]> {
  const pages: Result[][] = [];
  let batch: string | undefined;
  for (let i = 0; i < 20; i++) {
    const page = await ok(user, roomEvents, batch);
    pages.push(page.results);
    if (page.next_batch === undefined) return pages;
    batch = page.next_batch;
  }
  throw new Error("too many pages");
}

describe("POST /search", () => {
  it("finds a message by body in a joined room, with count, highlights and the event in client format", async () => {
    const alice = await newUser("srch");
    const roomId = await createRoom(alice);
    const id = await text(alice, roomId, "hello, world");
    await text(alice, roomId, "something else");
    const res = await ok(alice, { search_term: "hello", keys: ["content.body"], filter: { rooms: [roomId] } });
    expect(res.count).toBe(1);
    expect(ids(res.results)).toEqual([id]);
    expect(res.results[0]!.result).toMatchObject({ room_id: roomId, type: "m.room.message", sender: alice.user_id, content: { body: "hello, world" } });
    expect(typeof res.results[0]!.rank).toBe("number");
    expect(res.results[0]!.context).toEqual({});
    expect(res.highlights).toEqual(["hello"]);
    // Fewer results than the limit: no next page.
    expect(res.next_batch).toBeUndefined();
    // Words are ANDed; diacritics and case do not matter; a word that is not there finds nothing.
    expect((await ok(alice, { search_term: "HELLO Wörld" })).count).toBe(1);
    expect((await ok(alice, { search_term: "hello missing" })).count).toBe(0);
    expect((await ok(alice, { search_term: "hello OR else" })).count).toBe(2);
    expect((await ok(alice, { search_term: "hello -world" })).count).toBe(0);
    expect((await ok(alice, { search_term: '"world hello"' })).count).toBe(0);
    expect((await ok(alice, { search_term: '"hello world"' })).count).toBe(1);
    // FTS5 syntax in the term is text, never an error.
    for (const term of ["*", "hello AND", "NOT", "(", 'a"b', "-", "near(hello world)", ""]) expect((await search(alice, { search_term: term })).status).toBe(200);
    // Long terms: thousands of words, alternatives and negations (FTS5 nests a chain of NOTs: they are
    // searched as one NOT of an OR).
    const many = Array.from({ length: 2000 }, (_, i) => `w${i}`);
    for (const term of [many.join(" "), `hello or ${many.join(" or ")}`, `hello ${many.map((w) => `-${w}`).join(" ")}`]) {
      const res = await search(alice, { search_term: term, filter: { rooms: [roomId] } });
      expect(res.status).toBe(200);
    }
    expect((await ok(alice, { search_term: `hello ${many.map((w) => `-${w}`).join(" ")}`, filter: { rooms: [roomId] } })).count).toBe(1);
    expect((await ok(alice, { search_term: `hello or ${many.join(" or ")}`, filter: { rooms: [roomId] } })).count).toBe(1);
  });

  it("indexes room names and topics under their keys, and keys narrow the search", async () => {
    const alice = await newUser("srch");
    const roomId = await createRoom(alice, { name: "Zebra Lounge", topic: "zebra facts" });
    const msg = await text(alice, roomId, "a zebra walked in");
    const byKey = async (keys: string[]) => ids((await ok(alice, { search_term: "zebra", keys, order_by: "recent", filter: { rooms: [roomId] } })).results);
    expect(await byKey(["content.body"])).toEqual([msg]);
    expect((await byKey(["content.name"])).length).toBe(1);
    expect((await byKey(["content.topic"])).length).toBe(1);
    expect((await byKey(["content.body", "content.name", "content.topic"])).length).toBe(3);
    // The default is all three keys; an unknown key matches nothing (Synapse ignores it).
    expect((await ok(alice, { search_term: "zebra", filter: { rooms: [roomId] } })).count).toBe(3);
    expect((await ok(alice, { search_term: "zebra", keys: ["content.other"], filter: { rooms: [roomId] } })).count).toBe(0);
  });

  it("returns the context around a result, as Complement's test does", async () => {
    const alice = await newUser("srch");
    const roomId = await createRoom(alice, { preset: "private_chat" });
    for (let i = 1; i <= 7; i++) await text(alice, roomId, `Message number ${i}`);
    const res = await ok(alice, {
      keys: ["content.body"],
      search_term: "Message 4",
      order_by: "recent",
      filter: { limit: 1, rooms: [roomId] },
      event_context: { before_limit: 2, after_limit: 2, include_profile: true },
    });
    expect(res.count).toBe(1);
    // A full page has a next_batch (Synapse), even when nothing follows.
    expect(res.next_batch).toBeDefined();
    const hit = res.results[0]!;
    expect(hit.result.content.body).toBe("Message number 4");
    expect(bodies(hit.context.events_before)).toEqual(["Message number 3", "Message number 2"]);
    expect(bodies(hit.context.events_after)).toEqual(["Message number 5", "Message number 6"]);
    expect(hit.context.start).toMatch(/^t-?\d+$/);
    expect(hit.context.end).toMatch(/^t-?\d+$/);
    expect(hit.context.profile_info).toEqual({ [alice.user_id]: { displayname: alice.user_id.slice(1).split(":")[0], avatar_url: null } });
    // Pagination with the context's tokens works like /context's.
    const more = await api("GET", `${r(roomId)}/messages?dir=b&limit=1&from=${hit.context.start}`, { token: alice.access_token });
    expect(bodies(more.body.chunk)).toEqual(["Message number 1"]);
    const next = await ok(alice, { keys: ["content.body"], search_term: "Message 4", order_by: "recent", filter: { limit: 1, rooms: [roomId] } }, res.next_batch);
    expect(next.results).toEqual([]);
    expect(next.next_batch).toBeUndefined();
  });

  it("back-paginates recent results with next_batch until an empty page without one", async () => {
    const alice = await newUser("srch");
    const roomId = await createRoom(alice, { preset: "private_chat" });
    const sent: string[] = [];
    for (let i = 0; i < 20; i++) sent.push(await text(alice, roomId, `Message number ${i}`));
    const query = { keys: ["content.body"], search_term: "Message", order_by: "recent", filter: { limit: 10, rooms: [roomId] } };
    const first = await ok(alice, query);
    expect(first.count).toBe(20);
    expect(ids(first.results)).toEqual(sent.slice(10).reverse());
    const second = await ok(alice, query, first.next_batch);
    expect(second.count).toBe(20);
    expect(ids(second.results)).toEqual(sent.slice(0, 10).reverse());
    const third = await ok(alice, query, second.next_batch);
    expect(third.results).toEqual([]);
    expect(third.count).toBe(20);
    expect(third.next_batch).toBeUndefined();
  });

  it("orders by rank (ties broken by recency) or by recency alone, and pages through rank too", async () => {
    const alice = await newUser("srch");
    const roomId = await createRoom(alice);
    const weak = await text(alice, roomId, "apple pie with cream and sugar and more words here");
    const strong = await text(alice, roomId, "apple apple apple");
    const tieOld = await text(alice, roomId, "apple tie");
    const tieNew = await text(alice, roomId, "apple tie");
    await text(alice, roomId, "no fruit at all");
    const q = { search_term: "apple", filter: { rooms: [roomId] } };

    const ranked = await ok(alice, { ...q, order_by: "rank" });
    expect(ids(ranked.results)[0]).toBe(strong);
    expect(ids(ranked.results).at(-1)).toBe(weak);
    // Equal ranks (identical bodies): the newer first.
    expect(ids(ranked.results).slice(1, 3)).toEqual([tieNew, tieOld]);
    const ranks = ranked.results.map((x) => x.rank);
    expect([...ranks].sort((a, b) => b - a)).toEqual(ranks);
    expect(ranks[1]).toBe(ranks[2]);
    // Rank is the default order.
    expect(ids((await ok(alice, q)).results)).toEqual(ids(ranked.results));

    const recent = await ok(alice, { ...q, order_by: "recent" });
    expect(ids(recent.results)).toEqual([tieNew, tieOld, strong, weak]);

    // Pages of one through the rank order give the same sequence, including across the tie.
    const paged = (await allPages(alice, { ...q, order_by: "rank", filter: { rooms: [roomId], limit: 1 } })).flat();
    expect(ids(paged)).toEqual(ids(ranked.results));
    // A token of one order is refused by the other.
    const token = (await ok(alice, { ...q, order_by: "rank", filter: { rooms: [roomId], limit: 1 } })).next_batch!;
    expect((await search(alice, { ...q, order_by: "recent" }, token)).body.errcode).toBe("M_INVALID_PARAM");
  });

  it("merges rooms and pages across them without losing or repeating results", async () => {
    const alice = await newUser("srch");
    const a = await createRoom(alice);
    const b = await createRoom(alice);
    const c = await createRoom(alice);
    const sent: { id: string; room: string }[] = [];
    for (let i = 0; i < 4; i++) {
      for (const room of [a, b, c]) sent.push({ id: await text(alice, room, `kiwi ${i} in ${room === a ? "a" : room === b ? "b" : "c"}`), room });
    }
    await text(alice, c, "not the fruit");
    for (const order of ["recent", "rank"]) {
      const all = await ok(alice, { search_term: "kiwi", order_by: order, filter: { limit: 100 } });
      expect(all.count).toBe(12);
      expect(new Set(ids(all.results))).toEqual(new Set(sent.map((s) => s.id)));
      const pages = await allPages(alice, { search_term: "kiwi", order_by: order, filter: { limit: 5 } });
      expect(pages.map((p) => p.length)).toEqual([5, 5, 2]);
      expect(ids(pages.flat())).toEqual(ids(all.results));
    }
    // recent: newest first across rooms (origin_server_ts desc; the room ID, then the room's order break ties).
    const recent = (await ok(alice, { search_term: "kiwi", order_by: "recent", filter: { limit: 100 } })).results;
    for (let i = 1; i < recent.length; i++) {
      const [p, q] = [recent[i - 1]!.result, recent[i]!.result];
      expect(p.origin_server_ts >= q.origin_server_ts).toBe(true);
      if (p.origin_server_ts === q.origin_server_ts) expect(p.room_id <= q.room_id).toBe(true);
    }
    // filter.rooms / not_rooms choose rooms.
    expect((await ok(alice, { search_term: "kiwi", filter: { rooms: [a] } })).count).toBe(4);
    expect((await ok(alice, { search_term: "kiwi", filter: { not_rooms: [a] } })).count).toBe(8);
    expect((await ok(alice, { search_term: "kiwi", filter: { rooms: [a], not_rooms: [a] } })).count).toBe(0);
  });

  it("applies the filter's senders, types and limit", async () => {
    const alice = await newUser("srch");
    const bob = await newUser("srch");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    const fromAlice = await text(alice, roomId, "mango from alice");
    const fromBob = await text(bob, roomId, "mango from bob");
    const q = (filter: Record<string, unknown>) => ok(alice, { search_term: "mango", order_by: "recent", filter: { rooms: [roomId], ...filter } });
    expect(ids((await q({ senders: [bob.user_id] })).results)).toEqual([fromBob]);
    expect(ids((await q({ not_senders: [bob.user_id] })).results)).toEqual([fromAlice]);
    expect(ids((await q({ types: ["m.room.topic"] })).results)).toEqual([]);
    expect(ids((await q({ not_types: ["m.room.message"] })).results)).toEqual([]);
    const limited = await q({ limit: 1 });
    expect(ids(limited.results)).toEqual([fromBob]);
    expect(limited.next_batch).toBeDefined();
    expect(ids((await q({ limit: 0 })).results)).toEqual([]);
  });

  it("groups by room and sender, with a next_batch per room group that stays in that room", async () => {
    const alice = await newUser("srch");
    const bob = await newUser("srch");
    const a = await createRoom(alice, { preset: "public_chat" });
    const b = await createRoom(alice);
    expect((await join(bob, a)).status).toBe(200);
    const a1 = await text(alice, a, "grape one");
    const a2 = await text(bob, a, "grape two");
    const b1 = await text(alice, b, "grape three");
    const res = await ok(alice, { search_term: "grape", order_by: "recent", groupings: { group_by: [{ key: "room_id" }, { key: "sender" }] }, filter: { limit: 2 } });
    expect(ids(res.results)).toEqual([b1, a2]);
    expect(res.groups!.room_id![a]!.results).toEqual([a2]);
    expect(res.groups!.room_id![b]!.results).toEqual([b1]);
    expect(res.groups!.sender![alice.user_id]!.results).toEqual([b1]);
    expect(res.groups!.sender![bob.user_id]!.results).toEqual([a2]);
    // Room a's group continues in room a only; the global next_batch continues everywhere.
    const inA = await ok(alice, { search_term: "grape", order_by: "recent", filter: { limit: 2 } }, res.groups!.room_id![a]!.next_batch);
    expect(ids(inA.results)).toEqual([a1]);
    const rest = await ok(alice, { search_term: "grape", order_by: "recent", filter: { limit: 2 } }, res.next_batch);
    expect(ids(rest.results)).toEqual([a1]);
    // rank groups carry an order (the rank of their best result).
    const ranked = await ok(alice, { search_term: "grape", groupings: { group_by: [{ key: "room_id" }] } });
    expect(typeof ranked.groups!.room_id![a]!.order).toBe("number");
  });

  it("include_state returns the current state of the rooms with results", async () => {
    const alice = await newUser("srch");
    const withHit = await createRoom(alice, { name: "Has a hit" });
    const without = await createRoom(alice);
    await text(alice, withHit, "papaya");
    await text(alice, without, "nothing here");
    const res = await ok(alice, { search_term: "papaya", include_state: true });
    expect(Object.keys(res.state!)).toEqual([withHit]);
    const types = res.state![withHit]!.map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(["m.room.create", "m.room.member", "m.room.name", "m.room.power_levels"]));
  });

  it("does not find redacted events, in either order", async () => {
    const alice = await newUser("srch");
    const roomId = await createRoom(alice);
    const gone = await text(alice, roomId, "lemon secret to be redacted");
    const kept = await text(alice, roomId, "lemon that stays");
    const red = await api("PUT", `${r(roomId)}/redact/${encodeURIComponent(gone)}/txn-${gone.slice(1, 8)}`, { token: alice.access_token, body: {} });
    expect(red.status).toBe(200);
    for (const order of ["rank", "recent"]) {
      const res = await ok(alice, { search_term: "lemon", order_by: order, filter: { rooms: [roomId] } });
      expect(ids(res.results)).toEqual([kept]);
      expect(res.count).toBe(1);
    }
    expect((await ok(alice, { search_term: "secret" })).count).toBe(0);
  });

  it("history visibility: late joiners of joined/invited rooms find nothing from before; shared rooms show history; only joined rooms are searched", async () => {
    const alice = await newUser("srch");
    const bob = await newUser("srch");
    const stranger = await newUser("srch");
    const roomWith = (visibility: string) =>
      createRoom(alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: visibility } }] });
    const joinedRoom = await roomWith("joined");
    const sharedRoom = await roomWith("shared");
    const invitedRoom = await roomWith("invited");
    const worldRoom = await roomWith("world_readable");
    for (const [room, name] of [[joinedRoom, "joined"], [sharedRoom, "shared"], [invitedRoom, "invited"], [worldRoom, "world"]] as const) {
      await text(alice, room, `cherry before in ${name}`);
    }
    // Bob is invited to the invited room before he joins: he may see from the invite on.
    expect((await membership(alice, invitedRoom, "invite", { user_id: bob.user_id })).status).toBe(200);
    await text(alice, invitedRoom, "cherry while invited");
    for (const room of [joinedRoom, sharedRoom, invitedRoom]) expect((await join(bob, room)).status).toBe(200);
    for (const [room, name] of [[joinedRoom, "joined"], [sharedRoom, "shared"], [invitedRoom, "invited"]] as const) {
      await text(alice, room, `cherry after in ${name}`);
    }
    const found = async (user: RegisteredUser) => bodies((await ok(user, { search_term: "cherry", order_by: "recent", filter: { limit: 100 } })).results.map((x) => x.result)).sort();
    expect(await found(bob)).toEqual(
      ["cherry after in invited", "cherry after in joined", "cherry after in shared", "cherry before in shared", "cherry while invited"].sort(),
    );
    // The count agrees with what Bob may see.
    expect((await ok(bob, { search_term: "cherry" })).count).toBe(5);
    // Alice, joined to all four from the start, finds all eight.
    expect((await found(alice)).length).toBe(8);
    // A world-readable room one is not in is not searched (Synapse searches joined rooms), nor are others.
    expect(await found(stranger)).toEqual([]);
    // After leaving, the room is not searched any more.
    expect((await membership(bob, sharedRoom, "leave")).status).toBe(200);
    expect((await found(bob)).filter((b) => b.includes("shared"))).toEqual([]);
  });

  it("searches the predecessors of an upgraded room named in filter.rooms", async () => {
    const alice = await newUser("srch");
    const oldRoom = await createRoom(alice);
    const before = await text(alice, oldRoom, "Message before upgrade");
    const up = await api("POST", `${r(oldRoom)}/upgrade`, { token: alice.access_token, body: { new_version: "10" } });
    expect(up.status).toBe(200);
    const newRoom = up.body.replacement_room as string;
    const after = await text(alice, newRoom, "Message after upgrade");
    const res = await ok(alice, { search_term: "upgrade", keys: ["content.body"], filter: { rooms: [newRoom] } });
    expect(new Set(ids(res.results))).toEqual(new Set([before, after]));
    expect(res.count).toBe(2);
  });

  it("indexes lazily, on the first search, the events a room stored before its index existed", async () => {
    const alice = await newUser("srch");
    const roomId = await createRoom(alice, { topic: "old topic banana" });
    const older = await text(alice, roomId, "banana from before the index");
    const redactedLater = await text(alice, roomId, "banana redacted later");
    // Make the room look like one stored before the feature: no index entries, every event in the backlog.
    await runInDurableObject(env.ROOMS.get(env.ROOMS.idFromName(roomId)), async (_o, state) => {
      const sql = state.storage.sql;
      sql.exec("DELETE FROM event_search");
      sql.exec("UPDATE search_backlog SET low = (SELECT MIN(stream_ordering) FROM events), high = (SELECT MAX(stream_ordering) FROM events) WHERE id = 1");
    });
    expect((await api("PUT", `${r(roomId)}/redact/${encodeURIComponent(redactedLater)}/txn-lazy`, { token: alice.access_token, body: {} })).status).toBe(200);
    const newer = await text(alice, roomId, "banana after");
    const res = await ok(alice, { search_term: "banana", order_by: "recent", filter: { rooms: [roomId] } });
    expect(ids(res.results)).toEqual([newer, older, expect.any(String)]);
    expect(res.results[2]!.result.type).toBe("m.room.topic");
    const backlog = await runInDurableObject(env.ROOMS.get(env.ROOMS.idFromName(roomId)), async (_o, state) =>
      state.storage.sql.exec("SELECT low, high FROM search_backlog").toArray(),
    );
    expect(backlog).toEqual([{ low: null, high: null }]);
    // A second search finds the same (nothing is indexed twice).
    expect(ids((await ok(alice, { search_term: "banana", order_by: "recent", filter: { rooms: [roomId] } })).results)).toEqual(ids(res.results));
  });

  it("refuses bad requests with Matrix errors", async () => {
    const alice = await newUser("srch");
    const bad = async (body: unknown, errcode: string, query = "") => {
      const res = await api("POST", `${V3}/search${query}`, { token: alice.access_token, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.errcode).toBe(errcode);
    };
    await bad({}, "M_BAD_JSON");
    await bad({ search_categories: {} }, "M_BAD_JSON");
    await bad({ search_categories: { room_events: {} } }, "M_BAD_JSON");
    await bad({ search_categories: { room_events: { search_term: 5 } } }, "M_BAD_JSON");
    await bad({ search_categories: { room_events: { search_term: "x", order_by: "oldest" } } }, "M_INVALID_PARAM");
    await bad({ search_categories: { room_events: { search_term: "x", keys: "content.body" } } }, "M_BAD_JSON");
    await bad({ search_categories: { room_events: { search_term: "x", groupings: { group_by: [{ key: "type" }] } } } }, "M_INVALID_PARAM");
    await bad({ search_categories: { room_events: { search_term: "x", filter: { limit: -1 } } } }, "M_BAD_JSON");
    await bad({ search_categories: { room_events: { search_term: "x", event_context: { before_limit: 1.5 } } } }, "M_BAD_JSON");
    await bad({ search_categories: { room_events: { search_term: "x", include_state: "yes" } } }, "M_BAD_JSON");
    for (const token of ["garbage!", "eyJ9", btoa(JSON.stringify({ o: "recent", k: [null, "x", "!r", 1] }))]) {
      await bad({ search_categories: { room_events: { search_term: "x", order_by: "recent" } } }, "M_INVALID_PARAM", `?next_batch=${encodeURIComponent(token)}`);
    }
    expect((await api("POST", `${V3}/search`, { body: { search_categories: { room_events: { search_term: "x" } } } })).status).toBe(401);
  });
});
