// EDUs over federation (spec: Server-Server API, "EDUs"): typing, receipts and to-device messages sent to
// the other servers of a room through their Destination DOs, and received in PUT /send and applied so that
// local users see them in /sync. The remote servers are played by test/workers/remote-homeserver.mjs (it
// records the transactions it receives); requests and PDUs are signed here as those servers.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
import { federationApi, joinFromRemote } from "./federation-room-helpers.js";
import { api } from "./helpers.js";
import { V3, createRoom, newUser, r, send } from "./room-helpers.js";
import { sync } from "./sync-helpers.js";

const F1 = "/_matrix/federation/v1";
const enc = encodeURIComponent;
const destinationStub = (server: string) => env.DESTINATIONS.get(env.DESTINATIONS.idFromName(server));

interface Edu {
  edu_type: string;
  content: any;
}
interface ReceivedTransaction {
  txnId: string;
  body: { origin: string; edus?: Edu[] };
  accepted: boolean;
}

/** The EDUs `server` accepted so far (after its queue settled). */
async function receivedEdus(server: string, type?: string): Promise<Edu[]> {
  await destinationStub(server).sendsSettled();
  const txns = await remoteControl<ReceivedTransaction[]>(`/_test/transactions?server=${enc(server)}`);
  return txns.filter((t) => t.accepted).flatMap((t) => t.body.edus ?? []).filter((e) => type === undefined || e.edu_type === type);
}

/** A local room with alice and a remote member `@bob:<remote>` who joined through make_join/send_join. */
async function roomWithRemoteMember(remote = uniqueServer("edu")) {
  const alice = await newUser("alice");
  const roomId = await createRoom(alice, { preset: "public_chat" });
  const bob = `@bob:${remote}`;
  await joinFromRemote(remote, roomId, bob);
  return { alice, roomId, bob, remote };
}

let txnCounter = 0;
/** PUT /send from `origin` carrying only EDUs. */
function sendEdus(origin: string, edus: unknown[]) {
  return federationApi(origin, "PUT", `${F1}/send/edu-${Date.now()}-${++txnCounter}`, { origin, origin_server_ts: Date.now(), pdus: [], edus });
}

type Ev = { type: string; content: any };
const ephemeral = (body: any, roomId: string): Ev[] => body.rooms?.join?.[roomId]?.ephemeral?.events ?? [];

describe("typing over federation", () => {
  it("sends a local user's typing start and stop to the servers in the room, and a refresh not at once", async () => {
    const { alice, roomId, remote } = await roomWithRemoteMember();
    const typing = (body: object) => api("PUT", `${r(roomId)}/typing/${enc(alice.user_id)}`, { token: alice.access_token, body });
    expect((await typing({ typing: true, timeout: 30_000 })).status).toBe(200);
    expect((await typing({ typing: true, timeout: 30_000 })).status).toBe(200);
    expect(await receivedEdus(remote, "m.typing")).toEqual([{ edu_type: "m.typing", content: { room_id: roomId, user_id: alice.user_id, typing: true } }]);
    expect((await typing({ typing: false })).status).toBe(200);
    const edus = await receivedEdus(remote, "m.typing");
    expect(edus.map((e) => e.content.typing)).toEqual([true, false]);
  });

  it("applies a remote member's typing so local members see it in /sync; drops typing for another server's user or a non-member", async () => {
    const { alice, roomId, bob, remote } = await roomWithRemoteMember();
    const since = (await sync(alice)).next_batch;
    const forged = await sendEdus(remote, [
      { edu_type: "m.typing", content: { room_id: roomId, user_id: "@eve:elsewhere.remote.test", typing: true } },
      { edu_type: "m.typing", content: { room_id: roomId, user_id: `@stranger:${remote}`, typing: true } },
      { edu_type: "m.typing", content: { room_id: roomId, user_id: bob, typing: "yes" } },
      { edu_type: "m.typing", content: "not an object" },
      "not an EDU",
    ]);
    expect(forged.status).toBe(200);
    const quiet = await sync(alice, { since });
    expect(ephemeral(quiet, roomId)).toEqual([]);

    const res = await sendEdus(remote, [{ edu_type: "m.typing", content: { room_id: roomId, user_id: bob, typing: true } }]);
    expect(res.status).toBe(200);
    const body = await sync(alice, { since: quiet.next_batch });
    expect(ephemeral(body, roomId)).toEqual([{ type: "m.typing", content: { user_ids: [bob] } }]);
    // Not sent back to its own server.
    expect(await receivedEdus(remote, "m.typing")).toEqual([]);
    await sendEdus(remote, [{ edu_type: "m.typing", content: { room_id: roomId, user_id: bob, typing: false } }]);
    const stopped = await sync(alice, { since: body.next_batch });
    expect(ephemeral(stopped, roomId)).toEqual([{ type: "m.typing", content: { user_ids: [] } }]);
  });

  it("refuses a transaction whose edus is not a list or holds more than 100 EDUs", async () => {
    const { remote } = await roomWithRemoteMember();
    const notList = await federationApi(remote, "PUT", `${F1}/send/bad-${Date.now()}`, { origin: remote, origin_server_ts: Date.now(), pdus: [], edus: {} });
    expect(notList.status).toBe(400);
    expect(notList.body.errcode).toBe("M_BAD_JSON");
    const many = Array.from({ length: 101 }, () => ({ edu_type: "m.typing", content: {} }));
    expect((await sendEdus(remote, many)).status).toBe(400);
    expect((await sendEdus(remote, many.slice(0, 100))).status).toBe(200);
  });
});

describe("receipts over federation", () => {
  it("sends a local user's public receipts (threaded too) and never a private one", async () => {
    const { alice, roomId, remote } = await roomWithRemoteMember();
    const m1 = (await send(alice, roomId, { msgtype: "m.text", body: "one" })).body.event_id as string;
    const m2 = (await send(alice, roomId, { msgtype: "m.text", body: "two" })).body.event_id as string;
    const receipt = (type: string, eventId: string, body: object = {}) =>
      api("POST", `${r(roomId)}/receipt/${type}/${enc(eventId)}`, { token: alice.access_token, body });
    expect((await receipt("m.read", m1)).status).toBe(200);
    expect((await receipt("m.read", m2, { thread_id: "main" })).status).toBe(200);
    expect((await receipt("m.read.private", m2)).status).toBe(200);
    const edus = await receivedEdus(remote, "m.receipt");
    expect(edus.length).toBe(2);
    const first = edus[0]!.content[roomId]["m.read"][alice.user_id];
    expect(first.event_ids).toEqual([m1]);
    expect(first.data.ts).toBeGreaterThan(0);
    expect(first.data.thread_id).toBeUndefined();
    const threaded = edus[1]!.content[roomId]["m.read"][alice.user_id];
    expect(threaded).toMatchObject({ event_ids: [m2], data: { thread_id: "main" } });
    expect(JSON.stringify(edus)).not.toContain("m.read.private");
  });

  it("applies a remote member's receipt (with its thread, or for an event this server lacks) for local members' /sync; drops another server's user's", async () => {
    const { alice, roomId, bob, remote } = await roomWithRemoteMember();
    const m1 = (await send(alice, roomId, { msgtype: "m.text", body: "read me" })).body.event_id as string;
    const since = (await sync(alice)).next_batch;
    const res = await sendEdus(remote, [
      { edu_type: "m.receipt", content: { [roomId]: { "m.read": { "@eve:elsewhere.remote.test": { event_ids: [m1], data: { ts: 1 } } } } } },
      { edu_type: "m.receipt", content: { [roomId]: { "m.read": { [bob]: { event_ids: [m1], data: { ts: 12345, thread_id: "main" } } } } } },
      // An event this server does not have, under an ID of any form (as Synapse; Complement msc3902
      // CanReceiveReceiptDuringPartialStateJoin names it "mytesteventid"), in a thread it cannot check.
      { edu_type: "m.receipt", content: { [roomId]: { "m.read": { [bob]: { event_ids: ["mytesteventid"], data: { ts: 7, thread_id: "$root" } } } } } },
      { edu_type: "m.receipt", content: { [roomId]: { "m.read": { [bob]: { event_ids: [""], data: { ts: 8 } } } } } },
      { edu_type: "m.receipt", content: { [roomId]: { "m.read": { [bob]: "nonsense" } } } },
    ]);
    expect(res.status).toBe(200);
    const body = await sync(alice, { since });
    const receipts = ephemeral(body, roomId).filter((e) => e.type === "m.receipt");
    const content: Record<string, Record<string, Record<string, unknown>>> = Object.assign({}, ...receipts.map((e) => e.content));
    expect(Object.keys(content).sort()).toEqual([m1, "mytesteventid"].sort());
    expect(content[m1]!["m.read"]).toEqual({ [bob]: { ts: 12345, thread_id: "main" } });
    expect(content["mytesteventid"]!["m.read"]).toEqual({ [bob]: { ts: 7, thread_id: "$root" } });
    // Remote receipts are not sent back out.
    expect(await receivedEdus(remote, "m.receipt")).toEqual([]);
  });
});

describe("to-device messages over federation", () => {
  it("queues one m.direct_to_device EDU per server for remote recipients; a retried txnId sends nothing more", async () => {
    const alice = await newUser("alice");
    const one = uniqueServer("todev");
    const two = uniqueServer("todev");
    const body = { messages: { [`@bob:${one}`]: { DEV1: { secret: 1 } }, [`@carol:${one}`]: { "*": { secret: 2 } }, [`@dan:${two}`]: { D: { secret: 3 } } } };
    const put = () => api("PUT", `${V3}/sendToDevice/m.test/txn1`, { token: alice.access_token, body });
    expect((await put()).status).toBe(200);
    expect((await put()).status).toBe(200);
    const toOne = await receivedEdus(one, "m.direct_to_device");
    expect(toOne.length).toBe(1);
    expect(toOne[0]!.content).toMatchObject({
      sender: alice.user_id,
      type: "m.test",
      messages: { [`@bob:${one}`]: { DEV1: { secret: 1 } }, [`@carol:${one}`]: { "*": { secret: 2 } } },
    });
    expect(typeof toOne[0]!.content.message_id).toBe("string");
    const toTwo = await receivedEdus(two, "m.direct_to_device");
    expect(toTwo.map((e) => Object.keys(e.content.messages))).toEqual([[`@dan:${two}`]]);
  });

  it("keeps a to-device EDU queued while the peer refuses it, and sends it once the peer accepts", async () => {
    const alice = await newUser("alice");
    const server = uniqueServer("todev-down");
    await remoteControl("/_test/fail", { server, times: 1, status: 500 });
    await destinationStub(server).setTuning({ minBackoffMs: 50, maxBackoffMs: 50 });
    const res = await api("PUT", `${V3}/sendToDevice/m.test/t1`, { token: alice.access_token, body: { messages: { [`@bob:${server}`]: { D: { n: 1 } } } } });
    expect(res.status).toBe(200);
    await destinationStub(server).sendsSettled();
    const state = await destinationStub(server).queueState();
    expect(state.edus.map((e) => e.eduType)).toEqual(["m.direct_to_device"]);
    // The retry (alarm or peer contact) delivers it.
    await destinationStub(server).peerIsUp();
    expect((await receivedEdus(server, "m.direct_to_device")).length).toBe(1);
    expect((await destinationStub(server).queueState()).edus).toEqual([]);
  });

  it("delivers a remote user's message to a local device exactly once, even when the transaction is repeated after it was received", async () => {
    const alice = await newUser("alice");
    const remote = uniqueServer("todev-in");
    const edu = {
      edu_type: "m.direct_to_device",
      content: { sender: `@bob:${remote}`, type: "m.room_key_request", message_id: "msg-1", messages: { [alice.user_id]: { [alice.device_id]: { hello: "alice" } } } },
    };
    expect((await sendEdus(remote, [edu])).status).toBe(200);
    const first = await sync(alice);
    expect(first.to_device.events).toEqual([{ sender: `@bob:${remote}`, type: "m.room_key_request", content: { hello: "alice" } }]);
    // Acknowledged by the next sync; the same message arriving again (a retried transaction) is not new.
    expect((await sendEdus(remote, [edu])).status).toBe(200);
    const second = await sync(alice, { since: first.next_batch });
    expect(second.to_device?.events ?? []).toEqual([]);
    // Another message ID, to all devices, is delivered.
    const star = { ...edu, content: { ...edu.content, message_id: "msg-2", messages: { [alice.user_id]: { "*": { n: 2 } } } } };
    expect((await sendEdus(remote, [star])).status).toBe(200);
    const third = await sync(alice, { since: second.next_batch });
    expect(third.to_device.events).toEqual([{ sender: `@bob:${remote}`, type: "m.room_key_request", content: { n: 2 } }]);
  });

  it("drops a to-device EDU whose sender belongs to another server, and one that is malformed", async () => {
    const alice = await newUser("alice");
    const remote = uniqueServer("todev-bad");
    const since = (await sync(alice)).next_batch;
    const res = await sendEdus(remote, [
      { edu_type: "m.direct_to_device", content: { sender: "@eve:elsewhere.remote.test", type: "m.x", message_id: "m", messages: { [alice.user_id]: { "*": { a: 1 } } } } },
      { edu_type: "m.direct_to_device", content: { sender: `@bob:${remote}`, type: "m.x", messages: { [alice.user_id]: { "*": { a: 1 } } } } },
      { edu_type: "m.direct_to_device", content: { sender: `@bob:${remote}`, type: "m.x", message_id: "m", messages: { [alice.user_id]: { "*": "text" } } } },
    ]);
    expect(res.status).toBe(200);
    const body = await sync(alice, { since });
    expect(body.to_device?.events ?? []).toEqual([]);
  });
});

describe("presence over federation", () => {
  it("sends a local user's presence changes to the servers sharing a room, not repeats", async () => {
    const { alice, remote } = await roomWithRemoteMember();
    const setPresence = (presence: string, status_msg?: string) =>
      api("PUT", `${V3}/presence/${enc(alice.user_id)}/status`, { token: alice.access_token, body: { presence, ...(status_msg ? { status_msg } : {}) } });
    // PUT /presence fans out in the background (waitUntil): wait, bounded, for the EDUs to arrive.
    const presenceEdus = async (n: number) => {
      for (let i = 0; i < 100 && (await receivedEdus(remote, "m.presence")).length < n; i++) await new Promise((r) => setTimeout(r, 50));
      return receivedEdus(remote, "m.presence");
    };
    expect((await setPresence("online")).status).toBe(200);
    let edus = await presenceEdus(1);
    expect(edus.length).toBe(1);
    expect(edus[0]!.content.push).toEqual([{ user_id: alice.user_id, presence: "online", last_active_ago: expect.any(Number), currently_active: true }]);
    // The same state again tells nobody anything; the next change arrives after it, so a repeat would show.
    expect((await setPresence("online")).status).toBe(200);
    expect((await setPresence("unavailable", "lunch")).status).toBe(200);
    edus = await presenceEdus(2);
    expect(edus.length).toBe(2);
    expect(edus[1]!.content.push[0]).toMatchObject({ user_id: alice.user_id, presence: "unavailable", status_msg: "lunch", currently_active: false });
  });

  it("passes a remote room-mate's presence to local members' /sync; drops presence for another server's user", async () => {
    const { alice, bob, remote } = await roomWithRemoteMember();
    // The remote member's join, once it reached alice's DO (her sync catches up with the room), registers
    // her with bob's DO in the background: wait for it, bounded.
    const since = (await sync(alice)).next_batch;
    const watchers = () => env.USERS.get(env.USERS.idFromName(bob)).remoteWatchers();
    for (let i = 0; i < 100 && !(await watchers()).includes(alice.user_id); i++) await new Promise((r) => setTimeout(r, 50));
    expect(await watchers()).toContain(alice.user_id);
    const res = await sendEdus(remote, [
      { edu_type: "m.presence", content: { push: [{ user_id: "@eve:elsewhere.remote.test", presence: "online", last_active_ago: 0 }] } },
      { edu_type: "m.presence", content: { push: [{ user_id: bob, presence: "busy", last_active_ago: 0 }] } },
      { edu_type: "m.presence", content: { push: [{ user_id: bob, presence: "online", last_active_ago: 5000, currently_active: true, status_msg: "hi" }] } },
    ]);
    expect(res.status).toBe(200);
    const body = await sync(alice, { since });
    const presence = (body.presence?.events ?? []) as { sender: string; content: any }[];
    expect(presence.map((e) => e.sender)).toEqual([bob]);
    expect(presence[0]!.content).toMatchObject({ presence: "online", currently_active: true, status_msg: "hi" });
    expect(presence[0]!.content.last_active_ago).toBeGreaterThanOrEqual(5000);
  });
});
