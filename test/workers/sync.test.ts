// GET /sync: initial and incremental sync, gap-free tokens, long-polling, limited timelines.
import { describe, expect, it } from "vitest";
import { api } from "./helpers.js";
import { createRoom, join, newUser, r, send } from "./room-helpers.js";
import { bodies, sync, syncRaw, timeline } from "./sync-helpers.js";

describe("/sync basics", () => {
  it("initial sync after createRoom shows the room with its state and timeline", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { name: "Sync room", topic: "t" });
    const body = await sync(alice);
    expect(body.next_batch).toMatch(/^s\d+/);
    const room = body.rooms.join[roomId];
    expect(room).toBeDefined();
    const all = [...room.state.events, ...room.timeline.events];
    const types = all.map((e: { type: string }) => e.type);
    expect(types).toContain("m.room.create");
    expect(types).toContain("m.room.power_levels");
    expect(all.find((e: { type: string }) => e.type === "m.room.name").content.name).toBe("Sync room");
    // Own membership present.
    expect(all.some((e: { type: string; state_key?: string }) => e.type === "m.room.member" && e.state_key === alice.user_id)).toBe(true);
    expect(room.timeline.events.length).toBeGreaterThan(0);
    expect(room.timeline.events.length).toBeLessThanOrEqual(10);
    expect(typeof room.timeline.prev_batch).toBe("string");
    expect(room.unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });
    expect(room.summary["m.joined_member_count"]).toBe(1);
    // Push rules come with the initial sync.
    expect(body.account_data.events.some((e: { type: string }) => e.type === "m.push_rules")).toBe(true);
  });

  it("incremental sync sees exactly the new events, none twice, none missing", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, {});
    let since = (await sync(alice)).next_batch as string;
    const seen: string[] = [];
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 4; i++) expect((await send(alice, roomId, { msgtype: "m.text", body: `m${round}-${i}` })).status).toBe(200);
      const body = await sync(alice, { since, filter: { room: { timeline: { limit: 50 } } } });
      seen.push(...bodies(body, roomId));
      expect(body.next_batch).not.toBe(since);
      since = body.next_batch;
    }
    const expected = Array.from({ length: 5 }, (_, r) => Array.from({ length: 4 }, (_, i) => `m${r}-${i}`)).flat();
    expect(seen).toEqual(expected);
    // Nothing new: empty, same or newer token.
    const empty = await sync(alice, { since });
    expect(empty.rooms.join?.[roomId]).toBeUndefined();
  });

  it("a long-poll started before a send returns with the event", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    const since = (await sync(bob)).next_batch as string;
    // 30 s timeout: if the send does not wake the poll, the test times out (vitest's 5 s).
    const poll = sync(bob, { since, timeout: 30_000 });
    const sent = await send(alice, roomId, { msgtype: "m.text", body: "wake up" });
    expect(sent.status).toBe(200);
    const body = await poll;
    expect(bodies(body, roomId)).toEqual(["wake up"]);
    expect(timeline(body, roomId)[0]!.event_id).toBe(sent.body.event_id);
  });

  it("a profile change is an ordinary timeline event, not a new join", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, {});
    const since = (await sync(alice)).next_batch as string;
    const res = await api("PUT", `/_matrix/client/v3/profile/${encodeURIComponent(alice.user_id)}/displayname`, { token: alice.access_token, body: { displayname: "Alice B" } });
    expect(res.status).toBe(200);
    const body = await sync(alice, { since });
    const room = body.rooms.join[roomId];
    expect(room.timeline.events.map((e: { type: string }) => e.type)).toEqual(["m.room.member"]);
    expect(room.timeline.events[0].content.displayname).toBe("Alice B");
    expect(room.timeline.limited).toBe(false);
    expect(room.state.events).toEqual([]);
  });

  it("times out with an empty response and a valid token", async () => {
    const alice = await newUser("alice");
    const first = await sync(alice);
    const body = await sync(alice, { since: first.next_batch, timeout: 50 });
    expect(body.next_batch).toMatch(/^s\d+/);
    expect(body.rooms.join).toBeUndefined();
  });

  it("limits the timeline and gives a prev_batch", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, {});
    const since = (await sync(alice)).next_batch as string;
    for (let i = 0; i < 8; i++) await send(alice, roomId, { msgtype: "m.text", body: `n${i}` });
    const body = await sync(alice, { since, filter: { room: { timeline: { limit: 3 } } } });
    const room = body.rooms.join[roomId];
    expect(room.timeline.limited).toBe(true);
    expect(bodies(body, roomId)).toEqual(["n5", "n6", "n7"]);
    expect(room.timeline.prev_batch).toMatch(/^t\d+$/);
    const unlimited = await sync(alice, { since: body.next_batch });
    expect(unlimited.rooms.join?.[roomId]).toBeUndefined();
  });

  it("a room joined since the token is limited, with the history the filter lets through (Complement TestSync)", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    for (let i = 0; i < 4; i++) await send(alice, roomId, { msgtype: "m.text", body: `1-${i}` });
    const filter = { room: { timeline: { limit: 10, types: ["m.room.message"] }, state: { types: [] } } };
    const since = (await sync(bob, { filter })).next_batch as string;
    for (let i = 0; i < 4; i++) await send(alice, roomId, { msgtype: "m.text", body: `2-${i}` });
    expect((await join(bob, roomId)).status).toBe(200);
    const body = await sync(bob, { since, filter });
    const t = body.rooms.join[roomId].timeline;
    expect(t.events.map((e: { content: { body: string } }) => e.content.body)).toEqual(["1-0", "1-1", "1-2", "1-3", "2-0", "2-1", "2-2", "2-3"]);
    expect(t.limited).toBe(true);
    // Later incremental syncs of the room are limited only when events were left out.
    await send(alice, roomId, { msgtype: "m.text", body: "3" });
    const next = await sync(bob, { since: body.next_batch, filter });
    expect(next.rooms.join[roomId].timeline.limited).toBe(false);
    // An initial sync is not limited when it holds everything the filter lets through.
    const alone = await newUser("carol");
    const own = await createRoom(alone, {});
    await send(alone, own, { msgtype: "m.text", body: "only" });
    expect((await sync(alone, { filter: { room: { timeline: { limit: 10, types: ["m.room.message"] } } } })).rooms.join[own].timeline.limited).toBe(false);
  });

  it("refuses bad parameters", async () => {
    const alice = await newUser("alice");
    expect((await syncRaw(alice, { since: "garbage" })).body.errcode).toBe("M_INVALID_PARAM");
    expect((await syncRaw(alice, { set_presence: "busy" })).status).toBe(400);
    expect((await syncRaw(alice, { filter: "{not json" })).status).toBe(400);
    expect((await syncRaw(alice, { filter: "12345" })).status).toBe(400);
    expect((await syncRaw(alice, { filter: { room: { timeline: { limit: "x" } } } })).body.errcode).toBe("M_BAD_JSON");
  });
});

describe("/sync with /messages and concurrent writers", () => {
  it("prev_batch of a limited timeline continues in /messages without gap or overlap", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, {});
    const since = (await sync(alice)).next_batch as string;
    for (let i = 0; i < 12; i++) await send(alice, roomId, { msgtype: "m.text", body: `p${i}` });
    const body = await sync(alice, { since, filter: { room: { timeline: { limit: 4 } } } });
    expect(bodies(body, roomId)).toEqual(["p8", "p9", "p10", "p11"]);
    const prev = body.rooms.join[roomId].timeline.prev_batch as string;
    const page = await api("GET", `${r(roomId)}/messages?dir=b&limit=5&from=${encodeURIComponent(prev)}`, { token: alice.access_token });
    expect(page.status).toBe(200);
    expect(page.body.chunk.map((e: { content: { body: string } }) => e.content.body)).toEqual(["p7", "p6", "p5", "p4", "p3"]);
    // The next_batch of /sync is a valid /messages token too: backwards from it is the latest event.
    const fromNext = await api("GET", `${r(roomId)}/messages?dir=b&limit=1&from=${encodeURIComponent(body.next_batch)}`, { token: alice.access_token });
    expect(fromNext.body.chunk.map((e: { content: { body: string } }) => e.content.body)).toEqual(["p11"]);
  });

  it("concurrent senders in several rooms: a long-polling reader sees every event exactly once", { timeout: 60_000 }, async () => {
    const reader = await newUser("reader");
    const senders = await Promise.all([newUser("s1"), newUser("s2"), newUser("s3")]);
    const rooms: string[] = [];
    for (const s of senders) {
      const roomId = await createRoom(s, { preset: "public_chat" });
      expect((await join(reader, roomId)).status).toBe(200);
      rooms.push(roomId);
    }
    // Also two senders share the first room.
    expect((await join(senders[1]!, rooms[0]!)).status).toBe(200);
    let since = (await sync(reader)).next_batch as string;
    const expected = new Set<string>();
    const seen: string[] = [];
    let sending = true;
    const reading = (async () => {
      while (sending || seen.length < expected.size) {
        const body = await sync(reader, { since, timeout: 2_000, filter: { room: { timeline: { limit: 100 } } } });
        for (const roomId of rooms) for (const e of timeline(body, roomId)) if (e.type === "m.room.message") seen.push(e.event_id);
        since = body.next_batch;
      }
    })();
    await Promise.all(
      senders.map(async (s, i) => {
        for (let n = 0; n < 15; n++) {
          const roomId = n % 3 === 0 && i === 1 ? rooms[0]! : rooms[i]!;
          const res = await send(s, roomId, { msgtype: "m.text", body: `${i}-${n}` });
          expect(res.status).toBe(200);
          expected.add(res.body.event_id);
        }
      }),
    );
    sending = false;
    await reading;
    expect(seen.length).toBe(expected.size);
    expect(new Set(seen)).toEqual(expected);
  });
});
