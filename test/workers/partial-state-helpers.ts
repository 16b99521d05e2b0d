// Putting a room of this server into partial state and completing its resync inside the Room DO, with a
// stand-in for the resident server (as test/workers/partial-state-sync.test.ts does): the room's real
// alarm runs the resync, so whatever happens when a resync completes (room.ts) happens here too.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import type { RemoteFetch } from "../../durable-objects/room/federation-inbound.js";
import { beginPartialState } from "../../durable-objects/room/partial-state.js";
import type { Pdu } from "../../protocol/pdu.js";
import { federationApi, signTemplate } from "./federation-room-helpers.js";
import { SERVER_NAME } from "./helpers.js";

export const rawRoom = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
type RoomInstance = { engine: RoomEngine; alarm(): Promise<void> };

/**
 * Puts the room into partial state, `servers` standing for the resident's `servers_in_room`. Local users
 * who join (or change their profile) afterwards are told by the room that it is partial for them.
 */
export async function makePartial(roomId: string, servers: string[] = ["resident.test"]): Promise<void> {
  await runInDurableObject(rawRoom(roomId), async (instance) => {
    const engine = (instance as unknown as RoomInstance).engine;
    beginPartialState(engine, [...engine.currentState().values()].at(-1)!, servers, SERVER_NAME);
  });
}

/**
 * Runs the room's alarm until the resync is complete. The resident answers /state_ids with the state we
 * hold plus the events of `missing` (the members a partial join left out), and /event with those events,
 * which the resync then fetches, checks and adds to the current state.
 */
export async function completeResync(roomId: string, missing: { eventId: string; pdu: Pdu }[] = []): Promise<void> {
  await runInDurableObject(rawRoom(roomId), async (instance) => {
    const room = instance as unknown as RoomInstance;
    const stateIds = [...room.engine.currentState().values(), ...missing.map((m) => m.eventId)];
    const remote: RemoteFetch = async (_server, _method, path) => {
      const event = missing.find((m) => path === `/_matrix/federation/v1/event/${encodeURIComponent(m.eventId)}`);
      if (event) return { ok: true, status: 200, body: { origin: "resident.test", origin_server_ts: Date.now(), pdus: [event.pdu] } };
      return { ok: true, status: 200, body: { pdu_ids: stateIds, auth_chain_ids: [] } };
    };
    // The room's own getters reach the network; this room's resync asks the stand-in instead.
    Object.defineProperty(instance, "remote", { get: () => remote, configurable: true });
    Object.defineProperty(instance, "remoteStream", { get: () => undefined, configurable: true });
    for (let i = 0; i < 20 && room.engine.sql.exec("SELECT 1 FROM partial_state").toArray().length > 0; i++) await room.alarm();
    expect(room.engine.sql.exec("SELECT 1 FROM partial_state").toArray()).toEqual([]);
  });
}

/** A join of `userId` (a user of a remote stand-in server) to the room, signed by its server (through
 * make_join, so before the room is partial) but not sent to us: a member a partial join leaves out. */
export async function remoteJoin(roomId: string, userId: string, displayname: string): Promise<{ eventId: string; pdu: Pdu; roomVersion: string }> {
  const server = userId.slice(userId.indexOf(":") + 1);
  const made = await federationApi(server, "GET", `/_matrix/federation/v1/make_join/${encodeURIComponent(roomId)}/${encodeURIComponent(userId)}?ver=12&ver=11&ver=10`);
  expect(made.status).toBe(200);
  const roomVersion = made.body.room_version as string;
  return { ...(await signTemplate(server, roomVersion, made.body.event, { content: { membership: "join", displayname } })), roomVersion };
}

/** Stores events in the room as outliers, as the resync's check step does with what it fetched. */
export async function storeOutliers(roomId: string, pdus: Pdu[]): Promise<void> {
  await runInDurableObject(rawRoom(roomId), async (instance) => {
    const { stored } = await (instance as unknown as RoomInstance).engine.persistOutliers(pdus);
    expect(stored.length).toBe(pdus.length);
  });
}
