// Events whose prev events are missing (durable-objects/room/federation-inbound.ts), in Synapse's order
// (Complement msc3902 "CanReceiveEventsWithHalfMissingGrandparentsDuringPartialStateJoin", "Resync completes
// even when events arrive before their prev_events"): get_missing_events for the event we were sent; an
// event it brings whose own prev event is still missing gets the state after that prev event from the
// origin (/state_ids at it, and the event itself), resolved with our state after its other prev events; the
// auth events come last, and are not asked for when the state brought them. The origin is played by
// test/workers/remote-homeserver.mjs, told how to answer each request.
import { describe, expect, it } from "vitest";
import type { JsonObject } from "../../protocol/json.js";
import { federationApi, remotePdu, signTemplate } from "./federation-room-helpers.js";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
import { api } from "./helpers.js";
import { createRoom, newUser, r } from "./room-helpers.js";

const F1 = "/_matrix/federation/v1";
const F2 = "/_matrix/federation/v2";
const enc = encodeURIComponent;
type StateEvent = { type: string; state_key: string; event_id: string; content: JsonObject };

/**
 * A room of ours with bob of `remote`; on the remote side carol joins (J2, which we never see), then sends
 * A, B (prev events A and bob's join: half missing) and C. Only C is sent to us. With `ban`, alice has
 * banned carol before C arrives.
 */
async function gapScenario(ban: boolean) {
  const remote = uniqueServer("gaps");
  const alice = await newUser("alice");
  const roomId = await createRoom(alice, { preset: "public_chat", room_version: "12" });
  const bob = `@bob:${remote}`;
  const made = await federationApi(remote, "GET", `${F1}/make_join/${enc(roomId)}/${enc(bob)}?ver=12`);
  const join = await signTemplate(remote, "12", made.body.event as JsonObject, { origin_server_ts: Date.now() });
  expect((await federationApi(remote, "PUT", `${F2}/send_join/${enc(roomId)}/${enc(join.eventId)}`, join.pdu)).status).toBe(200);

  // Carol (of the same server) joins on the remote side only: we never see her join (J2). A: her message
  // after J2; B: a message with prev events A and J (half missing); C: after B.
  const state = (await api("GET", `${r(roomId)}/state`, { token: alice.access_token })).body as StateEvent[];
  const id = (type: string, sk = "") => state.find((e) => e.type === type && e.state_key === sk)!.event_id;
  const pl = state.find((e) => e.type === "m.room.power_levels")!;
  const carol = `@carol:${remote}`;
  const base = { room_id: roomId, origin_server_ts: Date.now() };
  const carolJoin = await remotePdu(remote, "12", {
    ...base, type: "m.room.member", state_key: carol, sender: carol, content: { membership: "join" },
    depth: join.pdu.depth + 1, prev_events: [join.eventId], auth_events: [id("m.room.join_rules"), pl.event_id],
  });
  const a = await remotePdu(remote, "12", {
    ...base, type: "m.room.message", sender: carol, content: { msgtype: "m.text", body: "A" },
    depth: join.pdu.depth + 2, prev_events: [carolJoin.eventId], auth_events: [pl.event_id, carolJoin.eventId],
  });
  const b = await remotePdu(remote, "12", {
    ...base, type: "m.room.message", sender: carol, content: { msgtype: "m.text", body: "B" },
    depth: join.pdu.depth + 3, prev_events: [a.eventId, join.eventId], auth_events: [pl.event_id, carolJoin.eventId],
  });
  const c = await remotePdu(remote, "12", {
    ...base, type: "m.room.message", sender: carol, content: { msgtype: "m.text", body: "C" },
    depth: join.pdu.depth + 4, prev_events: [b.eventId], auth_events: [pl.event_id, carolJoin.eventId],
  });
  // The state after A as the origin sees it: ours, with bob's join and carol's.
  const stateIdsAtA = [...state.map((e) => e.event_id), join.eventId, carolJoin.eventId];
  const answer = (method: string, path: string, body: unknown) => remoteControl("/_test/answer", { server: remote, method, path, body });
  await answer("POST", `${F1}/get_missing_events/${enc(roomId)}`, { events: [b.pdu] });
  await answer("GET", `${F1}/state_ids/${enc(roomId)}`, { pdu_ids: stateIdsAtA, auth_chain_ids: [] });
  await answer("GET", `${F1}/event/${enc(carolJoin.eventId)}`, { origin: remote, origin_server_ts: Date.now(), pdus: [carolJoin.pdu] });
  await answer("GET", `${F1}/event/${enc(a.eventId)}`, { origin: remote, origin_server_ts: Date.now(), pdus: [a.pdu] });

  if (ban) expect((await api("POST", `${r(roomId)}/ban`, { token: alice.access_token, body: { user_id: carol } })).status).toBe(200);
  const sent = await federationApi(remote, "PUT", `${F1}/send/gaps-${Date.now()}`, { origin: remote, origin_server_ts: Date.now(), pdus: [c.pdu], edus: [] });
  expect(sent.status).toBe(200);

  return { remote, roomId, alice, carol, a, b, c, sent };
}

const bodiesOf = async (user: { access_token: string }, roomId: string) => {
  const messages = await api("GET", `${r(roomId)}/messages?dir=b&limit=20`, { token: user.access_token });
  return (messages.body.chunk as { type: string; content: { body?: string } }[]).filter((e) => e.type === "m.room.message").map((e) => e.content.body);
};

describe("events with missing prev events", () => {
  it("fills A ← B ← C from C alone: get_missing_events brings B, the state after A comes from /state_ids at A, and /event_auth is never asked", async () => {
    const { remote, roomId, alice, carol, a, c, sent } = await gapScenario(false);
    expect(sent.body.pdus[c.eventId]).toEqual({});
    const asked = await remoteControl<{ method: string; path: string; query: string }[]>(`/_test/answered?server=${enc(remote)}`);
    const paths = asked.map((q) => `${q.method} ${q.path.replace(enc(roomId), "ROOM")}${q.path.includes("state_ids") ? q.query : ""}`);
    expect(paths[0]).toBe("POST /_matrix/federation/v1/get_missing_events/ROOM");
    // The state is asked at the missing prev event A (not at B or C), and A itself is fetched.
    expect(paths).toContain(`GET /_matrix/federation/v1/state_ids/ROOM?event_id=${enc(a.eventId)}`);
    expect(paths).toContain(`GET /_matrix/federation/v1/event/${enc(a.eventId)}`);
    expect(paths.filter((p) => p.includes("state_ids"))).toHaveLength(1);
    // Carol's join came with the state: her events' auth events are known without /event_auth.
    expect(paths.some((p) => p.includes("/event_auth/"))).toBe(false);

    // B and C are in the timeline (A is an outlier: only its state was needed); carol is a member now.
    // (Soft failure looks at our current state resolved with B's own state, as Synapse: carol is in it.)
    expect(await bodiesOf(alice, roomId)).toEqual(["C", "B"]);
    const members = (await api("GET", `${r(roomId)}/joined_members`, { token: alice.access_token })).body.joined as Record<string, unknown>;
    expect(Object.keys(members)).toContain(carol);
  });

  it("a ban we know of still wins: the state the origin claims is resolved with ours, and carol's events are soft-failed", async () => {
    const { roomId, alice, carol, c, sent } = await gapScenario(true);
    expect(sent.body.pdus[c.eventId]).toEqual({});
    expect(await bodiesOf(alice, roomId)).toEqual([]);
    const members = (await api("GET", `${r(roomId)}/joined_members`, { token: alice.access_token })).body.joined as Record<string, unknown>;
    expect(Object.keys(members)).not.toContain(carol);
  });
});
