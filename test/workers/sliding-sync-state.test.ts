// Simplified sliding sync (MSC4186): `required_state` across the requests of one connection, as Synapse
// keeps it (synapse/handlers/sliding_sync/__init__.py): `$LAZY` members are sent once per connection
// (again only after their membership changed), and a state key removed from `required_state` and added
// back is not sent again unless it changed in between.
import { describe, expect, it } from "vitest";
import { api, type ApiResponse, type RegisteredUser } from "./helpers.js";
import { createRoom, join, newUser, putState, send } from "./room-helpers.js";

const SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = any;

async function ss(user: RegisteredUser, body: unknown, pos?: string): Promise<Body> {
  const res: ApiResponse = await api("POST", `${SS}${pos ? `?pos=${pos}` : ""}`, { token: user.access_token, body });
  if (res.status !== 200) throw new Error(`sliding sync failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** The (type|state_key) of a room's required_state in a response. */
const stateKeys = (body: Body, roomId: string): string[] => (body.rooms[roomId]?.required_state ?? []).map((e: Body) => `${e.type}|${e.state_key}`).sort();

const text = (body: string) => ({ msgtype: "m.text", body });

describe("sliding sync: $LAZY members per connection", () => {
  it("sends a sender's membership once, and again only after it changed", async () => {
    const alice = await newUser("lazya");
    const bob = await newUser("lazyb");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    await send(bob, roomId, text("one"));
    const req = (limit: number) => ({ lists: { all: { ranges: [[0, 9]], timeline_limit: limit, required_state: [["m.room.member", "$LAZY"]] } } });
    const bobMember = `m.room.member|${bob.user_id}`;

    const first = await ss(alice, req(1));
    expect(stateKeys(first, roomId)).toEqual([bobMember]);

    // Bob again: the connection already has his membership.
    await send(bob, roomId, text("two"));
    const second = await ss(alice, req(1), first.pos);
    expect(second.rooms[roomId].timeline.map((e: Body) => e.content.body)).toEqual(["two"]);
    expect(stateKeys(second, roomId)).toEqual([]);

    // A retry of the same position answers the same.
    const retry = await ss(alice, req(1), first.pos);
    expect(stateKeys(retry, roomId)).toEqual([]);

    // Bob's membership changes where the (limited) timeline does not show it; then he writes again: his
    // new membership is sent.
    expect((await putState(bob, roomId, "m.room.member", bob.user_id, { membership: "join", displayname: "Bobby" })).status).toBe(200);
    await send(alice, roomId, text("from alice"));
    const third = await ss(alice, req(1), second.pos);
    expect(third.rooms[roomId].limited).toBe(true);
    expect(stateKeys(third, roomId)).toEqual([`m.room.member|${alice.user_id}`]);
    await send(bob, roomId, text("three"));
    const fourth = await ss(alice, req(1), third.pos);
    expect(stateKeys(fourth, roomId)).toEqual([bobMember]);
    expect(fourth.rooms[roomId].required_state[0].content.displayname).toBe("Bobby");

    // Alice, sent in the third response, is not sent again either.
    await send(alice, roomId, text("alice again"));
    const fifth = await ss(alice, req(1), fourth.pos);
    expect(stateKeys(fifth, roomId)).toEqual([]);

    // A new connection starts over.
    const fresh = await ss(alice, req(1));
    expect(stateKeys(fresh, roomId)).toEqual([`m.room.member|${alice.user_id}`]);
  });
});

describe("sliding sync: required_state removed and added back", () => {
  it("does not send state again that the client still has, but sends it when it changed in between", async () => {
    const alice = await newUser("rsrm");
    const roomId = await createRoom(alice, { name: "the name", topic: "first topic" });
    const req = (state: string[][]) => ({ lists: { all: { ranges: [[0, 9]], timeline_limit: 1, required_state: state } } });
    const both = [["m.room.name", ""], ["m.room.topic", ""]];
    const nameOnly = [["m.room.name", ""]];

    const first = await ss(alice, req(both));
    expect(stateKeys(first, roomId)).toEqual(["m.room.name|", "m.room.topic|"]);

    // The topic leaves the request while the room is sent (a message), then comes back unchanged: the
    // client has it already.
    await send(alice, roomId, text("one"));
    const narrowed = await ss(alice, req(nameOnly), first.pos);
    expect(narrowed.rooms[roomId].timeline.map((e: Body) => e.content.body)).toEqual(["one"]);
    await send(alice, roomId, text("two"));
    const back = await ss(alice, req(both), narrowed.pos);
    expect(back.rooms[roomId].timeline.map((e: Body) => e.content.body)).toEqual(["two"]);
    expect(back.rooms[roomId].required_state).toBeUndefined();

    // Removed again; the topic changes meanwhile (not sent: not requested); added back: the new topic.
    const again = await ss(alice, req(nameOnly), back.pos);
    expect((await putState(alice, roomId, "m.room.topic", "", { topic: "second topic" })).status).toBe(200);
    await send(alice, roomId, text("three"));
    const changed = await ss(alice, req(nameOnly), again.pos);
    expect(changed.rooms[roomId].required_state).toBeUndefined();
    const restored = await ss(alice, req(both), changed.pos);
    expect(stateKeys(restored, roomId)).toEqual(["m.room.topic|"]);
    expect(restored.rooms[roomId].required_state[0].content.topic).toBe("second topic");
  });
});

describe("sliding sync: unread counts", () => {
  it("leave threaded notifications out of notification_count and give them per thread", async () => {
    const alice = await newUser("unra");
    const bob = await newUser("unrb");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    const root = await send(alice, roomId, text("root"));
    const inThread = { "m.relates_to": { rel_type: "m.thread", event_id: root.body.event_id } };
    await send(alice, roomId, { ...text("in thread"), ...inThread });
    await send(alice, roomId, { ...text("in thread 2"), ...inThread, "m.mentions": { user_ids: [bob.user_id] } });
    const body = await ss(bob, { lists: { all: { ranges: [[0, 9]], timeline_limit: 1, required_state: [] } } });
    const room = body.rooms[roomId];
    expect(room.notification_count).toBe(1);
    expect(room.highlight_count).toBe(0);
    expect(room.unread_thread_notifications).toEqual({ [root.body.event_id]: { notification_count: 2, highlight_count: 1 } });
  });
});
