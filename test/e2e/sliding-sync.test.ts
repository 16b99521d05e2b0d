// End-to-end: a client that speaks only simplified sliding sync (MSC4186) against the real server, driving
// the endpoint the way matrix-rust-sdk's RoomListService does (Element X): one list `all_rooms` whose range
// grows until it covers `count`, a subscription for the room the user opens, the extensions on (to-device,
// e2ee, account data, receipts, typing), and long-polls that the other user's actions wake.
import * as sdk from "matrix-js-sdk";
import { describe, expect, inject, it } from "vitest";
import { newClient } from "./register.js";
import { ROOM_LIST_STATE } from "../fixtures/room-list-state.js";

const baseUrl = inject("baseUrl");
const SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = any;

const newUser = (prefix: string): Promise<sdk.MatrixClient> => newClient(baseUrl, prefix);

/** One sliding sync connection: remembers `pos`, merges what the responses say about rooms. */
class Connection {
  pos: string | undefined;
  toDeviceSince: string | undefined;
  rooms = new Map<string, Body>();
  timelines = new Map<string, Body[]>();
  toDevice: Body[] = [];
  typing = new Map<string, string[]>();
  receipts = new Map<string, Body>();
  count = 0;
  roomIds: string[] = [];

  constructor(
    private readonly client: sdk.MatrixClient,
    private readonly connId: string,
  ) {}

  request(range: [number, number], subscriptions: Record<string, Body> = {}): Body {
    return {
      conn_id: this.connId,
      lists: { all_rooms: { ranges: [range], timeline_limit: 1, required_state: ROOM_LIST_STATE, filters: { not_room_types: ["m.space"] } } },
      room_subscriptions: subscriptions,
      extensions: {
        to_device: { enabled: true, ...(this.toDeviceSince ? { since: this.toDeviceSince } : {}) },
        e2ee: { enabled: true },
        account_data: { enabled: true },
        receipts: { enabled: true, rooms: ["*"], lists: ["all_rooms"] },
        typing: { enabled: true, rooms: ["*"], lists: ["all_rooms"] },
      },
    };
  }

  async sync(body: Body, timeout = 0): Promise<Body> {
    const q = new URLSearchParams();
    if (this.pos) q.set("pos", this.pos);
    q.set("timeout", String(timeout));
    const res = await fetch(`${baseUrl}${SS}?${q}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${this.client.getAccessToken()}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const json = (await res.json()) as Body;
    if (res.status !== 200) throw new Error(`sliding sync: ${res.status} ${JSON.stringify(json)}`);
    this.pos = json.pos;
    if (json.lists?.all_rooms) {
      this.count = json.lists.all_rooms.count;
      this.roomIds = json.lists.all_rooms.ops[0].room_ids;
    }
    for (const [roomId, room] of Object.entries(json.rooms as Record<string, Body>)) {
      this.rooms.set(roomId, room.initial ? room : { ...this.rooms.get(roomId), ...room });
      const events = room.timeline ?? [];
      this.timelines.set(roomId, room.initial ? events : [...(this.timelines.get(roomId) ?? []), ...events]);
    }
    const ext = json.extensions;
    this.toDeviceSince = ext.to_device.next_batch;
    this.toDevice.push(...ext.to_device.events);
    for (const [roomId, t] of Object.entries(ext.typing.rooms as Record<string, Body>)) this.typing.set(roomId, t.content.user_ids);
    for (const [roomId, r] of Object.entries(ext.receipts.rooms as Record<string, Body>)) this.receipts.set(roomId, { ...this.receipts.get(roomId), ...r.content });
    return json;
  }

  /** Long-polls (as the SDK's sync loop does) until `done()` holds; at most `rounds` responses. */
  async until(body: () => Body, done: () => boolean, rounds = 10): Promise<void> {
    for (let i = 0; i < rounds && !done(); i++) await this.sync(body(), 10_000);
    expect(done()).toBe(true);
  }
}

describe("simplified sliding sync as matrix-rust-sdk's room list drives it", () => {
  it("lists rooms by growing the range, opens one, reads and sends, sees typing, receipts and to-device messages", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const rooms: string[] = [];
    for (let i = 0; i < 7; i++) {
      const { room_id } = await alice.createRoom({ name: `room ${i}` });
      await alice.sendTextMessage(room_id, `hello ${i}`);
      rooms.push(room_id);
    }
    const { room_id: space } = await alice.createRoom({ name: "a space", creation_content: { type: "m.space" } });
    const { room_id: shared } = await alice.createRoom({
      preset: sdk.Preset.PublicChat,
      initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    await bob.joinRoom(shared);
    await bob.sendTextMessage(shared, "hi alice");

    const conn = new Connection(alice, "room-list");
    // The first request: a small window, no timeout.
    let range: [number, number] = [0, 3];
    const first = await conn.sync(conn.request(range));
    expect(conn.count).toBe(8); // the space is filtered out
    expect(conn.roomIds.length).toBe(4);
    expect(conn.roomIds[0]).toBe(shared); // most recent activity first
    expect(conn.roomIds).not.toContain(space);
    const sharedRoom = first.rooms[shared];
    expect(sharedRoom.initial).toBe(true);
    expect(sharedRoom.heroes.map((h: Body) => h.user_id)).toEqual([bob.getUserId()]);
    expect(sharedRoom.joined_count).toBe(2);
    const state = sharedRoom.required_state.map((e: Body) => `${e.type}|${e.state_key}`);
    expect(state).toContain("m.room.encryption|");
    expect(state).toContain(`m.room.member|${alice.getUserId()}`);
    expect(state).toContain(`m.room.member|${bob.getUserId()}`); // $LAZY: the sender of the timeline's event
    expect(first.extensions.e2ee.device_one_time_keys_count).toBeDefined();
    expect(first.extensions.account_data.global.some((e: Body) => e.type === "m.push_rules")).toBe(true);

    // Grow the range until it covers the whole list (RoomListService's growing sync mode).
    while (range[1] < conn.count - 1) {
      range = [0, Math.min(range[1] + 4, conn.count - 1)];
      const grown = await conn.sync(conn.request(range));
      for (const roomId of Object.keys(grown.rooms)) expect(grown.rooms[roomId].initial).toBe(true);
    }
    expect(new Set(conn.rooms.keys())).toEqual(new Set([...rooms, shared]));
    expect(conn.rooms.get(rooms[0]!).name).toBe("room 0");

    // Open the shared room: a subscription with more history and all its state.
    const open = { [shared]: { timeline_limit: 20, required_state: [["*", "*"]] } };
    const opened = await conn.sync(conn.request(range, open));
    expect(opened.rooms[shared].unstable_expanded_timeline).toBe(true);
    expect(conn.timelines.get(shared)!.map((e: Body) => e.type)).toContain("m.room.create");
    // The widened required_state sends what the list's did not cover (all members), not what it did.
    const openedState = opened.rooms[shared].required_state.map((e: Body) => `${e.type}|${e.state_key}`);
    expect(openedState).toContain(`m.room.member|${bob.getUserId()}`);
    expect(openedState).not.toContain("m.room.join_rules|");

    // Bob writes while alice long-polls: the message wakes her request.
    const sent = bob.sendTextMessage(shared, "are you there?");
    await conn.until(() => conn.request(range, open), () => conn.timelines.get(shared)!.some((e: Body) => e.content?.body === "are you there?"));
    const { event_id: bobEvent } = await sent;
    expect(conn.roomIds[0]).toBe(shared);

    // Bob types, then reads alice's answer.
    await bob.sendTyping(shared, true, 20_000);
    await conn.until(() => conn.request(range, open), () => (conn.typing.get(shared) ?? []).includes(bob.getUserId()!));
    const { event_id: answer } = await alice.sendTextMessage(shared, "yes!");
    await conn.until(() => conn.request(range, open), () => conn.timelines.get(shared)!.some((e: Body) => e.event_id === answer));
    await bob.sendReadReceipt(new sdk.MatrixEvent({ event_id: answer, room_id: shared, type: "m.room.message", sender: alice.getUserId()!, content: {} }));
    await conn.until(() => conn.request(range, open), () => conn.receipts.get(shared)?.[answer]?.["m.read"]?.[bob.getUserId()!] !== undefined);
    expect(bobEvent).toBeDefined();

    // End-to-end encryption plumbing: a to-device message from bob, delivered once.
    await bob.sendToDevice("m.room_key_request", new Map([[alice.getUserId()!, new Map([[alice.getDeviceId()!, { action: "request_cancellation", request_id: "r1", requesting_device_id: bob.getDeviceId() }]])]]));
    await conn.until(() => conn.request(range, open), () => conn.toDevice.some((e: Body) => e.type === "m.room_key_request"));
    const idle = await conn.sync(conn.request(range, open));
    expect(idle.extensions.to_device.events).toEqual([]);
    expect(conn.toDevice.filter((e: Body) => e.type === "m.room_key_request").length).toBe(1);

    // A room alice leaves drops out of the list after the response that tells her.
    await alice.leave(rooms[0]!);
    await conn.until(() => conn.request(range, open), () => conn.rooms.get(rooms[0]!)?.membership === "leave");
    await conn.sync(conn.request(range, open));
    expect(conn.count).toBe(7);
    expect(conn.roomIds).not.toContain(rooms[0]);

    // A position the server does not know: M_UNKNOWN_POS, and the client starts over.
    const stale = await fetch(`${baseUrl}${SS}?pos=999999999`, {
      method: "POST",
      headers: { Authorization: `Bearer ${alice.getAccessToken()}`, "Content-Type": "application/json" },
      body: JSON.stringify(conn.request(range)),
    });
    expect(stale.status).toBe(400);
    expect(((await stale.json()) as Body).errcode).toBe("M_UNKNOWN_POS");
  });
});
