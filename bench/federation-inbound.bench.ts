// Inbound federation (issue 8 §7), inside workerd:
//  1. PDUs verified and persisted per second in one room: transactions of 50 messages from a remote server
//     (r1.remote.test, played by test/workers/remote-homeserver.mjs, whose key we fetch once), each PDU
//     going through the whole entry point (format, signature, hashes, auth against auth events and state,
//     soft-fail check, commit). Sent through the Worker's /send handler, X-Matrix signed.
//  2. Processing a send_join answer with 10,000 state events (a room of 10,000 members on the remote
//     server): every event's signature and hash verified, each authorised against its auth events and
//     stored as an outlier, then the join persisted on that state. Measured inside the Room DO (what a
//     real join does after the answer arrived; the remote play-server does not host rooms).
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { it } from "vitest";
import type { RoomEngine } from "../durable-objects/room/engine.js";
import { hashAndSignEvent } from "../protocol/event-hashes.js";
import type { JsonObject } from "../protocol/json.js";
import { stateKey, type Pdu } from "../protocol/pdu.js";
import { roomVersionRules } from "../protocol/room-versions.js";
import { signJson, signingKeyFromSeed, type SigningKey } from "../protocol/signing.js";
import type { Env } from "../worker/env.js";
import app from "../worker/index.js";
import { report } from "./report.js";

const testEnv = env as unknown as Env;
const SERVER = "bench.local";
const REMOTE = "r1.remote.test";
const V = "12";
const rules = roomVersionRules(V)!;

const ctx = { waitUntil: (p: Promise<unknown>) => void p.catch(() => undefined), passThroughOnException() {}, props: {} } as unknown as ExecutionContext;

let remoteKeyPromise: Promise<SigningKey> | undefined;
/** The key remote-homeserver.mjs publishes for REMOTE (seed = SHA-256("seed:<name>:1")). */
function remoteKey(): Promise<SigningKey> {
  return (remoteKeyPromise ??= (async () => {
    const seed = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`seed:${REMOTE}:1`)));
    return signingKeyFromSeed(seed, "v1");
  })());
}

async function federation(method: string, path: string, body?: unknown): Promise<{ status: number; body: JsonObject }> {
  const key = await remoteKey();
  const toSign: JsonObject = { method, uri: path, origin: REMOTE, destination: SERVER };
  if (body !== undefined) toSign.content = body as JsonObject;
  const signed = await signJson(toSign, REMOTE, key);
  const sig = (signed.signatures as Record<string, Record<string, string>>)[REMOTE]![key.keyId]!;
  const headers = new Headers({ Authorization: `X-Matrix origin="${REMOTE}",destination="${SERVER}",key="${key.keyId}",sig="${sig}"`, "Content-Type": "application/json" });
  const res = await app.fetch(new Request(`https://${SERVER}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }), testEnv, ctx);
  return { status: res.status, body: (await res.json()) as JsonObject };
}

async function client(method: string, path: string, token?: string, body?: unknown): Promise<{ status: number; body: JsonObject }> {
  const headers = new Headers({ "Content-Type": "application/json" });
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const res = await app.fetch(new Request(`https://${SERVER}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }), testEnv, ctx);
  return { status: res.status, body: (await res.json()) as JsonObject };
}

async function signRemote(fields: Record<string, unknown>): Promise<{ pdu: Pdu; eventId: string }> {
  return hashAndSignEvent({ ...fields, hashes: { sha256: "" }, signatures: {} } as unknown as Pdu, REMOTE, await remoteKey(), rules);
}

it("inbound PDUs: transactions of 50 from one remote server into one room", async () => {
  let res = await client("POST", "/_matrix/client/v3/register", undefined, { username: "benchin", password: "password-benchin", auth: { type: "m.login.dummy" } });
  if (res.status === 401) res = await client("POST", "/_matrix/client/v3/register", undefined, { username: "benchin", password: "password-benchin", auth: { type: "m.login.dummy", session: res.body.session } });
  const token = res.body.access_token as string;
  const roomId = (await client("POST", "/_matrix/client/v3/createRoom", token, { preset: "public_chat" })).body.room_id as string;
  const bob = `@bob:${REMOTE}`;
  const made = await federation("GET", `/_matrix/federation/v1/make_join/${encodeURIComponent(roomId)}/${encodeURIComponent(bob)}?ver=${V}`);
  const { signatures: _s, hashes: _h, ...template } = made.body.event as JsonObject;
  const join = await signRemote(template);
  const sent = await federation("PUT", `/_matrix/federation/v2/send_join/${encodeURIComponent(roomId)}/${encodeURIComponent(join.eventId)}`, join.pdu);
  if (sent.status !== 200) throw new Error(`send_join: ${sent.status} ${JSON.stringify(sent.body)}`);
  const state = (await client("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state`, token)).body as unknown as { type: string; state_key: string; event_id: string }[];
  const auth = state.filter((e) => e.type === "m.room.power_levels" || (e.type === "m.room.member" && e.state_key === bob)).map((e) => e.event_id);

  const TXNS = 20;
  const PER_TXN = 50;
  let prev = join.eventId;
  let depth = join.pdu.depth;
  // Build (sign) everything first: only receiving is measured.
  const txns: Pdu[][] = [];
  for (let t = 0; t < TXNS; t++) {
    const pdus: Pdu[] = [];
    for (let i = 0; i < PER_TXN; i++) {
      depth += 1;
      const e = await signRemote({ room_id: roomId, sender: bob, type: "m.room.message", content: { msgtype: "m.text", body: `m ${t}.${i}` }, origin_server_ts: Date.now(), depth, prev_events: [prev], auth_events: auth });
      pdus.push(e.pdu);
      prev = e.eventId;
    }
    txns.push(pdus);
  }
  const start = performance.now();
  for (const [t, pdus] of txns.entries()) {
    const r = await federation("PUT", `/_matrix/federation/v1/send/bench-${t}`, { origin: REMOTE, origin_server_ts: Date.now(), pdus, edus: [] });
    const errors = Object.values(r.body.pdus as Record<string, { error?: string }>).filter((x) => x.error);
    if (r.status !== 200 || errors.length > 0) throw new Error(`send: ${r.status} ${JSON.stringify(errors[0])}`);
  }
  const seconds = (performance.now() - start) / 1000;
  report("federation in: PDUs verified and persisted per second (one room)", (TXNS * PER_TXN) / seconds, "PDU/s", `${TXNS} transactions of ${PER_TXN}, aim >= 2,000`);
});

it("send_join answer with 10,000 state events: verified, authorised and stored", async () => {
  const MEMBERS = 10_000;
  const creator = `@creator:${REMOTE}`;
  const create = await signRemote({ sender: creator, type: "m.room.create", state_key: "", content: { room_version: V }, origin_server_ts: Date.now(), depth: 1, prev_events: [], auth_events: [] });
  const roomId = `!${create.eventId.slice(1)}`;
  const creatorJoin = await signRemote({ room_id: roomId, sender: creator, type: "m.room.member", state_key: creator, content: { membership: "join" }, origin_server_ts: Date.now(), depth: 2, prev_events: [create.eventId], auth_events: [] });
  const pl = await signRemote({ room_id: roomId, sender: creator, type: "m.room.power_levels", state_key: "", content: { users: {}, users_default: 0 }, origin_server_ts: Date.now(), depth: 3, prev_events: [creatorJoin.eventId], auth_events: [creatorJoin.eventId] });
  const jr = await signRemote({ room_id: roomId, sender: creator, type: "m.room.join_rules", state_key: "", content: { join_rule: "public" }, origin_server_ts: Date.now(), depth: 4, prev_events: [pl.eventId], auth_events: [creatorJoin.eventId, pl.eventId] });
  const state: Pdu[] = [create.pdu, creatorJoin.pdu, pl.pdu, jr.pdu];
  let prev = jr.eventId;
  const buildStart = performance.now();
  for (let i = 0; i < MEMBERS - 4; i++) {
    const user = `@m${i}:${REMOTE}`;
    const e = await signRemote({ room_id: roomId, sender: user, type: "m.room.member", state_key: user, content: { membership: "join" }, origin_server_ts: Date.now(), depth: 5 + i, prev_events: [prev], auth_events: [pl.eventId, jr.eventId] });
    state.push(e.pdu);
    prev = e.eventId;
  }
  const buildSeconds = (performance.now() - buildStart) / 1000;
  // Our user's join on top of that state (signed by us, as remote-join.ts does after make_join).
  const stub = testEnv.ROOMS.get(testEnv.ROOMS.idFromName(roomId));
  const seconds = await runInDurableObject(stub, async (instance) => {
    const engine = (instance as unknown as { engine: RoomEngine }).engine;
    const { signingKey } = await import("../worker/server-identity.js");
    const key = await signingKey(testEnv);
    const me = `@joiner:${SERVER}`;
    const ourJoin = await hashAndSignEvent(
      { room_id: roomId, sender: me, type: "m.room.member", state_key: me, content: { membership: "join" }, origin_server_ts: Date.now(), depth: 5 + MEMBERS, prev_events: [prev], auth_events: [pl.eventId, jr.eventId], hashes: { sha256: "" }, signatures: {} } as unknown as Pdu,
      SERVER,
      key,
      rules,
    );
    const start = performance.now();
    engine.beginRemoteRoom(roomId, V);
    const outliers = await engine.persistOutliers(state);
    if (outliers.failed.length > 0) throw new Error(`outliers failed: ${JSON.stringify(outliers.failed[0])}`);
    const map = new Map<string, string>();
    for (const id of outliers.stored) {
      const m = engine.events.meta(id)!;
      map.set(stateKey(m.type, m.stateKey!), id);
    }
    engine.setCreateEvent(create.eventId);
    const result = await engine.persistRemoteJoin(ourJoin.pdu, map);
    if (result.rejectedReason !== null) throw new Error(`join rejected: ${result.rejectedReason}`);
    return (performance.now() - start) / 1000;
  });
  report("federation in: send_join answer of 10,000 state events processed", seconds, "s", `aim < 5 s; building and signing them took ${buildSeconds.toFixed(1)} s, not counted`);
});
