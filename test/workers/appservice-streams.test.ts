// What encrypted bridges need besides room events (durable-objects/appservice/streams.ts, transaction.ts,
// key-counts.ts), in the transaction body Synapse would send: to-device messages for the service's users
// (`de.sorunome.msc2409.to_device`, MSC4203), device list changes and one-time/fallback key counts
// (`org.matrix.msc3202.*`, MSC3202), and presence in `ephemeral` (MSC2409). The services listen nowhere, so
// what is queued stays queued; `previewTransaction()` shows the body the next PUT would carry.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { generateSigningKey, signJson, type SigningKey } from "../../protocol/signing.js";
import type { JsonObject } from "../../protocol/json.js";
import { api } from "./helpers.js";
import { createRoom, newUser, r, V3 } from "./room-helpers.js";
import { registerAppservice, type TestAppservice } from "./appservice-helpers.js";

const DOWN = "http://127.0.0.1:9";
const queue = (svc: TestAppservice) => env.APPSERVICES.get(env.APPSERVICES.idFromName(svc.registration.id));

/** A service whose queue holds what it gets (no send is tried), so the next transaction can be inspected. */
async function service(overrides: Record<string, unknown>): Promise<TestAppservice> {
  const svc = await registerAppservice({ url: DOWN, ...overrides });
  await queue(svc).setTuning({ holdSends: true });
  return svc;
}

type Body = Record<string, any>;

async function preview(svc: TestAppservice): Promise<Body | null> {
  const q = queue(svc);
  await q.sendsSettled();
  const text = await q.previewTransaction();
  return text === null ? null : (JSON.parse(text) as { body: Body }).body;
}

/** Polls (bounded) until the service's queue holds an entry of `eduType` (fan-outs run in the background). */
async function queued(svc: TestAppservice, eduType: string): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const n = (await queue(svc).queueState()).edus.filter((e) => e.eduType === eduType).length;
    if (n > 0) return n;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return 0;
}

/** A puppet of the service with a device (m.login.application_service), as a bridge makes one. */
async function puppet(svc: TestAppservice, name: string): Promise<{ user_id: string; device_id: string; access_token: string }> {
  const localpart = `${svc.prefix}${name}`;
  expect((await api("POST", `${V3}/register`, { token: svc.asToken, body: { type: "m.login.application_service", username: localpart, inhibit_login: true } })).status).toBe(200);
  const login = await api("POST", `${V3}/login`, {
    token: svc.asToken,
    body: { type: "m.login.application_service", identifier: { type: "m.id.user", user: localpart }, device_id: `${name.toUpperCase()}DEV` },
  });
  expect(login.status).toBe(200);
  return login.body;
}

async function joinRoomWith(owner: { access_token: string; user_id: string }, svc: TestAppservice, userId: string): Promise<string> {
  const roomId = await createRoom({ ...owner, device_id: "" }, { invite: [userId] });
  expect((await api("POST", `${r(roomId)}/join?user_id=${encodeURIComponent(userId)}`, { token: svc.asToken, body: {} })).status).toBe(200);
  return roomId;
}

async function uploadKeys(user: { user_id: string; device_id: string; access_token: string }, otks: number, fallback: boolean): Promise<void> {
  const key: SigningKey = await generateSigningKey(user.device_id);
  const deviceKeys = await signJson(
    {
      user_id: user.user_id,
      device_id: user.device_id,
      algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
      keys: { [`curve25519:${user.device_id}`]: `curve-${user.device_id}`, [`ed25519:${user.device_id}`]: key.publicKey },
    },
    user.user_id,
    key,
  );
  const oneTimeKeys: JsonObject = {};
  for (let i = 0; i < otks; i++) oneTimeKeys[`signed_curve25519:K${i}`] = await signJson({ key: `otk${i}` }, user.user_id, key);
  const body: JsonObject = { device_keys: deviceKeys, one_time_keys: oneTimeKeys };
  if (fallback) body.fallback_keys = { "signed_curve25519:F1": await signJson({ key: "fb", fallback: true }, user.user_id, key) };
  expect((await api("POST", `${V3}/keys/upload`, { token: user.access_token, body })).status).toBe(200);
}

describe("to-device messages (MSC4203, was MSC2409)", () => {
  it("a message to a service's user's device is queued for the service with to_user_id and to_device_id", async () => {
    const svc = await service({ receive_ephemeral: true });
    const plain = await service({});
    const bob = await puppet(svc, "bob");
    const alice = await newUser("tdalice");
    const outsider = await newUser("tdout");
    const content = { algorithm: "m.olm.v1.curve25519-aes-sha2", ciphertext: { x: { type: 0, body: "secret" } } };
    const sent = await api("PUT", `${V3}/sendToDevice/m.room.encrypted/td1`, {
      token: alice.access_token,
      body: { messages: { [bob.user_id]: { [bob.device_id]: content }, [outsider.user_id]: { "*": { other: true } } } },
    });
    expect(sent.status).toBe(200);
    const body = await preview(svc);
    expect(body!["de.sorunome.msc2409.to_device"]).toEqual([
      { to_user_id: bob.user_id, to_device_id: bob.device_id, type: "m.room.encrypted", sender: alice.user_id, content },
    ]);
    expect(body!.events).toEqual([]);
    expect(body!.ephemeral).toEqual([]);
    // A retried send (same txnId) queues nothing more; the device's inbox still has it for /sync.
    expect((await api("PUT", `${V3}/sendToDevice/m.room.encrypted/td1`, { token: alice.access_token, body: { messages: { [bob.user_id]: { [bob.device_id]: content } } } })).status).toBe(200);
    expect((await queue(svc).queueState()).edus.length).toBe(1);
    // Without receive_ephemeral: nothing, even for its own users.
    const carol = await puppet(plain, "carol");
    await api("PUT", `${V3}/sendToDevice/m.x/td2`, { token: alice.access_token, body: { messages: { [carol.user_id]: { "*": { hi: 1 } } } } });
    expect((await queue(plain).queueState()).edus).toEqual([]);
  });
});

describe("MSC3202: device lists and key counts", () => {
  it("a room-mate's device list change goes to the service with org.matrix.msc3202, not to one without", async () => {
    const svc = await service({ "org.matrix.msc3202": true });
    const without = await service({});
    const bob = await puppet(svc, "bob");
    const dave = await puppet(without, "dave");
    const alice = await newUser("dlalice");
    const roomId = await joinRoomWith(alice, svc, bob.user_id);
    expect((await api("POST", `${r(roomId)}/invite`, { token: alice.access_token, body: { user_id: dave.user_id } })).status).toBe(200);
    expect((await api("POST", `${r(roomId)}/join?user_id=${encodeURIComponent(dave.user_id)}`, { token: without.asToken, body: {} })).status).toBe(200);
    // A user who shares no room with the service's users.
    const stranger = await newUser("dlstranger");
    await uploadKeys({ ...stranger, device_id: stranger.device_id }, 0, false);
    await uploadKeys({ ...alice, device_id: alice.device_id }, 0, false);

    expect(await queued(svc, "device_list")).toBe(1);
    const body = await preview(svc);
    expect(body!["org.matrix.msc3202.device_lists"]).toEqual({ changed: [alice.user_id], left: [] });
    expect((await queue(without).queueState()).edus.filter((e) => e.eduType === "device_list")).toEqual([]);
  });

  it("one-time key counts and unused fallback key types of the service's users in the transaction's rooms", async () => {
    const svc = await service({ "org.matrix.msc3202": true });
    const without = await service({ namespaces: { users: [{ exclusive: false, regex: `@${svc.prefix}.*` }] } });
    const bob = await puppet(svc, "bob");
    const eve = await puppet(svc, "eve"); // a device, in no room of the transaction
    await uploadKeys(bob, 2, true);
    await uploadKeys(eve, 1, false);
    const alice = await newUser("otkalice");
    const roomId = await joinRoomWith(alice, svc, bob.user_id);
    expect((await api("PUT", `${r(roomId)}/send/m.room.message/otk1`, { token: alice.access_token, body: { msgtype: "m.text", body: "hi" } })).status).toBe(200);
    await env.ROOMS.get(env.ROOMS.idFromName(roomId)).deliveriesSettled();

    let body: Body | null = null;
    for (let i = 0; i < 100 && !(body = await preview(svc)); i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(body!.events.length).toBeGreaterThan(0);
    const counts = body!["org.matrix.msc3202.device_one_time_keys_count"];
    expect(body!["org.matrix.msc3202.device_one_time_key_counts"]).toEqual(counts);
    expect(counts[bob.user_id]).toEqual({ [bob.device_id]: { signed_curve25519: 2 } });
    expect(body!["org.matrix.msc3202.device_unused_fallback_key_types"][bob.user_id]).toEqual({ [bob.device_id]: ["signed_curve25519"] });
    // Eve is the service's but not in the room; alice is in the room but not the service's.
    expect(counts[eve.user_id]).toBeUndefined();
    expect(counts[alice.user_id]).toBeUndefined();

    // A claim uses one key: the next transaction reports the new count (read when it is sent).
    const claim = await api("POST", `${V3}/keys/claim`, { token: alice.access_token, body: { one_time_keys: { [bob.user_id]: { [bob.device_id]: "signed_curve25519" } } } });
    expect(Object.keys(claim.body.one_time_keys[bob.user_id][bob.device_id])).toEqual(["signed_curve25519:K0"]);
    expect((await preview(svc))!["org.matrix.msc3202.device_one_time_keys_count"][bob.user_id]).toEqual({ [bob.device_id]: { signed_curve25519: 1 } });

    // A service without the flag gets none of these fields.
    const plainBody = await preview(without);
    expect(plainBody).not.toBeNull();
    expect(Object.keys(plainBody!).filter((k) => k.startsWith("org.matrix.msc3202"))).toEqual([]);
  });
});

describe("presence (MSC2409 ephemeral)", () => {
  it("a room-mate's presence reaches a receive_ephemeral service as an m.presence event", async () => {
    const svc = await service({ receive_ephemeral: true });
    const bob = await puppet(svc, "bob");
    const alice = await newUser("pralice");
    await joinRoomWith(alice, svc, bob.user_id);
    const lonely = await newUser("prlonely");
    expect((await api("PUT", `${V3}/presence/${encodeURIComponent(lonely.user_id)}/status`, { token: lonely.access_token, body: { presence: "online" } })).status).toBe(200);
    expect((await api("PUT", `${V3}/presence/${encodeURIComponent(alice.user_id)}/status`, { token: alice.access_token, body: { presence: "unavailable", status_msg: "away" } })).status).toBe(200);
    expect(await queued(svc, "m.presence")).toBe(1);
    // Only alice's (the lonely user shares no room with the service's users).
    expect((await queue(svc).queueState()).edus.filter((e) => e.eduType === "m.presence").map((e) => e.dedupeKey)).toEqual([`presence:${alice.user_id}`]);
    const body = await preview(svc);
    const presence = (body!.ephemeral as Body[]).filter((e) => e.type === "m.presence");
    expect(presence).toEqual([{ type: "m.presence", sender: alice.user_id, content: { presence: "unavailable", status_msg: "away", last_active_ago: expect.any(Number) } }]);
  });
});
