// History visibility on the read paths (durable-objects/room/history-visibility.ts; spec: "Room History
// Visibility"): joined, shared, invited and world_readable rooms, changes of the setting, the user's own
// membership events, users who left, and the same decision on /messages, /context, /event, /relations,
// /threads and /members?at=.
import { describe, expect, it } from "vitest";
import { api, type RegisteredUser } from "./helpers.js";
import { createRoom, join, membership, newUser, putState, r, send } from "./room-helpers.js";

type Ev = { event_id: string; type: string; sender: string; content: Record<string, unknown>; state_key?: string };

async function visibleIds(user: RegisteredUser, roomId: string): Promise<string[]> {
  const res = await api("GET", `${r(roomId)}/messages?dir=b&limit=200`, { token: user.access_token });
  expect(res.status).toBe(200);
  return res.body.chunk.map((e: Ev) => e.event_id);
}

async function text(user: RegisteredUser, roomId: string, body: string, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await send(user, roomId, { msgtype: "m.text", body, ...extra });
  expect(res.status).toBe(200);
  return res.body.event_id;
}

const eventStatus = async (user: RegisteredUser, roomId: string, id: string) =>
  (await api("GET", `${r(roomId)}/event/${encodeURIComponent(id)}`, { token: user.access_token })).status;

/** A public room with the given history visibility (set at creation). */
async function roomWith(owner: RegisteredUser, visibility: string): Promise<string> {
  return createRoom(owner, {
    preset: "public_chat",
    initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: visibility } }],
  });
}

describe("history visibility", () => {
  it("joined: a user who joins later sees nothing from before their join, and nothing after they leave", async () => {
    const alice = await newUser("hvj");
    const bob = await newUser("hvj");
    const roomId = await roomWith(alice, "joined");
    const before = await text(alice, roomId, "before bob");
    const bobJoin = (await join(bob, roomId)).status;
    expect(bobJoin).toBe(200);
    const during = await text(alice, roomId, "while bob is here");

    const seen = await visibleIds(bob, roomId);
    expect(seen).toContain(during);
    expect(seen).not.toContain(before);
    // Alice (joined from the start) sees both.
    expect(await visibleIds(alice, roomId)).toEqual(expect.arrayContaining([before, during]));

    expect(await eventStatus(bob, roomId, before)).toBe(404);
    expect(await eventStatus(bob, roomId, during)).toBe(200);
    expect((await api("GET", `${r(roomId)}/context/${encodeURIComponent(before)}`, { token: bob.access_token })).status).toBe(404);
    const ctx = await api("GET", `${r(roomId)}/context/${encodeURIComponent(during)}?limit=20`, { token: bob.access_token });
    expect(ctx.body.events_before.map((e: Ev) => e.event_id)).not.toContain(before);

    // After leaving: what was visible stays visible (including the leave itself), later events are not.
    expect((await membership(bob, roomId, "leave")).status).toBe(200);
    const after = await text(alice, roomId, "after bob left");
    const seenAfterLeaving = await visibleIds(bob, roomId);
    expect(seenAfterLeaving).toContain(during);
    expect(seenAfterLeaving).not.toContain(after);
    expect(seenAfterLeaving).not.toContain(before);
    const ownLeave = seenAfterLeaving[0];
    const leaveEvent = (await api("GET", `${r(roomId)}/event/${encodeURIComponent(ownLeave!)}`, { token: bob.access_token })).body;
    expect(leaveEvent).toMatchObject({ type: "m.room.member", state_key: bob.user_id, content: { membership: "leave" } });
    expect(await eventStatus(bob, roomId, after)).toBe(404);
    // Explicit forward pagination from the start does not leak the later event either.
    const forward = await api("GET", `${r(roomId)}/messages?dir=f&limit=200`, { token: bob.access_token });
    expect(forward.body.chunk.map((e: Ev) => e.event_id)).not.toContain(after);
  });

  it("joined: paginating back past the join in small pages ends, with only the visible events", async () => {
    const alice = await newUser("hvp");
    const bob = await newUser("hvp");
    const roomId = await roomWith(alice, "joined");
    for (let i = 0; i < 30; i++) await text(alice, roomId, `hidden ${i}`);
    expect((await join(bob, roomId)).status).toBe(200);
    const visible: string[] = [];
    for (let i = 0; i < 6; i++) visible.push(await text(alice, roomId, `visible ${i}`));
    const seen: Ev[] = [];
    let from: string | undefined;
    for (let page = 0; ; page++) {
      expect(page).toBeLessThan(50);
      const res = await api("GET", `${r(roomId)}/messages?dir=b&limit=4${from ? `&from=${from}` : ""}`, { token: bob.access_token });
      expect(res.status).toBe(200);
      seen.push(...res.body.chunk);
      if (res.body.end === undefined) break;
      from = res.body.end;
    }
    // The six messages and bob's join, nothing of the hidden stretch; and the room's first events, sent
    // before m.room.history_visibility existed, when the default `shared` applied (spec).
    expect(seen.filter((e) => e.type === "m.room.message").map((e) => e.event_id)).toEqual([...visible].reverse());
    expect(seen.some((e) => e.type === "m.room.member" && e.state_key === bob.user_id)).toBe(true);
    expect(seen.map((e) => e.type).slice(-2)).toEqual(["m.room.member", "m.room.create"]);
    expect(seen.map((e) => e.type)).toContain("m.room.history_visibility");
  });

  it("shared: a user sees history from before they joined, but not what was sent after they left", async () => {
    const alice = await newUser("hvs");
    const bob = await newUser("hvs");
    const roomId = await roomWith(alice, "shared");
    const before = await text(alice, roomId, "before bob");
    expect((await join(bob, roomId)).status).toBe(200);
    expect(await visibleIds(bob, roomId)).toContain(before);
    expect(await eventStatus(bob, roomId, before)).toBe(200);

    expect((await membership(bob, roomId, "leave")).status).toBe(200);
    const after = await text(alice, roomId, "after bob left");
    const seen = await visibleIds(bob, roomId);
    expect(seen).toContain(before);
    expect(seen).not.toContain(after);
    expect(await eventStatus(bob, roomId, after)).toBe(404);

    // A user who never joined sees nothing (and may not even read the room).
    const carol = await newUser("hvs");
    expect((await api("GET", `${r(roomId)}/messages?dir=b`, { token: carol.access_token })).status).toBe(403);
    expect(await eventStatus(carol, roomId, before)).toBe(404);
  });

  it("invited: events from the invite on are visible, earlier ones are not", async () => {
    const alice = await newUser("hvi");
    const bob = await newUser("hvi");
    const roomId = await createRoom(alice, {
      preset: "private_chat",
      initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "invited" } }],
    });
    const beforeInvite = await text(alice, roomId, "before the invite");
    expect((await membership(alice, roomId, "invite", { user_id: bob.user_id })).status).toBe(200);
    const whileInvited = await text(alice, roomId, "while bob is invited");
    expect((await join(bob, roomId)).status).toBe(200);
    const joined = await text(alice, roomId, "after bob joined");

    const seen = await visibleIds(bob, roomId);
    expect(seen).toContain(whileInvited);
    expect(seen).toContain(joined);
    expect(seen).not.toContain(beforeInvite);
    expect(await eventStatus(bob, roomId, beforeInvite)).toBe(404);
    expect(await eventStatus(bob, roomId, whileInvited)).toBe(200);
  });

  it("world_readable: non-members read the room, but not what was sent while it was restricted", async () => {
    const alice = await newUser("hvw");
    const carol = await newUser("hvw");
    const roomId = await roomWith(alice, "joined");
    const restricted = await text(alice, roomId, "members only");
    const change = (await putState(alice, roomId, "m.room.history_visibility", "", { history_visibility: "world_readable" })).body.event_id as string;
    const open = await text(alice, roomId, "for everyone");

    const seen = await visibleIds(carol, roomId);
    expect(seen).toContain(open);
    // The change itself is visible (the more permissive of before and after counts).
    expect(seen).toContain(change);
    expect(seen).not.toContain(restricted);
    expect(await eventStatus(carol, roomId, open)).toBe(200);
    expect(await eventStatus(carol, roomId, restricted)).toBe(404);
    // Non-members may read the member list of a world-readable room.
    const members = await api("GET", `${r(roomId)}/members`, { token: carol.access_token });
    expect(members.status).toBe(200);
    expect(members.body.chunk.map((e: Ev) => e.state_key)).toEqual([alice.user_id]);

    // Back to joined: the change is still visible to the peeker (before it was world_readable); later
    // messages are not.
    const close = (await putState(alice, roomId, "m.room.history_visibility", "", { history_visibility: "joined" })).body.event_id as string;
    const closed = await text(alice, roomId, "members only again");
    // The room is no longer world-readable: non-members are turned away entirely.
    expect((await api("GET", `${r(roomId)}/messages?dir=b`, { token: carol.access_token })).status).toBe(403);
    // A member who joins now still sees the world-readable stretch and the change back, but neither the
    // messages of the joined-only stretches before their join.
    expect((await join(carol, roomId)).status).toBe(200);
    const member = await visibleIds(carol, roomId);
    expect(member).toEqual(expect.arrayContaining([open, change, close]));
    expect(member).not.toContain(restricted);
    expect(member).not.toContain(closed);
  });

  it("applies to /relations, /threads and /members?at=", async () => {
    const alice = await newUser("hvr");
    const bob = await newUser("hvr");
    const roomId = await roomWith(alice, "joined");
    const root = await text(alice, roomId, "root before bob");
    const earlyReply = await text(alice, roomId, "early reply", { "m.relates_to": { rel_type: "m.thread", event_id: root } });
    const beforeJoin = (await api("GET", `${r(roomId)}/messages?dir=b&limit=1`, { token: alice.access_token })).body.start as string;
    expect((await join(bob, roomId)).status).toBe(200);
    const lateReply = await text(alice, roomId, "late reply", { "m.relates_to": { rel_type: "m.thread", event_id: root } });
    const visibleRoot = await text(alice, roomId, "root after bob");
    const visibleReply = await text(alice, roomId, "reply after bob", { "m.relates_to": { rel_type: "m.thread", event_id: visibleRoot } });

    const V1 = "/_matrix/client/v1";
    const rel = (id: string, user: RegisteredUser) => api("GET", `${V1}/rooms/${encodeURIComponent(roomId)}/relations/${encodeURIComponent(id)}`, { token: user.access_token });
    // The parent is invisible to bob: 404, although a child is visible.
    expect((await rel(root, bob)).status).toBe(404);
    expect((await rel(root, alice)).body.chunk.map((e: Ev) => e.event_id)).toEqual([lateReply, earlyReply]);
    expect((await rel(visibleRoot, bob)).body.chunk.map((e: Ev) => e.event_id)).toEqual([visibleReply]);

    const threads = (user: RegisteredUser) => api("GET", `${V1}/rooms/${encodeURIComponent(roomId)}/threads`, { token: user.access_token });
    expect((await threads(alice)).body.chunk.map((e: Ev) => e.event_id)).toEqual([visibleRoot, root]);
    expect((await threads(bob)).body.chunk.map((e: Ev) => e.event_id)).toEqual([visibleRoot]);

    // The member list at a point before bob joined is not bob's to see; alice may.
    const at = (user: RegisteredUser) => api("GET", `${r(roomId)}/members?at=${beforeJoin}`, { token: user.access_token });
    expect((await at(bob)).status).toBe(403);
    const aliceAt = await at(alice);
    expect(aliceAt.status).toBe(200);
    expect(aliceAt.body.chunk.map((e: Ev) => e.state_key)).toEqual([alice.user_id]);
    const now = await api("GET", `${r(roomId)}/members`, { token: bob.access_token });
    expect(now.body.chunk.map((e: Ev) => e.state_key).sort()).toEqual([alice.user_id, bob.user_id].sort());
  });
});
