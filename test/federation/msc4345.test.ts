// Room version org.matrix.msc4345 (MSC4345, servers take part by key) between three Myelin servers over
// TLS on loopback: A (the stage's Myelin) creates the room; B asks to take part through A and its user
// cannot join until an admin on A accepts B's key, then joins and chats; C is refused the same way until
// accepted; an admin revokes B and B's later events go nowhere. Everything goes through the client APIs;
// federation (make/send participation, make/send join, /send) is what carries it.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { registerWithSharedSecret } from "../../scripts/synapse.mjs";
import { call, createRoom, enc, eventually, join, messageBodies, newUser, sendText, stateIds, type Server, type User } from "./client.js";
import { messageEvent, moreMyelins, serverKeyOf } from "./more-myelins.js";
import { keyHolder, newSeed, type KeyHolder, type Pdu } from "./key-holder.js";

const VERSION = "org.matrix.msc4345";
const P = "org.matrix.msc4345.participation";
const A: Server = inject("myelin");

const servers = moreMyelins();
let B: Server;
let C: Server;
/** A fourth server: the one the three race over. */
let D: Server;
/** B's signing key, which the test holds too (key-holder.ts): it signs events B's server never made. */
const seedB = newSeed();
beforeAll(async () => {
  [B, C, D] = await Promise.all([
    servers.start("msc4345-b-secret", { SIGNING_KEY: seedB.signingKeyEnv }),
    servers.start("msc4345-c-secret"),
    servers.start("msc4345-d-secret"),
  ]);
}, 180_000);
afterAll(() => servers.stopAll());

const inRoom = (user: User, serverKey: string) => `${user.userId.slice(0, user.userId.indexOf(":"))}:${serverKey}`;

async function participation(user: User, roomId: string, serverKey: string): Promise<string | undefined> {
  const res = await call(user, "GET", `/rooms/${enc(roomId)}/state/${P}/${enc(serverKey)}`);
  return res.status === 200 ? (res.body.participation as string) : undefined;
}

async function setParticipation(admin: User, roomId: string, serverKey: string, content: Record<string, unknown>) {
  const res = await call(admin, "PUT", `/rooms/${enc(roomId)}/state/${P}/${enc(serverKey)}`, content);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

async function seesMessage(user: User, roomId: string, body: string): Promise<boolean> {
  return (await messageBodies(user, roomId)).includes(body);
}

/** A server admin of `server` (shared-secret registration with the admin flag). */
async function newAdmin(server: Server, prefix: string): Promise<User> {
  const localpart = `${prefix}${Math.random().toString(36).slice(2, 8)}`;
  const r = (await registerWithSharedSecret(server.baseUrl, server.registrationSharedSecret, localpart, "pw-federation-1", true)) as { userId: string; accessToken: string };
  return { userId: r.userId, accessToken: r.accessToken, server };
}

describe("org.matrix.msc4345 between three Myelin servers", () => {
  it("B asks to take part, is accepted and chats; C is refused until accepted; a revoked B is shut out", async () => {
    const [keyA, keyB, keyC] = await Promise.all([serverKeyOf(A), serverKeyOf(B), serverKeyOf(C)]);
    const alice = await newUser(A, "alice");
    const bob = await newUser(B, "bob");
    const carol = await newUser(C, "carol");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });

    // B's user asks to join: B asks to take part through A and the join waits for an admin.
    const first = await join(bob, roomId, [A.serverName]);
    expect(first.status, JSON.stringify(first.body)).toBe(403);
    expect(first.body.errcode).toBe("ORG.MATRIX.MSC4345_PARTICIPATION_PENDING");
    const requested = await call(alice, "GET", `/rooms/${enc(roomId)}/state/${P}/${enc(keyB)}`);
    expect(requested.body).toMatchObject({ participation: "requested", unverified_domain: B.serverName, request_authorised_via_server: keyA });
    // Asking again changes nothing: still not in the room.
    const again = await join(bob, roomId, [A.serverName]);
    expect(again.status).toBe(403);
    expect(await participation(alice, roomId, keyB)).toBe("requested");
    expect((await stateIds(alice, roomId)).has(`m.room.member|${inRoom(bob, keyB)}`)).toBe(false);

    // An admin on A accepts B's key (with the domain B advertised). The acceptance reaches B, whose server
    // makes bob's waiting join by itself (durable-objects/room/pending-joins.ts); they chat.
    await setParticipation(alice, roomId, keyB, { participation: "accepted", unverified_domain: B.serverName });
    await eventually("bob's waiting join made once B is accepted", async () => (await stateIds(alice, roomId)).has(`m.room.member|${inRoom(bob, keyB)}`));
    await eventually("the room in bob's joined rooms", async () => ((await call(bob, "GET", "/joined_rooms")).body.joined_rooms as string[]).includes(roomId));
    const joined = await join(bob, roomId, [A.serverName]); // joining again changes nothing
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    const aliceOnA = inRoom(alice, keyA);
    await sendText(alice, roomId, "hello B");
    await eventually("A's message on B", () => seesMessage(bob, roomId, "hello B"));
    await sendText(bob, roomId, "hello A");
    await eventually("B's message on A", () => seesMessage(alice, roomId, "hello A"));
    // Clients see other servers' users by key (decision 12), with `unsigned.server_domain` once their
    // server verified that domain's key/v3 document lists the key: B verifies A's after joining, A
    // verified B's when B asked to take part.
    const fromA = await eventually("A's domain verified on B", async () => {
      const e = await messageEvent(bob, roomId, "hello B");
      return e?.unsigned?.server_domain === A.serverName && e;
    });
    expect(fromA.sender).toBe(aliceOnA);
    const fromB = await messageEvent(alice, roomId, "hello A");
    expect(fromB).toMatchObject({ sender: inRoom(bob, keyB), unsigned: { server_domain: B.serverName } });

    // C is not accepted: its user's join is refused (C's request is recorded), and stays refused.
    const carolFirst = await join(carol, roomId, [A.serverName]);
    expect(carolFirst.status).toBe(403);
    expect(await participation(alice, roomId, keyC)).toBe("requested");
    expect((await join(carol, roomId, [A.serverName])).status).toBe(403);
    // B learns of C's request too (A passes it on), and C is in no one's member list.
    await eventually("C's request on B", async () => (await participation(bob, roomId, keyC)) === "requested");
    expect((await stateIds(alice, roomId)).has(`m.room.member|${inRoom(carol, keyC)}`)).toBe(false);

    // Accepted, C joins and its messages reach A and B.
    await setParticipation(alice, roomId, keyC, { participation: "accepted", unverified_domain: C.serverName });
    expect((await join(carol, roomId, [A.serverName])).status).toBe(200);
    await sendText(carol, roomId, "hello from C");
    await eventually("C's message on A", () => seesMessage(alice, roomId, "hello from C"));
    await eventually("C's message on B", () => seesMessage(bob, roomId, "hello from C"));

    // The admin revokes B: every server learns it, B's user can send nothing more, the others go on.
    await setParticipation(alice, roomId, keyB, { participation: "revoked", reason: "test" });
    await eventually("B's revocation on C", async () => (await participation(carol, roomId, keyB)) === "revoked");
    await eventually("B's revocation on B", async () => (await participation(bob, roomId, keyB)) === "revoked");
    const late = await call(bob, "PUT", `/rooms/${enc(roomId)}/send/m.room.message/late-${Date.now()}`, { msgtype: "m.text", body: "B after revocation" });
    expect(late.status).toBe(403);
    await sendText(carol, roomId, "C after revocation");
    await eventually("C's later message on A", () => seesMessage(alice, roomId, "C after revocation"));
    expect(await seesMessage(alice, roomId, "B after revocation")).toBe(false);
    expect(await seesMessage(carol, roomId, "B after revocation")).toBe(false);

    // C revokes its own key (only C's server admin may, and needs no membership): final. A learns it (B,
    // revoked, no longer hears from anyone), C's users can send nothing more, and no room admin can accept the key again.
    expect((await call(carol, "PUT", `/rooms/${enc(roomId)}/state/${P}/${enc(keyC)}`, { participation: "revoked" })).status).toBe(403);
    const cAdmin = await newAdmin(C, "cadmin");
    await setParticipation(cAdmin, roomId, keyC, { participation: "revoked", reason: "leaving" });
    await eventually("C's self-revocation on A", async () => (await participation(alice, roomId, keyC)) === "revoked");
    const reaccept = await call(alice, "PUT", `/rooms/${enc(roomId)}/state/${P}/${enc(keyC)}`, { participation: "accepted", unverified_domain: C.serverName });
    expect(reaccept.status).toBe(403);
    expect((await call(carol, "PUT", `/rooms/${enc(roomId)}/send/m.room.message/late-${Date.now()}`, { msgtype: "m.text", body: "C after self-revocation" })).status).toBe(403);
    await sendText(alice, roomId, "A goes on");
    expect(await seesMessage(alice, roomId, "A goes on")).toBe(true);
  });
});

describe("concurrent accept and revoke", () => {
  it("an admin on A revokes C while an admin on B accepts it, at once: A and B end with the same state", async () => {
    const [keyA, keyB, keyC] = await Promise.all([serverKeyOf(A), serverKeyOf(B), serverKeyOf(C)]);
    const alice = await newUser(A, "alice");
    const bob = await newUser(B, "bob");
    const carol = await newUser(C, "carol");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });
    expect((await join(bob, roomId, [A.serverName])).status).toBe(403);
    await setParticipation(alice, roomId, keyB, { participation: "accepted", unverified_domain: B.serverName });
    expect((await join(bob, roomId, [A.serverName])).status).toBe(200);
    // bob may accept servers too (power 100 = `accept`); C asks to take part
    const pl = (await call(alice, "GET", `/rooms/${enc(roomId)}/state/m.room.power_levels/`)).body as { users: Record<string, number> };
    const plRes = await call(alice, "PUT", `/rooms/${enc(roomId)}/state/m.room.power_levels/`, { ...pl, users: { ...pl.users, [inRoom(bob, keyB)]: 100 } });
    expect(plRes.status, JSON.stringify(plRes.body)).toBe(200);
    expect((await join(carol, roomId, [A.serverName])).status).toBe(403);
    await eventually("bob's power and C's request on B", async () => {
      const p = (await call(bob, "GET", `/rooms/${enc(roomId)}/state/m.room.power_levels/`)).body as { users?: Record<string, number> };
      return p.users?.[inRoom(bob, keyB)] === 100 && (await participation(bob, roomId, keyC)) === "requested";
    });

    // at once: a revocation from A, an acceptance from B
    const [revoked, accepted] = await Promise.all([
      call(alice, "PUT", `/rooms/${enc(roomId)}/state/${P}/${enc(keyC)}`, { participation: "revoked" }),
      call(bob, "PUT", `/rooms/${enc(roomId)}/state/${P}/${enc(keyC)}`, { participation: "accepted", unverified_domain: C.serverName }),
    ]);
    expect(revoked.status, JSON.stringify(revoked.body)).toBe(200);
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(200);
    // both servers resolve to the same participation event (state resolution, participation events
    // being power events; a server that got the acceptance after the revocation soft-fails it); the whole
    // state is the same on both once each has sent an event after the race
    await sendText(alice, roomId, "after the race (A)");
    await sendText(bob, roomId, "after the race (B)");
    await eventually("A and B converge", async () => {
      const [sa, sb] = await Promise.all([stateIds(alice, roomId), stateIds(bob, roomId)]);
      return JSON.stringify([...sa].sort()) === JSON.stringify([...sb].sort()) && sa.get(`${P}|${keyC}`) !== undefined && sa;
    });
    const onA = await participation(alice, roomId, keyC);
    expect(onA).toBe(await participation(bob, roomId, keyC));
    expect(keyA).not.toBe(keyC);
    // and C gets in only if the room ended with it accepted
    const carolJoin = await join(carol, roomId, [A.serverName]);
    expect(carolJoin.status).toBe(onA === "accepted" ? 200 : 403);
  });
});

describe("concurrent accept and revoke across three servers", () => {
  it("admins on A, B and C accept, revoke and accept D's key at once: A, B and C end with the same state, D revoked; then B revokes itself and no admin on A or C can accept it again", async () => {
    const [keyA, keyB, keyC, keyD] = await Promise.all([serverKeyOf(A), serverKeyOf(B), serverKeyOf(C), serverKeyOf(D)]);
    const alice = await newUser(A, "alice");
    const mod = await newUser(A, "mod");
    const bob = await newUser(B, "bob");
    const carol = await newUser(C, "carol");
    const dave = await newUser(D, "dave");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });
    for (const [user, key, server] of [[bob, keyB, B], [carol, keyC, C]] as const) {
      expect((await join(user, roomId, [A.serverName])).status).toBe(403);
      await setParticipation(alice, roomId, key, { participation: "accepted", unverified_domain: server.serverName });
      expect((await join(user, roomId, [A.serverName])).status).toBe(200);
    }
    expect((await join(mod, roomId)).status).toBe(200);
    // mod (A), bob (B) and carol (C) may accept servers (power 100 = `accept`); D asks to take part
    const pl = (await call(alice, "GET", `/rooms/${enc(roomId)}/state/m.room.power_levels/`)).body as { users: Record<string, number> };
    const admins = { [inRoom(mod, keyA)]: 100, [inRoom(bob, keyB)]: 100, [inRoom(carol, keyC)]: 100 };
    const plRes = await call(alice, "PUT", `/rooms/${enc(roomId)}/state/m.room.power_levels/`, { ...pl, users: { ...pl.users, ...admins } });
    expect(plRes.status, JSON.stringify(plRes.body)).toBe(200);
    expect((await join(dave, roomId, [A.serverName])).status).toBe(403);
    for (const [user, where] of [[bob, "B"], [carol, "C"]] as const) {
      await eventually(`the admins' power and D's request on ${where}`, async () => {
        const p = (await call(user, "GET", `/rooms/${enc(roomId)}/state/m.room.power_levels/`)).body as { users?: Record<string, number> };
        return p.users?.[inRoom(carol, keyC)] === 100 && p.users?.[inRoom(bob, keyB)] === 100 && (await participation(user, roomId, keyD)) === "requested";
      });
    }

    // at once: an acceptance from A, a revocation from B, an acceptance from C
    const path = `/rooms/${enc(roomId)}/state/${P}/${enc(keyD)}`;
    const [fromA, fromB, fromC] = await Promise.all([
      call(mod, "PUT", path, { participation: "accepted", unverified_domain: D.serverName }),
      call(bob, "PUT", path, { participation: "revoked", reason: "race" }),
      call(carol, "PUT", path, { participation: "accepted", unverified_domain: D.serverName }),
    ]);
    // A revocation is allowed whether or not an acceptance got there first; an acceptance is refused
    // only if the revocation (or the other acceptance) got there first.
    expect(fromB.status, JSON.stringify(fromB.body)).toBe(200);
    expect([200, 403]).toContain(fromA.status);
    expect([200, 403]).toContain(fromC.status);
    // Each server sends once more, so that each one's next event joins the forks; all three resolve them
    // to the same state, in which the revocation stands (participation events are power events: an
    // acceptance ordered first is then revoked, one ordered after the revocation fails).
    await Promise.all([sendText(mod, roomId, "after the race (A)"), sendText(bob, roomId, "after the race (B)"), sendText(carol, roomId, "after the race (C)")]);
    await eventually("A, B and C converge", async () => {
      const [sa, sb, sc] = await Promise.all([stateIds(alice, roomId), stateIds(bob, roomId), stateIds(carol, roomId)]);
      const [ja, jb, jc] = [sa, sb, sc].map((s) => JSON.stringify([...s].sort()));
      return ja === jb && jb === jc && sa.get(`${P}|${keyD}`) === fromB.body.event_id;
    });
    for (const user of [alice, bob, carol]) expect(await participation(user, roomId, keyD)).toBe("revoked");
    expect((await join(dave, roomId, [A.serverName])).status).toBe(403);
    // Invites to another server's users (by key) are not built: refused, and nothing changes (403 from
    // the room; 400 M_INVALID_PARAM from the client API's user ID check when the key holds a "_", which
    // the server name grammar refuses).
    const newcomer = `@newcomer:${keyC}`;
    const invited = await call(alice, "POST", `/rooms/${enc(roomId)}/invite`, { user_id: newcomer });
    expect(keyC.includes("_") ? [400, "M_INVALID_PARAM"] : [403, "M_FORBIDDEN"], JSON.stringify(invited.body)).toEqual([invited.status, invited.body.errcode]);
    expect((await stateIds(alice, roomId)).has(`m.room.member|${newcomer}`)).toBe(false);

    // B's server admin revokes B's own key: final on every server. No admin on A (alice, the creator)
    // or C (carol, power 100) can accept it again.
    const bAdmin = await newAdmin(B, "badmin");
    await setParticipation(bAdmin, roomId, keyB, { participation: "revoked", reason: "leaving" });
    for (const [user, where] of [[alice, "A"], [carol, "C"]] as const) {
      await eventually(`B's self-revocation on ${where}`, async () => (await participation(user, roomId, keyB)) === "revoked");
      const id = (await stateIds(user, roomId)).get(`${P}|${keyB}`)!;
      expect((await call(user, "GET", `/rooms/${enc(roomId)}/event/${enc(id)}`)).body.sender, where).toBe(inRoom(bAdmin, keyB));
      const again = await call(user, "PUT", `/rooms/${enc(roomId)}/state/${P}/${enc(keyB)}`, { participation: "accepted", unverified_domain: B.serverName });
      expect(again.status, where).toBe(403);
      expect(await participation(user, roomId, keyB), where).toBe("revoked");
    }
    expect((await call(bob, "PUT", `/rooms/${enc(roomId)}/send/m.room.message/late-${Date.now()}`, { msgtype: "m.text", body: "bob after B left" })).status).toBe(403);
    await sendText(carol, roomId, "C goes on");
    await eventually("C's message on A", () => seesMessage(alice, roomId, "C goes on"));
  });
});

describe("forks: events B's server never made (signed with B's key) and events of a key no room accepted", () => {
  /** Sends PDUs to `to` in one transaction, as B (the holder of B's key); the per-PDU results. */
  async function sendAsB(holder: KeyHolder, to: Server, pdus: Pdu[]): Promise<Record<string, { error?: string }>> {
    const res = await holder.request(to, "PUT", `/_matrix/federation/v1/send/forged-${Date.now()}-${Math.random().toString(36).slice(2)}`, { origin: B.serverName, origin_server_ts: Date.now(), pdus, edus: [] });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.pdus;
  }

  it("a fork with a never-accepted key's events reaches A by /send, C by get_missing_events and a late-joining B by /backfill: rejected on all three; B's later events are soft-failed or rejected on A and C once B is revoked", async () => {
    const holderB = await keyHolder(seedB.seed, B);
    const stranger = await keyHolder(newSeed().seed); // a key no server holds and no room accepted
    const keyC = await serverKeyOf(C);
    expect(holderB.serverKey).toBe(await serverKeyOf(B));
    const alice = await newUser(A, "alice");
    const bob = await newUser(B, "bob");
    const carol = await newUser(C, "carol");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });
    // B and C ask to take part and are accepted; only carol joins for now. B's request is made by the
    // key's holder (no user of B's server waits to join, so B's server joins only when bob asks, below).
    const U = "/_matrix/federation/unstable/org.matrix.msc4345";
    const template = await holderB.request(A, "GET", `${U}/make_participation/${enc(roomId)}/${enc(holderB.serverKey)}?user_id=${enc(holderB.user("ghost"))}`);
    expect(template.status, JSON.stringify(template.body)).toBe(200);
    const request = await holderB.sign({ ...(template.body.event as Record<string, unknown>), origin_server_ts: Date.now() });
    expect((await holderB.request(A, "PUT", `${U}/send_participation/${enc(roomId)}/${enc(request.eventId)}`, request.pdu)).status).toBe(200);
    await setParticipation(alice, roomId, holderB.serverKey, { participation: "accepted", unverified_domain: B.serverName });
    expect((await join(carol, roomId, [A.serverName])).status).toBe(403);
    await setParticipation(alice, roomId, keyC, { participation: "accepted", unverified_domain: C.serverName });
    expect((await join(carol, roomId, [A.serverName])).status).toBe(200);
    await eventually("carol joined on A", async () => (await stateIds(alice, roomId)).has(`m.room.member|${inRoom(carol, keyC)}`));

    // B's key (not B's server) joins a user, ghost, through A, and tells C as B would.
    const ghost = holderB.user("ghost");
    const made = await holderB.request(A, "GET", `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(ghost)}?ver=${enc(VERSION)}`);
    expect(made.status, JSON.stringify(made.body)).toBe(200);
    const ghostJoin = await holderB.sign({ ...(made.body.event as Record<string, unknown>), origin_server_ts: Date.now() });
    const sentJoin = await holderB.request(A, "PUT", `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(ghostJoin.eventId)}`, ghostJoin.pdu);
    expect(sentJoin.status, JSON.stringify(sentJoin.body)).toBe(200);
    expect(await sendAsB(holderB, C, [ghostJoin.pdu])).toEqual({ [ghostJoin.eventId]: {} });
    const state = await stateIds(alice, roomId);
    const ghostAuth = [state.get("m.room.power_levels|")!, ghostJoin.eventId, state.get(`${P}|${holderB.serverKey}`)!];
    const ghostSays = (body: string, prev: { pdu: Pdu; eventId: string }, auth = ghostAuth) =>
      holderB.sign({ room_id: roomId, sender: ghost, type: "m.room.message", content: { msgtype: "m.text", body }, origin_server_ts: Date.now(), depth: prev.pdu.depth + 1, prev_events: [prev.eventId], auth_events: auth });

    // The route works: what ghost says reaches A and C.
    const before = await ghostSays("ghost before the fork", ghostJoin);
    expect(await sendAsB(holderB, A, [before.pdu])).toEqual({ [before.eventId]: {} });
    expect(await sendAsB(holderB, C, [before.pdu])).toEqual({ [before.eventId]: {} });
    await eventually("ghost's message on A", () => seesMessage(alice, roomId, "ghost before the fork"));
    await eventually("ghost's message on C", () => seesMessage(carol, roomId, "ghost before the fork"));

    // The fork: a message of the stranger's key, and ghost's next message on top of it, sent to A only.
    const fromStranger = await stranger.sign({
      room_id: roomId, sender: stranger.user("eve"), type: "m.room.message", content: { msgtype: "m.text", body: "from a key no one accepted" },
      origin_server_ts: Date.now(), depth: before.pdu.depth + 1, prev_events: [before.eventId], auth_events: [state.get("m.room.power_levels|")!],
    });
    const onFork = await ghostSays("ghost on the fork", fromStranger);
    const results = await sendAsB(holderB, A, [fromStranger.pdu, onFork.pdu]);
    // (/send answers {} for a rejected event too, as Synapse: what A stored is read back below)
    expect(Object.keys(results).sort()).toEqual([fromStranger.eventId, onFork.eventId].sort());
    expect(results[onFork.eventId]).toEqual({});
    // alice's next message follows ghost's: C fetches the gap from A (get_missing_events), and B, joining
    // now, gets the fork as history (backfill) when bob paginates back.
    await sendText(alice, roomId, "after the fork");
    await eventually("the fork's end on C", async () => (await seesMessage(carol, roomId, "after the fork")) && seesMessage(carol, roomId, "ghost on the fork"));
    // A and C stored ghost's event on the fork accepted, and the stranger's event rejected (not served, GET
    // /event is 404 for rejected events). GET /event finds events through the D1 index, which lags a commit
    // by up to about 50 ms (room/event-index.ts): ghost's event is served once the index has it, and the
    // stranger's, committed with it, is then known to stay unserved.
    for (const to of [A, C]) {
      const served = () => holderB.request(to, "GET", `/_matrix/federation/v1/event/${enc(onFork.eventId)}`);
      await eventually(`ghost's fork event served by ${to.serverName}`, async () => (await served()).status === 200);
      expect((await holderB.request(to, "GET", `/_matrix/federation/v1/event/${enc(fromStranger.eventId)}`)).status, to.serverName).toBe(404);
    }
    expect((await join(bob, roomId, [A.serverName])).status).toBe(200);
    await eventually("the fork backfilled on B", async () => {
      const seen = await messageBodies(bob, roomId);
      return seen.includes("ghost on the fork") && seen.includes("ghost before the fork");
    });
    for (const [user, where] of [[alice, "A"], [carol, "C"], [bob, "B"]] as const) {
      expect(await seesMessage(user, roomId, "from a key no one accepted"), where).toBe(false);
      expect((await call(user, "GET", `/rooms/${enc(roomId)}/event/${enc(fromStranger.eventId)}`)).status, where).toBe(404);
      expect(await participation(user, roomId, stranger.serverKey), where).toBeUndefined();
    }

    // An admin revokes B. B's server learns it and refuses its users' sends; B's key still signs:
    const revocation = (await call(alice, "PUT", `/rooms/${enc(roomId)}/state/${P}/${enc(holderB.serverKey)}`, { participation: "revoked", reason: "forks" })).body.event_id as string;
    await eventually("B's revocation on C", async () => (await participation(carol, roomId, holderB.serverKey)) === "revoked");
    await eventually("B's revocation on B", async () => (await participation(bob, roomId, holderB.serverKey)) === "revoked");
    expect((await call(bob, "PUT", `/rooms/${enc(roomId)}/send/m.room.message/late-${Date.now()}`, { msgtype: "m.text", body: "bob after revocation" })).status).toBe(403);
    // - an event that does not know of the revocation (after ghost's last one): allowed where it stands,
    //   soft-failed against the current state on A and C;
    const unaware = await ghostSays("ghost after revocation, unaware", onFork);
    // - an event after the revocation: rejected on A and C.
    //   (B, revoked, is no longer served the room: its participation routes nowhere; the event's depth
    //   is the sender's claim, which receivers do not recompute)
    expect((await holderB.request(A, "GET", `/_matrix/federation/v1/event/${enc(revocation)}`)).status).toBe(403);
    const aware = await ghostSays("ghost after revocation, aware", { pdu: { ...onFork.pdu, depth: onFork.pdu.depth + 10 }, eventId: revocation }, [ghostAuth[0]!, ghostJoin.eventId, revocation]);
    for (const to of [A, C]) {
      const res = await sendAsB(holderB, to, [unaware.pdu, aware.pdu]);
      expect(Object.keys(res).sort(), to.serverName).toEqual([unaware.eventId, aware.eventId].sort());
    }
    await sendText(carol, roomId, "C after the revocation");
    await eventually("C's message on A", () => seesMessage(alice, roomId, "C after the revocation"));
    for (const [user, where] of [[alice, "A"], [carol, "C"]] as const) {
      const seen = await messageBodies(user, roomId);
      expect(seen, where).not.toContain("ghost after revocation, unaware");
      expect(seen, where).not.toContain("ghost after revocation, aware");
      expect(seen, where).toContain("ghost on the fork");
    }
  });
});

describe("MSC4348 account keys between two Myelin servers", () => {
  it("an account's key exported on B and imported on C: the account keeps its @<account key> identity", async () => {
    const K = "/_matrix/client/unstable/org.matrix.msc4348/account_key";
    const dave = await newUser(B, "dave");
    const onB = await fetch(`${B.baseUrl}${K}`, { headers: { Authorization: `Bearer ${dave.accessToken}` } }).then((r) => r.json());
    const auth = (u: User) => ({ type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password: "pw-federation-1" });
    const exported = await fetch(`${B.baseUrl}${K}/export`, { method: "POST", headers: { Authorization: `Bearer ${dave.accessToken}` }, body: JSON.stringify({ auth: auth(dave) }) });
    expect(exported.status).toBe(200);
    const { seed } = (await exported.json()) as { seed: string };
    const daveOnC = await newUser(C, "dave");
    const imported = await fetch(`${C.baseUrl}${K}`, { method: "PUT", headers: { Authorization: `Bearer ${daveOnC.accessToken}` }, body: JSON.stringify({ seed, auth: auth(daveOnC) }) });
    expect(imported.status).toBe(200);
    const onC = await fetch(`${C.baseUrl}${K}`, { headers: { Authorization: `Bearer ${daveOnC.accessToken}` } }).then((r) => r.json());
    expect(onC).toEqual(onB);
    expect(onC.user_id).toBe(`@${onB.account_key}`);
  });
});

describe("org.matrix.msc4345 and Synapse, which does not know the version", () => {
  const S: Server = inject("synapse");

  it("a Synapse user cannot join (M_INCOMPATIBLE_ROOM_VERSION) nor be invited, Synapse cannot create one (M_UNSUPPORTED_ROOM_VERSION), and the room goes on", async () => {
    const alice = await newUser(A, "alice");
    const sam = await newUser(S, "sam");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });

    // Synapse's make_join lists the versions it knows; Myelin answers 400 M_INCOMPATIBLE_ROOM_VERSION
    // and Synapse passes the refusal on to its client.
    const joined = await join(sam, roomId, [A.serverName]);
    expect(joined.status, JSON.stringify(joined.body)).toBe(400);
    expect(joined.body.errcode).toBe("M_INCOMPATIBLE_ROOM_VERSION");
    // An invite of a domain-form user is refused on A (such a user cannot be a member of this room).
    const invited = await call(alice, "POST", `/rooms/${enc(roomId)}/invite`, { user_id: sam.userId });
    expect(invited.status, JSON.stringify(invited.body)).toBe(400);
    expect(invited.body.errcode).toBe("M_INVALID_PARAM");
    // Synapse refuses to create a room of a version it does not know, as the spec says.
    const created = await call(sam, "POST", "/createRoom", { room_version: VERSION });
    expect(created.status).toBe(400);
    expect(created.body.errcode).toBe("M_UNSUPPORTED_ROOM_VERSION");

    // Nothing broke: the room has no Synapse member and goes on; Synapse still federates with A.
    const state = await stateIds(alice, roomId);
    expect([...state.keys()].some((k) => k.includes(S.serverName))).toBe(false);
    await sendText(alice, roomId, "still here");
    expect(await seesMessage(alice, roomId, "still here")).toBe(true);
    const v12 = await createRoom(alice, { preset: "public_chat" });
    expect((await join(sam, v12, [A.serverName])).status).toBe(200);
  });
});
