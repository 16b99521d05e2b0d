// MSC4345 over federation, this server as the resident (the remote servers are played by
// test/workers/remote-homeserver.mjs): the make/send participation handshake (unstable paths of
// ../shared/proposals/README.md), then enforcement on send_join and inbound /send: a server's users
// cannot join until an admin accepts its key; a never-accepted server gets nothing in by any route; a
// revoked server's later events are rejected.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import { hashAndSignEvent } from "../../protocol/event-hashes.js";
import type { JsonObject } from "../../protocol/json.js";
import { PARTICIPATION_EVENT_TYPE, serverKeyFromPublicKey } from "../../protocol/participation.js";
import type { Pdu } from "../../protocol/pdu.js";
import { roomVersionRules } from "../../protocol/room-versions.js";
import { signJson } from "../../protocol/signing.js";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
import { federationApi, remoteKey } from "./federation-room-helpers.js";
import { api } from "./helpers.js";
import { createRoom, getState, newUser, putState, r } from "./room-helpers.js";

const VERSION = "org.matrix.msc4345";
const RULES = roomVersionRules(VERSION)!;
const P = PARTICIPATION_EVENT_TYPE;
const F1 = "/_matrix/federation/v1";
const F2 = "/_matrix/federation/v2";
const U = "/_matrix/federation/unstable/org.matrix.msc4345";
const enc = encodeURIComponent;

/** A remote server: its domain, its server key (its signing key, as this server's own), and whether it
 * publishes the key at key/v3 (the aux worker answers what the test stores). */
async function remoteServer(prefix: string, publish = true) {
  const domain = uniqueServer(prefix);
  const key = await remoteKey(domain);
  const serverKey = serverKeyFromPublicKey(key.publicKey);
  if (publish) {
    const doc = await signJson({ server_name: domain, verify_keys: { [key.keyId]: { key: serverKey } } }, serverKey, key);
    await remoteControl("/_test/answer", { server: domain, method: "GET", path: "/_matrix/key/v3/org.matrix.msc4345/query", body: doc });
  }
  /** Signs an event as this server (decision 11: keyed by the server key). */
  const sign = async (fields: JsonObject): Promise<{ pdu: Pdu; eventId: string }> => {
    const { signatures: _s, hashes: _h, ...rest } = fields;
    return hashAndSignEvent({ ...(rest as unknown as Pdu), hashes: { sha256: "" }, signatures: {} }, serverKey, key, RULES);
  };
  return { domain, serverKey, key, sign, user: (localpart: string) => `@${localpart}:${serverKey}` };
}
type Remote = Awaited<ReturnType<typeof remoteServer>>;

/** make_participation + send_participation for `remote` (through this server). */
async function requestParticipation(remote: Remote, roomId: string) {
  const made = await federationApi(remote.domain, "GET", `${U}/make_participation/${enc(roomId)}/${enc(remote.serverKey)}`);
  expect(made.status, JSON.stringify(made.body)).toBe(200);
  const event = await remote.sign({ ...(made.body.event as JsonObject), origin_server_ts: Date.now() });
  const sent = await federationApi(remote.domain, "PUT", `${U}/send_participation/${enc(roomId)}/${enc(event.eventId)}`, event.pdu);
  return { made, event, sent };
}

async function joinAs(remote: Remote, roomId: string, userId: string) {
  const made = await federationApi(remote.domain, "GET", `${F1}/make_join/${enc(roomId)}/${enc(userId)}?ver=${enc(VERSION)}`);
  if (made.status !== 200) return { made, sent: undefined, join: undefined };
  const join = await remote.sign({ ...(made.body.event as JsonObject), origin_server_ts: Date.now() });
  const sent = await federationApi(remote.domain, "PUT", `${F2}/send_join/${enc(roomId)}/${enc(join.eventId)}`, join.pdu);
  return { made, sent, join };
}

async function stateOf(user: { access_token: string }, roomId: string) {
  return (await api("GET", `${r(roomId)}/state`, { token: user.access_token })).body as { type: string; state_key: string; event_id: string; content: JsonObject }[];
}

async function message(remote: Remote, roomId: string, sender: string, state: Awaited<ReturnType<typeof stateOf>>, prev: Pdu & { event_id?: string }, prevId: string, body: string) {
  const auth = state
    .filter((e) => e.type === "m.room.power_levels" || (e.type === "m.room.member" && e.state_key === sender) || (e.type === P && e.state_key === remote.serverKey))
    .map((e) => e.event_id);
  return remote.sign({ room_id: roomId, sender, type: "m.room.message", content: { msgtype: "m.text", body }, origin_server_ts: Date.now(), depth: prev.depth + 1, prev_events: [prevId], auth_events: auth });
}

async function sendTxn(remote: Remote, pdus: Pdu[]) {
  return federationApi(remote.domain, "PUT", `${F1}/send/txn-${crypto.randomUUID()}`, { origin: remote.domain, origin_server_ts: Date.now(), pdus, edus: [] });
}

async function bodies(user: { access_token: string }, roomId: string): Promise<string[]> {
  const res = await api("GET", `${r(roomId)}/messages?dir=b&limit=50`, { token: user.access_token });
  return (res.body.chunk as { type: string; content: { body?: string } }[]).filter((e) => e.type === "m.room.message").map((e) => e.content.body!);
}

describe("MSC4345 participation over federation (resident side)", () => {
  it("B requests through us, cannot join until an admin accepts its key, then joins and chats; a revoked B is shut out", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });
    const b = await remoteServer("b");
    const bob = b.user("bob");

    // No participation yet: B cannot even ask to join for its users.
    expect((await joinAs(b, roomId, bob)).made.status).toBe(403);

    const { made, sent } = await requestParticipation(b, roomId);
    const template = made.body.event as JsonObject;
    expect(template.type).toBe(P);
    expect(template.state_key).toBe(b.serverKey);
    expect(template.content).toMatchObject({ participation: "requested", unverified_domain: b.domain });
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    // decision 10: co-signed by this server's key, which request_authorised_via_server names
    const ours = template.content as { request_authorised_via_server: string };
    expect(Object.keys(sent.body.event.signatures).sort()).toEqual([b.serverKey, ours.request_authorised_via_server].sort());
    expect((await getState(alice, roomId, P, b.serverKey)).body.participation).toBe("requested");

    // Requested is not accepted: make_join refuses (the join would fail rule 2).
    const early = await joinAs(b, roomId, bob);
    expect(early.made.status).toBe(403);
    // A second request is refused.
    expect((await federationApi(b.domain, "GET", `${U}/make_participation/${enc(roomId)}/${enc(b.serverKey)}`)).status).toBe(403);

    // The admin accepts B's key (with the domain B advertised: decision 6).
    expect((await putState(alice, roomId, P, b.serverKey, { participation: "accepted", unverified_domain: b.domain })).status).toBe(200);
    const joined = await joinAs(b, roomId, bob);
    expect(joined.made.status, JSON.stringify(joined.made.body)).toBe(200);
    expect(joined.sent!.status, JSON.stringify(joined.sent!.body)).toBe(200);

    let state = await stateOf(alice, roomId);
    const hello = await message(b, roomId, bob, state, joined.join!.pdu, joined.join!.eventId, "hello from B");
    const res = await sendTxn(b, [hello.pdu]);
    expect(res.status).toBe(200);
    expect(res.body.pdus[hello.eventId]).toEqual({});
    expect(await bodies(alice, roomId)).toContain("hello from B");
    // decision 12: B's domain was verified through its key/v3 document when it asked to take part
    const chunk = (await api("GET", `${r(roomId)}/messages?dir=b&limit=50`, { token: alice.access_token })).body.chunk as { sender: string; unsigned?: JsonObject }[];
    expect(chunk.find((e) => e.sender === bob)!.unsigned!.server_domain).toBe(b.domain);
    // decision 11: signatures are checked against the server key itself: another key's signature under
    // B's key fails.
    const forger = await remoteKey(uniqueServer("x"));
    const { signatures: _s, hashes: _h, ...unsignedHello } = hello.pdu;
    const forged = await hashAndSignEvent({ ...unsignedHello, content: { msgtype: "m.text", body: "forged" }, hashes: { sha256: "" }, signatures: {} } as Pdu, b.serverKey, forger, RULES);
    const forgedRes = await sendTxn(b, [forged.pdu]);
    expect(forgedRes.body.pdus[forged.eventId].error).toBeDefined();
    expect(await bodies(alice, roomId)).not.toContain("forged");

    // The admin revokes B: B's later events are rejected.
    expect((await putState(alice, roomId, P, b.serverKey, { participation: "revoked" })).status).toBe(200);
    state = await stateOf(alice, roomId);
    const after = await message(b, roomId, bob, state, hello.pdu, hello.eventId, "still here");
    const res2 = await sendTxn(b, [after.pdu]);
    expect(res2.status).toBe(200);
    // Stored as rejected: processed, so its result is empty (as Synapse); it is not in the room.
    expect(res2.body.pdus[after.eventId]).toEqual({});
    expect(await bodies(alice, roomId)).not.toContain("still here");
    // and the revoked key cannot ask again
    expect((await federationApi(b.domain, "GET", `${U}/make_participation/${enc(roomId)}/${enc(b.serverKey)}`)).status).toBe(403);
  });

  it("C, never accepted, gets nothing in: no join, no /send, no participation without publishing its key", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });
    const c = await remoteServer("c", false);
    const carol = c.user("carol");

    // make_join refused; a join built by hand is refused by send_join
    expect((await joinAs(c, roomId, carol)).made.status).toBe(403);
    const state = await stateOf(alice, roomId);
    const create = state.find((e) => e.type === "m.room.create")!;
    const powerLevels = state.find((e) => e.type === "m.room.power_levels")!;
    const joinRules = state.find((e) => e.type === "m.room.join_rules")!;
    const last = state.reduce((a, e) => (e.event_id === a.event_id ? a : e));
    const forgedJoin = await c.sign({
      room_id: roomId, sender: carol, type: "m.room.member", state_key: carol, content: { membership: "join" },
      origin_server_ts: Date.now(), depth: 20, prev_events: [last.event_id], auth_events: [powerLevels.event_id, joinRules.event_id],
    });
    const sendJoin = await federationApi(c.domain, "PUT", `${F2}/send_join/${enc(roomId)}/${enc(forgedJoin.eventId)}`, forgedJoin.pdu);
    expect(sendJoin.status).toBeGreaterThanOrEqual(400);
    expect(sendJoin.status).toBeLessThan(500);

    // /send: the join and a message are rejected, nothing shows
    const msg = await c.sign({
      room_id: roomId, sender: carol, type: "m.room.message", content: { msgtype: "m.text", body: "spam" },
      origin_server_ts: Date.now(), depth: 21, prev_events: [forgedJoin.eventId], auth_events: [powerLevels.event_id, forgedJoin.eventId],
    });
    const res = await sendTxn(c, [forgedJoin.pdu, msg.pdu]);
    expect(res.status).toBe(200);
    // Stored as rejected (an empty result, as Synapse answers for an event it processed): not in the room.
    expect(res.body.pdus[forgedJoin.eventId]).toEqual({});
    expect(await bodies(alice, roomId)).not.toContain("spam");
    const members = (await stateOf(alice, roomId)).filter((e) => e.type === "m.room.member").map((e) => e.state_key);
    expect(members).not.toContain(carol);
    expect(create).toBeDefined();

    // C asks to take part but does not publish its key at key/v3: refused, nothing stored
    const { sent } = await requestParticipation(c, roomId);
    expect(sent.status).toBe(403);
    expect((await getState(alice, roomId, P, c.serverKey)).status).toBe(404);
  });

  it("a fork of C's (never accepted) fetched through an accepted B's gap (get_missing_events) is rejected; B's own event is kept", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });
    const b = await remoteServer("fb");
    const c = await remoteServer("fc");
    const bob = b.user("bob");
    const carol = c.user("carol");
    expect((await requestParticipation(b, roomId)).sent.status).toBe(200);
    expect((await putState(alice, roomId, P, b.serverKey, { participation: "accepted", unverified_domain: b.domain })).status).toBe(200);
    const joined = await joinAs(b, roomId, bob);
    expect(joined.sent!.status).toBe(200);

    // C's fork: a message of carol's on top of bob's join, signed by C's key
    const state = await stateOf(alice, roomId);
    const auth = (type: string, key = "") => state.find((e) => e.type === type && e.state_key === key)!.event_id;
    const fork = await c.sign({
      room_id: roomId, sender: carol, type: "m.room.message", content: { msgtype: "m.text", body: "fork from C" },
      origin_server_ts: Date.now(), depth: joined.join!.pdu.depth + 1, prev_events: [joined.join!.eventId],
      auth_events: [auth("m.room.power_levels")],
    });
    // B sends an event of bob's whose prev is C's fork, and answers A's gap fetch with it
    const onTop = await b.sign({
      room_id: roomId, sender: bob, type: "m.room.message", content: { msgtype: "m.text", body: "bob on the fork" },
      origin_server_ts: Date.now(), depth: fork.pdu.depth + 1, prev_events: [fork.eventId],
      auth_events: [auth("m.room.power_levels"), auth("m.room.member", bob), auth(P, b.serverKey)],
    });
    await remoteControl("/_test/answer", { server: b.domain, method: "POST", path: `${F1}/get_missing_events/${enc(roomId)}`, body: { events: [fork.pdu] } });
    const res = await sendTxn(b, [onTop.pdu]);
    expect(res.status).toBe(200);
    expect(res.body.pdus[onTop.eventId], JSON.stringify(res.body)).toEqual({});
    const answered = (await remoteControl<{ method: string; path: string }[]>(`/_test/answered?server=${b.domain}`)).map((a) => a.path);
    expect(answered).toContain(`${F1}/get_missing_events/${enc(roomId)}`);
    // C's event was fetched and rejected (rule 2: C's key is not accepted); it is nowhere to be read
    const stub = env.ROOMS.get(env.ROOMS.idFromName(roomId));
    const reason = await runInDurableObject(stub, (instance) => {
      const meta = (instance as unknown as { engine: RoomEngine }).engine.events.meta(fork.eventId);
      return meta === undefined ? "not stored" : meta.rejectedReason;
    });
    expect(reason).toMatch(/server key is not accepted/);
    expect(await bodies(alice, roomId)).not.toContain("fork from C");
    expect((await api("GET", `${r(roomId)}/event/${enc(fork.eventId)}`, { token: alice.access_token })).status).toBe(404);
  });

  it("send_participation refuses a request that names another domain, another co-signer, or is not the key's own", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });
    const d = await remoteServer("d");
    const made = await federationApi(d.domain, "GET", `${U}/make_participation/${enc(roomId)}/${enc(d.serverKey)}`);
    expect(made.status).toBe(200);
    const base: JsonObject = { ...(made.body.event as JsonObject), origin_server_ts: Date.now() };
    const content = base.content as JsonObject;
    for (const bad of [
      { ...base, content: { ...content, unverified_domain: "elsewhere.remote.test" } },
      { ...base, content: { ...content, request_authorised_via_server: d.serverKey } },
      { ...base, content: { ...content, participation: "accepted" } },
    ]) {
      const e = await d.sign(bad);
      const res = await federationApi(d.domain, "PUT", `${U}/send_participation/${enc(roomId)}/${enc(e.eventId)}`, e.pdu);
      expect(res.status).toBe(400);
    }
    // another server cannot send D's request (the origin is not D's advertised domain)
    const e = await d.sign(base);
    const other = await remoteServer("e");
    expect((await federationApi(other.domain, "PUT", `${U}/send_participation/${enc(roomId)}/${enc(e.eventId)}`, e.pdu)).status).toBe(400);
    // a server that does not know the version (Synapse lists none such in `ver`) cannot join
    const unaware = await federationApi(d.domain, "GET", `${F1}/make_join/${enc(roomId)}/${enc(`@x:${d.domain}`)}?ver=11&ver=12`);
    expect(unaware.status).toBe(400);
    expect(unaware.body).toMatchObject({ errcode: "M_INCOMPATIBLE_ROOM_VERSION", room_version: VERSION });
    // a server that knows the version but asks with a domain-form user ID is told to use its key
    const domainForm = await federationApi(d.domain, "GET", `${F1}/make_join/${enc(roomId)}/${enc(`@x:${d.domain}`)}?ver=12&ver=${enc(VERSION)}`);
    expect(domainForm.status).toBe(400);
    expect(domainForm.body).toMatchObject({ errcode: "ORG.MATRIX.MSC4345_KEY_USER_ID_REQUIRED", room_version: VERSION });
    // a room of another version has no participation
    const v12 = await createRoom(alice, { preset: "public_chat" });
    expect((await federationApi(d.domain, "GET", `${U}/make_participation/${enc(v12)}/${enc(d.serverKey)}`)).status).toBe(400);
    expect((await getState(alice, roomId, P, d.serverKey)).status).toBe(404);
  });
});
