// A hole in the DAG and /sync (durable-objects/room/timeline-gaps.ts; Complement's TestSyncTimelineGap): an
// event received over federation whose prev event could not be fetched follows a gap, and an incremental
// /sync over it shows only the events from the gap on, with `limited: true` (as Synapse's timeline_gaps).
// The origin is played by test/workers/remote-homeserver.mjs: carol of it joins and sends A unseen by us;
// B (prev events A and bob's join) comes through get_missing_events, the state after A through /state_ids.
import { describe, expect, it } from "vitest";
import type { JsonObject } from "../../protocol/json.js";
import { federationApi, remotePdu, signTemplate } from "./federation-room-helpers.js";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
import { api } from "./helpers.js";
import { V3, createRoom, newUser, r, send } from "./room-helpers.js";

const F1 = "/_matrix/federation/v1";
const F2 = "/_matrix/federation/v2";
const enc = encodeURIComponent;
type StateEvent = { type: string; state_key: string; event_id: string };
type SyncEvent = { sender: string; content: { body?: string } };

describe("/sync over a gap in the timeline", () => {
  it("an incremental sync shows only the events after the gap, limited; the next one is not limited", async () => {
    const remote = uniqueServer("gap-sync");
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat", room_version: "12" });
    const bob = `@bob:${remote}`;
    const made = await federationApi(remote, "GET", `${F1}/make_join/${enc(roomId)}/${enc(bob)}?ver=12`);
    const join = await signTemplate(remote, "12", made.body.event as JsonObject, { origin_server_ts: Date.now() });
    expect((await federationApi(remote, "PUT", `${F2}/send_join/${enc(roomId)}/${enc(join.eventId)}`, join.pdu)).status).toBe(200);
    await remoteControl("/_test/answer", { server: remote, method: "PUT", path: `${F1}/send/*`, body: { pdus: {} } });

    const sync = (since?: string) => api("GET", `${V3}/sync?timeout=0${since ? `&since=${since}` : ""}`, { token: alice.access_token });
    const before = (await sync()).body.next_batch as string;
    expect((await send(alice, roomId, { msgtype: "m.text", body: "before the gap" })).status).toBe(200);

    const state = (await api("GET", `${r(roomId)}/state`, { token: alice.access_token })).body as StateEvent[];
    const id = (type: string) => state.find((e) => e.type === type)!.event_id;
    const carol = `@carol:${remote}`;
    const base = { room_id: roomId, origin_server_ts: Date.now(), sender: carol };
    const carolJoin = await remotePdu(remote, "12", {
      ...base, type: "m.room.member", state_key: carol, content: { membership: "join" },
      depth: join.pdu.depth + 1, prev_events: [join.eventId], auth_events: [id("m.room.join_rules"), id("m.room.power_levels")],
    });
    const message = (body: string, depth: number, prev: string[]) =>
      remotePdu(remote, "12", { ...base, type: "m.room.message", content: { msgtype: "m.text", body }, depth, prev_events: prev, auth_events: [id("m.room.power_levels"), carolJoin.eventId] });
    const a = await message("A", join.pdu.depth + 2, [carolJoin.eventId]);
    const b = await message("B", join.pdu.depth + 3, [a.eventId, join.eventId]);
    const c = await message("C", join.pdu.depth + 4, [b.eventId]);
    const answer = (method: string, path: string, body: unknown) => remoteControl("/_test/answer", { server: remote, method, path, body });
    await answer("POST", `${F1}/get_missing_events/${enc(roomId)}`, { events: [b.pdu] });
    await answer("GET", `${F1}/state_ids/${enc(roomId)}`, { pdu_ids: [...state.map((e) => e.event_id), join.eventId, carolJoin.eventId], auth_chain_ids: [] });
    await answer("GET", `${F1}/event/${enc(carolJoin.eventId)}`, { origin: remote, origin_server_ts: Date.now(), pdus: [carolJoin.pdu] });
    await answer("GET", `${F1}/event/${enc(a.eventId)}`, { origin: remote, origin_server_ts: Date.now(), pdus: [a.pdu] });
    const sent = await federationApi(remote, "PUT", `${F1}/send/gap-sync-${Date.now()}`, { origin: remote, origin_server_ts: Date.now(), pdus: [c.pdu], edus: [] });
    expect(sent.body.pdus[c.eventId]).toEqual({});

    const over = await sync(before);
    const timeline = over.body.rooms.join[roomId].timeline as { events: SyncEvent[]; limited: boolean };
    // Alice's message before the hole is left out (the client paginates back to it); B after the hole starts.
    expect(timeline.events.map((e) => e.content.body)).toEqual(["B", "C"]);
    expect(timeline.limited).toBe(true);

    // After the gap: an ordinary incremental sync.
    expect((await send(alice, roomId, { msgtype: "m.text", body: "after" })).status).toBe(200);
    const next = await sync(over.body.next_batch);
    const later = next.body.rooms.join[roomId].timeline as { events: SyncEvent[]; limited: boolean };
    expect(later.events.map((e) => e.content.body)).toEqual(["after"]);
    expect(later.limited).toBe(false);
  });
});
