// Protocol core benchmarks (issue: foundation), inside workerd:
//  - events hashed and signed per second, WebCrypto vs @noble/ed25519
//  - event signatures verified per second, WebCrypto vs @noble/ed25519
//  - canonical JSON plus content and reference hashing per event
//  - state resolution of two forks of a 10,000-member room with 1,000 conflicted state events
import { it } from "vitest";
import { canonicalJsonBytes } from "../protocol/canonical-json.js";
import { contentHash, hashAndSignEvent, referenceHash, verifyEventSignature } from "../protocol/event-hashes.js";
import type { JsonObject } from "../protocol/json.js";
import type { IdentifiedPdu, Pdu, StateMap } from "../protocol/pdu.js";
import { stateKey } from "../protocol/pdu.js";
import { redactPdu } from "../protocol/redaction.js";
import { roomVersionRules } from "../protocol/room-versions.js";
import { signableBytes, signingKeyFromSeed } from "../protocol/signing.js";
import { nobleSign, nobleVerify } from "../protocol/signing-noble.js";
import { resolveState } from "../protocol/state-res.js";
import { opsPerSecond, report } from "./report.js";

const rules = roomVersionRules("11")!;

function sampleMessage(i: number): Pdu {
  return {
    room_id: "!bench:bench.local",
    sender: "@alice:bench.local",
    origin_server_ts: 1_700_000_000_000 + i,
    type: "m.room.message",
    content: { msgtype: "m.text", body: `hello world, message number ${i} with some ordinary text in it` },
    prev_events: ["$prevprevprevprevprevprevprevprevprevprevpre"],
    auth_events: ["$createcreatecreatecreatecreatecreatecreate", "$powerpowerpowerpowerpowerpowerpowerpowerpo", "$membermembermembermembermembermembermember"],
    depth: 1000 + i,
    hashes: { sha256: "" },
    signatures: {},
  };
}

it("signing, verification and hashing", async () => {
  const seed = crypto.getRandomValues(new Uint8Array(32));
  const key = await signingKeyFromSeed(seed, "bench");
  let i = 0;
  const signWebCrypto = await opsPerSecond(() => hashAndSignEvent(sampleMessage(i++), "bench.local", key, rules));
  const signNoble = await opsPerSecond(async () => {
    const pdu = sampleMessage(i++);
    pdu.hashes = { sha256: await contentHash(pdu) };
    return nobleSign(seed, signableBytes(redactPdu(pdu, rules) as unknown as JsonObject));
  });
  report("events hashed+signed per second, WebCrypto", signWebCrypto, "events/s");
  report("events hashed+signed per second, @noble/ed25519", signNoble, "events/s");

  const signed = await hashAndSignEvent(sampleMessage(1), "bench.local", key, rules);
  const verifyWebCrypto = await opsPerSecond(() => verifyEventSignature(signed.pdu, "bench.local", key.keyId, key.publicKey, rules));
  const sig = signed.pdu.signatures["bench.local"]![key.keyId]!;
  const verifyNoble = await opsPerSecond(() =>
    nobleVerify(key.publicKey, signableBytes(redactPdu(signed.pdu, rules) as unknown as JsonObject), sig),
  );
  report("event signatures verified per second, WebCrypto", verifyWebCrypto, "events/s");
  report("event signatures verified per second, @noble/ed25519", verifyNoble, "events/s");

  const canonical = await opsPerSecond(() => canonicalJsonBytes(signed.pdu), 500);
  report("canonical JSON of one event", 1e6 / canonical, "µs/event");
  const hashing = await opsPerSecond(async () => {
    await contentHash(signed.pdu);
    await referenceHash(signed.pdu, rules);
  }, 500);
  report("canonical JSON + content hash + reference hash", 1e6 / hashing, "µs/event");
});

/** A synthetic v11/v12 room: create, creator join, power levels, public join rules, `members` joins,
 * then two forks that each change the display name of the same `conflicted` members. */
function forkedRoom(version: string, members: number, conflicted: number) {
  const events = new Map<string, IdentifiedPdu>();
  const rules = roomVersionRules(version)!;
  // v12: the room ID is derived from the create event's ID, which other events no longer list.
  const v12 = rules.authorization.roomCreateEventIdAsRoomId;
  const roomId = v12 ? "!create" : "!room:bench.local";
  let ts = 1_700_000_000_000;
  const add = (id: string, type: string, sk: string, sender: string, content: JsonObject, auth: string[], prev: string[]) => {
    const pdu: IdentifiedPdu = {
      event_id: id, sender, origin_server_ts: ts++, type, state_key: sk, content,
      prev_events: prev, auth_events: v12 ? auth.filter((a) => a !== "$create") : auth, depth: events.size + 1,
      hashes: { sha256: "" }, signatures: {},
    };
    if (!(v12 && type === "m.room.create")) pdu.room_id = roomId;
    events.set(id, pdu);
    return id;
  };
  const creator = "@creator:bench.local";
  const create = add("$create", "m.room.create", "", creator, { room_version: version }, [], []);
  const creatorJoin = add("$creator-join", "m.room.member", creator, creator, { membership: "join" }, [create], [create]);
  const pl = add("$pl", "m.room.power_levels", "", creator, { users: { [creator]: 100 } }, [create, creatorJoin], [creatorJoin]);
  const jr = add("$jr", "m.room.join_rules", "", creator, { join_rule: "public" }, [create, creatorJoin, pl], [pl]);
  const base: StateMap = new Map([
    [stateKey("m.room.create", ""), create],
    [stateKey("m.room.member", creator), creatorJoin],
    [stateKey("m.room.power_levels", ""), pl],
    [stateKey("m.room.join_rules", ""), jr],
  ]);
  let prev = jr;
  const joinIds: string[] = [];
  for (let m = 0; m < members; m++) {
    const user = `@user${m}:bench.local`;
    prev = add(`$join-${m}`, "m.room.member", user, user, { membership: "join" }, [create, pl, jr], [prev]);
    base.set(stateKey("m.room.member", user), prev);
    joinIds.push(prev);
  }
  const forks: StateMap[] = [];
  for (const fork of ["a", "b"]) {
    const state = new Map(base);
    let forkPrev = prev;
    for (let m = 0; m < conflicted; m++) {
      const user = `@user${m}:bench.local`;
      forkPrev = add(`$${fork}-name-${m}`, "m.room.member", user, user, { membership: "join", displayname: `${fork}${m}` }, [create, pl, joinIds[m]!], [forkPrev]);
      state.set(stateKey("m.room.member", user), forkPrev);
    }
    forks.push(state);
  }
  return { events, forks };
}

it("state resolution: two forks of a 10,000-member room, 1,000 conflicted state events", () => {
  for (const version of ["11", "12"]) {
    const { events, forks } = forkedRoom(version, 10_000, 1_000);
    const input = { rules: roomVersionRules(version)!, stateSets: forks, getEvent: (id: string) => events.get(id) };
    resolveState(input); // warm-up
    const runs: number[] = [];
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      const resolved = resolveState(input);
      runs.push(performance.now() - t0);
      if (resolved.size !== forks[0]!.size) throw new Error(`unexpected resolved state size ${resolved.size}`);
    }
    runs.sort((a, b) => a - b);
    report(`state resolution v${version === "12" ? "2.1 (room 12)" : "2 (room 11)"}, 10k members, 1k conflicted`, runs[1]!, "ms", `median of 3; min ${runs[0]!.toFixed(0)}`);
  }
});
