// GET /_matrix/client/v1/room_summary/{roomIdOrAlias} and its unstable paths (worker/client/room-summary.ts;
// spec v1.15 room_summary.yaml, MSC3266; Synapse's RoomSummaryHandler.get_room_summary): rooms the user is
// in, rooms they may join (public, knock, knock_restricted, restricted through an allowed room), world-
// readable rooms, 404 for the rest, unauthenticated requests, aliases, and remote rooms asked over
// federation through `via` (the other server is test/workers/remote-homeserver.mjs).
import { describe, expect, it } from "vitest";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
import { api, SERVER_NAME, type RegisteredUser } from "./helpers.js";
import { V3, createRoom, join, membership, newUser } from "./room-helpers.js";

const enc = encodeURIComponent;
const summary = (user: RegisteredUser | undefined, room: string, query = "") =>
  api("GET", `/_matrix/client/v1/room_summary/${enc(room)}${query}`, user ? { token: user.access_token } : {});

describe("GET /room_summary", () => {
  it("summarises a room for a member, with the fields of the spec and their membership", async () => {
    const alice = await newUser("sum");
    const roomId = await createRoom(alice, {
      preset: "public_chat",
      name: "Cheese",
      topic: "Tasty cheese",
      room_version: "10",
      initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    const res = await summary(alice, roomId);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      room_id: roomId,
      name: "Cheese",
      topic: "Tasty cheese",
      num_joined_members: 1,
      world_readable: false,
      guest_can_join: false,
      join_rule: "public",
      room_version: "10",
      encryption: "m.megolm.v1.aes-sha2",
      membership: "join",
    });
    // The unstable paths answer the same.
    for (const path of [`/_matrix/client/unstable/im.nheko.summary/summary/${enc(roomId)}`, `/_matrix/client/unstable/im.nheko.summary/rooms/${enc(roomId)}/summary`]) {
      const unstable = await api("GET", path, { token: alice.access_token });
      expect(unstable.status).toBe(200);
      expect(unstable.body).toEqual(res.body);
    }
  });

  it("shows rooms a non-member may join or peek at, and 404 for private ones; invited users see theirs", async () => {
    const alice = await newUser("sum");
    const bob = await newUser("sum");
    const publicRoom = await createRoom(alice, { preset: "public_chat" });
    const privateRoom = await createRoom(alice, { preset: "private_chat" });
    const knockRoom = await createRoom(alice, { preset: "private_chat", room_version: "10", initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }] });
    const knockRestricted = await createRoom(alice, {
      preset: "private_chat",
      room_version: "10",
      initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock_restricted", allow: [] } }],
    });
    // knock is not a join rule of room version 6: there the room is as private as an invite-only one.
    const knockV6 = await createRoom(alice, { preset: "private_chat", room_version: "6", initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }] });
    const worldReadable = await createRoom(alice, {
      preset: "private_chat",
      initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "world_readable" } }],
    });

    const pub = await summary(bob, publicRoom);
    expect(pub.status).toBe(200);
    expect(pub.body.membership).toBe("leave");
    expect((await summary(bob, knockRoom)).body).toMatchObject({ join_rule: "knock", membership: "leave" });
    expect((await summary(bob, knockRestricted)).body).toMatchObject({ join_rule: "knock_restricted" });
    expect((await summary(bob, worldReadable)).body).toMatchObject({ world_readable: true, join_rule: "invite" });
    for (const hidden of [privateRoom, knockV6]) {
      const res = await summary(bob, hidden);
      expect(res.status).toBe(404);
      expect(res.body.errcode).toBe("M_NOT_FOUND");
    }
    // An invite opens the private room's summary; leaving after a join closes it again.
    expect((await membership(alice, privateRoom, "invite", { user_id: bob.user_id })).status).toBe(200);
    expect((await summary(bob, privateRoom)).body.membership).toBe("invite");
    expect((await join(bob, privateRoom)).status).toBe(200);
    expect((await summary(bob, privateRoom)).body).toMatchObject({ membership: "join", num_joined_members: 2 });
    expect((await membership(bob, privateRoom, "leave")).status).toBe(200);
    expect((await summary(bob, privateRoom)).status).toBe(404);
  });

  it("restricted rooms: allowed_room_ids, shown to members of an allowed room only", async () => {
    const alice = await newUser("sum");
    const bob = await newUser("sum");
    const carol = await newUser("sum");
    const space = await createRoom(alice, { preset: "public_chat", creation_content: { type: "m.space" } });
    const restricted = await createRoom(alice, {
      preset: "private_chat",
      room_version: "10",
      initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: space }] } }],
    });
    const invite = await createRoom(alice, { preset: "private_chat" });
    expect((await join(bob, space)).status).toBe(200);
    const res = await summary(bob, restricted);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ room_id: restricted, join_rule: "restricted", allowed_room_ids: [space], membership: "leave" });
    expect((await summary(carol, restricted)).status).toBe(404);
    // As Complement checks: a room without a restricted rule has no allowed_room_ids.
    const plain = await summary(alice, invite);
    expect(plain.status).toBe(200);
    expect(plain.body.allowed_room_ids).toBeUndefined();
    expect((await summary(alice, space)).body.room_type).toBe("m.space");
  });

  it("without a token: public and world-readable rooms only, and no membership; a bad token is 401", async () => {
    const alice = await newUser("sum");
    const publicRoom = await createRoom(alice, { preset: "public_chat", name: "Open" });
    const privateRoom = await createRoom(alice, { preset: "private_chat" });
    const anon = await summary(undefined, publicRoom);
    expect(anon.status).toBe(200);
    expect(anon.body.name).toBe("Open");
    expect(anon.body.membership).toBeUndefined();
    expect((await summary(undefined, privateRoom)).status).toBe(404);
    const bad = await api("GET", `/_matrix/client/v1/room_summary/${enc(publicRoom)}`, { token: "not-a-token" });
    expect(bad.status).toBe(401);
    expect(bad.body.errcode).toBe("M_UNKNOWN_TOKEN");
  });

  it("resolves aliases; unknown rooms and aliases are 404, malformed identifiers 400", async () => {
    const alice = await newUser("sum");
    const roomId = await createRoom(alice, { preset: "public_chat", room_alias_name: `sum-${alice.user_id.slice(1, 12)}` });
    const alias = `#sum-${alice.user_id.slice(1, 12)}:${SERVER_NAME}`;
    const res = await summary(alice, alias);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ room_id: roomId, canonical_alias: alias });
    expect((await summary(alice, `#missing-alias:${SERVER_NAME}`)).status).toBe(404);
    expect((await summary(alice, `!unknown:${SERVER_NAME}`)).status).toBe(404);
    for (const malformed of ["not-a-room", "#", "#no-server", "!"]) {
      const bad = await summary(alice, malformed);
      expect(bad.status).toBe(400);
      expect(bad.body.errcode).toBe("M_INVALID_PARAM");
    }
    expect((await api("POST", `/_matrix/client/v1/room_summary/${enc(roomId)}`, { token: alice.access_token })).status).toBe(405);
  });

  it("asks a `via` server for a room this server is not in, and applies Synapse's rule to its answer", async () => {
    const alice = await newUser("sum");
    const server = uniqueServer("summary");
    const open = `!open:${server}`;
    const hidden = `!hidden:${server}`;
    const answer = (roomId: string, joinRule: string, extra: Record<string, unknown> = {}) =>
      remoteControl("/_test/answer", {
        server,
        method: "GET",
        path: `/_matrix/federation/v1/hierarchy/${enc(roomId)}`,
        body: {
          room: { room_id: roomId, name: `Remote ${joinRule}`, num_joined_members: 3, world_readable: false, guest_can_join: false, join_rule: joinRule, room_version: "10", children_state: [], ...extra },
          children: [],
          inaccessible_children: [],
        },
      });
    await answer(open, "public");
    await answer(hidden, "invite");
    const res = await summary(alice, open, `?via=${enc(server)}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ room_id: open, name: "Remote public", num_joined_members: 3, world_readable: false, guest_can_join: false, join_rule: "public", room_version: "10", membership: "leave" });
    expect((await summary(alice, hidden, `?via=${enc(server)}`)).status).toBe(404);
    // Without via, a room this server does not know is not found.
    expect((await summary(alice, open)).status).toBe(404);
    // A server that does not answer: 404.
    expect((await summary(alice, `!nothing:${server}`, `?via=${enc(server)}`)).status).toBe(404);
  });
});

// The route is registered under v1 only (spec); v3 is an unknown path.
describe("room_summary paths", () => {
  it("is not served under v3", async () => {
    const alice = await newUser("sum");
    expect((await api("GET", `${V3}/room_summary/${enc("!x:" + SERVER_NAME)}`, { token: alice.access_token })).status).toBe(404);
  });
});
