// Pushers (spec: Client-Server API, "Push Notifications"): GET /pushers, POST /pushers/set, their removal
// with a device, and delivery to push gateways (Push Gateway API) from the User DO's queue
// (durable-objects/user/push-delivery.ts). The gateways are `*.push.test`, played by
// test/workers/remote-homeserver.mjs.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { PUSH_INITIAL_BACKOFF_MS } from "../../durable-objects/user/push-delivery.js";
import { remoteControl } from "./federation-helpers.js";
import { api, login, registerUser, uniqueLocalpart, type RegisteredUser } from "./helpers.js";
import { createRoom, join, send, V3 } from "./room-helpers.js";
import { sync } from "./sync-helpers.js";

const SET = `${V3}/pushers/set`;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Push = { notification: any };

function gateway(): string {
  return `gw-${crypto.randomUUID().slice(0, 8)}.push.test`;
}

function pusher(overrides: Record<string, unknown> = {}, host = gateway()): Record<string, unknown> {
  return {
    kind: "http",
    app_id: "com.example.app.ios",
    app_display_name: "Example",
    device_display_name: "Phone",
    pushkey: `key-${crypto.randomUUID().slice(0, 8)}`,
    lang: "en",
    data: { url: `https://${host}/_matrix/push/v1/notify` },
    ...overrides,
  };
}

const listPushers = async (user: RegisteredUser) => {
  const res = await api("GET", `${V3}/pushers`, { token: user.access_token });
  expect(res.status).toBe(200);
  return res.body.pushers as Record<string, unknown>[];
};

const setPusher = (user: RegisteredUser, body: unknown) => api("POST", SET, { token: user.access_token, body });

const received = (host: string) => remoteControl<Push[]>(`/_test/push/received?gateway=${encodeURIComponent(host)}`);

/** Waits (bounded) until the gateway has received `n` notifications. */
async function pushesAt(host: string, n: number): Promise<Push[]> {
  for (let i = 0; i < 400; i++) {
    const got = await received(host);
    if (got.length >= n) return got;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`gateway ${host} did not receive ${n} notifications`);
}

const userDO = (userId: string) => env.USERS.get(env.USERS.idFromName(userId));

async function deliveryState(userId: string) {
  return userDO(userId).pushDeliveryState();
}

/** Waits (bounded) until `check` holds for the user's delivery state. */
async function deliveryStateWhen(userId: string, check: (s: Awaited<ReturnType<typeof deliveryState>>) => boolean) {
  for (let i = 0; i < 400; i++) {
    const s = await deliveryState(userId);
    if (check(s)) return s;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("delivery state never reached");
}

/** Alice and Bob in a room (Bob joined); Bob's pusher points at `host`. */
async function roomWithPusher(host: string, pusherOverrides: Record<string, unknown> = {}, roomBody: Record<string, unknown> = {}) {
  const alice = await registerUser(uniqueLocalpart("alice"));
  const bob = await registerUser(uniqueLocalpart("bob"));
  const roomId = await createRoom(alice, { preset: "public_chat", ...roomBody });
  expect((await join(bob, roomId)).status).toBe(200);
  const body = pusher(pusherOverrides, host);
  expect((await setPusher(bob, body)).status).toBe(200);
  return { alice, bob, roomId, pushkey: body.pushkey as string };
}

describe("GET /pushers and POST /pushers/set", () => {
  it("records an http pusher and lists it as set", async () => {
    const user = await registerUser(uniqueLocalpart("p"));
    expect(await listPushers(user)).toEqual([]);
    const body = pusher({ profile_tag: "xyz", data: { url: "https://gw.push.test/_matrix/push/v1/notify", format: "event_id_only", custom: { a: 1 } } });
    const res = await setPusher(user, body);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
    expect(await listPushers(user)).toEqual([
      {
        app_display_name: "Example",
        app_id: "com.example.app.ios",
        data: { url: "https://gw.push.test/_matrix/push/v1/notify", format: "event_id_only", custom: { a: 1 } },
        device_display_name: "Phone",
        kind: "http",
        lang: "en",
        profile_tag: "xyz",
        pushkey: body.pushkey,
      },
    ]);
    // Setting it again updates it in place.
    expect((await setPusher(user, { ...body, app_display_name: "Renamed" })).status).toBe(200);
    const list = await listPushers(user);
    expect(list).toHaveLength(1);
    expect(list[0]!.app_display_name).toBe("Renamed");
    // r0 serves the same.
    expect((await api("GET", "/_matrix/client/r0/pushers", { token: user.access_token })).body.pushers).toEqual(list);
    expect((await api("GET", `${V3}/pushers`)).status).toBe(401);
  });

  it("records email pushers and deletes a pusher with kind null", async () => {
    const user = await registerUser(uniqueLocalpart("p"));
    const email = { kind: "email", app_id: "m.email", app_display_name: "Email", device_display_name: "a@example.org", pushkey: "a@example.org", lang: "en", data: {} };
    expect((await setPusher(user, email)).status).toBe(200);
    const http = pusher();
    expect((await setPusher(user, http)).status).toBe(200);
    expect((await listPushers(user)).map((p) => p.kind).sort()).toEqual(["email", "http"]);
    expect((await setPusher(user, { kind: null, app_id: "m.email", pushkey: "a@example.org" })).status).toBe(200);
    expect((await listPushers(user)).map((p) => p.pushkey)).toEqual([http.pushkey]);
    // Deleting one that does not exist is fine.
    expect((await setPusher(user, { kind: null, app_id: "m.email", pushkey: "a@example.org" })).status).toBe(200);
  });

  it("answers bad input as Synapse does and stores nothing", async () => {
    const user = await registerUser(uniqueLocalpart("p"));
    const bad = async (body: unknown, status: number, errcode: string, error?: string) => {
      const res = await setPusher(user, body);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.body.errcode).toBe(errcode);
      if (error !== undefined) expect(res.body.error).toBe(error);
    };
    const { lang: _lang, data: _data, ...withoutLangAndData } = pusher();
    await bad(withoutLangAndData, 400, "M_MISSING_PARAM", "Missing params: ['lang', 'data']");
    await bad({}, 400, "M_MISSING_PARAM", "Missing params: ['kind', 'app_id', 'app_display_name', 'device_display_name', 'pushkey', 'lang', 'data']");
    await bad(pusher({ data: {} }), 400, "M_MISSING_PARAM", "Config Error: 'url' required in data for HTTP pusher");
    await bad(pusher({ data: { url: 5 } }), 400, "M_MISSING_PARAM", "Config Error: 'url' must be a string");
    await bad(pusher({ data: { url: "https://gw.push.test/notify" } }), 400, "M_MISSING_PARAM", "Config Error: 'url' must have a path of '/_matrix/push/v1/notify'");
    await bad(pusher({ data: { url: "https://gw.push.test/_matrix/push/v1/notify/" } }), 400, "M_MISSING_PARAM");
    await bad(pusher({ data: { url: "ftp://gw.push.test/_matrix/push/v1/notify" } }), 400, "M_MISSING_PARAM", "Config Error: 'url' must be an http or https URL");
    await bad(pusher({ data: { url: "not a url" } }), 400, "M_MISSING_PARAM", "Config Error: 'url' must be an http or https URL");
    await bad(pusher({ data: null }), 400, "M_MISSING_PARAM", "Config Error: 'data' key can not be null for HTTP pusher");
    await bad(pusher({ data: "x" }), 400, "M_BAD_JSON");
    await bad(pusher({ app_id: 5 }), 400, "M_BAD_JSON");
    await bad(pusher({ kind: 5 }), 400, "M_BAD_JSON");
    await bad(pusher({ append: "yes" }), 400, "M_BAD_JSON");
    await bad(pusher({ lang: 5 }), 400, "M_BAD_JSON");
    await bad(pusher({ app_id: "a".repeat(65) }), 400, "M_INVALID_PARAM");
    await bad(pusher({ pushkey: "é".repeat(256) + "x" }), 400, "M_INVALID_PARAM"); // 513 bytes
    await bad({ kind: null, app_id: 5, pushkey: "k" }, 400, "M_BAD_JSON");
    await bad("not json", 400, "M_NOT_JSON");
    await bad([], 400, "M_BAD_JSON");
    expect(await listPushers(user)).toEqual([]);
    // The limits themselves are fine; http URLs too (the spec says https, Synapse does not check).
    expect((await setPusher(user, pusher({ app_id: "a".repeat(64) }))).status).toBe(200);
    expect((await setPusher(user, pusher({ pushkey: "é".repeat(256) }))).status).toBe(200);
    expect((await setPusher(user, pusher({ data: { url: "http://gw.push.test/_matrix/push/v1/notify?x=1" } }))).status).toBe(200);
    expect((await setPusher(user, pusher({ lang: null }))).status).toBe(200);
    expect(await listPushers(user)).toHaveLength(4);
  });

  it("removes the same app_id and pushkey of other users unless append is true", async () => {
    const a = await registerUser(uniqueLocalpart("p"));
    const b = await registerUser(uniqueLocalpart("p"));
    const c = await registerUser(uniqueLocalpart("p"));
    const body = pusher();
    expect((await setPusher(a, body)).status).toBe(200);
    expect((await setPusher(b, { ...body, append: true })).status).toBe(200);
    expect(await listPushers(a)).toHaveLength(1);
    expect(await listPushers(b)).toHaveLength(1);
    expect((await setPusher(c, body)).status).toBe(200);
    expect(await listPushers(a)).toEqual([]);
    expect(await listPushers(b)).toEqual([]);
    expect(await listPushers(c)).toHaveLength(1);
  });

  it("removes a device's pushers when it logs out or is deleted, and others' on a password change", async () => {
    const localpart = uniqueLocalpart("p");
    const user = await registerUser(localpart, "pw-one");
    const second = (await login(localpart, "pw-one")).body as RegisteredUser;
    const third = (await login(localpart, "pw-one")).body as RegisteredUser;
    const keyOf = new Map<string, string>();
    for (const u of [user, second, third]) {
      const body = pusher();
      keyOf.set(u.device_id, body.pushkey as string);
      expect((await setPusher(u, body)).status).toBe(200);
    }
    expect(await listPushers(user)).toHaveLength(3);
    expect((await api("POST", `${V3}/logout`, { token: third.access_token })).status).toBe(200);
    expect((await listPushers(user)).map((p) => p.pushkey).sort()).toEqual([keyOf.get(user.device_id), keyOf.get(second.device_id)].sort());
    expect((await deliveryState(user.user_id)).pushers.map((p) => p.pushkey).sort()).toEqual([keyOf.get(user.device_id), keyOf.get(second.device_id)].sort());

    // A password change (logout_devices defaults to true) keeps only the requester's device's pusher.
    const first = await api("POST", `${V3}/account/password`, { token: user.access_token, body: { new_password: "pw-two" } });
    const ok = await api("POST", `${V3}/account/password`, {
      token: user.access_token,
      body: { new_password: "pw-two", auth: { type: "m.login.password", identifier: { type: "m.id.user", user: localpart }, password: "pw-one", session: first.body.session } },
    });
    expect(ok.status).toBe(200);
    expect((await listPushers(user)).map((p) => p.pushkey)).toEqual([keyOf.get(user.device_id)]);
    expect((await deliveryState(user.user_id)).pushers.map((p) => p.pushkey)).toEqual([keyOf.get(user.device_id)]);
  });
});

describe("push delivery", () => {
  it("sends an event that notifies to the gateway with the unread count, and not the user's own events", async () => {
    const host = gateway();
    const { alice, bob, roomId, pushkey } = await roomWithPusher(host, {}, { name: "Pushed room" });
    expect((await api("PUT", `${V3}/profile/${encodeURIComponent(alice.user_id)}/displayname`, { token: alice.access_token, body: { displayname: "Alice A" } })).status).toBe(200);
    // Bob's own message pushes nothing to him.
    expect((await send(bob, roomId, { msgtype: "m.text", body: "from bob" })).status).toBe(200);
    const sent = await send(alice, roomId, { msgtype: "m.text", body: "hello bob" });
    expect(sent.status).toBe(200);
    const [push] = await pushesAt(host, 1);
    const n = push!.notification;
    expect(n).toMatchObject({
      event_id: sent.body.event_id,
      room_id: roomId,
      type: "m.room.message",
      sender: alice.user_id,
      sender_display_name: "Alice A",
      room_name: "Pushed room",
      content: { msgtype: "m.text", body: "hello bob" },
      // Two members: .m.rule.room_one_to_one makes a sound, so the priority is high.
      prio: "high",
      counts: { unread: 1 },
    });
    expect(n.devices).toHaveLength(1);
    const device = n.devices[0];
    expect(device).toMatchObject({ app_id: "com.example.app.ios", pushkey, data: {}, tweaks: { sound: "default" } });
    expect(device.data.url).toBeUndefined();
    expect(Math.abs(device.pushkey_ts - Date.now() / 1000)).toBeLessThan(600);

    // A second message in the same room: still one room with unread notifications (Synapse's default).
    const second = await send(alice, roomId, { msgtype: "m.text", body: "again" });
    const pushes = await pushesAt(host, 2);
    expect(pushes[1]!.notification).toMatchObject({ event_id: second.body.event_id, counts: { unread: 1 } });
    // Delivered everywhere: the queue is empty.
    await deliveryStateWhen(bob.user_id, (s) => s.queued === 0);
    expect(await received(host)).toHaveLength(2);

    // Bob reads the room: the gateway gets a badge update (Synapse's form), once per change of the count.
    const receipt = (eventId: string) => api("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/receipt/m.read/${encodeURIComponent(eventId)}`, { token: bob.access_token, body: {} });
    expect((await receipt(second.body.event_id)).status).toBe(200);
    const withBadge = await pushesAt(host, 3);
    expect(withBadge[2]!.notification).toEqual({
      id: "",
      type: null,
      sender: "",
      counts: { unread: 0 },
      devices: [{ app_id: "com.example.app.ios", pushkey, pushkey_ts: device.pushkey_ts, data: {} }],
    });
    expect((await receipt(second.body.event_id)).status).toBe(200);
    const third = await send(alice, roomId, { msgtype: "m.text", body: "third" });
    const all = await pushesAt(host, 4);
    expect(all[3]!.notification).toMatchObject({ event_id: third.body.event_id, counts: { unread: 1 } });
    await deliveryStateWhen(bob.user_id, (s) => s.queued === 0);
    expect(await received(host)).toHaveLength(4);
  });

  it("sends low priority without tweaks in a group room, high with the highlight of a mention", async () => {
    const host = gateway();
    const { alice, bob, roomId } = await roomWithPusher(host);
    const carol = await registerUser(uniqueLocalpart("carol"));
    expect((await join(carol, roomId)).status).toBe(200);
    // Three members: .m.rule.message notifies without a sound.
    const plain = await send(alice, roomId, { msgtype: "m.text", body: "hello all" });
    const [first] = await pushesAt(host, 1);
    expect(first!.notification).toMatchObject({ event_id: plain.body.event_id, prio: "low" });
    expect(first!.notification.devices[0].tweaks).toBeUndefined();
    // A mention (.m.rule.is_user_mention): sound and highlight, high priority.
    const mention = await send(alice, roomId, { msgtype: "m.text", body: "hey", "m.mentions": { user_ids: [bob.user_id] } });
    const pushes = await pushesAt(host, 2);
    expect(pushes[1]!.notification).toMatchObject({ event_id: mention.body.event_id, prio: "high", counts: { unread: 1 } });
    expect(pushes[1]!.notification.devices[0].tweaks).toEqual({ sound: "default", highlight: true });
  });

  it("sends only the IDs, the priority and the counts with format event_id_only", async () => {
    const host = gateway();
    const { alice, roomId, pushkey } = await roomWithPusher(host, { data: { url: `https://${host}/_matrix/push/v1/notify`, format: "event_id_only", extra: "kept" } });
    const sent = await send(alice, roomId, { msgtype: "m.text", body: "secret" });
    const [push] = await pushesAt(host, 1);
    expect(push!.notification).toEqual({
      event_id: sent.body.event_id,
      room_id: roomId,
      prio: "high",
      counts: { unread: 1 },
      devices: [{ app_id: "com.example.app.ios", pushkey, pushkey_ts: expect.any(Number), data: { format: "event_id_only", extra: "kept" } }],
    });
  });

  it("retries after a gateway failure with back-off, on the alarm", async () => {
    const host = gateway();
    const { alice, bob, roomId } = await roomWithPusher(host);
    await remoteControl("/_test/push/fail", { gateway: host, times: 2, status: 502 });
    const sent = await send(alice, roomId, { msgtype: "m.text", body: "will fail first" });
    let state = await deliveryStateWhen(bob.user_id, (s) => s.pushers[0]!.failingSince !== null);
    expect(state.queued).toBe(1);
    const firstFailure = state.pushers[0]!;
    expect(firstFailure.nextAttemptTs).toBeGreaterThanOrEqual(firstFailure.failingSince! + PUSH_INITIAL_BACKOFF_MS);
    expect(firstFailure.backoffMs).toBe(2 * PUSH_INITIAL_BACKOFF_MS);
    expect(await received(host)).toEqual([]);

    // The retry is due: the alarm sends again, fails again, and backs off further.
    const stub = userDO(bob.user_id);
    const makeDue = () => runInDurableObject(stub, (_i, s) => void s.storage.sql.exec("UPDATE push_pushers SET next_attempt_ts = 1"));
    await makeDue();
    await runDurableObjectAlarm(stub);
    state = await deliveryState(bob.user_id);
    expect(state.pushers[0]!.backoffMs).toBe(4 * PUSH_INITIAL_BACKOFF_MS);
    expect(state.pushers[0]!.failingSince).toBe(firstFailure.failingSince);
    expect(await received(`${host}:failed`)).toHaveLength(2);

    await makeDue();
    await runDurableObjectAlarm(stub);
    const pushes = await pushesAt(host, 1);
    expect(pushes[0]!.notification.event_id).toBe(sent.body.event_id);
    state = await deliveryState(bob.user_id);
    expect(state.pushers[0]).toMatchObject({ failingSince: null, backoffMs: PUSH_INITIAL_BACKOFF_MS });
    expect(state.queued).toBe(0);
  });

  it("removes the pusher when the gateway rejects its pushkey", async () => {
    const host = gateway();
    const { alice, bob, roomId, pushkey } = await roomWithPusher(host);
    // Another pushkey in `rejected` is ignored; ours removes the pusher.
    await remoteControl("/_test/push/reject", { gateway: host, pushkeys: ["someone-else"] });
    await send(alice, roomId, { msgtype: "m.text", body: "one" });
    await pushesAt(host, 1);
    await deliveryStateWhen(bob.user_id, (s) => s.queued === 0);
    expect(await listPushers(bob)).toHaveLength(1);
    await remoteControl("/_test/push/reject", { gateway: host, pushkeys: [pushkey] });
    await send(alice, roomId, { msgtype: "m.text", body: "two" });
    await pushesAt(host, 2);
    await deliveryStateWhen(bob.user_id, (s) => s.pushers.length === 0);
    expect(await listPushers(bob)).toEqual([]);
    await send(alice, roomId, { msgtype: "m.text", body: "three" });
    // Once Bob's DO has the event (a sync makes sure), nothing is queued for it.
    await sync(bob);
    expect(await deliveryState(bob.user_id)).toEqual({ pushers: [], queued: 0 });
    expect(await received(host)).toHaveLength(2);
  });

  it("pushes an invite, and events of a room joined after the pusher was set", async () => {
    const host = gateway();
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const pushkey = pusher({}, host);
    expect((await setPusher(bob, pushkey)).status).toBe(200);
    const roomId = await createRoom(alice, { preset: "private_chat" });
    const invite = await api("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/invite`, { token: alice.access_token, body: { user_id: bob.user_id } });
    expect(invite.status).toBe(200);
    const [invitePush] = await pushesAt(host, 1);
    expect(invitePush!.notification).toMatchObject({ type: "m.room.member", membership: "invite", user_is_target: true, room_id: roomId, counts: { unread: 1 } });
    expect((await join(bob, roomId)).status).toBe(200);
    // Bob never syncs: his User DO listens to the joined room because he has a pusher.
    const sent = await send(alice, roomId, { msgtype: "m.text", body: "welcome" });
    const pushes = await pushesAt(host, 2);
    expect(pushes[1]!.notification).toMatchObject({ event_id: sent.body.event_id, counts: { unread: 1 } });
  });
});
