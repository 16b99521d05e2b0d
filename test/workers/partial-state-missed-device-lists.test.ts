// Our users' device list updates that a server missed while a room was held with partial state reach it once
// the resync completes (durable-objects/room/partial-state-device-lists.ts; Complement msc3902 "Device list
// updates reach incorrectly kicked servers once partial state join completes"). Everything goes through
// the real routes: alice joins with POST /join (the resident, played by test/workers/remote-homeserver.mjs,
// answers make_join and send_join with what partial-state-resident.ts builds), events arrive with PUT
// /send, device renames go out through the Destination DOs to the stand-in, and the resync runs on the
// Room DO's own alarm.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import { wireForm } from "../../durable-objects/room/engine.js";
import { sharingAnchor } from "../../durable-objects/room/device-list-sharing.js";
import { beginPartialState } from "../../durable-objects/room/partial-state.js";
import type { JsonObject } from "../../protocol/json.js";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
import { federationApi, signTemplate } from "./federation-room-helpers.js";
import { api, SERVER_NAME } from "./helpers.js";
import { ResidentRoom } from "./partial-state-resident.js";
import { createRoom, newUser, send as sendMessage } from "./room-helpers.js";
import { sync } from "./sync-helpers.js";

const enc = encodeURIComponent;
const F1 = "/_matrix/federation/v1";
const LAZY = JSON.stringify({ room: { state: { lazy_load_members: true } } });
const engineOf = (instance: unknown) => (instance as { engine: RoomEngine }).engine;
type Edu = { edu_type: string; content: { user_id: string; device_display_name?: string } };

/** The device names of `userId` in the device list updates `server` accepted so far (the renames: the
 * announcement of alice's devices when she joins names none, worker/device-lists.ts). */
async function namesSeenBy(server: string, userId: string): Promise<string[]> {
  await env.DESTINATIONS.get(env.DESTINATIONS.idFromName(server)).sendsSettled();
  const txns = await remoteControl<{ accepted: boolean; body: { edus?: Edu[] } }[]>(`/_test/transactions?server=${enc(server)}`);
  return txns
    .filter((t) => t.accepted)
    .flatMap((t) => t.body.edus ?? [])
    .filter((e) => e.edu_type === "m.device_list_update" && e.content.user_id === userId)
    .flatMap((e) => (e.content.device_display_name === undefined ? [] : [e.content.device_display_name]));
}

describe("device list updates a server missed while the room was partial", () => {
  it("reach a server whose member was kicked by an event accepted wrongly, once the resync rejects it; the servers named at the join get nothing twice", async () => {
    const alice = await newUser("alice");
    const resident = uniqueServer("psdl-r");
    const other = uniqueServer("psdl-o");
    const [derek, elsie] = [`@derek:${resident}`, `@elsie:${other}`];
    const room = await ResidentRoom.create(resident, "12", "charlie", { [derek]: 100 });
    const derekJoin = await room.add({ type: "m.room.member", stateKey: derek, sender: derek, content: { membership: "join" } });
    await room.add({ type: "m.room.member", stateKey: derek, sender: derek, content: { membership: "leave" } });
    const frank = room.user("frank");
    await room.add({ type: "m.room.member", stateKey: frank, sender: frank, content: { membership: "join" } });
    const answer = (method: string, path: string, body: unknown) => remoteControl("/_test/answer", { server: resident, method, path, body });

    // The resident answers the join with partial state, naming only itself.
    await answer("GET", `${F1}/make_join/*`, { event: room.joinTemplate(alice.user_id, SERVER_NAME), room_version: room.version });
    const nonMembers = [...room.state.values()].filter((id) => room.events.get(id)!.type !== "m.room.member");
    const pdus = (ids: string[]) => ids.map((id) => room.events.get(id)!);
    await answer("PUT", "/_matrix/federation/v2/send_join/*", {
      state: pdus(nonMembers),
      auth_chain: pdus(room.authChain(nonMembers)),
      members_omitted: true,
      servers_in_room: [resident],
    });
    const joined = await api("POST", `/_matrix/client/v3/join/${enc(room.roomId)}?server_name=${enc(resident)}`, { token: alice.access_token, body: {} });
    expect(joined.status).toBe(200);
    const stub = env.ROOMS.get(env.ROOMS.idFromName(room.roomId));
    const joinPdu = await runInDurableObject(stub, async (instance) => {
      const engine = engineOf(instance);
      const id = engine.membershipOf(alice.user_id)!.eventId;
      return { id, pdu: wireForm(engine.events.pdu(id)!, engine.meta()!.rules) };
    });
    room.accept(joinPdu.pdu, joinPdu.id, true);

    const rename = async (name: string) =>
      expect((await api("PUT", `/_matrix/client/v3/devices/${enc(alice.device_id)}`, { token: alice.access_token, body: { display_name: name } })).status).toBe(200);
    const send = async (...events: { pdu: unknown }[]) =>
      expect((await federationApi(resident, "PUT", `${F1}/send/psdl-${crypto.randomUUID()}`, { origin: resident, origin_server_ts: Date.now(), pdus: events.map((e) => e.pdu) })).status).toBe(200);

    // Elsie of another server joins: that server hears of our renames from then on.
    await send(await room.add({ type: "m.room.member", stateKey: elsie, sender: elsie, content: { membership: "join" } }));
    await rename("two");
    expect(await namesSeenBy(other, alice.user_id)).toEqual(["two"]);

    // Derek, gone in the whole state, "kicks" her: accepted while partial, so her server misses "three".
    const kick = await room.add({ type: "m.room.member", stateKey: elsie, sender: derek, content: { membership: "leave" }, auth: [room.id("m.room.power_levels")!, derekJoin.eventId], intoState: false });
    await answer("GET", `${F1}/event_auth/*`, { auth_chain: pdus(room.authChain([kick.eventId])) });
    await send(kick);
    expect(await runInDurableObject(stub, async (instance) => engineOf(instance).currentStateEventId("m.room.member", elsie))).toBe(kick.eventId);
    await rename("three");
    expect(await env.USERS.get(env.USERS.idFromName(room.user("charlie"))).remoteSharedRooms()).not.toContain(room.roomId);
    expect(await namesSeenBy(other, alice.user_id)).toEqual(["two"]);
    expect(await namesSeenBy(resident, alice.user_id)).toEqual(["two", "three"]);

    // The resync: the state at our join's prev event, and the events we lack.
    const at = joinPdu.pdu.prev_events[0] as string;
    const stateIds = [...room.stateBefore.get(at)!.values()];
    await answer("GET", `${F1}/state_ids/*`, { pdu_ids: stateIds, auth_chain_ids: room.authChain(stateIds) });
    for (const [id, pdu] of room.events) await answer("GET", `${F1}/event/${enc(id)}`, { origin: resident, origin_server_ts: Date.now(), pdus: [pdu] });
    const beforeResync = (await sync(alice, { filter: LAZY })).next_batch as string;
    // Charlie (whom we do not know yet) changes his devices: nobody here follows him, the update is noted.
    const charlieUpdate = { user_id: room.user("charlie"), device_id: "CHARLIEDEV", stream_id: 5, prev_id: [4], deleted: false };
    expect((await federationApi(resident, "PUT", `${F1}/send/psdl-${crypto.randomUUID()}`, { origin: resident, origin_server_ts: Date.now(), pdus: [], edus: [{ edu_type: "m.device_list_update", content: charlieUpdate }] })).status).toBe(200);
    const partial = () => runInDurableObject(stub, async (instance) => engineOf(instance).inPartialState());
    for (let i = 0; i < 30 && (await partial()); i++) await runDurableObjectAlarm(stub);
    expect(await partial()).toBe(false);
    expect(await runInDurableObject(stub, async (instance) => engineOf(instance).currentStateEventId("m.room.member", elsie))).toBe(room.id("m.room.member", elsie));

    // Her server gets what it missed; the resident, named at the join, was told each time already.
    expect(await namesSeenBy(other, alice.user_id)).toEqual(["two", "three"]);
    expect(await namesSeenBy(resident, alice.user_id)).toEqual(["two", "three"]);
    // Charlie and frank, known only from the whole state, are followed now: their device list copies may be
    // anchored in the room (user/sync.ts roomBecameWhole) ...
    const sharedRooms = (u: string) => env.USERS.get(env.USERS.idFromName(u)).remoteSharedRooms();
    for (let i = 0; i < 200 && !(await sharedRooms(frank)).includes(room.roomId); i++) await new Promise((resolve) => setTimeout(resolve, 25));
    expect(await sharedRooms(room.user("charlie"))).toContain(room.roomId);
    expect(await sharedRooms(frank)).toContain(room.roomId);
    // ... and alice's sync lists charlie, whose update came while nobody followed him, and not frank.
    const changedSince = async (): Promise<string[]> => (await sync(alice, { filter: LAZY, since: beforeResync })).device_lists?.changed ?? [];
    let changed = await changedSince();
    for (let i = 0; i < 200 && !changed.includes(room.user("charlie")); i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      changed = await changedSince();
    }
    expect(changed).toContain(room.user("charlie"));
    expect(changed).not.toContain(frank);
  });

  it("while the room is partial, a remote member's device list copy is anchored in it only when they joined after our join", async () => {
    const alice = await newUser("alice");
    const remote = uniqueServer("psdl-anchor");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const joinRemote = async (userId: string) => {
      const made = await federationApi(remote, "GET", `${F1}/make_join/${enc(roomId)}/${enc(userId)}?ver=12`);
      const join = await signTemplate(remote, "12", made.body.event as JsonObject, { origin_server_ts: Date.now() });
      expect((await federationApi(remote, "PUT", `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(join.eventId)}`, join.pdu)).status).toBe(200);
    };
    const [bob, carol] = [`@bob:${remote}`, `@carol:${remote}`];
    await joinRemote(bob);
    // Alice's message stands for our partial join: bob joined before it, carol after.
    const ours = (await sendMessage(alice, roomId, { msgtype: "m.text", body: "stands for the join" })).body.event_id as string;
    await joinRemote(carol);
    const stub = env.ROOMS.get(env.ROOMS.idFromName(roomId));
    const anchors = await runInDurableObject(stub, async (instance) => {
      const engine = engineOf(instance);
      beginPartialState(engine, ours, [remote], SERVER_NAME);
      const during = { bob: sharingAnchor(engine, bob), carol: sharingAnchor(engine, carol) };
      engine.sql.exec("DELETE FROM partial_state");
      return { during, after: { bob: sharingAnchor(engine, bob), carol: sharingAnchor(engine, carol) }, position: engine.maxStreamOrdering() };
    });
    expect(anchors.during).toEqual({ bob: "partial", carol: anchors.position });
    expect(anchors.after).toEqual({ bob: anchors.position, carol: anchors.position });
  });
});
