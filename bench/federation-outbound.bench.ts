// Outbound federation fan-out (issue 8 §7), inside workerd: one local event in a room where 20 other servers
// have a joined member, from the send (build, checks, commit) until all 20 peers have the transaction.
// The peers are the test pool's remote homeservers (test/workers/remote-homeserver.mjs, an auxiliary worker
// in the same workerd): each checks our X-Matrix signature (fetching our key document from us) and records
// when the request arrived. Reported:
//  - the send as the client sees it (acknowledged after commit; the hand-over runs after it), in this room
//    and in a room without remote servers, to show what the outbound hook adds to the write path;
//  - send → the last of the 20 peers received the transaction (the peers' arrival clock);
//  - send → every Destination DO got its 200 (what the sender observes, including our waiting calls).
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { it } from "vitest";
import { buildLocalEvent } from "../durable-objects/room/build-event.js";
import type { RoomEngine } from "../durable-objects/room/engine.js";
import { choosePrevEvents } from "../durable-objects/room/local-events.js";
import { remoteHandOverSettled } from "../durable-objects/room/outbound.js";
import { decodeBase64 } from "../protocol/base64.js";
import { signingKeyFromSeed } from "../protocol/signing.js";
import type { Env } from "../worker/env.js";
import app from "../worker/index.js";
import { percentile, report } from "./report.js";

const testEnv = env as unknown as Env;
const SERVER = "bench.local";
const DESTINATIONS = 20;
const SENDS = 20;

const remote = testEnv.FEDERATION_TEST_FETCHER!;
async function control<T>(path: string, body?: unknown): Promise<T> {
  const res = await remote.fetch(`https://control.test${path}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) });
  return (await res.json()) as T;
}

const room = (roomId: string) => testEnv.ROOMS.get(testEnv.ROOMS.idFromName(roomId));
const engineOf = (instance: unknown) => (instance as unknown as { engine: RoomEngine }).engine;

// Requests go to the Worker's fetch handler directly (bench/rooms.bench.ts explains why).
const ctx = { waitUntil: (p: Promise<unknown>) => void p.catch(() => undefined), passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
async function api(method: string, path: string, token?: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers = new Headers({ "Content-Type": "application/json" });
  if (token !== undefined) headers.set("Authorization", `Bearer ${token}`);
  const res = await app.fetch(new Request(`https://${SERVER}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }), testEnv, ctx);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Registers a user (m.login.dummy) and returns its user ID and access token. */
async function registerUser(localpart: string): Promise<{ userId: string; token: string }> {
  const request = { username: localpart, password: `password-${localpart}` };
  let res = await api("POST", "/_matrix/client/v3/register", undefined, request);
  if (res.status === 401) res = await api("POST", "/_matrix/client/v3/register", undefined, { ...request, auth: { type: "m.login.dummy", session: res.body.session } });
  if (res.status !== 200) throw new Error(`register: ${res.status} ${JSON.stringify(res.body)}`);
  return { userId: res.body.user_id as string, token: res.body.access_token as string };
}

async function newRoom(token: string): Promise<string> {
  const res = await api("POST", "/_matrix/client/v3/createRoom", token, { preset: "public_chat" });
  if (res.status !== 200) throw new Error(`createRoom: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.room_id as string;
}

async function remoteJoin(roomId: string, server: string): Promise<void> {
  const identity = await control<{ keyId: string; seed: string }>("/_test/sign", { name: server, method: "GET", uri: "/", destination: SERVER });
  const userId = `@member:${server}`;
  const pdu = await runInDurableObject(room(roomId), async (instance) => {
    const engine = engineOf(instance);
    const meta = engine.meta()!;
    const key = await signingKeyFromSeed(decodeBase64(identity.seed), identity.keyId.slice("ed25519:".length));
    return (
      await buildLocalEvent(
        { type: "m.room.member", stateKey: userId, sender: userId, content: { membership: "join" } },
        { roomId: meta.roomId, rules: meta.rules, serverName: server, key, prevEvents: choosePrevEvents(engine), state: engine.currentLookup, now: Date.now() },
      )
    ).pdu;
  });
  const outcome = await room(roomId).persistEvent(pdu, { origin: "federation" });
  if (!("ok" in outcome) || outcome.ok.rejectedReason !== null) throw new Error(`remote join: ${JSON.stringify(outcome)}`);
}

const destination = (server: string) => testEnv.DESTINATIONS.get(testEnv.DESTINATIONS.idFromName(server));

async function settled(roomId: string, servers: string[]): Promise<void> {
  await runInDurableObject(room(roomId), async (_i, state) => remoteHandOverSettled(state));
  await Promise.all(servers.map((s) => destination(s).sendsSettled()));
}

async function sendMessage(roomId: string, sender: string, body: string): Promise<string> {
  const outcome = await room(roomId).sendEvent({ sender, type: "m.room.message", content: { msgtype: "m.text", body } });
  if ("error" in outcome) throw new Error(`send: ${JSON.stringify(outcome.error)}`);
  return outcome.ok.eventId;
}

it(`fan-out of one event to ${DESTINATIONS} servers`, async () => {
  const run = crypto.randomUUID().slice(0, 6);
  const user = await registerUser(`alice-${run}`);
  const alice = user.userId;
  const servers = Array.from({ length: DESTINATIONS }, (_, i) => `peer${i}-${run}.remote.test`);
  const roomId = await newRoom(user.token);
  const localRoomId = await newRoom(user.token);
  for (const s of servers) await remoteJoin(roomId, s);
  // Warm-up: key fetches by the peers, discovery, the DOs' first storage.
  for (let i = 0; i < 3; i++) {
    await sendMessage(roomId, alice, `warm-up ${i}`);
    await settled(roomId, servers);
    await sendMessage(localRoomId, alice, `warm-up ${i}`);
  }

  const ackLocal: number[] = [];
  const ackFederated: number[] = [];
  const peersReceived: number[] = [];
  const allAnswered: number[] = [];
  const ackToPeers: number[] = [];
  for (let i = 0; i < SENDS; i++) {
    let t0 = Date.now();
    await sendMessage(localRoomId, alice, `local ${i}`);
    ackLocal.push(Date.now() - t0);

    t0 = Date.now();
    const eventId = await sendMessage(roomId, alice, `message ${i}`);
    const acked = Date.now();
    ackFederated.push(acked - t0);
    await settled(roomId, servers);
    allAnswered.push(Date.now() - t0);
    // The peers' arrival times of the transaction that carried this event.
    let last = 0;
    for (const s of servers) {
      const txns = await control<{ arrivedAt: number; accepted: boolean; body: { pdus: { content: { body: string } }[] } }[]>(
        `/_test/transactions?server=${encodeURIComponent(s)}`,
      );
      const txn = txns.find((t) => t.accepted && t.body.pdus.some((p) => p.content.body === `message ${i}`));
      if (!txn) throw new Error(`${s} did not receive ${eventId}`);
      last = Math.max(last, txn.arrivedAt);
    }
    peersReceived.push(last - t0);
    ackToPeers.push(last - acked);
  }
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  report("send acknowledged, room without remote servers, p50", percentile(sorted(ackLocal), 50), "ms");
  report(`send acknowledged, room with ${DESTINATIONS} remote servers, p50`, percentile(sorted(ackFederated), 50), "ms");
  report(`send -> last of ${DESTINATIONS} peers received the transaction, p50`, percentile(sorted(peersReceived), 50), "ms");
  report(`send -> last of ${DESTINATIONS} peers received the transaction, p99`, percentile(sorted(peersReceived), 99), "ms", `${SENDS} sends`);
  report(`acknowledged -> last of ${DESTINATIONS} peers received, p50`, percentile(sorted(ackToPeers), 50), "ms");
  report(`send -> all ${DESTINATIONS} Destination DOs got their 200, p50`, percentile(sorted(allAnswered), 50), "ms");
});
