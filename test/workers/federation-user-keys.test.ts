// End-to-end encryption across servers (spec: Server-Server API, "Device Management", "End-to-End
// Encryption"): our users' devices and keys served to other servers (GET /user/devices, POST
// /user/keys/query and /user/keys/claim), a local client's /keys/query and /keys/claim for users of other
// servers, and device list updates in both directions (m.device_list_update chained by prev_id, a gap making
// us resync, m.signing_key_update). The remote servers are played by test/workers/remote-homeserver.mjs,
// which answers key requests with what the test stored for it.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { JsonObject } from "../../protocol/json.js";
import { generateSigningKey, signJson, type SigningKey } from "../../protocol/signing.js";
import { counter, remoteControl, uniqueServer } from "./federation-helpers.js";
import { federationApi, joinFromRemote } from "./federation-room-helpers.js";
import { api, login, registerUser, SERVER_NAME, uniqueLocalpart, type RegisteredUser } from "./helpers.js";
import { createRoom, newUser } from "./room-helpers.js";
import { completeResync, makePartial } from "./partial-state-helpers.js";
import { announceDeviceListOnJoin } from "../../worker/device-lists.js";
import { sync } from "./sync-helpers.js";

const V3 = "/_matrix/client/v3";
const F1 = "/_matrix/federation/v1";
const enc = encodeURIComponent;
const userDo = (userId: string) => env.USERS.get(env.USERS.idFromName(userId));
const destinationStub = (server: string) => env.DESTINATIONS.get(env.DESTINATIONS.idFromName(server));

/** Device keys of `userId`'s `deviceId`, signed by `signer` (its own key unless told otherwise). */
async function deviceKeys(userId: string, deviceId: string, wrongSigner = false): Promise<JsonObject> {
  const key = await generateSigningKey(deviceId);
  const signer = wrongSigner ? await generateSigningKey(deviceId) : key;
  const unsigned: JsonObject = {
    user_id: userId,
    device_id: deviceId,
    algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
    keys: { [`curve25519:${deviceId}`]: `curve-${deviceId}`, [`ed25519:${deviceId}`]: key.publicKey },
  };
  return signJson(unsigned, userId, signer);
}

async function crossSigningKeyPair(): Promise<SigningKey> {
  const key = await generateSigningKey("x");
  return { ...key, keyId: `ed25519:${key.publicKey}` };
}
const crossSigningKeyJson = (userId: string, usage: string, key: SigningKey): JsonObject => ({ user_id: userId, usage: [usage], keys: { [key.keyId]: key.publicKey } });

/** Master and self-signing keys of `userId`; the self-signing key signed by the master key (or a stranger). */
async function crossSigning(userId: string, wrongSigner = false) {
  const master = await crossSigningKeyPair();
  const selfSigning = await crossSigningKeyPair();
  const signer = wrongSigner ? await crossSigningKeyPair() : master;
  const userSigning = await crossSigningKeyPair();
  return {
    master_key: crossSigningKeyJson(userId, "master", master),
    self_signing_key: await signJson(crossSigningKeyJson(userId, "self_signing", selfSigning), userId, signer),
    user_signing_key: await signJson(crossSigningKeyJson(userId, "user_signing", userSigning), userId, master),
  };
}

async function uploadCrossSigning(user: RegisteredUser, body: JsonObject): Promise<void> {
  let res = await api("POST", `${V3}/keys/device_signing/upload`, { token: user.access_token, body });
  if (res.status === 401) {
    const localpart = user.user_id.slice(1, user.user_id.indexOf(":"));
    const auth = { type: "m.login.password", identifier: { type: "m.id.user", user: user.user_id }, password: `password-${localpart}`, session: res.body.session };
    res = await api("POST", `${V3}/keys/device_signing/upload`, { token: user.access_token, body: { ...body, auth } });
  }
  expect(res.status).toBe(200);
}

async function uploadDeviceKeys(user: RegisteredUser, deviceId = user.device_id, extra: JsonObject = {}): Promise<JsonObject> {
  const keys = await deviceKeys(user.user_id, deviceId);
  const res = await api("POST", `${V3}/keys/upload`, { token: user.access_token, body: { device_keys: keys, ...extra } });
  expect(res.status).toBe(200);
  return keys;
}

interface Edu {
  edu_type: string;
  content: any;
}
async function receivedEdus(server: string, type: string): Promise<Edu[]> {
  await destinationStub(server).sendsSettled();
  const txns = await remoteControl<{ accepted: boolean; body: { edus?: Edu[] } }[]>(`/_test/transactions?server=${enc(server)}`);
  return txns.filter((t) => t.accepted).flatMap((t) => t.body.edus ?? []).filter((e) => e.edu_type === type);
}

/** Waits (bounded) until `check` holds: device list EDUs go out after the join's answer. */
async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
  throw new Error("condition not reached");
}

let txnCounter = 0;
function sendEdus(origin: string, edus: unknown[]) {
  return federationApi(origin, "PUT", `${F1}/send/keys-${Date.now()}-${++txnCounter}`, { origin, origin_server_ts: Date.now(), pdus: [], edus });
}

describe("our users' keys, served to other servers", () => {
  it("GET /user/devices, POST /user/keys/query and /user/keys/claim answer for local users; never a user-signing key", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"), undefined, { initialDeviceDisplayName: "Alice's phone" });
    const otk = await signJson({ key: "otk-1" }, alice.user_id, await generateSigningKey(alice.device_id));
    const keys = await uploadDeviceKeys(alice, alice.device_id, { one_time_keys: { "signed_curve25519:AAA": otk } });
    const cs = await crossSigning(alice.user_id);
    await uploadCrossSigning(alice, cs);
    const remote = uniqueServer("peer");

    const devices = await federationApi(remote, "GET", `${F1}/user/devices/${enc(alice.user_id)}`);
    expect(devices.status).toBe(200);
    expect(devices.body.user_id).toBe(alice.user_id);
    expect(Number.isSafeInteger(devices.body.stream_id)).toBe(true);
    expect(devices.body.devices).toEqual([{ device_id: alice.device_id, keys, device_display_name: "Alice's phone" }]);
    expect(devices.body.master_key).toEqual(cs.master_key);
    expect(devices.body.self_signing_key).toEqual(cs.self_signing_key);
    expect(devices.body.user_signing_key).toBeUndefined();

    const query = await federationApi(remote, "POST", `${F1}/user/keys/query`, { device_keys: { [alice.user_id]: [], "@x:elsewhere.remote.test": [] } });
    expect(query.status).toBe(200);
    expect(Object.keys(query.body.device_keys)).toEqual([alice.user_id]);
    expect(query.body.device_keys[alice.user_id][alice.device_id]).toMatchObject(keys);
    expect(query.body.master_keys[alice.user_id]).toEqual(cs.master_key);
    expect(query.body.user_signing_keys).toBeUndefined();

    const claim = () => federationApi(remote, "POST", `${F1}/user/keys/claim`, { one_time_keys: { [alice.user_id]: { [alice.device_id]: "signed_curve25519" } } });
    const first = await claim();
    expect(first.status).toBe(200);
    expect(first.body.one_time_keys[alice.user_id][alice.device_id]).toEqual({ "signed_curve25519:AAA": otk });
    // Each one-time key is claimed once.
    expect((await claim()).body.one_time_keys).toEqual({});
  });

  it("refuses bad requests: another server's user 400, unsigned 401, malformed bodies 400", async () => {
    const remote = uniqueServer("peer");
    expect((await federationApi(remote, "GET", `${F1}/user/devices/${enc("@bob:elsewhere.remote.test")}`)).status).toBe(400);
    expect((await api("GET", `${F1}/user/devices/${enc("@bob:test.local")}`)).status).toBe(401);
    const badQuery = await federationApi(remote, "POST", `${F1}/user/keys/query`, { device_keys: [] });
    expect(badQuery.status).toBe(400);
    expect(badQuery.body.errcode).toBe("M_BAD_JSON");
    expect((await federationApi(remote, "POST", `${F1}/user/keys/query`, { device_keys: { "@a:test.local": "all" } })).status).toBe(400);
    expect((await federationApi(remote, "POST", `${F1}/user/keys/claim`, { one_time_keys: { "@a:test.local": { D: 5 } } })).status).toBe(400);
  });
});

describe("a local client's /keys/query and /keys/claim for users of other servers", () => {
  it("asks their server and keeps only keys that are not signed by a wrong key", async () => {
    const alice = await newUser("alice");
    const server = uniqueServer("keys");
    const bob = `@bob:${server}`;
    const carol = `@carol:${server}`;
    const good = await deviceKeys(bob, "GOOD");
    // Keys without a self-signature are kept (as Synapse; clients verify); a malformed signatures map is not.
    const unsigned = { ...(await deviceKeys(bob, "UNSIGNED")), signatures: {} };
    const badSignatures = { ...(await deviceKeys(bob, "BADSIG")), signatures: { [bob]: "not a map" } };
    const bobCs = await crossSigning(bob);
    const carolCs = await crossSigning(carol, true);
    await remoteControl("/_test/user-keys", {
      server,
      query: {
        device_keys: {
          [bob]: { GOOD: good, FORGED: await deviceKeys(bob, "FORGED", true), OTHER: good, UNSIGNED: unsigned, BADSIG: badSignatures },
          "@mallory:elsewhere.remote.test": { M: await deviceKeys("@mallory:elsewhere.remote.test", "M") },
        },
        master_keys: { [bob]: bobCs.master_key, [carol]: carolCs.master_key },
        self_signing_keys: { [bob]: bobCs.self_signing_key, [carol]: carolCs.self_signing_key },
      },
    });
    const res = await api("POST", `${V3}/keys/query`, { token: alice.access_token, body: { device_keys: { [bob]: [], [carol]: [] } } });
    expect(res.status).toBe(200);
    expect(res.body.failures).toEqual({});
    expect(res.body.device_keys[bob]).toEqual({ GOOD: good, UNSIGNED: unsigned });
    expect(res.body.device_keys["@mallory:elsewhere.remote.test"]).toBeUndefined();
    expect(res.body.master_keys[bob]).toEqual(bobCs.master_key);
    expect(res.body.self_signing_keys[bob]).toEqual(bobCs.self_signing_key);
    expect(res.body.master_keys[carol]).toEqual(carolCs.master_key);
    // carol's self-signing key is not signed by her master key.
    expect(res.body.self_signing_keys[carol]).toBeUndefined();
    const requests = await remoteControl<{ path: string; body: any }[]>(`/_test/key-requests?server=${enc(server)}`);
    expect(requests).toEqual([{ method: "POST", path: `${F1}/user/keys/query`, body: { device_keys: { [bob]: [], [carol]: [] } } }]);
  });

  it("claims one-time keys from their server, keeping only what was asked for", async () => {
    const alice = await newUser("alice");
    const server = uniqueServer("claim");
    const bob = `@bob:${server}`;
    const otk = { "signed_curve25519:AAA": { key: "k", signatures: {} } };
    await remoteControl("/_test/user-keys", { server, claim: { one_time_keys: { [bob]: { GOOD: otk, EXTRA: otk }, "@m:elsewhere.remote.test": { D: otk } } } });
    const res = await api("POST", `${V3}/keys/claim`, { token: alice.access_token, body: { one_time_keys: { [bob]: { GOOD: "signed_curve25519" } } } });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ failures: {}, one_time_keys: { [bob]: { GOOD: otk } } });
  });

  it("reports a server that does not answer within the timeout in failures, with the answers of the others", async () => {
    const alice = await newUser("alice");
    const slow = uniqueServer("slow");
    const fast = uniqueServer("fast");
    const good = await deviceKeys(`@bob:${fast}`, "GOOD");
    await remoteControl("/_test/user-keys", { server: fast, query: { device_keys: { [`@bob:${fast}`]: { GOOD: good } } } });
    const res = await api("POST", `${V3}/keys/query`, {
      token: alice.access_token,
      body: { timeout: 1000, device_keys: { [`@bob:${slow}`]: [], [`@bob:${fast}`]: [] } },
    });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body.failures)).toEqual([slow]);
    expect(res.body.failures[slow].status).toBe(503);
    expect(res.body.device_keys[`@bob:${fast}`]).toEqual({ GOOD: good });
    const claim = await api("POST", `${V3}/keys/claim`, { token: alice.access_token, body: { timeout: 1000, one_time_keys: { [`@bob:${slow}`]: { D: "signed_curve25519" } } } });
    expect(Object.keys(claim.body.failures)).toEqual([slow]);
    expect((await api("POST", `${V3}/keys/query`, { token: alice.access_token, body: { timeout: -1, device_keys: {} } })).status).toBe(400);
  });
});

describe("device list updates to other servers", () => {
  it("sends each device change chained by prev_id to the servers sharing a room, and cross-signing changes as m.signing_key_update", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const remote = uniqueServer("dl-out");
    const bob = `@bob:${remote}`;
    await joinFromRemote(remote, roomId, bob);

    const keys1 = await uploadDeviceKeys(alice);
    let edus = await receivedEdus(remote, "m.device_list_update");
    expect(edus.map((e) => e.content)).toEqual([{ user_id: alice.user_id, device_id: alice.device_id, stream_id: 1, prev_id: [], deleted: false, keys: keys1 }]);

    const localpart = alice.user_id.slice(1, alice.user_id.indexOf(":"));
    const second = await login(localpart, `password-${localpart}`, { initial_device_display_name: "laptop" });
    const laptop = { ...alice, access_token: second.body.access_token as string, device_id: second.body.device_id as string };
    const keys2 = await uploadDeviceKeys(laptop);
    edus = await receivedEdus(remote, "m.device_list_update");
    expect(edus.length).toBe(2);
    expect(edus[1]!.content).toEqual({ user_id: alice.user_id, device_id: laptop.device_id, stream_id: 2, prev_id: [1], deleted: false, keys: keys2, device_display_name: "laptop" });
    // A peer that resyncs gets the same stream position.
    expect((await federationApi(remote, "GET", `${F1}/user/devices/${enc(alice.user_id)}`)).body.stream_id).toBe(2);

    // Renaming a device is a change of the list too (as Synapse: its display name is part of it).
    const renamed = await api("PUT", `${V3}/devices/${enc(laptop.device_id)}`, { token: alice.access_token, body: { display_name: "work laptop" } });
    expect(renamed.status).toBe(200);
    edus = await receivedEdus(remote, "m.device_list_update");
    expect(edus.length).toBe(3);
    expect(edus[2]!.content).toEqual({ user_id: alice.user_id, device_id: laptop.device_id, stream_id: 3, prev_id: [2], deleted: false, keys: keys2, device_display_name: "work laptop" });

    const cs = await crossSigning(alice.user_id);
    await uploadCrossSigning(alice, cs);
    const signing = await receivedEdus(remote, "m.signing_key_update");
    expect(signing.map((e) => e.content)).toEqual([{ user_id: alice.user_id, master_key: cs.master_key, self_signing_key: cs.self_signing_key }]);
  });
});

describe("device list announced when a local user joins a room with other servers", () => {
  // Spec (Server-Server API, "Device Management"): updates are sent "when that user joins a room which
  // contains servers which are not already receiving updates for that user's device list".
  it("a device never federated goes out as a change; one already federated as it stands, at the same stream_id", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const remote = uniqueServer("dl-join");
    await joinFromRemote(remote, roomId, `@bob:${remote}`);

    // carol (no keys; her device was never federated) joins: her device goes out as a change.
    const carol = await newUser("carol");
    expect((await api("POST", `${V3}/join/${enc(roomId)}`, { token: carol.access_token, body: {} })).status).toBe(200);
    const forCarol = async () => (await receivedEdus(remote, "m.device_list_update")).map((e) => e.content).filter((c) => c.user_id === carol.user_id);
    await until(async () => (await forCarol()).length > 0);
    expect(await forCarol()).toEqual([{ user_id: carol.user_id, device_id: carol.device_id, stream_id: 1, prev_id: [], deleted: false }]);

    // dave uploaded keys while sharing no room with anyone (stream_id 1, sent nowhere); his join announces
    // the device as it stands, at stream_id 1.
    const dave = await newUser("dave");
    const daveKeys = await uploadDeviceKeys(dave);
    expect((await api("POST", `${V3}/rooms/${enc(roomId)}/join`, { token: dave.access_token, body: {} })).status).toBe(200);
    const forDave = async () => (await receivedEdus(remote, "m.device_list_update")).map((e) => e.content).filter((c) => c.user_id === dave.user_id);
    await until(async () => (await forDave()).length > 0);
    expect(await forDave()).toEqual([{ user_id: dave.user_id, device_id: dave.device_id, stream_id: 1, prev_id: [], deleted: false, keys: daveKeys }]);

    // A server that follows dave's list already gets the same stream_id again (a duplicate it drops), and a
    // server in no room with him gets nothing.
    const second = await createRoom(alice, { preset: "public_chat" });
    await joinFromRemote(remote, second, `@bob:${remote}`);
    const elsewhere = uniqueServer("dl-none");
    await createRoom(alice, { preset: "public_chat" }).then((other) => joinFromRemote(elsewhere, other, `@eve:${elsewhere}`));
    expect((await api("POST", `${V3}/join/${enc(second)}`, { token: dave.access_token, body: {} })).status).toBe(200);
    await until(async () => (await forDave()).length > 1);
    expect((await forDave())[1]).toEqual({ user_id: dave.user_id, device_id: dave.device_id, stream_id: 1, prev_id: [], deleted: false, keys: daveKeys });
    expect((await receivedEdus(elsewhere, "m.device_list_update")).filter((e) => e.content.user_id === dave.user_id)).toEqual([]);
  });
});

describe("device list announced on join: not into a room held with partial state", () => {
  // Its servers are not known yet (the resync brings them); Complement's msc3902 resident fails a test on
  // any EDU it did not expect, and Synapse announces nothing on a join.
  it("announces nothing while partial, and to the room's servers once complete", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const remote = uniqueServer("dl-partial");
    await joinFromRemote(remote, roomId, `@bob:${remote}`);
    const carol = await newUser("carol");
    const named = uniqueServer("dl-named");
    await makePartial(roomId, [named, SERVER_NAME]);
    await announceDeviceListOnJoin(env as never, carol.user_id, roomId);
    for (const server of [remote, named]) expect((await receivedEdus(server, "m.device_list_update")).filter((e) => e.content.user_id === carol.user_id)).toEqual([]);

    await completeResync(roomId);
    await announceDeviceListOnJoin(env as never, carol.user_id, roomId);
    expect((await receivedEdus(remote, "m.device_list_update")).filter((e) => e.content.user_id === carol.user_id).map((e) => e.content.device_id)).toEqual([carol.device_id]);
  });
});

describe("device list updates from other servers", () => {
  it("applies updates in prev_id order, resyncs on a gap, ignores repeats and drops forged keys; watchers see device_lists.changed", async () => {
    const alice = await newUser("alice");
    const server = uniqueServer("dl-in");
    const bob = `@bob:${server}`;
    const update = async (deviceId: string, streamId: number, prevId: number[], wrongSigner = false) => ({
      edu_type: "m.device_list_update",
      content: { user_id: bob, device_id: deviceId, stream_id: streamId, prev_id: prevId, keys: await deviceKeys(bob, deviceId, wrongSigner) },
    });
    const resyncs = () => counter(`devices:${bob}`);

    // Nobody here asked about bob: his updates are not tracked.
    expect((await sendEdus(server, [await update("A", 1, [])])).status).toBe(200);
    expect(await resyncs()).toBe(0);
    expect(await userDo(bob).remoteDeviceList()).toBeNull();

    // alice asks for his keys: from now on she is told about changes.
    expect((await api("POST", `${V3}/keys/query`, { token: alice.access_token, body: { device_keys: { [bob]: [] } } })).status).toBe(200);
    const cs = await crossSigning(bob);
    await remoteControl("/_test/user-keys", {
      server,
      devices: { [bob]: { user_id: bob, stream_id: 6, devices: [{ device_id: "A", keys: await deviceKeys(bob, "A") }, { device_id: "B", keys: await deviceKeys(bob, "B", true) }], master_key: cs.master_key } },
    });
    // bob joins a room of alice's: the room anchors the copy of his list (without a room shared, a gap
    // would not be worth a fetch: federation-device-list-cache.test.ts).
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await joinFromRemote(server, roomId, bob);
    let since = (await sync(alice)).next_batch;
    for (let i = 0; i < 200 && !(await userDo(bob).remoteSharedRooms()).includes(roomId); i++) await new Promise((r) => setTimeout(r, 25));
    expect(await resyncs()).toBe(0);

    // Never synced: the first update makes us fetch the list.
    expect((await sendEdus(server, [await update("A", 6, [5])])).status).toBe(200);
    expect(await resyncs()).toBe(1);
    let list = (await userDo(bob).remoteDeviceList())!;
    expect(list.streamId).toBe(6);
    // B's keys in the resync are not signed by B's key: kept as a device without keys.
    expect(list.devices.map((d) => [d.deviceId, d.keys !== null])).toEqual([["A", true], ["B", false]]);
    let body = await sync(alice, { since });
    expect(body.device_lists.changed).toEqual([bob]);
    since = body.next_batch;

    // The next update in the chain applies without a resync.
    expect((await sendEdus(server, [await update("C", 7, [6])])).status).toBe(200);
    expect(await resyncs()).toBe(1);
    list = (await userDo(bob).remoteDeviceList())!;
    expect(list.streamId).toBe(7);
    expect(list.devices.map((d) => d.deviceId)).toEqual(["A", "B", "C"]);
    body = await sync(alice, { since });
    expect(body.device_lists.changed).toEqual([bob]);
    since = body.next_batch;

    // A repeat changes nothing.
    expect((await sendEdus(server, [await update("C", 7, [6])])).status).toBe(200);
    expect((await userDo(bob).remoteDeviceList())!.streamId).toBe(7);
    body = await sync(alice, { since });
    expect(body.device_lists?.changed ?? []).toEqual([]);
    since = body.next_batch;
    // Another server's user and a malformed update are dropped and change nothing.
    const eve = { edu_type: "m.device_list_update", content: { user_id: "@eve:elsewhere.remote.test", device_id: "E", stream_id: 1, prev_id: [] } };
    expect((await sendEdus(server, [eve])).status).toBe(200);
    expect((await userDo(bob).remoteDeviceList())!.streamId).toBe(7);
    // Keys signed by the wrong key are dropped, and our copy is no longer sure: it answers nothing until
    // fetched again, and alice hears that bob's list changed.
    expect((await sendEdus(server, [await update("D", 8, [7], true)])).status).toBe(200);
    expect(await resyncs()).toBe(1);
    expect(await userDo(bob).remoteDeviceList()).toBeNull();
    body = await sync(alice, { since });
    expect(body.device_lists.changed).toEqual([bob]);
    since = body.next_batch;

    // The next update resyncs.
    await remoteControl("/_test/user-keys", {
      server,
      devices: { [bob]: { user_id: bob, stream_id: 9, devices: [{ device_id: "A", keys: await deviceKeys(bob, "A") }], master_key: cs.master_key } },
    });
    expect((await sendEdus(server, [await update("E", 9, [8])])).status).toBe(200);
    expect(await resyncs()).toBe(2);
    expect((await userDo(bob).remoteDeviceList())!.streamId).toBe(9);
    body = await sync(alice, { since });
    expect(body.device_lists.changed).toEqual([bob]);
    since = body.next_batch;

    // A new master key (m.signing_key_update) applies; one for another user or not a master key is dropped.
    const newCs = await crossSigning(bob);
    const signing = (content: JsonObject) => ({ edu_type: "m.signing_key_update", content });
    await sendEdus(server, [signing({ user_id: "@other:elsewhere.remote.test", master_key: newCs.master_key })]);
    expect((await userDo(bob).remoteDeviceList())!.crossSigning.master).toBe(JSON.stringify(cs.master_key));
    await sendEdus(server, [signing({ user_id: bob, master_key: newCs.master_key, self_signing_key: newCs.self_signing_key })]);
    list = (await userDo(bob).remoteDeviceList())!;
    expect(JSON.parse(list.crossSigning.master!)).toEqual(newCs.master_key);
    expect(JSON.parse(list.crossSigning.self_signing!)).toEqual(newCs.self_signing_key);
    body = await sync(alice, { since });
    expect(body.device_lists.changed).toEqual([bob]);
    since = body.next_batch;
    // One we cannot check (the master key names another user) leaves the copy unsure: fetched again.
    await sendEdus(server, [signing({ user_id: bob, master_key: { ...newCs.master_key, user_id: "@other:elsewhere.remote.test" } })]);
    expect(await userDo(bob).remoteDeviceList()).toBeNull();
  });
});
