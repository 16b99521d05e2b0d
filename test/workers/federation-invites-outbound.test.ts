// Invites across servers that the tests of federation-rooms.test.ts leave out: createRoom's `invite` naming
// users of other servers (sent through their servers once the room exists, is_direct kept, as Synapse), and
// a v12 invite whose invite_room_state lacks the create event (accepted, as Synapse and Complement's
// TestIsDirectFlagFederation expect). The other servers are played by test/workers/remote-homeserver.mjs.
import { describe, expect, it } from "vitest";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
import { federationApi, remotePdu } from "./federation-room-helpers.js";
import { api } from "./helpers.js";
import { V3, allState, byKey, createRoom, newUser } from "./room-helpers.js";

const F1 = "/_matrix/federation/v1";
const F2 = "/_matrix/federation/v2";
const enc = encodeURIComponent;
const INVITE = `${F2}/invite/*`;

describe("createRoom inviting users of other servers", () => {
  it("invites each through its server after the room's events, with is_direct; local invitees as before", async () => {
    const alice = await newUser("alice");
    const carol = await newUser("carol");
    const server = uniqueServer("invitee");
    await remoteControl("/_test/answer", { server, method: "PUT", path: INVITE, body: { event: {} } });
    const bob = `@bob:${server}`;
    const roomId = await createRoom(alice, { preset: "trusted_private_chat", is_direct: true, invite: [bob, carol.user_id], name: "DM" });

    const state = byKey((await allState(alice, roomId)).body);
    expect(state.get(`m.room.member|${bob}`)?.content).toMatchObject({ membership: "invite", is_direct: true });
    expect(state.get(`m.room.member|${carol.user_id}`)?.content).toMatchObject({ membership: "invite", is_direct: true });
    const sent = await remoteControl<{ method: string; path: string; body: { room_version: string; event: { state_key: string; content: object }; invite_room_state: { type: string }[] } }[]>(
      `/_test/answered?server=${enc(server)}`,
    );
    expect(sent).toHaveLength(1);
    expect(sent[0]!.path.startsWith(`${F2}/invite/${enc(roomId)}/`)).toBe(true);
    expect(sent[0]!.body.event.state_key).toBe(bob);
    expect(sent[0]!.body.event.content).toEqual({ membership: "invite", is_direct: true });
    // The invite state has the room's name and (v12) its create event.
    expect(sent[0]!.body.invite_room_state.map((e) => e.type)).toEqual(expect.arrayContaining(["m.room.create", "m.room.name"]));
    // trusted_private_chat: in v12 every invitee is a creator, the remote one too (as Synapse).
    const create = state.get("m.room.create|")!;
    expect(create.content.additional_creators).toEqual(expect.arrayContaining([bob, carol.user_id]));
  });

  it("a refused invite fails the request with the other server's 403 (the room stays, as in Synapse)", async () => {
    const alice = await newUser("alice");
    const server = uniqueServer("refusing");
    await remoteControl("/_test/answer", { server, method: "PUT", path: INVITE, status: 403, body: { errcode: "M_FORBIDDEN", error: "no invites please" } });
    const res = await api("POST", `${V3}/createRoom`, { token: alice.access_token, body: { invite: [`@bob:${server}`] } });
    expect(res.status).toBe(403);
    expect(res.body.errcode).toBe("M_FORBIDDEN");
    const rooms = await api("GET", `${V3}/joined_rooms`, { token: alice.access_token });
    expect(rooms.body.joined_rooms).toHaveLength(1);
  });

  it("refuses an invalid invitee before creating anything", async () => {
    const alice = await newUser("alice");
    const res = await api("POST", `${V3}/createRoom`, { token: alice.access_token, body: { invite: ["@no-server"] } });
    expect(res.status).toBe(400);
    expect((await api("GET", `${V3}/joined_rooms`, { token: alice.access_token })).body.joined_rooms).toEqual([]);
  });
});

describe("a v12 invite without the create event in invite_room_state", () => {
  it("is co-signed and shown to the invitee (as Synapse does)", async () => {
    const carol = await newUser("carol");
    const inviteServer = uniqueServer("inviter");
    const roomId = `!${crypto.randomUUID().replaceAll("-", "")}`;
    const invite = await remotePdu(inviteServer, "12", {
      room_id: roomId,
      sender: `@inviter:${inviteServer}`,
      type: "m.room.member",
      state_key: carol.user_id,
      content: { membership: "invite", is_direct: true },
      origin_server_ts: Date.now(),
      depth: 5,
      prev_events: ["$p"],
      auth_events: ["$a"],
    });
    const res = await federationApi(inviteServer, "PUT", `${F2}/invite/${enc(roomId)}/${enc(invite.eventId)}`, { room_version: "12", event: invite.pdu, invite_room_state: [] });
    expect(res.status).toBe(200);
    const sync = await api("GET", `${V3}/sync?timeout=0`, { token: carol.access_token });
    const member = sync.body.rooms.invite[roomId].invite_state.events.find((e: { type: string }) => e.type === "m.room.member");
    expect(member.content).toMatchObject({ membership: "invite", is_direct: true });
  });
});

describe("an invite rescinded by the inviter's server", () => {
  it("turns the out-of-band invite into a leave when the inviter sends it; anyone else's leave changes nothing", async () => {
    const carol = await newUser("carol");
    const inviteServer = uniqueServer("rescinder");
    const roomId = `!${crypto.randomUUID().replaceAll("-", "")}`;
    const base = { room_id: roomId, type: "m.room.member", state_key: carol.user_id, origin_server_ts: Date.now(), depth: 5, prev_events: ["$p"], auth_events: ["$a"] };
    const inviter = `@inviter:${inviteServer}`;
    const invite = await remotePdu(inviteServer, "12", { ...base, sender: inviter, content: { membership: "invite" } });
    expect((await federationApi(inviteServer, "PUT", `${F2}/invite/${enc(roomId)}/${enc(invite.eventId)}`, { room_version: "12", event: invite.pdu, invite_room_state: [] })).status).toBe(200);
    const first = await api("GET", `${V3}/sync?timeout=0`, { token: carol.access_token });
    expect(first.body.rooms.invite[roomId]).toBeDefined();

    const send = (pdu: unknown) => federationApi(inviteServer, "PUT", `${F1}/send/rescind-${crypto.randomUUID()}`, { origin: inviteServer, origin_server_ts: Date.now(), pdus: [pdu], edus: [] });
    // Another user of that server (not the inviter) cannot rescind it.
    const other = await remotePdu(inviteServer, "12", { ...base, depth: 6, sender: `@admin:${inviteServer}`, content: { membership: "leave" } });
    const refused = await send(other.pdu);
    expect(refused.status).toBe(200);
    expect(refused.body.pdus[other.eventId].error).toBeDefined();
    const still = await api("GET", `${V3}/sync?timeout=0&since=${first.body.next_batch}`, { token: carol.access_token });
    expect(still.body.rooms?.leave?.[roomId]).toBeUndefined();

    const rescind = await remotePdu(inviteServer, "12", { ...base, depth: 6, sender: inviter, content: { membership: "leave", reason: "oops" } });
    const accepted = await send(rescind.pdu);
    expect(accepted.body.pdus[rescind.eventId]).toEqual({});
    const after = await api("GET", `${V3}/sync?timeout=0&since=${still.body.next_batch}`, { token: carol.access_token });
    // The leave itself is in the left room's timeline (what clients and Complement's SyncLeftFrom read).
    const left = after.body.rooms.leave[roomId];
    const leaveEvent = left.timeline.events.find((e: { type: string; state_key?: string }) => e.type === "m.room.member" && e.state_key === carol.user_id);
    expect(leaveEvent).toMatchObject({ sender: inviter, content: { membership: "leave", reason: "oops" } });
    const initial = await api("GET", `${V3}/sync?timeout=0`, { token: carol.access_token });
    expect(initial.body.rooms?.invite?.[roomId]).toBeUndefined();
  });
});

