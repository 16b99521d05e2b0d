// Our copy of a remote user's device list (worker/federation/remote-keys.ts, durable-objects/user/
// federated-device-list.ts, durable-objects/room/device-list-sharing.ts): a local /keys/query is answered
// from it while a room proves that the user and one of our users have shared it without a break since the
// copy was fetched; otherwise the user's server is asked. Updates apply in `prev_id` order (Synapse's
// DeviceListUpdater): a gap resyncs, a stale or repeated update is ignored, a `prev_id` equal to the copy's
// stream_id applies. The remote server is played by test/workers/remote-homeserver.mjs, which counts the
// GET /user/devices requests (resyncs) and records the POST /user/keys/query ones.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { JsonObject } from "../../protocol/json.js";
import { generateSigningKey, signJson } from "../../protocol/signing.js";
import { counter, remoteControl, uniqueServer } from "./federation-helpers.js";
import { federationApi, joinFromRemote, leaveFromRemote } from "./federation-room-helpers.js";
import { api, type RegisteredUser } from "./helpers.js";
import { createRoom, membership, newUser } from "./room-helpers.js";
import { sync } from "./sync-helpers.js";

const V3 = "/_matrix/client/v3";
const F1 = "/_matrix/federation/v1";
const enc = encodeURIComponent;
const userDo = (userId: string) => env.USERS.get(env.USERS.idFromName(userId));

async function deviceKeys(userId: string, deviceId: string): Promise<JsonObject> {
  const key = await generateSigningKey(deviceId);
  return signJson(
    {
      user_id: userId,
      device_id: deviceId,
      algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
      keys: { [`curve25519:${deviceId}`]: `curve-${deviceId}`, [`ed25519:${deviceId}`]: key.publicKey },
    },
    userId,
    key,
  );
}

let txnCounter = 0;
async function sendEdus(origin: string, edus: unknown[]): Promise<void> {
  const res = await federationApi(origin, "PUT", `${F1}/send/cache-${Date.now()}-${++txnCounter}`, { origin, origin_server_ts: Date.now(), pdus: [], edus });
  expect(res.status).toBe(200);
}

/** Waits (a bounded number of rounds) until `check` holds: work a sync starts in the background. */
async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error("condition not reached");
}

async function joinRemote(remote: string, roomId: string, userId: string): Promise<void> {
  await joinFromRemote(remote, roomId, userId);
}

async function leaveRemote(remote: string, roomId: string, userId: string): Promise<void> {
  await leaveFromRemote(remote, roomId, userId);
}

/** A room of `alice` that `bob` (of `remote`) joined, once alice's sync registered the room for bob. */
async function sharedRoom(alice: RegisteredUser, remote: string, bob: string): Promise<string> {
  const roomId = await createRoom(alice, { preset: "public_chat" });
  await joinRemote(remote, roomId, bob);
  await sync(alice);
  await until(async () => (await userDo(bob).remoteSharedRooms()).includes(roomId));
  return roomId;
}

async function queryKeys(user: RegisteredUser, query: Record<string, string[]>) {
  const res = await api("POST", `${V3}/keys/query`, { token: user.access_token, body: { device_keys: query } });
  expect(res.status).toBe(200);
  return res.body;
}

const keyQueries = async (server: string) =>
  (await remoteControl<{ path: string }[]>(`/_test/key-requests?server=${enc(server)}`)).filter((r) => r.path === `${F1}/user/keys/query`).length;

const update = (userId: string, deviceId: string, streamId: number, prevId: number[], keys: JsonObject | null, extra: JsonObject = {}) => ({
  edu_type: "m.device_list_update",
  content: { user_id: userId, device_id: deviceId, stream_id: streamId, prev_id: prevId, ...(keys ? { keys } : {}), ...extra },
});

describe("a local /keys/query for a remote room-mate, answered from our copy of their list", () => {
  it("fetches the list once, then answers from the copy while the room proves it current; updates keep it current", async () => {
    const alice = await newUser("alice");
    const remote = uniqueServer("dl-cache");
    const bob = `@bob:${remote}`;
    await sharedRoom(alice, remote, bob);
    const keysA = await deviceKeys(bob, "A");
    await remoteControl("/_test/user-keys", {
      server: remote,
      devices: { [bob]: { user_id: bob, stream_id: 5, devices: [{ device_id: "A", keys: keysA, device_display_name: "phone" }] } },
      query: { device_keys: { [bob]: { A: keysA } } },
    });

    // Not current yet: a resync (GET /user/devices) answers the query and makes the copy current.
    let body = await queryKeys(alice, { [bob]: [] });
    expect(body.failures).toEqual({});
    expect(body.device_keys[bob]).toEqual({ A: { ...keysA, unsigned: { device_display_name: "phone" } } });
    expect(await counter(`devices:${bob}`)).toBe(1);

    // Now from the copy: no request to bob's server, for all devices or one.
    body = await queryKeys(alice, { [bob]: [] });
    expect(body.device_keys[bob]).toEqual({ A: { ...keysA, unsigned: { device_display_name: "phone" } } });
    expect((await queryKeys(alice, { [bob]: ["A"] })).device_keys[bob]).toEqual({ A: { ...keysA, unsigned: { device_display_name: "phone" } } });
    expect(await counter(`devices:${bob}`)).toBe(1);
    expect(await keyQueries(remote)).toBe(0);

    // A new device arrives as an update whose prev_id is the copy's stream_id (the equal-ID edge): applied.
    const keysB = await deviceKeys(bob, "B");
    await sendEdus(remote, [update(bob, "B", 6, [5], keysB)]);
    body = await queryKeys(alice, { [bob]: [] });
    expect(Object.keys(body.device_keys[bob]).sort()).toEqual(["A", "B"]);
    expect(body.device_keys[bob].B).toEqual({ ...keysB, unsigned: {} });
    expect(await counter(`devices:${bob}`)).toBe(1);
    expect(await keyQueries(remote)).toBe(0);

    // A deleted device goes from the copy.
    await sendEdus(remote, [update(bob, "A", 7, [6], null, { deleted: true })]);
    expect(Object.keys((await queryKeys(alice, { [bob]: [] })).device_keys[bob])).toEqual(["B"]);
    expect(await counter(`devices:${bob}`)).toBe(1);
  });

  it("applies updates in prev_id order: a gap resyncs, a stale or repeated stream_id is ignored, prev_ids in the batch or seen since the resync apply", async () => {
    const alice = await newUser("alice");
    const remote = uniqueServer("dl-order");
    const bob = `@bob:${remote}`;
    await sharedRoom(alice, remote, bob);
    const keys = Object.fromEntries(await Promise.all(["A", "B", "C", "D", "E", "F", "G"].map(async (d) => [d, await deviceKeys(bob, d)] as const)));
    const answer = async (streamId: number, devices: string[]) =>
      remoteControl("/_test/user-keys", {
        server: remote,
        devices: { [bob]: { user_id: bob, stream_id: streamId, devices: devices.map((d) => ({ device_id: d, keys: keys[d] })) } },
      });
    const devices = async () => Object.keys((await queryKeys(alice, { [bob]: [] })).device_keys[bob]).sort();
    const resyncs = () => counter(`devices:${bob}`);
    await answer(10, ["A"]);
    expect(await devices()).toEqual(["A"]);
    expect(await resyncs()).toBe(1);

    // Stale: a stream_id below the copy's, and one equal to it, change nothing and cost no resync.
    await sendEdus(remote, [update(bob, "B", 9, [8], keys.B!)]);
    await sendEdus(remote, [update(bob, "B", 10, [9], keys.B!)]);
    expect(await devices()).toEqual(["A"]);
    expect(await resyncs()).toBe(1);
    expect((await userDo(bob).remoteDeviceList())!.streamId).toBe(10);

    // A batch chained inside itself: 12's prev_id is 11, earlier in the same transaction.
    await sendEdus(remote, [update(bob, "B", 11, [10], keys.B!), update(bob, "C", 12, [11], keys.C!)]);
    expect(await devices()).toEqual(["A", "B", "C"]);
    // A prev_id seen since the resync (Synapse's `_seen_updates`), not only the latest, applies.
    await sendEdus(remote, [update(bob, "D", 13, [11, 12], keys.D!)]);
    expect(await devices()).toEqual(["A", "B", "C", "D"]);
    // A repeat of an applied update is ignored.
    await sendEdus(remote, [update(bob, "D", 13, [11, 12], keys.D!)]);
    expect(await resyncs()).toBe(1);
    expect((await userDo(bob).remoteDeviceList())!.streamId).toBe(13);

    // A gap (prev_id 14 never seen): the copy is stale at once and fetched again.
    await answer(15, ["A", "E"]);
    await sendEdus(remote, [update(bob, "E", 15, [14], keys.E!)]);
    expect(await resyncs()).toBe(2);
    expect(await devices()).toEqual(["A", "E"]);
    // A prev_id below the copy's that we never saw is a gap too (Synapse: not the extremity, not seen).
    await answer(17, ["A", "F"]);
    await sendEdus(remote, [update(bob, "F", 17, [12], keys.F!)]);
    expect(await resyncs()).toBe(3);
    expect(await devices()).toEqual(["A", "F"]);
    // No prev_id at all: start again (Synapse).
    await answer(18, ["G"]);
    await sendEdus(remote, [update(bob, "G", 18, [], keys.G!)]);
    expect(await resyncs()).toBe(4);
    expect(await devices()).toEqual(["G"]);
    expect(await keyQueries(remote)).toBe(0);
  });

  it("asks the user's server once the room no longer proves the copy current: they left, or we left and joined again", async () => {
    const alice = await newUser("alice");
    const remote = uniqueServer("dl-leave");
    const bob = `@bob:${remote}`;
    const roomId = await sharedRoom(alice, remote, bob);
    const keysA = await deviceKeys(bob, "A");
    await remoteControl("/_test/user-keys", {
      server: remote,
      devices: { [bob]: { user_id: bob, stream_id: 3, devices: [{ device_id: "A", keys: keysA }] } },
      query: { device_keys: { [bob]: { A: keysA } } },
    });
    await queryKeys(alice, { [bob]: [] });
    await queryKeys(alice, { [bob]: [] });
    expect(await counter(`devices:${bob}`)).toBe(1);

    // bob leaves: his server stops telling us about his devices, so the copy is not used; with no room
    // shared, his server is asked directly (POST /user/keys/query) and nothing is cached.
    await leaveRemote(remote, roomId, bob);
    let body = await queryKeys(alice, { [bob]: [] });
    expect(body.device_keys[bob]).toEqual({ A: keysA });
    expect(await keyQueries(remote)).toBe(1);
    expect(await counter(`devices:${bob}`)).toBe(1);

    // bob joins again: a fresh copy (a resync), then answers from it.
    await joinRemote(remote, roomId, bob);
    await sync(alice);
    await until(async () => (await userDo(bob).remoteSharedRooms()).includes(roomId));
    await queryKeys(alice, { [bob]: [] });
    expect(await counter(`devices:${bob}`)).toBe(2);
    await queryKeys(alice, { [bob]: [] });
    expect(await counter(`devices:${bob}`)).toBe(2);

    // alice (our only member) leaves and joins again: for a moment no room was shared, so the copy from
    // before is not trusted.
    expect((await membership(alice, roomId, "leave")).status).toBe(200);
    expect((await membership(alice, roomId, "join")).status).toBe(200);
    await queryKeys(alice, { [bob]: [] });
    expect(await counter(`devices:${bob}`)).toBe(3);
    expect(await keyQueries(remote)).toBe(1);
  });

  it("a remote user with no room shared is always asked, never cached; an update for them is not tracked", async () => {
    const alice = await newUser("alice");
    const remote = uniqueServer("dl-stranger");
    const carol = `@carol:${remote}`;
    const keysC = await deviceKeys(carol, "C");
    await remoteControl("/_test/user-keys", { server: remote, query: { device_keys: { [carol]: { C: keysC } } } });
    expect((await queryKeys(alice, { [carol]: [] })).device_keys[carol]).toEqual({ C: keysC });
    expect((await queryKeys(alice, { [carol]: [] })).device_keys[carol]).toEqual({ C: keysC });
    expect(await keyQueries(remote)).toBe(2);
    expect(await counter(`devices:${carol}`)).toBe(0);
    // alice asked, so she watches carol: an update with a gap would call for a resync, but with no room
    // shared the copy could answer no query, so carol's list is not fetched (no GET /user/devices); alice
    // is told of the change, and her next query asks carol's server.
    await remoteControl("/_test/user-keys", { server: remote, devices: { [carol]: { user_id: carol, stream_id: 2, devices: [] } }, query: { device_keys: { [carol]: { C: keysC } } } });
    const since = (await sync(alice)).next_batch;
    await sendEdus(remote, [update(carol, "D", 2, [1], null)]);
    expect(await counter(`devices:${carol}`)).toBe(0);
    expect((await sync(alice, { since })).device_lists?.changed).toContain(carol);
    expect((await queryKeys(alice, { [carol]: [] })).device_keys[carol]).toEqual({ C: keysC });
    expect(await keyQueries(remote)).toBe(3);
    expect(await counter(`devices:${carol}`)).toBe(0);
  });
});
