// Pushing to application services: which events of a room reach which service's queue
// (durable-objects/room/appservice-outbound.ts, Synapse's interest rules), in commit order, and what the
// service's queue does with a service that is down (durable-objects/appservice.ts: the same transaction,
// same ID and events, retried). The services here listen nowhere (a closed loopback port), so every event
// stays queued and can be inspected; delivery to a real listener is in test/e2e/appservice.test.ts.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { appserviceHandOverSettled } from "../../durable-objects/room/appservice-outbound.js";
import { api, SERVER_NAME } from "./helpers.js";
import { createRoom, membership, newUser, r, send, V3 } from "./room-helpers.js";
import { registerAppservice, type TestAppservice } from "./appservice-helpers.js";

const DOWN = "http://127.0.0.1:9";
const rawRoom = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
const queue = (svc: TestAppservice) => env.APPSERVICES.get(env.APPSERVICES.idFromName(svc.registration.id));

async function settle(roomId: string): Promise<void> {
  await runInDurableObject(rawRoom(roomId), (_instance, state) => appserviceHandOverSettled(state));
}

async function queuedEventIds(svc: TestAppservice): Promise<string[]> {
  const q = queue(svc);
  await q.sendsSettled();
  return (await q.queueState()).pdus.map((p) => p.eventId);
}

async function asRegister(svc: TestAppservice, localpart: string): Promise<string> {
  const res = await api("POST", `${V3}/register`, { token: svc.asToken, body: { type: "m.login.application_service", username: localpart, inhibit_login: true } });
  expect(res.status).toBe(200);
  return res.body.user_id as string;
}

describe("which events a service gets", () => {
  it("an invite of one of its users, then every event of the room once that user joined, in order", async () => {
    const svc = await registerAppservice({ url: DOWN });
    const other = await registerAppservice({ url: DOWN });
    const puppet = await asRegister(svc, `${svc.prefix}alice`);
    const owner = await newUser("owner");
    const roomId = await createRoom(owner);
    const before = await send(owner, roomId, { msgtype: "m.text", body: "before" });
    const invite = await membership(owner, roomId, "invite", { user_id: puppet });
    expect(invite.status).toBe(200);
    const join = await api("POST", `${r(roomId)}/join?user_id=${encodeURIComponent(puppet)}`, { token: svc.asToken, body: {} });
    expect(join.status).toBe(200);
    const m1 = await send(owner, roomId, { msgtype: "m.text", body: "one" });
    const m2 = await send(owner, roomId, { msgtype: "m.text", body: "two" });
    await settle(roomId);

    const ids = await queuedEventIds(svc);
    expect(ids).not.toContain(before.body.event_id);
    expect(ids.length).toBe(4);
    expect(ids.slice(2)).toEqual([m1.body.event_id, m2.body.event_id]);
    const kinds = [];
    for (const id of ids.slice(0, 2)) {
      const ev = await api("GET", `${r(roomId)}/event/${encodeURIComponent(id)}`, { token: owner.access_token });
      kinds.push(`${ev.body.type} ${ev.body.content.membership} ${ev.body.state_key}`);
    }
    expect(kinds).toEqual([`m.room.member invite ${puppet}`, `m.room.member join ${puppet}`]);
    // Another service with no stake in the room gets none of it.
    expect(await queuedEventIds(other)).toEqual([]);
  });

  it("events in client format", async () => {
    const svc = await registerAppservice({ url: DOWN });
    const roomId = await createRoom({ access_token: svc.asToken, user_id: svc.sender, device_id: "" });
    const sent = await api("PUT", `${r(roomId)}/send/m.room.message/fmt1`, { token: svc.asToken, body: { msgtype: "m.text", body: "hi" } });
    await settle(roomId);
    const q = queue(svc);
    await q.sendsSettled();
    const txn = (await q.queueState()).pdus;
    expect(txn.map((p) => p.eventId)).toContain(sent.body.event_id);
    expect(txn.every((p) => p.roomId === roomId)).toBe(true);
  });

  it("rooms and aliases namespaces; url: null gets nothing", async () => {
    const owner = await newUser("nsowner");
    const roomId = await createRoom(owner);
    const byRoom = await registerAppservice({ url: DOWN, namespaces: { users: [], rooms: [{ exclusive: false, regex: roomId.replace(/[.$!]/g, "\\$&") }] } });
    const byAlias = await registerAppservice({ url: DOWN });
    const silent = await registerAppservice({ url: null, namespaces: { users: [], rooms: [{ exclusive: false, regex: "!.*" }] } });
    const m1 = await send(owner, roomId, { msgtype: "m.text", body: "room ns" });
    await settle(roomId);
    expect(await queuedEventIds(byRoom)).toEqual([m1.body.event_id]);
    expect(await queuedEventIds(byAlias)).toEqual([]);
    expect(await queuedEventIds(silent)).toEqual([]);

    // An alias in the service's namespace, created by the service, makes the room interesting to it.
    const alias = `#${byAlias.prefix}r:${SERVER_NAME}`;
    expect((await api("PUT", `${V3}/directory/room/${encodeURIComponent(alias)}`, { token: byAlias.asToken, body: { room_id: roomId } })).status).toBe(200);
    const m2 = await send(owner, roomId, { msgtype: "m.text", body: "alias ns" });
    await settle(roomId);
    expect(await queuedEventIds(byAlias)).toEqual([m2.body.event_id]);
  });
});

describe("a service that is down", () => {
  it("keeps the transaction in flight: same ID, same events, more attempts", async () => {
    const svc = await registerAppservice({ url: DOWN });
    const roomId = await createRoom({ access_token: svc.asToken, user_id: svc.sender, device_id: "" });
    await settle(roomId);
    const q = queue(svc);
    await q.setTuning({ minBackoffMs: 60_000, maxBackoffMs: 60_000 });
    await q.retryNow();
    const first = await q.queueState();
    expect(first.transactionInFlight).not.toBeNull();
    expect(first.failures).toBeGreaterThan(0);
    expect(first.lastError).toMatch(/no answer|HTTP/);
    const inFlight = first.pdus.filter((p) => p.inFlight).map((p) => p.eventId);
    expect(inFlight.length).toBeGreaterThan(0);

    // More events arrive meanwhile; the retry carries exactly the first transaction again.
    await api("PUT", `${r(roomId)}/send/m.room.message/down1`, { token: svc.asToken, body: { msgtype: "m.text", body: "later" } });
    await settle(roomId);
    await q.retryNow();
    const second = await q.queueState();
    expect(second.transactionInFlight!.txnId).toBe(first.transactionInFlight!.txnId);
    expect(second.transactionInFlight!.attempts).toBeGreaterThan(first.transactionInFlight!.attempts);
    expect(second.pdus.filter((p) => p.inFlight).map((p) => p.eventId)).toEqual(inFlight);
    expect(second.pdus.length).toBe(first.pdus.length + 1);
    // The back-off is capped (the test's 60 s here; 5 minutes by default) and an alarm is set for it.
    expect(second.retryAt! - Date.now()).toBeLessThanOrEqual(60_000);
    expect(second.alarmAt).not.toBeNull();
  });
});

describe("receive_ephemeral", () => {
  it("typing and public receipts of the service's rooms are queued for services that asked for them", async () => {
    const svc = await registerAppservice({ url: DOWN, receive_ephemeral: true });
    const quiet = await registerAppservice({ url: DOWN });
    const owner = await newUser("typer");
    const roomId = await createRoom(owner, { invite: [svc.sender] });
    expect((await api("POST", `${r(roomId)}/join`, { token: svc.asToken, body: {} })).status).toBe(200);
    await api("POST", `${r(roomId)}/join?user_id=${encodeURIComponent(quiet.sender)}`, { token: quiet.asToken, body: {} });
    const msg = await send(owner, roomId, { msgtype: "m.text", body: "read me" });
    expect((await api("PUT", `${r(roomId)}/typing/${encodeURIComponent(owner.user_id)}`, { token: owner.access_token, body: { typing: true, timeout: 30000 } })).status).toBe(200);
    expect((await api("POST", `${r(roomId)}/receipt/m.read/${encodeURIComponent(msg.body.event_id)}`, { token: owner.access_token, body: {} })).status).toBe(200);
    await settle(roomId);
    const q = queue(svc);
    await q.sendsSettled();
    const edus = (await q.queueState()).edus;
    expect(edus.map((e) => e.eduType)).toEqual(["m.typing", "m.receipt"]);
    expect(edus[0]!.dedupeKey).toBe(`typing:${roomId}`);
    // Without receive_ephemeral: none (the quiet service is not even in the room: it never joined).
    expect((await queue(quiet).queueState()).edus).toEqual([]);
  });
});
