// End-to-end encryption across servers (issue 9 §2, §5), between two Myelins and between Myelin and
// Synapse: real clients, matrix-js-sdk with its Rust crypto (matrix-sdk-crypto-wasm, as Element Web), one
// user on each server in an encrypted room that the Myelin user (on A) created. The
// megolm keys travel as to-device messages across (m.direct_to_device), each client finds the other's
// devices with /keys/query (for the remote user: our copy of their device list, fetched with
// /user/devices, or their server), and each side decrypts the other's message. Then the remote user adds a
// second device: its keys reach the other server as an m.device_list_update, the local client hears of it
// in device_lists.changed, queries again, and shares the next message's key with the new device too.
//
// Joining: as Synapse, B sends A nothing about bob's devices when he joins; A's client sees the new member
// in device_lists.changed and asks for his keys (issue 9 §2: Synapse's behaviour, Complement's
// TestDeviceListsUpdateOverFederationOnRoomJoin is skipped for Synapse too). The clients load members
// lazily (Element's default): B joins with partial state, and an eager client on B would not learn alice's
// membership from /sync until the partial-state work shows resynced members there (issue 19).
import { rmSync } from "node:fs";
import * as sdk from "matrix-js-sdk";
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed, vi } from "vitest";
import { startServer, type RunningServer } from "../e2e/server.js";
import { call, newUser, type Server, type User } from "./client.js";
import { stageCA } from "./more-myelins.js";

const A: Server = inject("myelin");

let b: RunningServer | undefined;
let B: Server;
const clients: sdk.MatrixClient[] = [];
/** The clients' requests other than /sync, printed if the test fails (which step stopped?). */
const TRACE: string[] = [];

beforeAll(async () => {
  // The SDK and its crypto log every step; keep the output readable.
  for (const level of ["log", "info", "debug"] as const) vi.spyOn(console, level).mockImplementation(() => {});
  b = await startServer({ REGISTRATION_SHARED_SECRET: "e2ee-b-secret" }, { https: stageCA() });
  B = { baseUrl: b.baseUrl, serverName: b.serverName, registrationSharedSecret: "e2ee-b-secret" };
}, 180_000);

afterAll(async () => {
  for (const c of clients) c.stopClient();
  vi.restoreAllMocks();
  if (b) {
    await b.stop();
    rmSync(b.dataDir, { recursive: true, force: true });
  }
});

/** A started client with Rust crypto for `user`'s device (`accessToken` of that device). */
async function startClient(user: User, accessToken = user.accessToken): Promise<sdk.MatrixClient> {
  const who = await call({ ...user, accessToken }, "GET", "/account/whoami");
  expect(who.status).toBe(200);
  const fetchFn: typeof fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const res = await fetch(input, init);
    if (!url.includes("/sync")) {
      const text = await res.clone().text();
      TRACE.push(`${user.userId}/${who.body.device_id} ${init?.method ?? "GET"} ${url.replace(/^https:\/\/[^/]+/, "")} ${typeof init?.body === "string" ? init.body.slice(0, 300) : ""} -> ${res.status} ${text.slice(0, 300)}`);
    }
    return res;
  };
  const client = sdk.createClient({ baseUrl: user.server.baseUrl, accessToken, userId: user.userId, deviceId: who.body.device_id as string, fetchFn });
  await client.initRustCrypto({ useIndexedDB: false });
  const prepared = new Promise<void>((resolve) => client.on(sdk.ClientEvent.Sync, (state) => state === sdk.SyncState.Prepared && resolve()));
  await client.startClient({ initialSyncLimit: 20, lazyLoadMembers: true });
  await prepared;
  clients.push(client);
  return client;
}

/** Resolves once `check()` holds, looking every 100 ms; rejects after `limitMs` (a hang bound, not a timing claim). */
async function until<T>(what: string, check: () => T | undefined | null | false | Promise<T | undefined | null | false>, limitMs = 45_000): Promise<T> {
  const begin = Date.now();
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() - begin > limitMs) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Event `eventId` in `client`'s timeline once it arrived and was decrypted (or failed to be). */
async function decrypted(client: sdk.MatrixClient, roomId: string, eventId: string, body: string): Promise<sdk.MatrixEvent> {
  const event = await until(`event ${eventId} at ${client.getUserId()}/${client.getDeviceId()}`, () => client.getRoom(roomId)?.findEventById(eventId));
  expect(event.getWireType()).toBe("m.room.encrypted");
  // The event may arrive before the to-device message with its key (each travels its own way across);
  // the SDK then retries when the key comes, so a failure on the way is not the end.
  await until(`decryption of "${body}" at ${client.getDeviceId()}`, () => event.getClearContent()?.body === body).catch((e: Error) => {
    throw new Error(`${e.message}: ${event.decryptionFailureReason ?? "not decrypted"}`);
  });
  return event;
}

/**
 * alice on A and bob on `other` in an encrypted room: each decrypts the other's message; bob adds a second
 * device, which decrypts alice's next message.
 */
async function encryptedExchange(other: Server): Promise<void> {
  const aliceUser = await newUser(A, "alice");
  const bobUser = await newUser(other, "bob");
  const alice = await startClient(aliceUser);
  const bob = await startClient(bobUser);

  const { room_id: roomId } = await alice.createRoom({
    name: "secret across servers",
    invite: [bobUser.userId],
    initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
  });
  await until("the invite at bob", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
  await bob.joinRoom(roomId, { viaServers: [A.serverName] });
  await until("bob's join at alice", () => alice.getRoom(roomId)?.getMember(bobUser.userId)?.membership === "join");
  await until("the encryption state at bob", () => bob.getRoom(roomId)?.hasEncryptionStateEvent());
  // The other server joined with partial state (omit_members): its copy of the room learns alice's
  // membership from the background resync. Element loads a room's members (/members) before it encrypts
  // (lazy loading, its default, as these clients); wait until that copy has her.
  await until("alice in the other server's copy of the room", async () => {
    const res = await call(bobUser, "GET", `/rooms/${encodeURIComponent(roomId)}/joined_members`);
    return res.status === 200 && aliceUser.userId in (res.body.joined as Record<string, unknown>);
  });
  // alice → bob: alice's client finds bob's device on the other server and sends it the room key across.
  const first = await alice.sendTextMessage(roomId, "hello bob, from A");
  const atBob = await decrypted(bob, roomId, first.event_id, "hello bob, from A");
  expect(atBob.isDecryptionFailure()).toBe(false);
  expect(atBob.getContent().body).toBe("hello bob, from A");

  // bob → alice.
  const reply = await bob.sendTextMessage(roomId, "hello alice, from bob");
  const atAlice = await decrypted(alice, roomId, reply.event_id, "hello alice, from bob");
  expect(atAlice.isDecryptionFailure()).toBe(false);
  expect(atAlice.getContent().body).toBe("hello alice, from bob");

  // bob logs in on a second device. His server sends the new device to A (m.device_list_update); alice's client
  // sees bob in device_lists.changed, asks for his keys again and learns the new device.
  const login = await fetch(`${other.baseUrl}/_matrix/client/v3/login`, {
    method: "POST",
    body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user: bobUser.userId }, password: "pw-federation-1" }),
  });
  expect(login.status).toBe(200);
  const second = (await login.json()) as { access_token: string; device_id: string };
  const bob2 = await startClient(bobUser, second.access_token);
  await until("bob's second device known to alice's client", async () => {
    const devices = await alice.getCrypto()!.getUserDeviceInfo([bobUser.userId]);
    return devices.get(bobUser.userId)?.has(second.device_id);
  });

  const third = await alice.sendTextMessage(roomId, "for both of bob's devices");
  const atBob2 = await decrypted(bob2, roomId, third.event_id, "for both of bob's devices");
  expect(atBob2.isDecryptionFailure()).toBe(false);
  expect(atBob2.getContent().body).toBe("for both of bob's devices");
  const atBob1 = await decrypted(bob, roomId, third.event_id, "for both of bob's devices");
  expect(atBob1.getContent().body).toBe("for both of bob's devices");
}

describe("end-to-end encryption across servers, with matrix-js-sdk's Rust crypto", () => {
  it("between two Myelins: each side decrypts the other's message; a second device added on one side decrypts the next message from the other", async () => {
    onTestFailed(() => console.error(TRACE.join("\n")));
    await encryptedExchange(B);
  }, 120_000);

  it("between Myelin and Synapse: the same, with the second device on Synapse", async () => {
    onTestFailed(() => console.error(TRACE.join("\n")));
    await encryptedExchange(inject("synapse"));
  }, 120_000);
});
