// Simplified sliding sync (MSC4186): room subscriptions, list filters, and the extensions (to-device,
// e2ee, account data, receipts, typing), with the state of a connection across requests.
import { describe, expect, it } from "vitest";
import { generateSigningKey, signJson } from "../../protocol/signing.js";
import { api, type ApiResponse, type RegisteredUser } from "./helpers.js";
import { V3, createRoom, join, membership, newUser, putState, r, send } from "./room-helpers.js";

const SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = any;

async function ss(user: RegisteredUser, body: unknown, params: { pos?: string; timeout?: number } = {}): Promise<Body> {
  const q = new URLSearchParams();
  if (params.pos !== undefined) q.set("pos", params.pos);
  if (params.timeout !== undefined) q.set("timeout", String(params.timeout));
  const qs = q.toString();
  const res: ApiResponse = await api("POST", `${SS}${qs ? `?${qs}` : ""}`, { token: user.access_token, body });
  if (res.status !== 200) throw new Error(`sliding sync failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

const list = (extra: Record<string, unknown> = {}) => ({ ranges: [[0, 19]], timeline_limit: 1, required_state: [], ...extra });
const ids = (body: Body, key: string): string[] => body.lists[key].ops[0].room_ids;
const messages = (room: Body): string[] => (room?.timeline ?? []).filter((e: Body) => e.type === "m.room.message").map((e: Body) => e.content.body);

function putAccountData(user: RegisteredUser, type: string, content: unknown, roomId?: string): Promise<ApiResponse> {
  const base = `${V3}/user/${encodeURIComponent(user.user_id)}`;
  const path = roomId ? `${base}/rooms/${encodeURIComponent(roomId)}/account_data/${type}` : `${base}/account_data/${type}`;
  return api("PUT", path, { token: user.access_token, body: content });
}

describe("sliding sync: room subscriptions", () => {
  it("a subscribed room outside the range comes with its own config, and then with its news", async () => {
    const alice = await newUser("alice");
    const old = await createRoom(alice, { name: "old" });
    for (let i = 0; i < 3; i++) await send(alice, old, { msgtype: "m.text", body: `old ${i}` });
    const recent = await createRoom(alice, { name: "recent" });
    await send(alice, recent, { msgtype: "m.text", body: "recent" });
    const req = {
      lists: { l: { ranges: [[0, 0]], timeline_limit: 1, required_state: [] } },
      room_subscriptions: { [old]: { timeline_limit: 3, required_state: [["m.room.name", ""]] } },
    };
    const first = await ss(alice, req);
    expect(ids(first, "l")).toEqual([recent]);
    expect(Object.keys(first.rooms).sort()).toEqual([old, recent].sort());
    expect(messages(first.rooms[old])).toEqual(["old 0", "old 1", "old 2"]);
    expect(first.rooms[old].required_state.map((e: Body) => e.type)).toEqual(["m.room.name"]);
    expect(first.rooms[recent].required_state).toBeUndefined();

    await send(alice, old, { msgtype: "m.text", body: "old news" });
    // The message moved `old` to the top of the list; drop the list to see the subscription alone.
    const second = await ss(alice, { room_subscriptions: req.room_subscriptions }, { pos: first.pos });
    expect(Object.keys(second.rooms)).toEqual([old]);
    expect(messages(second.rooms[old])).toEqual(["old news"]);
  });

  it("a room in a list and a subscription gets the larger timeline and both required_states", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { name: "both", topic: "t" });
    for (let i = 0; i < 4; i++) await send(alice, roomId, { msgtype: "m.text", body: `m${i}` });
    const body = await ss(alice, {
      lists: { l: { ranges: [[0, 0]], timeline_limit: 1, required_state: [["m.room.name", ""]] } },
      room_subscriptions: { [roomId]: { timeline_limit: 3, required_state: [["m.room.topic", ""]] } },
    });
    const room = body.rooms[roomId];
    expect(messages(room)).toEqual(["m1", "m2", "m3"]);
    expect(room.required_state.map((e: Body) => e.type).sort()).toEqual(["m.room.name", "m.room.topic"]);
  });

  it("subscriptions to rooms the user is not in are ignored", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const secret = await createRoom(bob, { name: "secret" });
    await send(bob, secret, { msgtype: "m.text", body: "hidden" });
    const body = await ss(alice, { room_subscriptions: { [secret]: { timeline_limit: 5, required_state: [["*", "*"]] }, "!nowhere:test.local": { timeline_limit: 1 } } });
    expect(body.rooms).toEqual({});
  });
});

describe("sliding sync: list filters", () => {
  it("is_dm, is_encrypted, is_invite, room types, spaces and tags", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const dm = await createRoom(alice, { is_direct: true });
    const encrypted = await createRoom(alice, { initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }] });
    const space = await createRoom(alice, { creation_content: { type: "m.space" } });
    const child = await createRoom(alice, { name: "child" });
    expect((await putState(alice, space, "m.space.child", child, { via: ["test.local"] })).status).toBe(200);
    const invitedTo = await createRoom(bob, {});
    expect((await membership(bob, invitedTo, "invite", { user_id: alice.user_id })).status).toBe(200);
    expect((await putAccountData(alice, "m.direct", { [bob.user_id]: [dm] })).status).toBe(200);
    expect((await putAccountData(alice, "m.tag", { tags: { "m.favourite": {} } }, child)).status).toBe(200);

    const body = await ss(alice, {
      lists: {
        dms: list({ filters: { is_dm: true } }),
        notDms: list({ filters: { is_dm: false } }),
        encrypted: list({ filters: { is_encrypted: true } }),
        invites: list({ filters: { is_invite: true } }),
        noInvites: list({ filters: { is_invite: false } }),
        spaces: list({ filters: { room_types: ["m.space"] } }),
        notSpaces: list({ filters: { not_room_types: ["m.space"] } }),
        inSpace: list({ filters: { spaces: [space] } }),
        favourites: list({ filters: { tags: ["m.favourite"] } }),
        notFavourites: list({ filters: { not_tags: ["m.favourite"] } }),
      },
    });
    const set = (key: string) => new Set(ids(body, key));
    expect(set("dms")).toEqual(new Set([dm]));
    expect(set("notDms")).toEqual(new Set([encrypted, space, child, invitedTo]));
    expect(set("encrypted")).toEqual(new Set([encrypted]));
    expect(set("invites")).toEqual(new Set([invitedTo]));
    expect(set("noInvites")).toEqual(new Set([dm, encrypted, space, child]));
    expect(set("spaces")).toEqual(new Set([space]));
    expect(set("notSpaces")).toEqual(new Set([dm, encrypted, child, invitedTo]));
    expect(set("inSpace")).toEqual(new Set([child]));
    expect(set("favourites")).toEqual(new Set([child]));
    expect(body.lists.notFavourites.count).toBe(4);
    expect(body.rooms[dm].is_dm).toBe(true);
    expect(body.rooms[child].is_dm).toBeUndefined();
  });
});

describe("sliding sync: extensions", () => {
  it("to_device: delivered with next_batch, and not again once the client sends it back as since", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const send1 = await api("PUT", `${V3}/sendToDevice/m.test/t1`, { token: alice.access_token, body: { messages: { [bob.user_id]: { [bob.device_id]: { n: 1 } } } } });
    expect(send1.status).toBe(200);
    const ext = (since?: string) => ({ extensions: { to_device: { enabled: true, ...(since ? { since } : {}) } } });
    const first = await ss(bob, ext());
    expect(first.extensions.to_device.events).toEqual([{ sender: alice.user_id, type: "m.test", content: { n: 1 } }]);
    const since = first.extensions.to_device.next_batch;
    expect(typeof since).toBe("string");
    // A retry without since gets it again (not acknowledged yet); with since it is gone.
    expect((await ss(bob, ext(), { pos: first.pos })).extensions.to_device.events.length).toBe(1);
    const second = await ss(bob, ext(since), { pos: first.pos });
    expect(second.extensions.to_device.events).toEqual([]);
    // A new message wakes a waiting request.
    const poll = ss(bob, ext(second.extensions.to_device.next_batch), { pos: second.pos, timeout: 30_000 });
    await api("PUT", `${V3}/sendToDevice/m.test/t2`, { token: alice.access_token, body: { messages: { [bob.user_id]: { "*": { n: 2 } } } } });
    const woken = await poll;
    expect(woken.extensions.to_device.events.map((e: Body) => e.content.n)).toEqual([2]);
  });

  it("e2ee: one-time key counts, fallback key types, and device list changes of room-mates", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    const req = { extensions: { e2ee: { enabled: true } } };
    const first = await ss(alice, req);
    expect(first.extensions.e2ee.device_one_time_keys_count).toEqual({ signed_curve25519: 0 });
    expect(first.extensions.e2ee.device_unused_fallback_key_types).toEqual([]);
    expect(first.extensions.e2ee.device_lists).toBeUndefined();

    const key = await generateSigningKey(bob.device_id);
    const deviceKeys = await signJson(
      { user_id: bob.user_id, device_id: bob.device_id, algorithms: ["m.olm.v1.curve25519-aes-sha2"], keys: { [`curve25519:${bob.device_id}`]: "curve", [`ed25519:${bob.device_id}`]: key.publicKey } },
      bob.user_id,
      key,
    );
    expect((await api("POST", `${V3}/keys/upload`, { token: bob.access_token, body: { device_keys: deviceKeys } })).status).toBe(200);
    // bob's keys are news to alice (waiting: device list bookkeeping of the join may still be running).
    let changed: string[] = [];
    let pos = first.pos;
    for (let i = 0; i < 5 && !changed.includes(bob.user_id); i++) {
      const body = await ss(alice, req, { pos, timeout: 10_000 });
      changed = [...changed, ...body.extensions.e2ee.device_lists.changed];
      pos = body.pos;
    }
    expect(changed).toContain(bob.user_id);

    const otk = await signJson({ key: "otk" }, bob.user_id, key);
    const fallback = await signJson({ key: "fb", fallback: true }, bob.user_id, key);
    await api("POST", `${V3}/keys/upload`, { token: bob.access_token, body: { one_time_keys: { "signed_curve25519:AAAA": otk }, fallback_keys: { "signed_curve25519:BBBB": fallback } } });
    const mine = await ss(bob, req);
    expect(mine.extensions.e2ee.device_one_time_keys_count.signed_curve25519).toBe(1);
    expect(mine.extensions.e2ee.device_unused_fallback_key_types).toEqual(["signed_curve25519"]);
  });

  it("account_data: global and per room, all at first, then only changes, and only for the rooms covered", async () => {
    const alice = await newUser("alice");
    const inList = await createRoom(alice, {});
    const other = await createRoom(alice, {});
    await send(alice, inList, { msgtype: "m.text", body: "newest" });
    await putAccountData(alice, "org.example.global", { a: 1 });
    await putAccountData(alice, "org.example.room", { r: 1 }, inList);
    await putAccountData(alice, "org.example.room", { r: 2 }, other);
    const req = { lists: { l: { ranges: [[0, 0]], timeline_limit: 1, required_state: [] } }, extensions: { account_data: { enabled: true } } };
    const first = await ss(alice, req);
    expect(ids(first, "l")).toEqual([inList]);
    const global = first.extensions.account_data.global;
    expect(global.find((e: Body) => e.type === "org.example.global").content).toEqual({ a: 1 });
    expect(global.some((e: Body) => e.type === "m.push_rules")).toBe(true);
    expect(first.extensions.account_data.rooms).toEqual({ [inList]: [{ type: "org.example.room", content: { r: 1 } }] });

    const idle = await ss(alice, req, { pos: first.pos });
    expect(idle.extensions.account_data).toEqual({ global: [], rooms: {} });
    await putAccountData(alice, "org.example.global", { a: 2 });
    await putAccountData(alice, "org.example.room", { r: 3 }, inList);
    const next = await ss(alice, req, { pos: idle.pos, timeout: 10_000 });
    expect(next.extensions.account_data.global).toEqual([{ type: "org.example.global", content: { a: 2 } }]);
    expect(next.extensions.account_data.rooms).toEqual({ [inList]: [{ type: "org.example.room", content: { r: 3 } }] });
  });

  it("receipts and typing for the rooms in the lists, waking a waiting request", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    const msg = await send(alice, roomId, { msgtype: "m.text", body: "read me" });
    const eventId = msg.body.event_id as string;
    expect((await api("POST", `${r(roomId)}/receipt/m.read/${encodeURIComponent(eventId)}`, { token: bob.access_token, body: {} })).status).toBe(200);
    const req = { lists: { l: { ranges: [[0, 9]], timeline_limit: 1, required_state: [] } }, extensions: { receipts: { enabled: true }, typing: { enabled: true } } };
    const first = await ss(alice, req);
    // The room is new to the connection: the receipt on its timeline's event comes along.
    expect(first.extensions.receipts.rooms[roomId].content[eventId]["m.read"][bob.user_id].ts).toBeGreaterThan(0);
    expect(first.extensions.receipts.rooms[roomId].type).toBe("m.receipt");
    expect(first.extensions.typing.rooms).toEqual({});

    const poll = ss(alice, req, { pos: first.pos, timeout: 30_000 });
    expect((await api("PUT", `${r(roomId)}/typing/${encodeURIComponent(bob.user_id)}`, { token: bob.access_token, body: { typing: true, timeout: 20_000 } })).status).toBe(200);
    const typing = await poll;
    expect(typing.extensions.typing.rooms[roomId]).toEqual({ type: "m.typing", content: { user_ids: [bob.user_id] } });
    expect(typing.rooms).toEqual({});

    const msg2 = await send(alice, roomId, { msgtype: "m.text", body: "again" });
    const afterSend = await ss(alice, req, { pos: typing.pos });
    expect((await api("POST", `${r(roomId)}/receipt/m.read/${encodeURIComponent(msg2.body.event_id)}`, { token: bob.access_token, body: {} })).status).toBe(200);
    const receipt = await ss(alice, req, { pos: afterSend.pos, timeout: 10_000 });
    expect(Object.keys(receipt.extensions.receipts.rooms[roomId].content)).toEqual([msg2.body.event_id]);
    // Typing did not change since: not repeated.
    expect(receipt.extensions.typing.rooms).toEqual({});
    // An extension scoped to no lists covers nothing.
    const none = await ss(alice, { ...req, extensions: { typing: { enabled: true, lists: [] } } });
    expect(none.extensions.typing.rooms).toEqual({});
  });
});
