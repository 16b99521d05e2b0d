// The space hierarchy across servers (spec: Server-Server API, "Spaces": GET
// /_matrix/federation/v1/hierarchy/{roomId}): served to other servers with what they may see, and used by a
// client's /hierarchy walk for children this server is not in. The other server is played by
// test/workers/remote-homeserver.mjs (stored answers).
import { describe, expect, it } from "vitest";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
import { federationApi } from "./federation-room-helpers.js";
import { api, SERVER_NAME } from "./helpers.js";
import { createRoom, newUser, putState } from "./room-helpers.js";

const F1 = "/_matrix/federation/v1";
const enc = encodeURIComponent;

describe("/hierarchy over federation", () => {
  it("serves a space's summary, the children the server may see, and the inaccessible ones; 404 for what it may not see", async () => {
    const alice = await newUser("alice");
    const space = await createRoom(alice, { preset: "public_chat", name: "Space", creation_content: { type: "m.space" } });
    const open = await createRoom(alice, { preset: "public_chat", name: "Open" });
    const closed = await createRoom(alice, { preset: "private_chat", name: "Closed" });
    const unknown = `!unknown:${SERVER_NAME}`;
    for (const [child, order] of [[open, "a"], [closed, "b"], [unknown, "c"]] as const) {
      expect((await putState(alice, space, "m.space.child", child, { via: [SERVER_NAME], order })).status).toBe(200);
    }
    const remote = uniqueServer("spaces");
    const res = await federationApi(remote, "GET", `${F1}/hierarchy/${enc(space)}`);
    expect(res.status).toBe(200);
    expect(res.body.room).toMatchObject({ room_id: space, room_type: "m.space", name: "Space", num_joined_members: 1 });
    expect(res.body.room.children_state.map((e: { state_key: string }) => e.state_key)).toEqual([open, closed, unknown]);
    expect(res.body.children.map((r: { room_id: string }) => r.room_id)).toEqual([open]);
    expect(res.body.inaccessible_children).toEqual([closed]);
    expect((await federationApi(remote, "GET", `${F1}/hierarchy/${enc(closed)}`)).status).toBe(404);
    expect((await federationApi(remote, "GET", `${F1}/hierarchy/${enc(unknown)}`)).status).toBe(404);
    expect((await federationApi(remote, "GET", `${F1}/hierarchy/not-a-room`)).status).toBe(404);
    expect((await api("GET", `${F1}/hierarchy/${enc(space)}`)).status).toBe(401);
  });

  it("a client's walk asks a child's via server for a room this server is not in, and uses the children it names", async () => {
    const alice = await newUser("alice");
    const server = uniqueServer("spaces");
    const space = await createRoom(alice, { preset: "public_chat", name: "Ours", creation_content: { type: "m.space" } });
    const remoteSpace = `!space:${server}`;
    const remoteRoom = `!room:${server}`;
    const hiddenRoom = `!hidden:${server}`;
    expect((await putState(alice, space, "m.space.child", remoteSpace, { via: [server] })).status).toBe(200);
    const child = (roomId: string) => ({ type: "m.space.child", state_key: roomId, content: { via: [server] }, sender: `@bob:${server}`, origin_server_ts: 1 });
    await remoteControl("/_test/answer", {
      server,
      method: "GET",
      path: `${F1}/hierarchy/${enc(remoteSpace)}`,
      body: {
        room: { room_id: remoteSpace, room_type: "m.space", name: "Theirs", num_joined_members: 4, world_readable: false, guest_can_join: false, join_rule: "public", children_state: [child(remoteRoom), child(hiddenRoom)] },
        children: [{ room_id: remoteRoom, name: "Their room", num_joined_members: 2, world_readable: false, guest_can_join: false, join_rule: "public", children_state: [] }],
        inaccessible_children: [hiddenRoom],
      },
    });
    const res = await api("GET", `/_matrix/client/v1/rooms/${enc(space)}/hierarchy`, { token: alice.access_token });
    expect(res.status).toBe(200);
    expect(res.body.rooms.map((r: { room_id: string }) => r.room_id)).toEqual([space, remoteSpace, remoteRoom]);
    expect(res.body.rooms[1]).toMatchObject({ name: "Theirs", num_joined_members: 4 });
    expect(res.body.rooms[2]).toMatchObject({ name: "Their room" });
    // One request: the remote room's summary came with its parent's answer.
    const requests = await remoteControl<{ path: string; query: string }[]>(`/_test/answered?server=${enc(server)}`);
    expect(requests.map((r) => `${r.path}${r.query}`)).toEqual([`${F1}/hierarchy/${enc(remoteSpace)}?suggested_only=false`]);
  });

  it("leaves out a remote child whose server does not answer, and an invite-only one", async () => {
    const alice = await newUser("alice");
    const server = uniqueServer("spaces");
    const space = await createRoom(alice, { preset: "public_chat", creation_content: { type: "m.space" } });
    const silent = `!silent:${server}`;
    const invite = `!invite:${server}`;
    await putState(alice, space, "m.space.child", silent, { via: [server] });
    await putState(alice, space, "m.space.child", invite, { via: [server] });
    await remoteControl("/_test/answer", {
      server,
      method: "GET",
      path: `${F1}/hierarchy/${enc(invite)}`,
      body: { room: { room_id: invite, num_joined_members: 1, world_readable: false, guest_can_join: false, join_rule: "invite", children_state: [] }, children: [] },
    });
    const res = await api("GET", `/_matrix/client/v1/rooms/${enc(space)}/hierarchy`, { token: alice.access_token });
    expect(res.status).toBe(200);
    expect(res.body.rooms.map((r: { room_id: string }) => r.room_id)).toEqual([space]);
  });
});
