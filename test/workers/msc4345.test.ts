// Rooms of version org.matrix.msc4345 (MSC4345 server participation) on one server: creation (the
// creator's server accepts itself before the creator joins), key-form user IDs (decision 12),
// signatures keyed by the server key (decision 11), an admin accepting and revoking servers with a
// state event, clients reading the participation states, and /_matrix/key/v3/org.matrix.msc4345/query.
import { describe, expect, it } from "vitest";
import { encodeBase64 } from "../../protocol/base64.js";
import { PARTICIPATION_EVENT_TYPE, serverKeyBytes, serverKeyFromPublicKey } from "../../protocol/participation.js";
import { verifyJsonSignature } from "../../protocol/signing.js";
import { SERVER_NAME, api } from "./helpers.js";
import { V3, allState, byKey, createRoom, getState, join, newUser, putState, r, roomStub, send } from "./room-helpers.js";
import { sync, timeline } from "./sync-helpers.js";
import { registerAdmin } from "./admin-helpers.js";

const VERSION = "org.matrix.msc4345";
const P = PARTICIPATION_EVENT_TYPE;
/** Another server's key (a fixed byte pattern) for the admin paths. */
const OTHER_KEY = serverKeyFromPublicKey(encodeBase64(new Uint8Array(32).fill(7)));

async function ownKey(): Promise<{ serverKey: string; keyId: string; doc: Record<string, unknown> }> {
  const res = await api("GET", "/_matrix/key/v3/org.matrix.msc4345/query");
  expect(res.status).toBe(200);
  const doc = res.body as { verify_keys: Record<string, { key: string }> };
  const [keyId, { key }] = Object.entries(doc.verify_keys)[0]!;
  return { serverKey: key, keyId, doc: res.body };
}

const inRoom = (userId: string, serverKey: string) => `${userId.slice(0, userId.indexOf(":"))}:${serverKey}`;

describe("room version org.matrix.msc4345", () => {
  it("key/v3 query: this server's key in server-key form, signed by it, without valid_until_ts; the same key as key/v2", async () => {
    const { serverKey, keyId, doc } = await ownKey();
    expect(doc.server_name).toBe(SERVER_NAME);
    expect(doc.valid_until_ts).toBeUndefined();
    expect(serverKey).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const v2 = (await api("GET", "/_matrix/key/v2/server")).body as { verify_keys: Record<string, { key: string }> };
    expect(encodeBase64(serverKeyBytes(serverKey))).toBe(v2.verify_keys[keyId]!.key);
    expect(await verifyJsonSignature(doc as never, serverKey, keyId, encodeBase64(serverKeyBytes(serverKey)))).toBe(true);
  });

  it("createRoom: the creator's server accepts itself before the creator joins; members are named by the server key", async () => {
    const { serverKey } = await ownKey();
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });
    const res = await allState(alice, roomId);
    expect(res.status).toBe(200);
    const s = byKey(res.body);
    const aliceInRoom = inRoom(alice.user_id, serverKey);
    expect(s.get("m.room.create|")!.sender).toBe(aliceInRoom);
    expect(s.get("m.room.create|")!.content.room_version).toBe(VERSION);
    const own = s.get(`${P}|${serverKey}`)!;
    expect(own.content).toEqual({ participation: "accepted", unverified_domain: SERVER_NAME });
    expect(own.sender).toBe(aliceInRoom);
    expect(s.get(`m.room.member|${aliceInRoom}`)!.content.membership).toBe("join");
    expect(s.has(`m.room.member|${alice.user_id}`)).toBe(false);

    // The spec's order with the participation first: create, participation, join, power levels, ...
    const pdus = await Promise.all(res.body.map((e: { event_id: string }) => roomStub(roomId).getPdu(e.event_id)));
    const ordered = [...pdus].sort((a, b) => a!.depth - b!.depth).map((p) => p!.type);
    expect(ordered.slice(0, 4)).toEqual(["m.room.create", P, "m.room.member", "m.room.power_levels"]);
    // Decision 11: every event is signed under the server key, none under the server name.
    for (const pdu of pdus) expect(Object.keys(pdu!.signatures)).toEqual([serverKey]);
  });

  it("clients send, sync and read members in these rooms; another local user joins (same accepted server)", async () => {
    const { serverKey } = await ownKey();
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    expect((await send(bob, roomId, { msgtype: "m.text", body: "hello" })).status).toBe(200);

    const body = await sync(alice);
    const events = timeline(body, roomId);
    const hello = events.find((e) => e.content.body === "hello")!;
    expect(hello.sender).toBe(inRoom(bob.user_id, serverKey));
    // decision 12: the server verified its own domain, so the client gets it next to the key-form ID
    expect((hello as unknown as { unsigned: Record<string, unknown> }).unsigned.server_domain).toBe(SERVER_NAME);

    const joined = await api("GET", `${r(roomId)}/joined_members`, { token: bob.access_token });
    expect(joined.status).toBe(200);
    expect(Object.keys(joined.body.joined).sort()).toEqual([inRoom(alice.user_id, serverKey), inRoom(bob.user_id, serverKey)].sort());
    const rooms = await api("GET", `${V3}/joined_rooms`, { token: bob.access_token });
    expect(rooms.body.joined_rooms).toContain(roomId);
    const messages = await api("GET", `${r(roomId)}/messages?dir=b&limit=5`, { token: alice.access_token });
    expect(messages.status).toBe(200);
    expect(messages.body.chunk.some((e: { content: { body?: string } }) => e.content.body === "hello")).toBe(true);
  });

  it("an admin revokes a server with a state event; accepting a server that never requested is refused", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { room_version: VERSION });
    const accept = await putState(alice, roomId, P, OTHER_KEY, { participation: "accepted", unverified_domain: "other.example" });
    expect(accept.status).toBe(403);
    expect(accept.body.errcode).toBe("M_FORBIDDEN");
    const requested = await putState(alice, roomId, P, OTHER_KEY, { participation: "requested", request_authorised_via_server: OTHER_KEY });
    expect(requested.status).toBe(403);

    const revoke = await putState(alice, roomId, P, OTHER_KEY, { participation: "revoked", reason: "spam" });
    expect(revoke.status).toBe(200);
    const read = await getState(alice, roomId, P, OTHER_KEY);
    expect(read.status).toBe(200);
    expect(read.body).toEqual({ participation: "revoked", reason: "spam" });
    // revoked for good: no admin accepts the key again
    expect((await putState(alice, roomId, P, OTHER_KEY, { participation: "accepted" })).status).toBe(403);
    // nothing was stored by the refused requests
    const state = byKey((await allState(alice, roomId)).body);
    expect(state.get(`${P}|${OTHER_KEY}`)!.content.participation).toBe("revoked");
  });

  it("a member below the accept level cannot revoke; a bad participation body is refused and changes nothing", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    expect((await putState(bob, roomId, P, OTHER_KEY, { participation: "revoked" })).status).toBe(403);
    expect((await putState(alice, roomId, P, OTHER_KEY, { participation: "maybe" })).status).toBe(403);
    expect((await putState(alice, roomId, P, "not-a-key", { participation: "revoked" })).status).toBe(403);
    expect((await getState(alice, roomId, P, OTHER_KEY)).status).toBe(404);
  });

  it("only a server admin may revoke this server's own key (needing no membership); it is final", async () => {
    const { serverKey } = await ownKey();
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });
    // the room's creator is no server admin: refused, nothing stored
    const byCreator = await putState(alice, roomId, P, serverKey, { participation: "revoked" });
    expect(byCreator.status).toBe(403);
    expect(byCreator.body.error).toMatch(/server admin/);
    expect((await getState(alice, roomId, P, serverKey)).body.participation).toBe("accepted");
    const admin = await registerAdmin("keyadmin");
    expect((await putState(admin, roomId, P, serverKey, { participation: "revoked", reason: "retiring this key" })).status).toBe(200);
    expect((await getState(alice, roomId, P, serverKey)).body.participation).toBe("revoked");
    // no one on this server can send any more, and no one accepts the key again
    expect((await send(alice, roomId, { msgtype: "m.text", body: "after" })).status).toBe(403);
    expect((await putState(alice, roomId, P, serverKey, { participation: "accepted", unverified_domain: SERVER_NAME })).status).toBe(403);
    expect((await putState(admin, roomId, P, serverKey, { participation: "accepted", unverified_domain: SERVER_NAME })).status).toBe(403);
  });

  it("capabilities list the version as unstable; other rooms are unchanged (v12 members keep their IDs)", async () => {
    const alice = await newUser("alice");
    const caps = await api("GET", `${V3}/capabilities`, { token: alice.access_token });
    expect(caps.body.capabilities["m.room_versions"].available[VERSION]).toBe("unstable");
    const roomId = await createRoom(alice);
    const s = byKey((await allState(alice, roomId)).body);
    expect(s.get(`m.room.member|${alice.user_id}`)!.content.membership).toBe("join");
    const create = await roomStub(roomId).getPdu("$" + roomId.slice(1));
    expect(Object.keys(create!.signatures)).toEqual([SERVER_NAME]);
  });
});
