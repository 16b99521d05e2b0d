// Membership and power-level rules as a client meets them: the 403s (not joined, not invited, banned,
// insufficient power for state / kick / ban / redact, invite-only join), and the allowed side of each.
import { describe, expect, it } from "vitest";
import { unwrap } from "../../durable-objects/room/outcome.js";
import { api, login } from "./helpers.js";
import { V3, allState, createRoom, getState, join, membership, newUser, putState, r, roomStub, send } from "./room-helpers.js";

const memberOf = async (roomId: string, userId: string) => (await roomStub(roomId).membership(userId))?.membership;

describe("room membership and permissions", () => {
  it("users who are not joined can neither send, set state nor read state; unknown rooms answer 403", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });

    const sendRes = await send(bob, roomId, { msgtype: "m.text", body: "hi" });
    expect(sendRes.status).toBe(403);
    expect(sendRes.body.errcode).toBe("M_FORBIDDEN");
    expect((await putState(bob, roomId, "m.room.topic", "", { topic: "x" })).status).toBe(403);
    expect((await allState(bob, roomId)).status).toBe(403);
    expect((await getState(bob, roomId, "m.room.name")).status).toBe(403);

    const unknown = "!doesnotexist:test.local";
    expect((await send(alice, unknown, { body: "x" })).status).toBe(403);
    expect((await allState(alice, unknown)).status).toBe(403);
    // Joining a room nobody here knows: no server to join through.
    const j = await join(alice, unknown);
    expect(j.status).toBe(404);
    const leave = await membership(alice, unknown, "leave");
    expect(leave.status).toBe(404);
    // Malformed room IDs are a 400.
    expect((await api("POST", `${V3}/rooms/nope/join`, { token: alice.access_token, body: {} })).status).toBe(400);

    // The allowed side: after joining the public room, bob sends and reads.
    expect((await join(bob, roomId)).body).toEqual({ room_id: roomId });
    expect((await send(bob, roomId, { msgtype: "m.text", body: "hi" })).status).toBe(200);
    expect((await allState(bob, roomId)).status).toBe(200);
  });

  it("invite-only rooms need an invite, and inviting needs the invite level", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const carol = await newUser("carol");
    // private_chat: invite only; every member may invite (invite level 0, Synapse's preset). The
    // invite level is raised to 50 below to check it.
    const roomId = await createRoom(alice, { power_level_content_override: { invite: 50 } });

    const denied = await join(bob, roomId);
    expect(denied.status).toBe(403);
    expect(denied.body.errcode).toBe("M_FORBIDDEN");
    expect(await memberOf(roomId, bob.user_id)).toBeUndefined();

    // Not joined: cannot invite.
    expect((await membership(carol, roomId, "invite", { user_id: bob.user_id })).status).toBe(403);
    expect((await membership(alice, roomId, "invite", { user_id: bob.user_id, reason: "welcome" })).status).toBe(200);
    expect(await memberOf(roomId, bob.user_id)).toBe("invite");
    // Invited users cannot read the state yet (as Synapse).
    expect((await allState(bob, roomId)).status).toBe(403);
    expect((await join(bob, roomId)).status).toBe(200);
    expect(await memberOf(roomId, bob.user_id)).toBe("join");

    // bob has power 0 < invite 50.
    const lowInvite = await membership(bob, roomId, "invite", { user_id: carol.user_id });
    expect(lowInvite.status).toBe(403);
    // Inviting someone already joined is refused by the auth rules.
    expect((await membership(alice, roomId, "invite", { user_id: bob.user_id })).status).toBe(403);
    // Missing or malformed user_id.
    expect((await membership(alice, roomId, "invite", {})).status).toBe(400);
    expect((await membership(alice, roomId, "invite", { user_id: "carol" })).status).toBe(400);
    // Rejecting an invite is a leave.
    expect((await membership(alice, roomId, "invite", { user_id: carol.user_id })).status).toBe(200);
    expect((await membership(carol, roomId, "leave")).status).toBe(200);
    expect(await memberOf(roomId, carol.user_id)).toBe("leave");
  });

  it("state events, kicks, bans and redactions need their power levels", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const carol = await newUser("carol");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    await join(carol, roomId);

    const name = await putState(bob, roomId, "m.room.name", "", { name: "bob's" });
    expect(name.status).toBe(403);
    expect(name.body.error).toMatch(/power level/);
    expect((await putState(alice, roomId, "m.room.name", "", { name: "alice's" })).status).toBe(200);
    // Another user's state key is theirs alone.
    expect((await putState(bob, roomId, "org.example.profile", carol.user_id, { x: 1 })).status).toBe(403);

    const kick = await membership(bob, roomId, "kick", { user_id: carol.user_id });
    expect(kick.status).toBe(403);
    const ban = await membership(bob, roomId, "ban", { user_id: carol.user_id });
    expect(ban.status).toBe(403);
    expect(await memberOf(roomId, carol.user_id)).toBe("join");

    const aliceMsg = (await send(alice, roomId, { msgtype: "m.text", body: "from alice" })).body.event_id;
    const bobMsg = (await send(bob, roomId, { msgtype: "m.text", body: "from bob" })).body.event_id;
    const redactOther = await api("PUT", `${r(roomId)}/redact/${encodeURIComponent(aliceMsg)}/x1`, { token: bob.access_token, body: {} });
    expect(redactOther.status).toBe(403);
    const redactOwn = await api("PUT", `${r(roomId)}/redact/${encodeURIComponent(bobMsg)}/x2`, { token: bob.access_token, body: {} });
    expect(redactOwn.status).toBe(200);
    // The creator may redact others' events; nobody may redact the create event.
    expect((await api("PUT", `${r(roomId)}/redact/${encodeURIComponent(aliceMsg)}/x3`, { token: alice.access_token, body: {} })).status).toBe(200);
    const createId = "$" + roomId.slice(1);
    expect((await api("PUT", `${r(roomId)}/redact/${encodeURIComponent(createId)}/x4`, { token: alice.access_token, body: {} })).status).toBe(403);

    // The allowed side: alice kicks and bans.
    expect((await membership(alice, roomId, "kick", { user_id: bob.user_id, reason: "out" })).status).toBe(200);
    expect(await memberOf(roomId, bob.user_id)).toBe("leave");
    // Kicking someone who is not in the room.
    expect((await membership(alice, roomId, "kick", { user_id: bob.user_id })).status).toBe(403);
    expect((await membership(alice, roomId, "ban", { user_id: carol.user_id, reason: "spam" })).status).toBe(200);
    expect(await memberOf(roomId, carol.user_id)).toBe("ban");
    const banEvent = await getState(alice, roomId, "m.room.member", carol.user_id);
    expect(banEvent.body).toEqual({ membership: "ban", reason: "spam" });
  });

  it("banned users cannot join or be invited until unbanned", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    expect((await membership(alice, roomId, "ban", { user_id: bob.user_id })).status).toBe(200);

    const rejoin = await join(bob, roomId);
    expect(rejoin.status).toBe(403);
    expect((await membership(alice, roomId, "invite", { user_id: bob.user_id })).status).toBe(403);
    expect((await send(bob, roomId, { body: "still here?" })).status).toBe(403);
    // Unbanning someone who is not banned is refused.
    const stranger = await newUser("stranger");
    const notBanned = await membership(alice, roomId, "unban", { user_id: stranger.user_id });
    expect(notBanned.status).toBe(403);
    expect(notBanned.body.errcode).toBe("M_BAD_STATE");
    // A non-moderator cannot unban.
    await join(stranger, roomId);
    expect((await membership(stranger, roomId, "unban", { user_id: bob.user_id })).status).toBe(403);

    expect((await membership(alice, roomId, "unban", { user_id: bob.user_id })).status).toBe(200);
    expect(await memberOf(roomId, bob.user_id)).toBe("leave");
    expect((await join(bob, roomId)).status).toBe(200);
  });

  it("after leaving, state reads stop at the leave; forget needs a left room", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat", name: "before" });
    await join(bob, roomId);
    const forgetJoined = await membership(bob, roomId, "forget");
    expect(forgetJoined.status).toBe(400);

    expect((await membership(bob, roomId, "leave", { reason: "bye" })).status).toBe(200);
    expect((await getState(alice, roomId, "m.room.member", bob.user_id)).body).toEqual({ membership: "leave", reason: "bye" });
    expect((await putState(alice, roomId, "m.room.name", "", { name: "after" })).status).toBe(200);
    // bob sees the state as it was when he left.
    expect((await getState(bob, roomId, "m.room.name")).body).toEqual({ name: "before" });
    expect((await getState(alice, roomId, "m.room.name")).body).toEqual({ name: "after" });
    expect((await send(bob, roomId, { body: "x" })).status).toBe(403);
    // Leaving twice: the auth rules refuse a leave without a membership to leave.
    expect((await membership(bob, roomId, "leave")).status).toBe(403);

    expect((await membership(bob, roomId, "forget")).status).toBe(200);
    expect((await allState(bob, roomId)).status).toBe(403);
    // Joining again undoes the forget.
    await join(bob, roomId);
    expect((await getState(bob, roomId, "m.room.name")).body).toEqual({ name: "after" });
  });

  it("knocking: only where the join rule allows it, then invite and join", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { initial_state: [{ type: "m.room.join_rules", content: { join_rule: "knock" } }] });
    const inviteOnly = await createRoom(alice);

    const refused = await api("POST", `${V3}/knock/${encodeURIComponent(inviteOnly)}`, { token: bob.access_token, body: {} });
    expect(refused.status).toBe(403);
    const knock = await api("POST", `${V3}/knock/${encodeURIComponent(roomId)}`, { token: bob.access_token, body: { reason: "let me in" } });
    expect(knock.status).toBe(200);
    expect(knock.body).toEqual({ room_id: roomId });
    expect(await memberOf(roomId, bob.user_id)).toBe("knock");
    // A knock is not a join.
    expect((await join(bob, roomId)).status).toBe(403);
    expect((await membership(alice, roomId, "invite", { user_id: bob.user_id })).status).toBe(200);
    expect((await join(bob, roomId)).status).toBe(200);
  });

  it("restricted rooms: joined members of an allowed room join, vouched for by a local member who may invite", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const space = await createRoom(alice, { preset: "public_chat" });
    const restricted = await createRoom(alice, {
      initial_state: [{ type: "m.room.join_rules", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: space }] } }],
    });
    const denied = await join(bob, restricted);
    expect(denied.status).toBe(403);
    expect(denied.body.error).toMatch(/required rooms/);

    await join(bob, space);
    const ok = await join(bob, restricted);
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    const event = await getState(bob, restricted, "m.room.member", bob.user_id);
    expect(event.body.membership).toBe("join");
    expect(event.body.join_authorised_via_users_server).toBe(alice.user_id);

    // knock_restricted (v10+) also admits members of the allowed rooms.
    const knockRestricted = await createRoom(alice, {
      initial_state: [{ type: "m.room.join_rules", content: { join_rule: "knock_restricted", allow: [{ type: "m.room_membership", room_id: space }] } }],
    });
    expect((await join(bob, knockRestricted)).status).toBe(200);
  });

  it("/join/{roomIdOrAlias} resolves local aliases", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const aliasName = `joinme-${crypto.randomUUID().slice(0, 8)}`;
    const roomId = await createRoom(alice, { preset: "public_chat", room_alias_name: aliasName });
    const res = await api("POST", `${V3}/join/${encodeURIComponent(`#${aliasName}:test.local`)}`, { token: bob.access_token, body: {} });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ room_id: roomId });
    const byId = await api("POST", `${V3}/join/${encodeURIComponent(roomId)}`, { token: bob.access_token, body: {} });
    expect(byId.status).toBe(200);
    const missing = await api("POST", `${V3}/join/${encodeURIComponent("#nope-nope:test.local")}`, { token: bob.access_token, body: {} });
    expect(missing.status).toBe(404);
  });

  it("a join keeps the client's custom content; membership and the authorising user are the server's", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const carol = await newUser("carol");
    const aliasName = `custom-${crypto.randomUUID().slice(0, 8)}`;
    const roomId = await createRoom(alice, { preset: "public_chat", room_alias_name: aliasName });
    const byId = await api("POST", `${r(roomId)}/join`, { token: bob.access_token, body: { foo: "bar", reason: "hello", membership: "leave", join_authorised_via_users_server: alice.user_id } });
    expect(byId.status).toBe(200);
    const bobs = await getState(alice, roomId, "m.room.member", bob.user_id);
    expect(bobs.body).toMatchObject({ membership: "join", foo: "bar", reason: "hello" });
    expect(bobs.body.join_authorised_via_users_server).toBeUndefined();
    const byAlias = await api("POST", `${V3}/join/${encodeURIComponent(`#${aliasName}:test.local`)}`, { token: carol.access_token, body: { foo: "baz" } });
    expect(byAlias.status).toBe(200);
    expect((await getState(alice, roomId, "m.room.member", carol.user_id)).body).toMatchObject({ membership: "join", foo: "baz" });
  });

  it("repeating a membership or state event with the same content returns the existing event", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const bob = await newUser("bob");
    await join(bob, roomId);
    const before = (await roomStub(roomId).membership(bob.user_id))!.eventId;
    await join(bob, roomId);
    expect((await roomStub(roomId).membership(bob.user_id))!.eventId).toBe(before);

    const t1 = await putState(alice, roomId, "m.room.topic", "", { topic: "same" });
    const t2 = await putState(alice, roomId, "m.room.topic", "", { topic: "same" });
    expect(t2.body.event_id).toBe(t1.body.event_id);
    const t3 = await putState(alice, roomId, "m.room.topic", "", { topic: "other" });
    expect(t3.body.event_id).not.toBe(t1.body.event_id);
  });

  it("transaction IDs make /send idempotent per device, and only that device sees the transaction_id", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice);
    const a = await send(alice, roomId, { msgtype: "m.text", body: "once" }, "m.room.message", "txn-1");
    const b = await send(alice, roomId, { msgtype: "m.text", body: "once (retry)" }, "m.room.message", "txn-1");
    expect(a.status).toBe(200);
    expect(b.body.event_id).toBe(a.body.event_id);

    const localpart = alice.user_id.slice(1, alice.user_id.indexOf(":"));
    const second = await login(alice.user_id, `password-${localpart}`);
    expect(second.status).toBe(200);
    const other = { ...alice, access_token: second.body.access_token, device_id: second.body.device_id };
    const c = await send(other, roomId, { msgtype: "m.text", body: "other device" }, "m.room.message", "txn-1");
    expect(c.body.event_id).not.toBe(a.body.event_id);

    const [mine] = await roomStub(roomId).clientEvents([a.body.event_id], { userId: alice.user_id, deviceId: alice.device_id });
    expect(mine!.unsigned?.transaction_id).toBe("txn-1");
    expect(mine!.content.body).toBe("once");
    const [theirs] = await roomStub(roomId).clientEvents([a.body.event_id], { userId: alice.user_id, deviceId: other.device_id });
    expect(theirs!.unsigned?.transaction_id).toBeUndefined();
    // The same txn ID on the redact endpoint is idempotent too.
    const r1 = await api("PUT", `${r(roomId)}/redact/${encodeURIComponent(c.body.event_id)}/rtx`, { token: alice.access_token, body: {} });
    const r2 = await api("PUT", `${r(roomId)}/redact/${encodeURIComponent(c.body.event_id)}/rtx`, { token: alice.access_token, body: {} });
    expect(r2.body.event_id).toBe(r1.body.event_id);
  });

  it("world-readable rooms show their state to non-members; oversized events are refused", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { name: "open book", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "world_readable" } }] });
    expect((await getState(bob, roomId, "m.room.name")).body).toEqual({ name: "open book" });
    expect((await allState(bob, roomId)).status).toBe(200);
    // ...but reading is not sending.
    expect((await send(bob, roomId, { body: "x" })).status).toBe(403);

    // Spec: "Size limits": a PDU is at most 65536 bytes.
    const big = await send(alice, roomId, { msgtype: "m.text", body: "x".repeat(70_000) });
    expect(big.status).toBe(413);
    expect(big.body.errcode).toBe("M_TOO_LARGE");
  });

  it("state endpoints: empty and slashed state keys, format=event, 404 for missing state", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { name: "N" });
    expect((await api("GET", `${r(roomId)}/state/m.room.name`, { token: alice.access_token })).body).toEqual({ name: "N" });
    expect((await api("GET", `${r(roomId)}/state/m.room.name/`, { token: alice.access_token })).body).toEqual({ name: "N" });
    const put = await api("PUT", `${r(roomId)}/state/org.example.x/${encodeURIComponent("a/b")}`, { token: alice.access_token, body: { v: 1 } });
    expect(put.status).toBe(200);
    const got = await getState(alice, roomId, "org.example.x", "a/b", "event");
    expect(got.status).toBe(200);
    expect(got.body.state_key).toBe("a/b");
    expect(got.body.event_id).toBe(put.body.event_id);
    expect(got.body.sender).toBe(alice.user_id);
    expect(got.body.room_id).toBe(roomId);
    expect(typeof got.body.origin_server_ts).toBe("number");
    const missing = await getState(alice, roomId, "m.room.topic");
    expect(missing.status).toBe(404);
    expect(missing.body.errcode).toBe("M_NOT_FOUND");
    // A replaced state event shows what it replaced.
    const renamed = await putState(alice, roomId, "m.room.name", "", { name: "M" });
    const [event] = await roomStub(roomId).clientEvents([renamed.body.event_id]);
    expect(event!.unsigned?.prev_content).toEqual({ name: "N" });
  });

  it("redaction strips the event by its room version's rules and records the redaction", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { topic: "secret topic" });
    const msg = (await send(alice, roomId, { msgtype: "m.text", body: "oops", "m.relates_to": { rel_type: "m.thread", event_id: "$root" } })).body.event_id;
    const red = await api("PUT", `${r(roomId)}/redact/${encodeURIComponent(msg)}/r1`, { token: alice.access_token, body: { reason: "typo" } });
    expect(red.status).toBe(200);
    const [redacted] = await roomStub(roomId).clientEvents([msg]);
    expect(redacted!.content).toEqual({});
    expect(redacted!.unsigned?.redacted_because?.event_id).toBe(red.body.event_id);
    expect(redacted!.unsigned?.redacted_because?.content).toEqual({ reason: "typo", redacts: msg });
    expect(redacted!.unsigned?.redacted_because?.redacts).toBe(msg);
    // The stored PDU is the redacted form: signatures and hashes survive.
    const pdu = await roomStub(roomId).getPdu(msg);
    expect(pdu!.content).toEqual({});
    expect(pdu!.hashes.sha256).toBeTypeOf("string");

    // Redacting state keeps the protected keys: power levels keep their levels, topic loses its text.
    const topic = await getState(alice, roomId, "m.room.topic", "", "event");
    await api("PUT", `${r(roomId)}/redact/${encodeURIComponent(topic.body.event_id)}/r2`, { token: alice.access_token, body: {} });
    expect((await getState(alice, roomId, "m.room.topic")).body).toEqual({});
    const pl = await getState(alice, roomId, "m.room.power_levels", "", "event");
    await api("PUT", `${r(roomId)}/redact/${encodeURIComponent(pl.body.event_id)}/r3`, { token: alice.access_token, body: {} });
    const plAfter = (await getState(alice, roomId, "m.room.power_levels")).body;
    expect(plAfter.events).toEqual(pl.body.content.events);
    expect(plAfter.historical).toBeUndefined();
    // Redacting an unknown event is accepted (it may arrive later), as in Synapse.
    const unknown = await api("PUT", `${r(roomId)}/redact/${encodeURIComponent("$unknown")}/r4`, { token: alice.access_token, body: {} });
    expect(unknown.status).toBe(200);
    // Errors cross the DO's RPC boundary as values (Outcome), which unwrap turns back into MatrixErrors.
    expect(() => unwrap({ error: { status: 400, errcode: "M_UNKNOWN", error: "x" } })).toThrow("x");
    const forgetJoined = await roomStub(roomId).forget(alice.user_id);
    expect("error" in forgetJoined && forgetJoined.error.status).toBe(400);
  });
});
