// Our users' device list updates in a room held with partial state (worker/device-lists.ts
// serversSharingRooms; Complement msc3902 "Outgoing device list updates"): the members of other servers are
// not known yet, so the servers the resident named in its send_join answer (`servers_in_room`) are told,
// as Synapse does; once the resync is complete, only servers with joined members are. The room is made
// partial in the Room DO itself (room/partial-state.ts beginPartialState), naming a server none of whose
// users we know; the other servers are played by test/workers/remote-homeserver.mjs.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import { beginPartialState } from "../../durable-objects/room/partial-state.js";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
import { api, SERVER_NAME } from "./helpers.js";
import { createRoom, newUser } from "./room-helpers.js";

const enc = encodeURIComponent;
const rawRoom = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
const engineOf = (instance: unknown) => (instance as { engine: RoomEngine }).engine;
type Edu = { edu_type: string; content: { user_id: string; device_display_name?: string } };

async function deviceListUpdates(server: string): Promise<Edu[]> {
  await env.DESTINATIONS.get(env.DESTINATIONS.idFromName(server)).sendsSettled();
  const txns = await remoteControl<{ accepted: boolean; body: { edus?: Edu[] } }[]>(`/_test/transactions?server=${enc(server)}`);
  return txns.filter((t) => t.accepted).flatMap((t) => t.body.edus ?? []).filter((e) => e.edu_type === "m.device_list_update");
}

describe("device list updates in a partial-state room", () => {
  it("reach the servers the resident named while the room is partial, and no longer once it is complete without their members", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const named = uniqueServer("psdl");
    await runInDurableObject(rawRoom(roomId), async (instance) => {
      const engine = engineOf(instance);
      beginPartialState(engine, [...engine.currentState().values()].at(-1)!, [named, SERVER_NAME], SERVER_NAME);
    });
    const rename = async (name: string) =>
      expect((await api("PUT", `/_matrix/client/v3/devices/${enc(alice.device_id)}`, { token: alice.access_token, body: { display_name: name } })).status).toBe(200);

    await rename("while partial");
    const during = await deviceListUpdates(named);
    expect(during.map((e) => [e.content.user_id, e.content.device_display_name])).toEqual([[alice.user_id, "while partial"]]);

    // The resync completes (the named server turned out to have no members): it is not told any more.
    await runInDurableObject(rawRoom(roomId), async (instance) => {
      engineOf(instance).sql.exec("DELETE FROM partial_state");
    });
    await rename("after the resync");
    expect(await deviceListUpdates(named)).toHaveLength(1);
  });
});
