// The resident server's side of federation for rooms: make_join/send_join, inbound transactions, the read
// endpoints other servers use, and invites from other servers. The remote servers are played by
// test/workers/remote-homeserver.mjs (their keys are fetched over the federation client); the tests sign
// requests and PDUs as those servers (federation-helpers.ts).
import { describe, expect, it } from "vitest";
import type { JsonObject } from "../../protocol/json.js";
import type { Pdu } from "../../protocol/pdu.js";
import { eventIdFor } from "../../protocol/event-hashes.js";
import { roomVersionRules } from "../../protocol/room-versions.js";
import { federationApi, joinFromRemote, remotePdu, signTemplate } from "./federation-room-helpers.js";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
import { api, SERVER_NAME } from "./helpers.js";
import { V3, createRoom, membership, newUser, r, send } from "./room-helpers.js";

const F1 = "/_matrix/federation/v1";
const F2 = "/_matrix/federation/v2";
const enc = encodeURIComponent;

/** A local public room with a remote member who joined through make_join/send_join. */
async function roomWithRemoteMember(remote = "r1.remote.test", preset = "public_chat", roomVersion = "12") {
  const alice = await newUser("alice");
  const roomId = await createRoom(alice, { preset, room_version: roomVersion });
  const bob = `@bob:${remote}`;
  const join = await joinFromRemote(remote, roomId, bob, roomVersion);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return { alice, roomId, bob, remote, join, sendJoin: join.answer as any, roomVersion };
}

async function remoteMessage(remote: string, roomVersion: string, roomId: string, sender: string, prev: string[], auth: string[], body: string, depth: number) {
  return remotePdu(remote, roomVersion, {
    room_id: roomId,
    sender,
    type: "m.room.message",
    content: { msgtype: "m.text", body },
    origin_server_ts: Date.now(),
    depth,
    prev_events: prev,
    auth_events: auth,
  });
}

/** The auth events a remote message of `sender` needs in a v12 room: power levels and the sender's join. */
async function messageAuth(roomId: string, user: { access_token: string }, sender: string): Promise<string[]> {
  const state = (await api("GET", `${r(roomId)}/state`, { token: user.access_token })).body as { type: string; state_key: string; event_id: string }[];
  return state.filter((e) => e.type === "m.room.power_levels" || (e.type === "m.room.member" && e.state_key === sender)).map((e) => e.event_id);
}

async function timelineBodies(user: { access_token: string }, roomId: string): Promise<string[]> {
  const res = await api("GET", `${r(roomId)}/messages?dir=b&limit=50`, { token: user.access_token });
  return (res.body.chunk as { type: string; content: { body?: string } }[]).filter((e) => e.type === "m.room.message").map((e) => e.content.body!);
}

describe("make_join / send_join (resident side)", () => {
  it("gives a template on the current state, accepts the signed join and answers the state before it with its auth chain", async () => {
    const { alice, roomId, bob, join, sendJoin } = await roomWithRemoteMember();
    expect(join.pdu.type).toBe("m.room.member");
    const stateTypes = (sendJoin.state as Pdu[]).map((e) => `${e.type}|${e.state_key}`);
    expect(stateTypes).toContain("m.room.create|");
    expect(stateTypes).toContain(`m.room.member|${alice.user_id}`);
    // The state is the state *before* the join.
    expect(stateTypes).not.toContain(`m.room.member|${bob}`);
    expect(sendJoin.members_omitted).toBe(false);
    // Spec: the servers in the room *before* the join.
    expect(sendJoin.servers_in_room).toEqual([SERVER_NAME]);
    // The auth chain covers the join's auth events (v12: the create event is the room ID, not an auth event).
    const authTypes = new Set((sendJoin.auth_chain as Pdu[]).map((e) => e.type));
    expect(authTypes.has("m.room.power_levels")).toBe(true);
    expect(authTypes.has("m.room.join_rules")).toBe(true);
    const members = await api("GET", `${r(roomId)}/joined_members`, { token: alice.access_token });
    expect(Object.keys(members.body.joined)).toContain(bob);
  });

  it("omit_members leaves member events out of the state and names the servers in the room", async () => {
    const remote = "r1.remote.test";
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const carol = `@carol:${remote}`;
    const made = await federationApi(remote, "GET", `${F1}/make_join/${enc(roomId)}/${enc(carol)}?ver=12`);
    const join = await signTemplate(remote, "12", made.body.event as JsonObject);
    const sent = await federationApi(remote, "PUT", `${F2}/send_join/${enc(roomId)}/${enc(join.eventId)}?omit_members=true`, join.pdu);
    expect(sent.status).toBe(200);
    expect(sent.body.members_omitted).toBe(true);
    // A nameless room keeps its heroes' member events (MSC3943): here the only member, alice.
    expect((sent.body.state as Pdu[]).filter((e) => e.type === "m.room.member").map((e) => e.state_key)).toEqual([alice.user_id]);
    expect(sent.body.servers_in_room).toEqual([SERVER_NAME]);

    // A named room needs no heroes: no member events at all.
    const named = await createRoom(alice, { preset: "public_chat", name: "Named" });
    const made2 = await federationApi(remote, "GET", `${F1}/make_join/${enc(named)}/${enc(carol)}?ver=12`);
    const join2 = await signTemplate(remote, "12", made2.body.event as JsonObject);
    const sent2 = await federationApi(remote, "PUT", `${F2}/send_join/${enc(named)}/${enc(join2.eventId)}?omit_members=true`, join2.pdu);
    expect(sent2.status).toBe(200);
    expect((sent2.body.state as Pdu[]).some((e) => e.type === "m.room.member")).toBe(false);

    // The joiner's own membership before the join stays (as Synapse): an invited user's join is authorised
    // against the invite, which the joining server must be able to check.
    const dave = `@dave:${remote}`;
    const invited = await createRoom(alice, { preset: "private_chat", name: "Invite only" });
    await remoteControl("/_test/answer", { server: remote, method: "PUT", path: `${F2}/invite/*`, body: { event: {} } });
    expect((await api("POST", `${r(invited)}/invite`, { token: alice.access_token, body: { user_id: dave } })).status).toBe(200);
    const made3 = await federationApi(remote, "GET", `${F1}/make_join/${enc(invited)}/${enc(dave)}?ver=12`);
    expect(made3.status).toBe(200);
    const join3 = await signTemplate(remote, "12", made3.body.event as JsonObject);
    const sent3 = await federationApi(remote, "PUT", `${F2}/send_join/${enc(invited)}/${enc(join3.eventId)}?omit_members=true`, join3.pdu);
    expect(sent3.status).toBe(200);
    const members = (sent3.body.state as Pdu[]).filter((e) => e.type === "m.room.member");
    expect(members.map((e) => [e.state_key, (e.content as { membership: string }).membership])).toEqual([[dave, "invite"]]);
  });

  it("refuses what the spec lists: unknown room 404, another server's user 403, unsupported version 400, an invite-only room 403", async () => {
    const remote = "r1.remote.test";
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat", room_version: "11" });
    const bob = `@bob:${remote}`;
    const unknown = await federationApi(remote, "GET", `${F1}/make_join/${enc("!nope:test.local")}/${enc(bob)}?ver=11`);
    expect(unknown.status).toBe(404);
    const notTheirs = await federationApi(remote, "GET", `${F1}/make_join/${enc(roomId)}/${enc("@bob:elsewhere.remote.test")}?ver=11`);
    expect(notTheirs.status).toBe(403);
    const version = await federationApi(remote, "GET", `${F1}/make_join/${enc(roomId)}/${enc(bob)}?ver=10&ver=12`);
    expect(version.status).toBe(400);
    expect(version.body.errcode).toBe("M_INCOMPATIBLE_ROOM_VERSION");
    expect(version.body.room_version).toBe("11");
    const privateRoom = await createRoom(alice, { preset: "private_chat" });
    const closed = await federationApi(remote, "GET", `${F1}/make_join/${enc(privateRoom)}/${enc(bob)}?ver=12`);
    expect(closed.status).toBe(403);
    const unsigned = await api("GET", `${F1}/make_join/${enc(roomId)}/${enc(bob)}?ver=11`);
    expect(unsigned.status).toBe(401);
  });

  it("send_join refuses a body that is not the join of the path: wrong event ID, not a join, another server's sender", async () => {
    const remote = "r1.remote.test";
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const bob = `@bob:${remote}`;
    const made = await federationApi(remote, "GET", `${F1}/make_join/${enc(roomId)}/${enc(bob)}?ver=12`);
    const join = await signTemplate(remote, "12", made.body.event as JsonObject);
    const wrongId = await federationApi(remote, "PUT", `${F2}/send_join/${enc(roomId)}/${enc("$other")}`, join.pdu);
    expect(wrongId.status).toBe(400);
    const leave = await signTemplate(remote, "12", made.body.event as JsonObject, { content: { membership: "leave" } });
    const notJoin = await federationApi(remote, "PUT", `${F2}/send_join/${enc(roomId)}/${enc(leave.eventId)}`, leave.pdu);
    expect(notJoin.status).toBe(400);
    const other = await federationApi("r2.remote.test", "PUT", `${F2}/send_join/${enc(roomId)}/${enc(join.eventId)}`, join.pdu);
    expect(other.status).toBe(400);
    const garbage = await federationApi(remote, "PUT", `${F2}/send_join/${enc(roomId)}/${enc(join.eventId)}`, "{not json");
    expect(garbage.status).toBe(400);
    const members = await api("GET", `${r(roomId)}/joined_members`, { token: alice.access_token });
    expect(Object.keys(members.body.joined)).toEqual([alice.user_id]);
  });

  it("the deprecated v1 send_join and send_leave refuse the wrong membership and answer [200, body]", async () => {
    const remote = "r1.remote.test";
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const bob = `@bob:${remote}`;
    const made = await federationApi(remote, "GET", `${F1}/make_join/${enc(roomId)}/${enc(bob)}?ver=12`);
    const join = await signTemplate(remote, "12", made.body.event as JsonObject, { origin_server_ts: Date.now() });
    const leaveAsJoin = await signTemplate(remote, "12", made.body.event as JsonObject, { content: { membership: "leave" } });
    expect((await federationApi(remote, "PUT", `${F1}/send_join/${enc(roomId)}/${enc(leaveAsJoin.eventId)}`, leaveAsJoin.pdu)).status).toBe(400);
    const joined = await federationApi(remote, "PUT", `${F1}/send_join/${enc(roomId)}/${enc(join.eventId)}`, join.pdu);
    expect(joined.status).toBe(200);
    expect(joined.body[0]).toBe(200);
    expect((joined.body[1].state as Pdu[]).some((e) => e.type === "m.room.create")).toBe(true);
    expect(Array.isArray(joined.body[1].auth_chain)).toBe(true);

    const madeLeave = await federationApi(remote, "GET", `${F1}/make_leave/${enc(roomId)}/${enc(bob)}`);
    const joinAsLeave = await signTemplate(remote, "12", madeLeave.body.event as JsonObject, { content: { membership: "join" }, origin_server_ts: Date.now() });
    expect((await federationApi(remote, "PUT", `${F1}/send_leave/${enc(roomId)}/${enc(joinAsLeave.eventId)}`, joinAsLeave.pdu)).status).toBe(400);
    const leave = await signTemplate(remote, "12", madeLeave.body.event as JsonObject, { origin_server_ts: Date.now() });
    const left = await federationApi(remote, "PUT", `${F1}/send_leave/${enc(roomId)}/${enc(leave.eventId)}`, leave.pdu);
    expect(left.status).toBe(200);
    expect(left.body).toEqual([200, {}]);
    const members = await api("GET", `${r(roomId)}/joined_members`, { token: alice.access_token });
    expect(Object.keys(members.body.joined)).toEqual([alice.user_id]);
  });
});

describe("make_join / send_join of a restricted room (resident side, v8+)", () => {
  it("refuses a remote user outside the allowed rooms (403, or 400 when this server is not in one); once they joined one, the template names our authoriser, passes the auth check and send_join co-signs it", async () => {
    const remote = "r1.remote.test";
    const alice = await newUser("alice");
    const allowed = await createRoom(alice, { preset: "public_chat", room_version: "8" });
    const roomId = await createRoom(alice, {
      preset: "public_chat",
      room_version: "8",
      initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: allowed }] } }],
    });
    const bob = `@bob:${remote}`;
    // Not in the allowed room, which this server is in: 403, as Synapse (the joining server stops there).
    const outside = await federationApi(remote, "GET", `${F1}/make_join/${enc(roomId)}/${enc(bob)}?ver=8`);
    expect(outside.status).toBe(403);
    expect(outside.body.errcode).toBe("M_FORBIDDEN");
    // An allowed room this server is not in: it cannot tell, 400 M_UNABLE_TO_AUTHORISE_JOIN (try another server).
    const unknownAllowed = await createRoom(alice, {
      preset: "public_chat",
      room_version: "8",
      initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: allowed }, { type: "m.room_membership", room_id: "!elsewhere:r2.remote.test" }] } }],
    });
    const cannotTell = await federationApi(remote, "GET", `${F1}/make_join/${enc(unknownAllowed)}/${enc(bob)}?ver=8`);
    expect(cannotTell.status).toBe(400);
    expect(cannotTell.body.errcode).toBe("M_UNABLE_TO_AUTHORISE_JOIN");

    const madeAllowed = await federationApi(remote, "GET", `${F1}/make_join/${enc(allowed)}/${enc(bob)}?ver=8`);
    const joinAllowed = await signTemplate(remote, "8", madeAllowed.body.event as JsonObject, { origin_server_ts: Date.now() });
    expect((await federationApi(remote, "PUT", `${F2}/send_join/${enc(allowed)}/${enc(joinAllowed.eventId)}`, joinAllowed.pdu)).status).toBe(200);

    // The template carries our authorising user; the make_join check must not ask for the co-signature
    // that only send_join adds (it answered 403 "not signed by the server of join_authorised_via_users_server").
    const made = await federationApi(remote, "GET", `${F1}/make_join/${enc(roomId)}/${enc(bob)}?ver=8`);
    expect(made.status).toBe(200);
    expect((made.body.event as { content: JsonObject }).content.join_authorised_via_users_server).toBe(alice.user_id);
    const join = await signTemplate(remote, "8", made.body.event as JsonObject, { origin_server_ts: Date.now() });
    const sent = await federationApi(remote, "PUT", `${F2}/send_join/${enc(roomId)}/${enc(join.eventId)}`, join.pdu);
    expect(sent.status).toBe(200);
    expect(Object.keys((sent.body.event as Pdu).signatures)).toEqual(expect.arrayContaining([remote, SERVER_NAME]));
    const members = await api("GET", `${r(roomId)}/joined_members`, { token: alice.access_token });
    expect(Object.keys(members.body.joined)).toContain(bob);
  });
});

describe("make_join of a restricted room whose allowed room this server left", () => {
  it("a remote member of the allowed room no longer counts: 400 M_UNABLE_TO_AUTHORISE_JOIN (the joining server tries another resident)", async () => {
    const remote = uniqueServer("stale");
    const alice = await newUser("alice");
    const allowed = await createRoom(alice, { preset: "public_chat", room_version: "8" });
    const roomId = await createRoom(alice, {
      preset: "public_chat",
      room_version: "8",
      initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: allowed }] } }],
    });
    const bob = `@bob:${remote}`;
    const made = await federationApi(remote, "GET", `${F1}/make_join/${enc(allowed)}/${enc(bob)}?ver=8`);
    const join = await signTemplate(remote, "8", made.body.event as JsonObject, { origin_server_ts: Date.now() });
    expect((await federationApi(remote, "PUT", `${F2}/send_join/${enc(allowed)}/${enc(join.eventId)}`, join.pdu)).status).toBe(200);
    expect((await federationApi(remote, "GET", `${F1}/make_join/${enc(roomId)}/${enc(bob)}?ver=8`)).status).toBe(200);
    // Our last member leaves the allowed room: bob's membership there is no longer known to this server.
    expect((await membership(alice, allowed, "leave")).status).toBe(200);
    const stale = await federationApi(remote, "GET", `${F1}/make_join/${enc(roomId)}/${enc(bob)}?ver=8`);
    expect(stale.status).toBe(400);
    expect(stale.body.errcode).toBe("M_UNABLE_TO_AUTHORISE_JOIN");
  });
});

describe("restricted joins that this server cannot authorise itself", () => {
  it("a local user's join goes to the server of a member who may invite when no local member may (Synapse's _should_perform_remote_join)", async () => {
    const remote = uniqueServer("authoriser");
    const alice = await newUser("alice");
    const carol = await newUser("carol");
    const allowed = await createRoom(alice, { preset: "public_chat", room_version: "8" });
    const roomId = await createRoom(alice, {
      preset: "public_chat",
      room_version: "8",
      initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: allowed }] } }],
    });
    // A remote member joins the restricted room (authorised by alice) and gets the invite power; alice loses it.
    const bob = `@bob:${remote}`;
    for (const room of [allowed, roomId]) {
      const made = await federationApi(remote, "GET", `${F1}/make_join/${enc(room)}/${enc(bob)}?ver=8`);
      const join = await signTemplate(remote, "8", made.body.event as JsonObject, { origin_server_ts: Date.now() });
      expect((await federationApi(remote, "PUT", `${F2}/send_join/${enc(room)}/${enc(join.eventId)}`, join.pdu)).status).toBe(200);
    }
    await remoteControl("/_test/answer", { server: remote, method: "PUT", path: `${F1}/send/*`, body: { pdus: {} } });
    const levels = (await api("GET", `${r(roomId)}/state/m.room.power_levels/`, { token: alice.access_token })).body as JsonObject;
    const demoted = { ...levels, invite: 100, users: { [bob]: 100, [alice.user_id]: 50 } };
    expect((await api("PUT", `${r(roomId)}/state/m.room.power_levels/`, { token: alice.access_token, body: demoted })).status).toBe(200);
    expect((await membership(carol, allowed, "join")).status).toBe(200);

    // The remote server refuses; what matters is that it was asked (before: 400 M_UNABLE_TO_GRANT_JOIN here).
    await remoteControl("/_test/answer", { server: remote, method: "GET", path: `${F1}/make_join/*`, status: 403, body: { errcode: "M_FORBIDDEN", error: "no" } });
    const res = await membership(carol, roomId, "join");
    expect(res.status).toBe(403);
    const asked = (await remoteControl<{ method: string; path: string }[]>(`/_test/answered?server=${remote}`)).filter((a) => a.path.startsWith(`${F1}/make_join/`));
    expect(asked.map((a) => a.path)).toEqual([`${F1}/make_join/${enc(roomId)}/${enc(carol.user_id)}`]);
  });
});

describe("POST /join through named servers", () => {
  it("tries only the servers the client named, not also the room ID's server (as Synapse); with none named, the room ID's server", async () => {
    const carol = await newUser("carol");
    const home = uniqueServer("home");
    const named = uniqueServer("named");
    const roomId = `!far:${home}`;
    for (const server of [home, named]) {
      await remoteControl("/_test/answer", { server, method: "GET", path: `${F1}/make_join/*`, status: 400, body: { errcode: "M_UNABLE_TO_GRANT_JOIN", error: `no one on ${server}` } });
    }
    const madeJoins = async (server: string) => (await remoteControl<{ path: string }[]>(`/_test/answered?server=${server}`)).filter((a) => a.path.startsWith(`${F1}/make_join/`)).length;
    const res = await api("POST", `${V3}/join/${enc(roomId)}?server_name=${enc(named)}`, { token: carol.access_token, body: {} });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_UNABLE_TO_GRANT_JOIN");
    expect([await madeJoins(named), await madeJoins(home)]).toEqual([1, 0]);
    const bare = await api("POST", `${V3}/join/${enc(roomId)}`, { token: carol.access_token, body: {} });
    expect(bare.status).toBe(400);
    expect([await madeJoins(named), await madeJoins(home)]).toEqual([1, 1]);
  });
});

describe("PUT /send/{txnId} (inbound PDUs)", () => {
  it("persists a remote member's message; every PDU gets a result; bad PDUs change nothing else", async () => {
    const { alice, roomId, bob, remote, join, roomVersion } = await roomWithRemoteMember();
    const auth = await messageAuth(roomId, alice, bob);
    const good = await remoteMessage(remote, roomVersion, roomId, bob, [join.eventId], auth, "hello from afar", join.pdu.depth + 1);
    // A forged signature: signed by another server's key.
    const forged = await remotePdu("r2.remote.test", roomVersion, { ...good.pdu, content: { msgtype: "m.text", body: "forged" }, signatures: undefined } as never);
    // Fails auth: a user who is not in the room.
    const outsider = await remoteMessage(remote, roomVersion, roomId, `@mallory:${remote}`, [join.eventId], auth, "let me in", join.pdu.depth + 1);
    const res = await federationApi(remote, "PUT", `${F1}/send/txn-${Date.now()}`, {
      origin: remote,
      origin_server_ts: Date.now(),
      pdus: [good.pdu, { ...forged.pdu, sender: bob }, outsider.pdu],
      edus: [],
    });
    expect(res.status).toBe(200);
    expect(res.body.pdus[good.eventId]).toEqual({});
    // The outsider's event is stored as rejected: processed, so its result is empty (as Synapse); the
    // forged one could not be processed at all.
    expect(res.body.pdus[outsider.eventId]).toEqual({});
    const results = Object.values(res.body.pdus as Record<string, { error?: string }>);
    expect(results.filter((x) => x.error !== undefined).length).toBe(1);
    expect(await timelineBodies(alice, roomId)).toEqual(["hello from afar"]);
  });

  it("a PDU whose content does not match its hash is kept in redacted form", async () => {
    const { alice, roomId, bob, remote, join, roomVersion } = await roomWithRemoteMember();
    const auth = await messageAuth(roomId, alice, bob);
    const msg = await remoteMessage(remote, roomVersion, roomId, bob, [join.eventId], auth, "original", join.pdu.depth + 1);
    const tampered = { ...msg.pdu, content: { msgtype: "m.text", body: "tampered" } };
    const res = await federationApi(remote, "PUT", `${F1}/send/txn-h-${Date.now()}`, { origin: remote, origin_server_ts: Date.now(), pdus: [tampered], edus: [] });
    expect(res.status).toBe(200);
    const page = await api("GET", `${r(roomId)}/messages?dir=b&limit=5`, { token: alice.access_token });
    const stored = (page.body.chunk as { event_id: string; content: JsonObject }[]).find((e) => e.event_id === msg.eventId);
    expect(stored?.content).toEqual({});
  });

  it("refuses a transaction whose origin is not the signing server, unsigned requests, garbage and oversized bodies", async () => {
    const remote = "r1.remote.test";
    const body = { origin: "r2.remote.test", origin_server_ts: Date.now(), pdus: [], edus: [] };
    expect((await federationApi(remote, "PUT", `${F1}/send/t1`, body)).status).toBe(403);
    expect((await api("PUT", `${F1}/send/t2`, { body: { ...body, origin: remote } })).status).toBe(401);
    const garbage = await federationApi(remote, "PUT", `${F1}/send/t3`, "{{{");
    expect(garbage.status).toBe(400);
    const tooMany = await federationApi(remote, "PUT", `${F1}/send/t4`, { origin: remote, origin_server_ts: 1, pdus: new Array(51).fill({}), edus: [] });
    expect(tooMany.status).toBe(400);
    const notLists = await federationApi(remote, "PUT", `${F1}/send/t5`, { origin: remote, origin_server_ts: 1, pdus: {}, edus: [] });
    expect(notLists.status).toBe(400);
  });

  it("an event after a gap the origin cannot fill gets an error and is not stored", async () => {
    const { alice, roomId, bob, remote, join, roomVersion } = await roomWithRemoteMember();
    const auth = await messageAuth(roomId, alice, bob);
    const orphan = await remoteMessage(remote, roomVersion, roomId, bob, ["$unknownprev"], auth, "after a gap", join.pdu.depth + 5);
    const res = await federationApi(remote, "PUT", `${F1}/send/txn-g-${Date.now()}`, { origin: remote, origin_server_ts: Date.now(), pdus: [orphan.pdu], edus: [] });
    expect(res.status).toBe(200);
    expect(res.body.pdus[orphan.eventId].error).toBeDefined();
    expect(await timelineBodies(alice, roomId)).toEqual([]);
  });
});

describe("reads for other servers", () => {
  it("state_ids, state, event_auth, backfill and get_missing_events answer a server in the room, and 403 any other", async () => {
    const { alice, roomId, bob, remote, join, roomVersion } = await roomWithRemoteMember();
    for (let i = 0; i < 3; i++) expect((await send(alice, roomId, { msgtype: "m.text", body: `m${i}` })).status).toBe(200);
    const latest = (await api("GET", `${r(roomId)}/messages?dir=b&limit=1`, { token: alice.access_token })).body.chunk[0].event_id as string;

    const ids = await federationApi(remote, "GET", `${F1}/state_ids/${enc(roomId)}?event_id=${enc(latest)}`);
    expect(ids.status).toBe(200);
    expect(ids.body.pdu_ids).toContain(join.eventId);
    expect(ids.body.auth_chain_ids.length).toBeGreaterThan(0);
    const full = await federationApi(remote, "GET", `${F1}/state/${enc(roomId)}?event_id=${enc(latest)}`);
    expect((full.body.pdus as Pdu[]).length).toBe(ids.body.pdu_ids.length);
    const authOfJoin = await federationApi(remote, "GET", `${F1}/event_auth/${enc(roomId)}/${enc(join.eventId)}`);
    expect((authOfJoin.body.auth_chain as Pdu[]).some((e) => e.type === "m.room.join_rules")).toBe(true);
    // v12: the create event authorises every event without being named in auth_events; it is in the chain
    // (as Synapse and gomatrixserverlib count it: Complement's TestEventAuth), once.
    const createId = `$${roomId.slice(1)}`;
    const chainIds = await Promise.all((authOfJoin.body.auth_chain as Pdu[]).map((e) => eventIdFor(e, roomVersionRules(roomVersion)!)));
    expect(chainIds.filter((id) => id === createId)).toHaveLength(1);
    expect(ids.body.auth_chain_ids).toContain(createId);
    // The create event's own auth chain is empty.
    const authOfCreate = await federationApi(remote, "GET", `${F1}/event_auth/${enc(roomId)}/${enc(createId)}`);
    expect(authOfCreate.body.auth_chain).toEqual([]);

    const back = await federationApi(remote, "GET", `${F1}/backfill/${enc(roomId)}?v=${enc(latest)}&limit=3`);
    expect(back.status).toBe(200);
    const bodies = (back.body.pdus as Pdu[]).map((e) => (e.content as { body?: string }).body);
    // Deepest first: the latest event and the two before it.
    expect(bodies).toEqual(["m2", "m1", "m0"]);

    const missing = await federationApi(remote, "POST", `${F1}/get_missing_events/${enc(roomId)}`, {
      earliest_events: [join.eventId],
      latest_events: [latest],
      limit: 10,
      min_depth: 0,
    });
    expect(missing.status).toBe(200);
    // Oldest first, between the join (excluded) and the latest (excluded).
    expect((missing.body.events as Pdu[]).map((e) => (e.content as { body?: string }).body)).toEqual(["m0", "m1"]);

    const stranger = await federationApi("r2.remote.test", "GET", `${F1}/state_ids/${enc(roomId)}?event_id=${enc(latest)}`);
    expect(stranger.status).toBe(403);
    const badParam = await federationApi(remote, "GET", `${F1}/state_ids/${enc(roomId)}`);
    expect(badParam.status).toBe(400);
    void bob;
  });

  it("history visibility `joined`: a server sees events from before its users joined only in redacted form", async () => {
    const remote = "r1.remote.test";
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "joined" } }] });
    expect((await send(alice, roomId, { msgtype: "m.text", body: "before" })).status).toBe(200);
    const bob = `@bob:${remote}`;
    const made = await federationApi(remote, "GET", `${F1}/make_join/${enc(roomId)}/${enc(bob)}?ver=12`);
    const join = await signTemplate(remote, "12", made.body.event as JsonObject);
    expect((await federationApi(remote, "PUT", `${F2}/send_join/${enc(roomId)}/${enc(join.eventId)}`, join.pdu)).status).toBe(200);
    expect((await send(alice, roomId, { msgtype: "m.text", body: "after" })).status).toBe(200);
    const latest = (await api("GET", `${r(roomId)}/messages?dir=b&limit=1`, { token: alice.access_token })).body.chunk[0].event_id as string;
    const back = await federationApi(remote, "GET", `${F1}/backfill/${enc(roomId)}?v=${enc(latest)}&limit=10`);
    const messages = (back.body.pdus as Pdu[]).filter((e) => e.type === "m.room.message").map((e) => (e.content as { body?: string }).body ?? null);
    expect(messages).toEqual(["after", null]);
  });
});

describe("GET /event/{eventId}", () => {
  it("serves an event of a room the asking server is in (found through the event index); 404 for unknown events, 403 for other servers", async () => {
    const { alice, roomId, remote } = await roomWithRemoteMember();
    const sent = await send(alice, roomId, { msgtype: "m.text", body: "fetch me" });
    const eventId = sent.body.event_id as string;
    // The index is written after the commit, in the background: wait for it (bounded).
    let res = await federationApi(remote, "GET", `${F1}/event/${enc(eventId)}`);
    for (let i = 0; i < 100 && res.status === 404; i++) {
      await new Promise((done) => setTimeout(done, 20));
      res = await federationApi(remote, "GET", `${F1}/event/${enc(eventId)}`);
    }
    expect(res.status).toBe(200);
    expect(res.body.origin).toBe(SERVER_NAME);
    expect((res.body.pdus as Pdu[])[0]!.content).toEqual({ msgtype: "m.text", body: "fetch me" });
    expect((await federationApi(remote, "GET", `${F1}/event/${enc("$nope")}`)).status).toBe(404);
    expect((await federationApi("r2.remote.test", "GET", `${F1}/event/${enc(eventId)}`)).status).toBe(403);
  });
});

describe("invites from other servers", () => {
  it("co-signs an invite to a room this server is not in, shows it in /sync with the stripped state, and a rejection works when the inviter is unreachable", async () => {
    const carol = await newUser("carol");
    const roomId = `!far-${Date.now()}:r3.remote.test`;
    const inviteServer = "r3.remote.test";
    const invite = await remotePdu(inviteServer, "11", {
      room_id: roomId,
      sender: `@inviter:${inviteServer}`,
      type: "m.room.member",
      state_key: carol.user_id,
      content: { membership: "invite" },
      origin_server_ts: Date.now(),
      depth: 5,
      prev_events: ["$p"],
      auth_events: ["$a"],
    });
    const res = await federationApi(inviteServer, "PUT", `${F2}/invite/${enc(roomId)}/${enc(invite.eventId)}`, {
      room_version: "11",
      event: invite.pdu,
      invite_room_state: [{ type: "m.room.name", state_key: "", sender: `@inviter:${inviteServer}`, content: { name: "Far away" } }],
    });
    expect(res.status).toBe(200);
    expect(Object.keys((res.body.event as Pdu).signatures)).toEqual(expect.arrayContaining([inviteServer, SERVER_NAME]));

    const sync = await api("GET", `${V3}/sync?timeout=0`, { token: carol.access_token });
    const invited = sync.body.rooms.invite[roomId];
    expect(invited.invite_state.events.map((e: { type: string }) => e.type)).toEqual(["m.room.name", "m.room.member"]);

    // The inviting server does not serve make_leave here: the rejection is kept locally.
    const leave = await api("POST", `${r(roomId)}/leave`, { token: carol.access_token, body: {} });
    expect(leave.status).toBe(200);
    const after = await api("GET", `${V3}/sync?timeout=0&since=${sync.body.next_batch}`, { token: carol.access_token });
    expect(after.body.rooms.invite?.[roomId]).toBeUndefined();
    expect(after.body.rooms.leave?.[roomId]).toBeDefined();
  });

  it("v12 (MSC4311, as Synapse): the create event in invite_state is the whole event, for a local invite and one from another server", async () => {
    // Local: alice invites dave in a v12 room of ours.
    const alice = await newUser("alice");
    const dave = await newUser("dave");
    const local = await createRoom(alice, { preset: "public_chat", room_version: "12" });
    expect((await membership(alice, local, "invite", { user_id: dave.user_id })).status).toBe(200);
    // From another server: a v12 room whose ID is its create event's hash.
    const inviteServer = uniqueServer("v12-inviter");
    const inviter = `@inviter:${inviteServer}`;
    const create = await remotePdu(inviteServer, "12", {
      sender: inviter,
      type: "m.room.create",
      state_key: "",
      content: { room_version: "12" },
      origin_server_ts: Date.now(),
      depth: 1,
      prev_events: [],
      auth_events: [],
    } as unknown as Pdu);
    const remoteRoom = `!${create.eventId.slice(1)}`;
    const invite = await remotePdu(inviteServer, "12", {
      room_id: remoteRoom,
      sender: inviter,
      type: "m.room.member",
      state_key: dave.user_id,
      content: { membership: "invite" },
      origin_server_ts: Date.now(),
      depth: 5,
      prev_events: ["$p"],
      auth_events: ["$a"],
    });
    const res = await federationApi(inviteServer, "PUT", `${F2}/invite/${enc(remoteRoom)}/${enc(invite.eventId)}`, {
      room_version: "12",
      event: invite.pdu,
      invite_room_state: [{ ...create.pdu, unsigned: { age: 5 } }],
    });
    expect(res.status).toBe(200);

    const sync = await api("GET", `${V3}/sync?timeout=0`, { token: dave.access_token });
    for (const roomId of [local, remoteRoom]) {
      const events = sync.body.rooms.invite[roomId].invite_state.events as JsonObject[];
      const createEvent = events.find((e) => e.type === "m.room.create")!;
      expect(typeof createEvent.origin_server_ts).toBe("number");
      expect(createEvent.hashes).toBeDefined();
      expect(createEvent.unsigned).toBeUndefined();
      // Other stripped events stay stripped.
      expect(Object.keys(events.find((e) => e.type === "m.room.member")!).sort()).toEqual(["content", "sender", "state_key", "type"]);
    }
  });

  it("refuses invites that are not for one of our users, not from the origin, or not invites", async () => {
    const inviteServer = "r3.remote.test";
    const roomId = `!x-${Date.now()}:${inviteServer}`;
    const base = { room_id: roomId, sender: `@inviter:${inviteServer}`, type: "m.room.member", origin_server_ts: Date.now(), depth: 3, prev_events: ["$p"], auth_events: ["$a"] };
    const notOurs = await remotePdu(inviteServer, "11", { ...base, state_key: "@someone:elsewhere.test", content: { membership: "invite" } });
    expect((await federationApi(inviteServer, "PUT", `${F2}/invite/${enc(roomId)}/${enc(notOurs.eventId)}`, { room_version: "11", event: notOurs.pdu })).status).toBe(400);
    const join = await remotePdu(inviteServer, "11", { ...base, state_key: `@x:${SERVER_NAME}`, content: { membership: "join" } });
    expect((await federationApi(inviteServer, "PUT", `${F2}/invite/${enc(roomId)}/${enc(join.eventId)}`, { room_version: "11", event: join.pdu })).status).toBe(400);
    const invite = await remotePdu(inviteServer, "11", { ...base, state_key: `@x:${SERVER_NAME}`, content: { membership: "invite" } });
    const wrongOrigin = await federationApi("r1.remote.test", "PUT", `${F2}/invite/${enc(roomId)}/${enc(invite.eventId)}`, { room_version: "11", event: invite.pdu });
    expect(wrongOrigin.status).toBe(400);
    const badVersion = await federationApi(inviteServer, "PUT", `${F2}/invite/${enc(roomId)}/${enc(invite.eventId)}`, { room_version: "999", event: invite.pdu });
    expect(badVersion.status).toBe(400);
    expect(badVersion.body.errcode).toBe("M_INCOMPATIBLE_ROOM_VERSION");
  });
});
