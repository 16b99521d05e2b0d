// The joining server's side of a restricted join (spec: Server-Server API, "Joining Rooms"; room versions
// 8+ "restricted" join rule): this server joins a room on another server whose resident names its
// authorising user in `join_authorised_via_users_server` and co-signs the join. The resident is played by
// a stand-in RemoteFetch inside the Room DO (its PDUs signed with the key remote-homeserver.mjs publishes
// for its name, so that our signature checks fetch the real key); joinRemoteRoom runs as room.ts runs it.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import type { RemoteFetch } from "../../durable-objects/room/federation-inbound.js";
import { joinRemoteRoom } from "../../durable-objects/room/remote-join.js";
import { signEventAsServer } from "../../protocol/event-hashes.js";
import type { JsonObject } from "../../protocol/json.js";
import type { Pdu } from "../../protocol/pdu.js";
import { roomVersionRules } from "../../protocol/room-versions.js";
import { signingKey } from "../../worker/server-identity.js";
import type { Env } from "../../worker/env.js";
import { remoteKey, remotePdu } from "./federation-room-helpers.js";
import { SERVER_NAME, uniqueServer } from "./federation-helpers.js";

const engineOf = (instance: unknown) => (instance as unknown as { engine: RoomEngine }).engine;
const VERSION = "8";

/** A v8 room on `resident`: create, the creator's join, power levels, restricted join rules. */
async function residentRoom(resident: string) {
  const roomId = `!restricted-${crypto.randomUUID().slice(0, 8)}:${resident}`;
  const alice = `@alice:${resident}`;
  const now = Date.now();
  const base = { room_id: roomId, sender: alice, origin_server_ts: now };
  const create = await remotePdu(resident, VERSION, { ...base, type: "m.room.create", state_key: "", content: { creator: alice, room_version: VERSION }, depth: 1, prev_events: [], auth_events: [] });
  const join = await remotePdu(resident, VERSION, {
    ...base,
    type: "m.room.member",
    state_key: alice,
    content: { membership: "join" },
    depth: 2,
    prev_events: [create.eventId],
    auth_events: [create.eventId],
  });
  const power = await remotePdu(resident, VERSION, {
    ...base,
    type: "m.room.power_levels",
    state_key: "",
    content: { users: { [alice]: 100 }, invite: 0 },
    depth: 3,
    prev_events: [join.eventId],
    auth_events: [create.eventId, join.eventId],
  });
  const rules = await remotePdu(resident, VERSION, {
    ...base,
    type: "m.room.join_rules",
    state_key: "",
    content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: `!space:${resident}` }] },
    depth: 4,
    prev_events: [power.eventId],
    auth_events: [create.eventId, join.eventId, power.eventId],
  });
  return { roomId, alice, create, join, power, rules };
}

describe("joining a restricted room on another server", () => {
  it("a partial-state answer that leaves out the authorising member's join: the join is authorised against its own auth events, as Synapse", async () => {
    const resident = uniqueServer("resident");
    const room = await residentRoom(resident);
    const residentKey = await remoteKey(resident);
    const user = `@bob:${SERVER_NAME}`;
    const remote: RemoteFetch = async (_destination, method, path, body) => {
      if (method === "GET" && path.startsWith("/_matrix/federation/v1/make_join/")) {
        const event: JsonObject = {
          room_id: room.roomId,
          sender: user,
          state_key: user,
          type: "m.room.member",
          content: { membership: "join", join_authorised_via_users_server: room.alice },
          depth: 5,
          prev_events: [room.rules.eventId],
          auth_events: [room.create.eventId, room.power.eventId, room.rules.eventId, room.join.eventId],
          origin: SERVER_NAME,
          origin_server_ts: Date.now(),
        };
        return { ok: true, status: 200, body: { event, room_version: VERSION } };
      }
      if (method === "PUT" && path.startsWith("/_matrix/federation/v2/send_join/")) {
        const cosigned = await signEventAsServer(body as unknown as Pdu, resident, residentKey, roomVersionRules(VERSION)!);
        // omit_members: no member events in the state; the authoriser's join only in the auth chain.
        return {
          ok: true,
          status: 200,
          body: {
            event: cosigned,
            state: [room.create.pdu, room.power.pdu, room.rules.pdu],
            auth_chain: [room.join.pdu],
            members_omitted: true,
            servers_in_room: [resident],
          },
        };
      }
      return { ok: false, status: 404, errcode: "M_NOT_FOUND", error: "not played" };
    };
    const stub = env.ROOMS.get(env.ROOMS.idFromName(room.roomId));
    const outcome = await runInDurableObject(stub, async (instance) => {
      const engine = engineOf(instance);
      const key = await signingKey(env as unknown as Env);
      try {
        const { result, partialStateServers } = await joinRemoteRoom(engine, SERVER_NAME, key, remote, { roomId: room.roomId, userId: user, servers: [resident], content: {} });
        return { rejected: result.rejectedReason, partialStateServers, membership: engine.membershipOf(user)?.membership, authoriser: engine.membershipOf(room.alice)?.membership };
      } catch (e) {
        return { error: String((e as Error).message) };
      }
    });
    expect(outcome).toEqual({ rejected: null, partialStateServers: [resident], membership: "join", authoriser: "join" });
  });
});
