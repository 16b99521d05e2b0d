// GET /members, /joined_members, /joined_rooms and profile propagation (worker/client/room-members.ts,
// durable-objects/room/members.ts, worker/client/profile.ts `onProfileChanged`).
import { describe, expect, it } from "vitest";
import { api, type RegisteredUser } from "./helpers.js";
import { V3, createRoom, join, membership, newUser, r } from "./room-helpers.js";

type Ev = { event_id: string; type: string; sender: string; content: Record<string, unknown>; state_key?: string };

const members = (user: RegisteredUser, roomId: string, query = "") =>
  api("GET", `${r(roomId)}/members${query ? `?${query}` : ""}`, { token: user.access_token });
const memberIds = (res: { body: { chunk: Ev[] } }) => res.body.chunk.map((e) => e.state_key).sort();

describe("GET /rooms/{roomId}/members", () => {
  it("filters by membership and not_membership (an 'or' together); a user who left sees the members when they left", async () => {
    const alice = await newUser("mem");
    const bob = await newUser("mem");
    const carol = await newUser("mem");
    const dave = await newUser("mem");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    expect((await membership(alice, roomId, "invite", { user_id: carol.user_id })).status).toBe(200);
    expect((await join(dave, roomId)).status).toBe(200);
    expect((await membership(alice, roomId, "ban", { user_id: dave.user_id })).status).toBe(200);

    const all = await members(alice, roomId);
    expect(all.status).toBe(200);
    expect(memberIds(all)).toEqual([alice, bob, carol, dave].map((u) => u.user_id).sort());
    expect(all.body.chunk.every((e: Ev) => e.type === "m.room.member")).toBe(true);
    expect(memberIds(await members(alice, roomId, "membership=join"))).toEqual([alice.user_id, bob.user_id].sort());
    expect(memberIds(await members(alice, roomId, "not_membership=join"))).toEqual([carol.user_id, dave.user_id].sort());
    // membership=invite OR membership != join: the invited and the banned.
    expect(memberIds(await members(alice, roomId, "membership=invite&not_membership=join"))).toEqual([carol.user_id, dave.user_id].sort());
    // membership=ban OR membership != invite: everyone but carol.
    expect(memberIds(await members(alice, roomId, "membership=ban&not_membership=invite"))).toEqual([alice.user_id, bob.user_id, dave.user_id].sort());

    // Bob leaves; erin joins after: bob's list is the one from when he left.
    expect((await membership(bob, roomId, "leave")).status).toBe(200);
    const erin = await newUser("mem");
    expect((await join(erin, roomId)).status).toBe(200);
    const bobs = await members(bob, roomId, "membership=join");
    expect(bobs.status).toBe(200);
    expect(memberIds(bobs)).toEqual([alice.user_id]);
    expect(memberIds(await members(bob, roomId))).not.toContain(erin.user_id);
    expect(memberIds(await members(alice, roomId, "membership=join"))).toEqual([alice.user_id, erin.user_id].sort());

    // `at`: the members at an earlier point (a token from /messages).
    const start = (await api("GET", `${r(roomId)}/messages?dir=b&limit=1`, { token: alice.access_token })).body.start;
    const frank = await newUser("mem");
    expect((await join(frank, roomId)).status).toBe(200);
    expect(memberIds(await members(alice, roomId, `membership=join&at=${start}`))).toEqual([alice.user_id, erin.user_id].sort());
    expect(memberIds(await members(alice, roomId, "membership=join"))).toEqual([alice.user_id, erin.user_id, frank.user_id].sort());
  });

  it("at=<prev_batch of an initial sync> gives the members at that sync (Complement TestGetRoomMembersAtPoint)", async () => {
    const alice = await newUser("memat");
    const bob = await newUser("memat");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await api("PUT", `${r(roomId)}/send/m.room.message/t1`, { token: alice.access_token, body: { msgtype: "m.text", body: "Hello world!" } });
    const synced = await api("GET", `${V3}/sync?timeout=0`, { token: alice.access_token });
    const room = synced.body.rooms.join[roomId];
    expect(room.timeline.limited).toBe(false);
    const at = room.timeline.prev_batch as string;
    expect((await join(bob, roomId)).status).toBe(200);
    await api("PUT", `${r(roomId)}/send/m.room.message/t2`, { token: bob.access_token, body: { msgtype: "m.text", body: "Hello back" } });
    const res = await members(alice, roomId, `at=${encodeURIComponent(at)}`);
    expect(res.status).toBe(200);
    expect(memberIds(res)).toEqual([alice.user_id]);
    expect(res.body.chunk.every((e: Ev & { room_id: string }) => e.room_id === roomId)).toBe(true);
    // A limited initial timeline's prev_batch is still the point before its first event.
    const limited = await api("GET", `${V3}/sync?timeout=0&filter=${encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 1 } } }))}`, { token: alice.access_token });
    const t = limited.body.rooms.join[roomId].timeline;
    expect(t.limited).toBe(true);
    const before = await api("GET", `${r(roomId)}/messages?dir=b&limit=1&from=${encodeURIComponent(t.prev_batch)}`, { token: alice.access_token });
    expect(before.body.chunk[0].event_id).not.toBe(t.events[0].event_id);
  });

  it("403 for non-members, 400 for bad parameters", async () => {
    const alice = await newUser("mem");
    const mallory = await newUser("mem");
    const roomId = await createRoom(alice);
    expect((await members(mallory, roomId)).status).toBe(403);
    expect((await members(alice, roomId, "membership=member")).body.errcode).toBe("M_INVALID_PARAM");
    expect((await members(alice, roomId, "not_membership=x")).body.errcode).toBe("M_INVALID_PARAM");
    expect((await members(alice, roomId, "at=garbage")).body.errcode).toBe("M_INVALID_PARAM");
    expect((await members(alice, "!nope:test.local")).status).toBe(403);
  });
});

describe("GET /rooms/{roomId}/joined_members and /joined_rooms", () => {
  it("lists joined members with profiles, and the user's joined rooms", async () => {
    const alice = await newUser("jm");
    const bob = await newUser("jm");
    const mallory = await newUser("jm");
    expect((await api("PUT", `${V3}/profile/${encodeURIComponent(alice.user_id)}/displayname`, { token: alice.access_token, body: { displayname: "Alice" } })).status).toBe(200);
    expect((await api("PUT", `${V3}/profile/${encodeURIComponent(alice.user_id)}/avatar_url`, { token: alice.access_token, body: { avatar_url: "mxc://test.local/alice" } })).status).toBe(200);
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const other = await createRoom(alice);
    expect((await join(bob, roomId)).status).toBe(200);
    expect((await membership(alice, roomId, "invite", { user_id: mallory.user_id })).status).toBe(200);

    const res = await api("GET", `${r(roomId)}/joined_members`, { token: bob.access_token });
    expect(res.status).toBe(200);
    // Registration gives bob his localpart as display name; he has no avatar: null, as Synapse answers.
    const bobLocalpart = bob.user_id.slice(1, bob.user_id.indexOf(":"));
    expect(res.body.joined).toEqual({
      [alice.user_id]: { display_name: "Alice", avatar_url: "mxc://test.local/alice" },
      [bob.user_id]: { display_name: bobLocalpart, avatar_url: null },
    });
    // Invited is not joined.
    expect((await api("GET", `${r(roomId)}/joined_members`, { token: mallory.access_token })).status).toBe(403);

    const rooms = async (user: RegisteredUser) => {
      const out = await api("GET", `${V3}/joined_rooms`, { token: user.access_token });
      expect(out.status).toBe(200);
      return (out.body.joined_rooms as string[]).sort();
    };
    expect(await rooms(alice)).toEqual([roomId, other].sort());
    expect(await rooms(bob)).toEqual([roomId]);
    expect(await rooms(mallory)).toEqual([]);
    expect((await membership(bob, roomId, "leave")).status).toBe(200);
    expect(await rooms(bob)).toEqual([]);
    expect((await api("GET", `${V3}/joined_rooms`)).status).toBe(401);
  });
});

describe("profile changes", () => {
  it("send a new member event with the new profile into every joined room, and none elsewhere", async () => {
    const alice = await newUser("prof");
    const bob = await newUser("prof");
    const room1 = await createRoom(alice, { preset: "public_chat" });
    const room2 = await createRoom(bob, { preset: "public_chat" });
    const left = await createRoom(bob, { preset: "public_chat" });
    expect((await join(alice, room2)).status).toBe(200);
    expect((await join(alice, left)).status).toBe(200);
    expect((await membership(alice, left, "leave")).status).toBe(200);

    const put = await api("PUT", `${V3}/profile/${encodeURIComponent(alice.user_id)}/displayname`, { token: alice.access_token, body: { displayname: "Alice the Great" } });
    expect(put.status).toBe(200);

    for (const roomId of [room1, room2]) {
      const latest = await api("GET", `${r(roomId)}/messages?dir=b&limit=1`, { token: alice.access_token });
      const event: Ev = latest.body.chunk[0];
      expect(event).toMatchObject({ type: "m.room.member", state_key: alice.user_id, sender: alice.user_id, content: { membership: "join", displayname: "Alice the Great" } });
      const joined = await api("GET", `${r(roomId)}/joined_members`, { token: alice.access_token });
      expect(joined.body.joined[alice.user_id].display_name).toBe("Alice the Great");
    }
    // The room alice left got no new event.
    const leftLatest = await api("GET", `${r(left)}/messages?dir=b&limit=1`, { token: bob.access_token });
    expect(leftLatest.body.chunk[0]).toMatchObject({ type: "m.room.member", state_key: alice.user_id, content: { membership: "leave" } });

    // Clearing the avatar and the name removes them from the member event.
    await api("PUT", `${V3}/profile/${encodeURIComponent(alice.user_id)}/avatar_url`, { token: alice.access_token, body: { avatar_url: "mxc://test.local/a" } });
    await api("PUT", `${V3}/profile/${encodeURIComponent(alice.user_id)}/displayname`, { token: alice.access_token, body: { displayname: "" } });
    const state = await api("GET", `${r(room1)}/state/m.room.member/${encodeURIComponent(alice.user_id)}`, { token: alice.access_token });
    expect(state.body).toEqual({ membership: "join", avatar_url: "mxc://test.local/a" });
  });
});
