// Partial-state rooms in sliding sync (MSC4186; user/sliding-sync.ts, protocol/sliding-sync.ts
// mustAwaitFullState): as Synapse (handlers/sliding_sync/room_lists.py, test_rooms_required_state_partial_state),
// a room joined with partial state is left out of every list and room subscription whose required_state
// needs other servers' members (`["*", "*"]`, a remote user's state key) until the resync completes, and
// shown at once where it does not (no state, lazy-loaded members, local users only). The completion wakes
// a waiting request, which then carries the room as new to the connection, with its whole required_state.
import { describe, expect, it } from "vitest";
import { runInDurableObject } from "cloudflare:test";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import { stateKey, type Pdu } from "../../protocol/pdu.js";
import { uniqueServer } from "./federation-helpers.js";
import { federationApi, remotePdu } from "./federation-room-helpers.js";
import { api, type RegisteredUser } from "./helpers.js";
import { completeResync, makePartial, rawRoom, remoteJoin, storeOutliers } from "./partial-state-helpers.js";
import { createRoom, join, newUser, putState, send } from "./room-helpers.js";

const SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = any;

async function ss(user: RegisteredUser, body: unknown, params: { pos?: string; timeout?: number } = {}): Promise<Body> {
  const q = new URLSearchParams();
  if (params.pos !== undefined) q.set("pos", params.pos);
  if (params.timeout !== undefined) q.set("timeout", String(params.timeout));
  const res = await api("POST", `${SS}?${q.toString()}`, { token: user.access_token, body });
  expect(res.status).toBe(200);
  return res.body;
}

const list = (required_state: string[][]) => ({ ranges: [[0, 9]], timeline_limit: 1, required_state });
const roomIds = (body: Body, key: string): string[] => body.lists[key].ops[0]?.room_ids ?? [];

/** Bob in a room of his own (complete) and in Alice's room, which then becomes partial for him. */
async function setUp(): Promise<{ alice: RegisteredUser; bob: RegisteredUser; full: string; partial: string }> {
  const alice = await newUser("alice");
  const bob = await newUser("bob");
  const full = await createRoom(bob, { name: "complete" });
  const partial = await createRoom(alice, { preset: "public_chat", name: "partial" });
  expect((await join(bob, partial)).status).toBe(200);
  await makePartial(partial);
  // Bob's profile change while partial: the room tells his User DO (as after a partial join).
  expect((await putState(bob, partial, "m.room.member", bob.user_id, { membership: "join", displayname: "Bob" })).status).toBe(200);
  return { alice, bob, full, partial };
}

describe("partial-state rooms in sliding sync", () => {
  it("are left out of lists and subscriptions that need other servers' members, and kept in the others", async () => {
    const { alice, bob, full, partial } = await setUp();
    const shown = {
      none: [],
      other: [["m.room.create", ""]],
      lazy: [["m.room.create", ""], ["m.room.member", "$LAZY"], ["m.room.member", alice.user_id]],
      me: [["m.room.member", "$ME"]],
      localWildcardType: [["*", bob.user_id], ["*", "foobarbaz"], ["*", "@foo"]],
      // Synapse's rule answers "no need to wait" for a wildcard member key.
      memberWildcard: [["m.room.member", "*"]],
    };
    const hidden = {
      all: [["*", "*"]],
      remoteWildcardType: [["*", "@someone:remote.test"], ["*", "foobarbaz"]],
      remoteMember: [["m.room.member", bob.user_id], ["m.room.member", "@someone:remote.test"]],
      lazyAndRemote: [["m.room.member", "$LAZY"], ["m.room.member", "@someone:remote.test"]],
    };
    const lists: Record<string, unknown> = {};
    for (const [key, rs] of Object.entries({ ...shown, ...hidden })) lists[key] = list(rs);
    const body = await ss(bob, { lists });
    for (const key of Object.keys(shown)) {
      expect(new Set(roomIds(body, key)), key).toEqual(new Set([full, partial]));
      expect(body.lists[key].count, key).toBe(2);
    }
    for (const key of Object.keys(hidden)) {
      expect(roomIds(body, key), key).toEqual([full]);
      expect(body.lists[key].count, key).toBe(1);
    }
    // The same rules for room subscriptions.
    for (const [key, rs] of Object.entries(shown)) {
      const sub = await ss(bob, { conn_id: `s-${key}`, room_subscriptions: { [full]: { timeline_limit: 0, required_state: rs }, [partial]: { timeline_limit: 0, required_state: rs } } });
      expect(new Set(Object.keys(sub.rooms)), key).toEqual(new Set([full, partial]));
    }
    for (const [key, rs] of Object.entries(hidden)) {
      const sub = await ss(bob, { conn_id: `h-${key}`, room_subscriptions: { [full]: { timeline_limit: 0, required_state: rs }, [partial]: { timeline_limit: 0, required_state: rs } } });
      expect(Object.keys(sub.rooms), key).toEqual([full]);
    }
    // Alice joined before the room became partial: it is whole for her.
    expect(roomIds(await ss(alice, { lists: { all: list([["*", "*"]]) } }), "all")).toEqual([partial]);
  });

  it("shows the room once the resync completes, waking a waiting request, as new to the connection", async () => {
    const { alice, bob, full, partial } = await setUp();
    const message = (await send(alice, partial, { msgtype: "m.text", body: "during the resync" })).body.event_id as string;
    const request = { conn_id: "main", lists: { all: list([["*", "*"]]) } };
    const first = await ss(bob, request);
    expect(roomIds(first, "all")).toEqual([full]);
    expect(first.rooms[partial]).toBeUndefined();

    // A long-poll on the connection; the resync's completion is the news that wakes it. (Presence of the
    // join may wake it first: then the next long-poll is the one.)
    let pos = first.pos as string;
    const polling = (async () => {
      for (let i = 0; i < 5; i++) {
        const body = await ss(bob, request, { pos, timeout: 60_000 });
        pos = body.pos;
        if (body.rooms?.[partial]) return body;
      }
      throw new Error("the room never came");
    })();
    await completeResync(partial);
    const woken = await polling;
    expect(woken.lists.all.count).toBe(2);
    expect(roomIds(woken, "all")).toEqual([partial, full]);
    const room = woken.rooms[partial];
    expect(room.initial).toBe(true);
    expect(room.timeline.map((e: Body) => e.event_id)).toEqual([message]);
    // Its whole required_state, members of both users included.
    const members = room.required_state.filter((e: Body) => e.type === "m.room.member").map((e: Body) => e.state_key);
    expect(new Set(members)).toEqual(new Set([alice.user_id, bob.user_id]));
    expect(room.required_state.some((e: Body) => e.type === "m.room.create")).toBe(true);
    // The room is an ordinary one from now on: nothing more to send.
    const after = await ss(bob, request, { pos: woken.pos });
    expect(after.rooms?.[partial]).toBeUndefined();
    expect(roomIds(after, "all")).toEqual([partial, full]);
  });

  it("with lazy-loaded members, a remote sender's membership comes from their event's auth events while the room is partial", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    const server = uniqueServer("resident");
    const carol = `@carol:${server}`;
    const carolJoin = await remoteJoin(roomId, carol, "Carol");
    await makePartial(roomId, [server]);
    expect((await putState(bob, roomId, "m.room.member", bob.user_id, { membership: "join", displayname: "Bob" })).status).toBe(200);
    // Carol's join reached us only as an auth event (an outlier): the partial state does not list her.
    await storeOutliers(roomId, [carolJoin.pdu]);
    const joinRules = await runInDurableObject(rawRoom(roomId), async (instance) => (instance as unknown as { engine: RoomEngine }).engine.currentState().get(stateKey("m.room.join_rules", "")));
    const message = await remotePdu(server, carolJoin.roomVersion, {
      room_id: roomId,
      type: "m.room.message",
      sender: carol,
      content: { msgtype: "m.text", body: "hello from the resident" },
      auth_events: [...(carolJoin.pdu.auth_events as string[]).filter((id) => id !== joinRules), carolJoin.eventId],
      prev_events: carolJoin.pdu.prev_events,
      depth: carolJoin.pdu.depth,
      origin_server_ts: Date.now(),
    } as Omit<Pdu, "hashes" | "signatures">);
    const sent = await federationApi(server, "PUT", `/_matrix/federation/v1/send/txn-${Date.now()}`, { origin: server, origin_server_ts: Date.now(), pdus: [message.pdu] });
    expect(sent.status).toBe(200);
    expect(sent.body.pdus[message.eventId]).toEqual({});

    const body = await ss(bob, { lists: { lazy: { ranges: [[0, 9]], timeline_limit: 1, required_state: [["m.room.member", "$LAZY"]] } } });
    expect(roomIds(body, "lazy")).toEqual([roomId]);
    const room = body.rooms[roomId];
    expect(room.timeline.map((e: Body) => e.event_id)).toEqual([message.eventId]);
    const members = room.required_state.filter((e: Body) => e.type === "m.room.member");
    expect(members.map((e: Body) => [e.state_key, e.event_id, e.content.displayname])).toEqual([[carol, carolJoin.eventId, "Carol"]]);
  });
});
