// The background resync of a partial-state join (issue 19 §3, §5), phase by phase, inside workerd: a remote
// room of M members, joined with partial state (our join on the non-member state), then every resync step
// run until the room is complete, with a stand-in for the resident that answers /state_ids and streams
// /state in 64 KiB chunks. Figures are CPU time of workerd per phase (bench/cpu-clock.ts), so they stay
// comparable on a loaded machine; `npm run bench:join` measures the same path against a real Synapse.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { it } from "vitest";
import type { RoomEngine } from "../durable-objects/room/engine.js";
import type { RemoteFetch, RemoteStream } from "../durable-objects/room/federation-inbound.js";
import { beginPartialState, resyncStep } from "../durable-objects/room/partial-state.js";
import { hashAndSignEvent } from "../protocol/event-hashes.js";
import { stateKey, type Pdu } from "../protocol/pdu.js";
import { roomVersionRules } from "../protocol/room-versions.js";
import { signingKeyFromSeed, type SigningKey } from "../protocol/signing.js";
import type { Env } from "../worker/env.js";
import { workerdCpuSeconds } from "./cpu-clock.js";
import { report } from "./report.js";

const testEnv = env as unknown as Env;
const SERVER = "bench.local";
const REMOTE = "r1.remote.test";
// Synapse's default room version.
const V = "10";
const rules = roomVersionRules(V)!;
const MEMBERS = 5_000;

let remoteKeyPromise: Promise<SigningKey> | undefined;
/** The key remote-homeserver.mjs publishes for REMOTE (seed = SHA-256("seed:<name>:1")). */
function remoteKey(): Promise<SigningKey> {
  return (remoteKeyPromise ??= (async () => {
    const seed = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`seed:${REMOTE}:1`)));
    return signingKeyFromSeed(seed, "v1");
  })());
}

async function signRemote(fields: Record<string, unknown>): Promise<{ pdu: Pdu; eventId: string }> {
  return hashAndSignEvent({ ...fields, hashes: { sha256: "" }, signatures: {} } as unknown as Pdu, REMOTE, await remoteKey(), rules);
}

it(`partial-state resync of a room of ${MEMBERS.toLocaleString("en")} members: CPU per phase`, async () => {
  const roomId = `!resync-bench:${REMOTE}`;
  const creator = `@creator:${REMOTE}`;
  const at = Date.now();
  const base = { room_id: roomId, origin_server_ts: at };
  const create = await signRemote({ ...base, sender: creator, type: "m.room.create", state_key: "", content: { room_version: V, creator }, depth: 1, prev_events: [], auth_events: [] });
  const creatorJoin = await signRemote({ ...base, sender: creator, type: "m.room.member", state_key: creator, content: { membership: "join" }, depth: 2, prev_events: [create.eventId], auth_events: [create.eventId] });
  const pl = await signRemote({ ...base, sender: creator, type: "m.room.power_levels", state_key: "", content: { users: { [creator]: 100 }, users_default: 0 }, depth: 3, prev_events: [creatorJoin.eventId], auth_events: [create.eventId, creatorJoin.eventId] });
  const jr = await signRemote({ ...base, sender: creator, type: "m.room.join_rules", state_key: "", content: { join_rule: "public" }, depth: 4, prev_events: [pl.eventId], auth_events: [create.eventId, creatorJoin.eventId, pl.eventId] });
  const nonMember = [create, creatorJoin, pl, jr];
  const members: { pdu: Pdu; eventId: string }[] = [];
  let prev = jr.eventId;
  for (let i = 0; i < MEMBERS - 1; i++) {
    const user = `@member${i}:${REMOTE}`;
    const e = await signRemote({ ...base, sender: user, type: "m.room.member", state_key: user, content: { membership: "join", displayname: `Member ${i}` }, depth: 5 + i, prev_events: [prev], auth_events: [create.eventId, pl.eventId, jr.eventId] });
    members.push(e);
    prev = e.eventId;
  }
  const all = [...nonMember, ...members];
  // /state at the last member's join: everything but that event, which the resync adds itself.
  const stateBody = JSON.stringify({ pdus: all.slice(0, -1).map((e) => e.pdu), auth_chain: [create, creatorJoin, pl, jr].map((e) => e.pdu) });
  const stateIds = { pdu_ids: all.slice(0, -1).map((e) => e.eventId), auth_chain_ids: [create, creatorJoin, pl, jr].map((e) => e.eventId) };
  const bytes = new TextEncoder().encode(stateBody);
  const remote: RemoteFetch = async (_destination, _method, path) => {
    if (path.startsWith("/_matrix/federation/v1/state_ids/")) return { ok: true, status: 200, body: stateIds };
    const id = decodeURIComponent(path.split("/").at(-1)!);
    const e = all.find((x) => x.eventId === id);
    return e ? { ok: true, status: 200, body: { pdus: [e.pdu] } } : { ok: false, status: 404, error: "not found" };
  };
  const stream: RemoteStream = async () => {
    let offset = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= bytes.length) return controller.close();
        controller.enqueue(bytes.slice(offset, offset + 65_536));
        offset += 65_536;
      },
    });
    return { ok: true, response: new Response(body) };
  };

  const stub = testEnv.ROOMS.get(testEnv.ROOMS.idFromName(roomId));
  const result = await runInDurableObject(stub, async (instance) => {
    const engine = (instance as unknown as { engine: RoomEngine }).engine;
    // The partial join: the non-member state stored, our join on it (as remote-join.ts does), then the last
    // member's join as the event our join follows.
    engine.beginRemoteRoom(roomId, V);
    const stored = await engine.persistOutliers([...nonMember.map((e) => e.pdu), all.at(-1)!.pdu]);
    if (stored.failed.length > 0) throw new Error(`outliers failed: ${JSON.stringify(stored.failed[0])}`);
    engine.setCreateEvent(create.eventId);
    const { signingKey } = await import("../worker/server-identity.js");
    const key = await signingKey(testEnv);
    const me = `@joiner:${SERVER}`;
    const ourJoin = await hashAndSignEvent(
      { ...base, sender: me, type: "m.room.member", state_key: me, content: { membership: "join" }, depth: 5 + MEMBERS, prev_events: [prev], auth_events: [create.eventId, pl.eventId, jr.eventId], hashes: { sha256: "" }, signatures: {} } as unknown as Pdu,
      SERVER,
      key,
      rules,
    );
    const stateBefore = new Map(nonMember.map((e) => [stateKey(e.pdu.type, (e.pdu.state_key as string) ?? ""), e.eventId]));
    const join = await engine.persistRemoteJoin(ourJoin.pdu, stateBefore);
    if (join.rejectedReason !== null) throw new Error(`join rejected: ${join.rejectedReason}`);
    beginPartialState(engine, join.eventId, [REMOTE], SERVER);

    const cpuByPhase = new Map<string, { cpu: number; steps: number }>();
    let steps = 0;
    for (;;) {
      const phase = engine.sql.exec<{ phase: string }>("SELECT phase FROM partial_state").toArray()[0]?.phase ?? "done";
      const cpu0 = await workerdCpuSeconds();
      const next = await resyncStep(engine, remote, stream);
      const cpu1 = await workerdCpuSeconds();
      const entry = cpuByPhase.get(phase) ?? { cpu: 0, steps: 0 };
      entry.cpu += cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : 0;
      entry.steps += 1;
      cpuByPhase.set(phase, entry);
      if (next === null) break;
      if (++steps > 10_000) throw new Error("the resync does not end");
    }
    const joined = engine.membersWith("join").length;
    return { cpuByPhase: [...cpuByPhase], joined };
  });
  if (result.joined !== MEMBERS + 1) throw new Error(`after the resync ${result.joined} members are joined, not ${MEMBERS + 1}`);
  let total = 0;
  for (const [phase, { cpu, steps }] of result.cpuByPhase) {
    total += cpu;
    report(`  resync phase ${phase} (${steps} steps)`, (cpu * 1e6) / MEMBERS, "µs/member", `${cpu.toFixed(2)} s CPU`);
  }
  report(`partial-state resync of ${MEMBERS.toLocaleString("en")} members, CPU of workerd`, total, "s", "load-independent-ish; the phases above");
});
