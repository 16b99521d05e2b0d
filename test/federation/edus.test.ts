// EDUs and end-to-end keys across servers, for real: Myelin (A) and a real Synapse (S) from the stage's
// global setup share a room; typing, read receipts, to-device messages and key queries travel both ways
// through the client APIs of the two servers.
import { describe, expect, inject, it } from "vitest";
import { call, createRoom, enc, eventually, join, membership, newUser, sendText, type Server, type User } from "./client.js";

const A: Server = inject("myelin");
const S: Server = inject("synapse");

/** A public room on `owner`'s server, joined by `guest` (of the other server) by room ID. */
async function sharedRoom(owner: User, guest: User): Promise<string> {
  const roomId = await createRoom(owner, { preset: "public_chat" });
  const joined = await join(guest, roomId, [owner.server.serverName]);
  expect(joined.status, JSON.stringify(joined.body)).toBe(200);
  await eventually(`${guest.userId} joined on ${owner.server.serverName}`, async () => (await membership(owner, roomId, guest.userId)) === "join");
  return roomId;
}

/** A /sync stream of one user: `until` syncs (long-polling briefly) until `found` picks something out of a
 * response. */
function syncer(user: User) {
  let since: string | undefined;
  return {
    async start(): Promise<void> {
      const res = await call(user, "GET", `/sync?timeout=0`);
      expect(res.status).toBe(200);
      since = res.body.next_batch as string;
    },
    async until<T>(what: string, found: (body: any) => T | undefined, ms = 30_000): Promise<T> {
      return eventually(
        what,
        async () => {
          const res = await call(user, "GET", `/sync?timeout=1000${since ? `&since=${enc(since)}` : ""}`);
          if (res.status !== 200) return undefined;
          since = res.body.next_batch as string;
          return found(res.body);
        },
        ms,
      );
    },
  };
}

const ephemeralOf = (body: any, roomId: string): { type: string; content: any }[] => body.rooms?.join?.[roomId]?.ephemeral?.events ?? [];

/** Device keys as a client uploads them: signed by the device's own ed25519 key (Node's crypto). */
async function uploadDeviceKeys(user: User, deviceId: string): Promise<Record<string, unknown>> {
  const { generateKeyPairSync, sign } = await import("node:crypto");
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(12);
  const b64 = (b: Buffer) => b.toString("base64").replace(/=+$/, "");
  const keys: Record<string, unknown> = {
    algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
    device_id: deviceId,
    keys: { [`curve25519:${deviceId}`]: b64(Buffer.alloc(32, 7)), [`ed25519:${deviceId}`]: b64(raw) },
    user_id: user.userId,
  };
  // Canonical JSON of this flat-enough object: sorted keys at every level.
  const canonical = (v: unknown): string =>
    v === null || typeof v !== "object"
      ? JSON.stringify(v)
      : Array.isArray(v)
        ? `[${v.map(canonical).join(",")}]`
        : `{${Object.keys(v as object)
            .sort()
            .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
            .join(",")}}`;
  const signature = b64(sign(null, Buffer.from(canonical(keys)), privateKey));
  const signed = { ...keys, signatures: { [user.userId]: { [`ed25519:${deviceId}`]: signature } } };
  const res = await call(user, "POST", "/keys/upload", { device_keys: signed });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return signed;
}

async function deviceIdOf(user: User): Promise<string> {
  const res = await call(user, "GET", "/account/whoami");
  return res.body.device_id as string;
}

describe("EDUs between Myelin and Synapse", () => {
  it("typing is seen across, both ways", async () => {
    const alice = await newUser(A, "typa");
    const bob = await newUser(S, "typb");
    const roomId = await sharedRoom(alice, bob);
    const bobSync = syncer(bob);
    const aliceSync = syncer(alice);
    await Promise.all([bobSync.start(), aliceSync.start()]);

    expect((await call(alice, "PUT", `/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { typing: true, timeout: 20_000 })).status).toBe(200);
    await bobSync.until("alice typing on Synapse", (b) =>
      ephemeralOf(b, roomId).some((e) => e.type === "m.typing" && (e.content.user_ids as string[]).includes(alice.userId)) || undefined,
    );
    expect((await call(bob, "PUT", `/rooms/${enc(roomId)}/typing/${enc(bob.userId)}`, { typing: true, timeout: 20_000 })).status).toBe(200);
    await aliceSync.until("bob typing on Myelin", (b) =>
      ephemeralOf(b, roomId).some((e) => e.type === "m.typing" && (e.content.user_ids as string[]).includes(bob.userId)) || undefined,
    );
    expect((await call(bob, "PUT", `/rooms/${enc(roomId)}/typing/${enc(bob.userId)}`, { typing: false })).status).toBe(200);
    await aliceSync.until("bob stopped typing on Myelin", (b) =>
      ephemeralOf(b, roomId).some((e) => e.type === "m.typing" && !(e.content.user_ids as string[]).includes(bob.userId)) || undefined,
    );
  });

  it("read receipts (threaded too) are seen across, both ways", async () => {
    const alice = await newUser(A, "rca");
    const bob = await newUser(S, "rcb");
    const roomId = await sharedRoom(bob, alice);
    const bobSync = syncer(bob);
    const aliceSync = syncer(alice);
    await Promise.all([bobSync.start(), aliceSync.start()]);

    const fromBob = await sendText(bob, roomId, "read this, alice");
    await eventually("bob's message on Myelin", async () => (await call(alice, "GET", `/rooms/${enc(roomId)}/event/${enc(fromBob)}`)).status === 200);
    expect((await call(alice, "POST", `/rooms/${enc(roomId)}/receipt/m.read/${enc(fromBob)}`, { thread_id: "main" })).status).toBe(200);
    const seenByBob = await bobSync.until("alice's receipt on Synapse", (b) => ephemeralOf(b, roomId).find((e) => e.type === "m.receipt" && e.content[fromBob]?.["m.read"]?.[alice.userId]));
    expect(seenByBob.content[fromBob]["m.read"][alice.userId].thread_id).toBe("main");

    const fromAlice = await sendText(alice, roomId, "and this, bob");
    await eventually("alice's message on Synapse", async () => (await call(bob, "GET", `/rooms/${enc(roomId)}/event/${enc(fromAlice)}`)).status === 200);
    expect((await call(bob, "POST", `/rooms/${enc(roomId)}/receipt/m.read/${enc(fromAlice)}`, {})).status).toBe(200);
    const seenByAlice = await aliceSync.until("bob's receipt on Myelin", (b) => ephemeralOf(b, roomId).find((e) => e.type === "m.receipt" && e.content[fromAlice]?.["m.read"]?.[bob.userId]));
    expect(seenByAlice.content[fromAlice]["m.read"][bob.userId].ts).toBeGreaterThan(0);
  });

  it("presence is seen across, both ways", async () => {
    const alice = await newUser(A, "pra");
    const bob = await newUser(S, "prb");
    const roomId = await sharedRoom(alice, bob);
    // Synapse joins with partial state (faster joins): it knows alice is a room-mate, and accepts her
    // presence, once it has the room's members.
    await eventually("alice's membership on Synapse", async () => (await membership(bob, roomId, alice.userId)) === "join", 60_000);
    // Synapse ignores presence from a room's servers while its own copy of the room is still partial (its
    // faster join resyncs in the background), and Myelin does not re-send an unchanged presence: alice's
    // status changes until Synapse shows one of them.
    let sent = 0;
    await eventually("alice's presence on Synapse", async () => {
      sent++;
      expect((await call(alice, "PUT", `/presence/${enc(alice.userId)}/status`, { presence: "online", status_msg: `from Myelin ${sent}` })).status).toBe(200);
      await new Promise((r) => setTimeout(r, 300));
      const r = await call(bob, "GET", `/presence/${enc(alice.userId)}/status`);
      return (typeof r.body?.status_msg === "string" && r.body.status_msg.startsWith("from Myelin")) || undefined;
    }, 60_000);
    // alice's client syncs (her server learns of bob's join then and registers for his updates); bob's
    // status changes until alice sees one of them (one sent before the registration reaches nobody).
    expect((await call(alice, "GET", "/sync?timeout=0")).status).toBe(200);
    let attempt = 0;
    const seen = await eventually("bob's presence on Myelin", async () => {
      attempt++;
      await call(bob, "PUT", `/presence/${enc(bob.userId)}/status`, { presence: "unavailable", status_msg: `from Synapse ${attempt}` });
      await new Promise((r) => setTimeout(r, 300));
      const r = await call(alice, "GET", `/presence/${enc(bob.userId)}/status`);
      return typeof r.body?.status_msg === "string" && r.body.status_msg.startsWith("from Synapse") ? r.body : undefined;
    });
    expect(seen.presence).toBe("unavailable");
  });

  it("a to-device message arrives once, both ways", async () => {
    const alice = await newUser(A, "tda");
    const bob = await newUser(S, "tdb");
    const [aliceDevice, bobDevice] = await Promise.all([deviceIdOf(alice), deviceIdOf(bob)]);
    const bobSync = syncer(bob);
    const aliceSync = syncer(alice);
    await Promise.all([bobSync.start(), aliceSync.start()]);

    const put = (from: User, txn: string, to: User, device: string, n: number) =>
      call(from, "PUT", `/sendToDevice/org.example.ping/${txn}`, { messages: { [to.userId]: { [device]: { n } } } });
    expect((await put(alice, "t1", bob, bobDevice, 1)).status).toBe(200);
    // A retried request (same txnId) is not a second message.
    expect((await put(alice, "t1", bob, bobDevice, 1)).status).toBe(200);
    const toBob = await bobSync.until("alice's to-device message on Synapse", (b) => {
      const events = (b.to_device?.events ?? []).filter((e: any) => e.type === "org.example.ping");
      return events.length > 0 ? events : undefined;
    });
    expect(toBob).toEqual([{ sender: alice.userId, type: "org.example.ping", content: { n: 1 } }]);

    expect((await put(bob, "t2", alice, aliceDevice, 2)).status).toBe(200);
    const toAlice = await aliceSync.until("bob's to-device message on Myelin", (b) => {
      const events = (b.to_device?.events ?? []).filter((e: any) => e.type === "org.example.ping");
      return events.length > 0 ? events : undefined;
    });
    expect(toAlice).toEqual([{ sender: bob.userId, type: "org.example.ping", content: { n: 2 } }]);
    // Nothing more arrives on either side (a later message proves the stream moved past it).
    expect((await put(alice, "t3", bob, bobDevice, 3)).status).toBe(200);
    const later = await bobSync.until("the next message on Synapse", (b) => {
      const events = (b.to_device?.events ?? []).filter((e: any) => e.type === "org.example.ping");
      return events.length > 0 ? events : undefined;
    });
    expect(later.map((e: any) => e.content.n)).toEqual([3]);
  });

  it("keys are queried across, and a new device of a room-mate shows in device_lists.changed", async () => {
    const alice = await newUser(A, "kqa");
    const bob = await newUser(S, "kqb");
    const roomId = await sharedRoom(alice, bob);
    const [aliceDevice, bobDevice] = await Promise.all([deviceIdOf(alice), deviceIdOf(bob)]);
    const aliceKeys = await uploadDeviceKeys(alice, aliceDevice);
    const bobKeys = await uploadDeviceKeys(bob, bobDevice);

    const q = await call(alice, "POST", "/keys/query", { device_keys: { [bob.userId]: [] } });
    expect(q.status).toBe(200);
    expect(q.body.failures).toEqual({});
    expect(q.body.device_keys[bob.userId][bobDevice]).toMatchObject({ keys: bobKeys.keys, signatures: bobKeys.signatures });
    const fromSynapse = await eventually("alice's keys through Synapse", async () => {
      const r = await call(bob, "POST", "/keys/query", { device_keys: { [alice.userId]: [] } });
      return r.body.device_keys?.[alice.userId]?.[aliceDevice];
    });
    expect(fromSynapse).toMatchObject({ keys: aliceKeys.keys });

    // bob logs in a second device and uploads its keys: alice's /sync lists bob as changed and a new
    // query shows the device.
    const aliceSync = syncer(alice);
    await aliceSync.start();
    const login = await fetch(`${S.baseUrl}/_matrix/client/v3/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user: bob.userId }, password: "pw-federation-1" }),
    });
    const second = (await login.json()) as { access_token: string; device_id: string };
    const bob2: User = { ...bob, accessToken: second.access_token };
    await uploadDeviceKeys(bob2, second.device_id);
    await aliceSync.until("bob in alice's device_lists.changed", (b) => ((b.device_lists?.changed ?? []) as string[]).includes(bob.userId) || undefined);
    const again = await call(alice, "POST", "/keys/query", { device_keys: { [bob.userId]: [] } });
    expect(Object.keys(again.body.device_keys[bob.userId]).sort()).toEqual([bobDevice, second.device_id].sort());
    void roomId;
  });
});
