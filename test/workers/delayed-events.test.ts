// Delayed events (MSC4140): scheduling through PUT /send and PUT /state with `org.matrix.msc4140.delay`,
// the management endpoints, the limits, and the Delayed Events DO's alarm sending each event exactly once,
// authorised when it is sent. "Not yet due" is a delay of a minute; "due" is a delay of a minute made due
// inside the DO and run with the test's own alarm run (runDueNow, delayed-helpers.ts says why not a delay
// of 0); the tests look at the outcome, never at the time.
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DELAYED_TXN_DEVICE } from "../../durable-objects/delayed-events.js";
import { buildApp } from "../../worker/index.js";
import { delayedStub, runDueNow } from "./delayed-helpers.js";
import { api, type RegisteredUser } from "./helpers.js";
import { V3, createRoom, join, membership, newUser, r, roomStub } from "./room-helpers.js";

const UNSTABLE = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events";

let txn = 0;
function sendDelayed(user: RegisteredUser, roomId: string, delay: number | string, content: Record<string, unknown>, txnId = `d${++txn}`) {
  return api("PUT", `${r(roomId)}/send/m.room.message/${txnId}?org.matrix.msc4140.delay=${delay}`, { token: user.access_token, body: content });
}

function stateDelayed(user: RegisteredUser, roomId: string, type: string, stateKey: string, delay: number, content: Record<string, unknown>) {
  return api("PUT", `${r(roomId)}/state/${encodeURIComponent(type)}/${encodeURIComponent(stateKey)}?org.matrix.msc4140.delay=${delay}`, {
    token: user.access_token,
    body: content,
  });
}

const list = (user: RegisteredUser, query = "") => api("GET", `${UNSTABLE}${query}`, { token: user.access_token });
const action = (delayId: string, what: string) => api("POST", `${UNSTABLE}/${encodeURIComponent(delayId)}/${what}`, { body: {} });

/** Bodies of the room's m.room.message events, newest first. */
async function messageBodies(user: RegisteredUser, roomId: string): Promise<string[]> {
  const res = await api("GET", `${r(roomId)}/messages?dir=b&limit=100`, { token: user.access_token });
  expect(res.status).toBe(200);
  return (res.body.chunk as { type: string; content: { body?: string } }[]).filter((e) => e.type === "m.room.message").map((e) => e.content.body ?? "");
}

describe("delayed events", () => {
  it("are advertised in /versions", async () => {
    const res = await api("GET", "/_matrix/client/versions");
    expect(res.body.unstable_features["org.matrix.msc4140"]).toBe(true);
  });

  it("are scheduled, listed, and sent once by the alarm when due", async () => {
    const alice = await newUser("delay");
    const roomId = await createRoom(alice);
    const later = await sendDelayed(alice, roomId, 60_000, { msgtype: "m.text", body: "later" });
    expect(later.status).toBe(200);
    expect(typeof later.body.delay_id).toBe("string");

    const listed = await list(alice);
    expect(listed.status).toBe(200);
    expect(listed.body.scheduled).toHaveLength(1);
    const entry = listed.body.scheduled[0];
    expect(entry).toMatchObject({ delay_id: later.body.delay_id, room_id: roomId, type: "m.room.message", delay: 60_000, content: { msgtype: "m.text", body: "later" } });
    expect(entry.state_key).toBeUndefined();
    expect(listed.body.delayed_events).toEqual(listed.body.scheduled);
    expect(listed.body.finalised).toEqual([]);
    expect(await messageBodies(alice, roomId)).toEqual([]);

    // The alarm sends what is due and not the event due in a minute.
    const now = await sendDelayed(alice, roomId, 30_000, { msgtype: "m.text", body: "now" });
    expect(now.status).toBe(200);
    expect(now.body.delay_id).not.toBe(later.body.delay_id);
    await runDueNow(alice.user_id, now.body.delay_id);
    expect(await messageBodies(alice, roomId)).toEqual(["now"]);
    const after = await list(alice, "?status=finalised");
    expect(after.body.scheduled).toBeUndefined();
    expect(after.body.finalised).toHaveLength(1);
    expect(after.body.finalised[0]).toMatchObject({ outcome: "send", reason: "delay", delayed_event: { delay_id: now.body.delay_id } });
    const eventId = after.body.finalised[0].event_id as string;
    const event = await api("GET", `${r(roomId)}/event/${encodeURIComponent(eventId)}`, { token: alice.access_token });
    expect(event.body).toMatchObject({ sender: alice.user_id, content: { body: "now" } });
    // The client did not choose the transaction ID, so it is not shown one.
    expect(event.body.unsigned?.transaction_id).toBeUndefined();

    // The alarm is now set for the remaining event; running it early sends nothing twice.
    expect(await delayedStub(alice.user_id).alarmTime()).toBe(entry.running_since + 60_000);
    await runDurableObjectAlarm(delayedStub(alice.user_id));
    expect(await messageBodies(alice, roomId)).toEqual(["now"]);
  });

  it("a delay of 0 is sent by the platform's own alarm", async () => {
    const alice = await newUser("delay");
    const roomId = await createRoom(alice);
    const { status, body } = await sendDelayed(alice, roomId, 0, { msgtype: "m.text", body: "at once" });
    expect(status).toBe(200);
    // Nobody runs the alarm here: workerd does, at once. A bounded wait on the outcome, not on the time.
    type Finalised = { delayed_event: { delay_id: string }; outcome: string; reason: string };
    let finalised: Finalised | undefined;
    for (let i = 0; i < 400 && !finalised; i++) {
      finalised = ((await list(alice, "?status=finalised")).body.finalised as Finalised[]).find((f) => f.delayed_event.delay_id === body.delay_id);
      if (!finalised) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(finalised).toMatchObject({ outcome: "send", reason: "delay" });
    expect(await messageBodies(alice, roomId)).toEqual(["at once"]);
  });

  it("sends a delayed state event, and a retried PUT /send gives back the same delay ID", async () => {
    const alice = await newUser("delay");
    const roomId = await createRoom(alice);
    const first = await sendDelayed(alice, roomId, 60_000, { body: "x" }, "same-txn");
    const again = await sendDelayed(alice, roomId, 60_000, { body: "x" }, "same-txn");
    expect(again.body.delay_id).toBe(first.body.delay_id);
    expect((await list(alice, "?status=scheduled")).body.scheduled).toHaveLength(1);

    const scheduled = await stateDelayed(alice, roomId, "org.matrix.msc3401.call.member", `_${alice.user_id}_DEV`, 60_000, {});
    expect(scheduled.status).toBe(200);

    await runDueNow(alice.user_id, scheduled.body.delay_id);
    const state = await api("GET", `${r(roomId)}/state/org.matrix.msc3401.call.member/${encodeURIComponent(`_${alice.user_id}_DEV`)}?format=event`, { token: alice.access_token });
    expect(state.status).toBe(200);
    expect(state.body).toMatchObject({ sender: alice.user_id, content: {} });
  });

  it("is authorised when it is sent, not when it was scheduled", async () => {
    const alice = await newUser("delay");
    const bob = await newUser("delay");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    // Bob is not in the room yet: scheduling is allowed (as Synapse), sending decides. (Sent with the
    // `send` action rather than the alarm, so that the order of join and send is certain.)
    const early = await sendDelayed(bob, roomId, 60_000, { body: "bob after joining" });
    expect(early.status).toBe(200);
    expect((await join(bob, roomId)).status).toBe(200);
    expect((await action(early.body.delay_id, "send")).status).toBe(200);
    expect(await messageBodies(alice, roomId)).toEqual(["bob after joining"]);

    // Scheduled while a member, sent after leaving: refused, and recorded as the delayed event's error.
    const late = await sendDelayed(bob, roomId, 60_000, { body: "bob after leaving" });
    expect((await membership(bob, roomId, "leave")).status).toBe(200);
    const refused = await action(late.body.delay_id, "send");
    expect(refused.status).toBe(403);
    expect(refused.body.errcode).toBe("M_FORBIDDEN");
    expect(await messageBodies(alice, roomId)).toEqual(["bob after joining"]);
    const finalised = (await list(bob, "?status=finalised")).body.finalised.find((f: { delayed_event: { delay_id: string } }) => f.delayed_event.delay_id === late.body.delay_id);
    expect(finalised).toMatchObject({ outcome: "send", reason: "error", error: { errcode: "M_FORBIDDEN" } });
    expect(finalised.event_id).toBeUndefined();
  });

  it("is sent once when a send was cut off after the room committed it", async () => {
    const alice = await newUser("delay");
    const roomId = await createRoom(alice);
    const { body } = await sendDelayed(alice, roomId, 60_000, { msgtype: "m.text", body: "once" });
    const delayId = body.delay_id as string;
    // What the DO's send does, as if the process died before it could record the result.
    const committed = await roomStub(roomId).sendEvent({
      sender: alice.user_id,
      type: "m.room.message",
      content: { msgtype: "m.text", body: "once" },
      txn: { deviceId: DELAYED_TXN_DEVICE, txnId: delayId },
    });
    expect("ok" in committed).toBe(true);
    // ... holding its claim on the row, which a fresh instance releases.
    await runInDurableObject(delayedStub(alice.user_id), (_instance, state) => {
      state.storage.sql.exec("UPDATE delayed_events SET sending = 1");
    });
    expect((await action(delayId, "send")).status).toBe(404); // claimed: being sent
    await evictDurableObject(delayedStub(alice.user_id));
    expect((await action(delayId, "send")).status).toBe(200);
    expect(await messageBodies(alice, roomId)).toEqual(["once"]);
    const finalised = (await list(alice, "?status=finalised")).body.finalised[0];
    expect(finalised.event_id).toBe((committed as { ok: { eventId: string } }).ok.eventId);
  });

  it("restart, cancel and send by delay ID without an access token; unknown IDs are 404", async () => {
    const alice = await newUser("delay");
    const roomId = await createRoom(alice);
    const a = (await sendDelayed(alice, roomId, 60_000, { body: "a" })).body.delay_id as string;
    const b = (await sendDelayed(alice, roomId, 60_000, { body: "b" })).body.delay_id as string;
    const c = (await sendDelayed(alice, roomId, 60_000, { body: "c" })).body.delay_id as string;
    const sinceBefore = (await list(alice)).body.scheduled.find((e: { delay_id: string }) => e.delay_id === a).running_since as number;

    const restarted = await action(a, "restart");
    expect(restarted).toMatchObject({ status: 200, body: {} });
    const sinceAfter = (await list(alice)).body.scheduled.find((e: { delay_id: string }) => e.delay_id === a).running_since as number;
    expect(sinceAfter).toBeGreaterThanOrEqual(sinceBefore);

    expect((await action(b, "cancel")).status).toBe(200);
    const again = await action(b, "cancel");
    expect(again.status).toBe(404);
    expect(again.body.errcode).toBe("M_NOT_FOUND");
    expect((await action(b, "restart")).status).toBe(404);

    expect((await action(c, "send")).status).toBe(200);
    expect(await messageBodies(alice, roomId)).toEqual(["c"]);
    expect((await action(c, "send")).status).toBe(404);

    const finalised = (await list(alice, "?status=finalised")).body.finalised as { delayed_event: { delay_id: string }; outcome: string; reason: string }[];
    expect(finalised.map((f) => [f.delayed_event.delay_id, f.outcome, f.reason])).toEqual([
      [b, "cancel", "action"],
      [c, "send", "action"],
    ]);
    expect((await list(alice, "?status=scheduled")).body.scheduled.map((e: { delay_id: string }) => e.delay_id)).toEqual([a]);
    expect((await list(alice, `?delay_id=${encodeURIComponent(b)}`)).body.finalised).toHaveLength(1);

    for (const unknown of ["nope", "AAAAAAAAAAAAAAAAAAAAAAAA.QGJvYjp0ZXN0LmxvY2Fs", `${a}x`]) {
      const res = await action(unknown, "cancel");
      expect(res.status).toBe(404);
      expect(res.body.errcode).toBe("M_NOT_FOUND");
    }
    // An action that does not exist is an unknown endpoint (matrix-js-sdk then tries the older one).
    expect((await action(a, "explode")).body.errcode).toBe("M_UNRECOGNIZED");
  });

  it("accepts the older endpoint with the action in the body", async () => {
    const alice = await newUser("delay");
    const roomId = await createRoom(alice);
    const id = (await sendDelayed(alice, roomId, 60_000, { body: "old" })).body.delay_id as string;
    const missing = await api("POST", `${UNSTABLE}/${encodeURIComponent(id)}`, { body: {} });
    expect(missing.status).toBe(400);
    expect(missing.body.errcode).toBe("M_MISSING_PARAM");
    const bad = await api("POST", `${UNSTABLE}/${encodeURIComponent(id)}`, { body: { action: "explode" } });
    expect(bad.status).toBe(400);
    expect(bad.body.errcode).toBe("M_INVALID_PARAM");
    expect((await api("POST", `${UNSTABLE}/${encodeURIComponent(id)}`, { body: { action: "restart" } })).status).toBe(200);
    expect((await api("POST", `${UNSTABLE}/${encodeURIComponent(id)}`, { token: alice.access_token, body: { action: "cancel" } })).status).toBe(200);
    expect((await list(alice, "?status=scheduled")).body.scheduled).toEqual([]);
  });

  it("refuses bad delays, unknown rooms and unauthenticated listing; nothing is scheduled", async () => {
    const alice = await newUser("delay");
    const roomId = await createRoom(alice);
    // 24 h is the default maximum: equal is allowed, one millisecond more is not.
    expect((await sendDelayed(alice, roomId, 86_400_000, { body: "max" })).status).toBe(200);
    const over = await sendDelayed(alice, roomId, 86_400_001, { body: "over" });
    expect(over.status).toBe(400);
    expect(over.body).toMatchObject({ errcode: "M_UNKNOWN", "org.matrix.msc4140.errcode": "M_MAX_DELAY_EXCEEDED", "org.matrix.msc4140.max_delay": 86_400_000 });
    for (const bad of ["-1", "1.5", "soon", ""]) {
      const res = await sendDelayed(alice, roomId, bad, { body: "bad" });
      expect(res.status, bad).toBe(400);
      expect(res.body.errcode).toBe("M_INVALID_PARAM");
    }
    const unknownRoom = await sendDelayed(alice, "!nowhere:test.local", 1000, { body: "x" });
    expect(unknownRoom.status).toBe(404);
    expect(unknownRoom.body.errcode).toBe("M_NOT_FOUND");
    const float = await api("PUT", `${r(roomId)}/send/m.room.message/f1?org.matrix.msc4140.delay=10`, { token: alice.access_token, body: '{"n": 1.5}' });
    expect(float.status).toBe(400);
    expect((await list(alice)).body.scheduled.map((e: { content: { body: string } }) => e.content.body)).toEqual(["max"]);
    expect((await api("GET", UNSTABLE)).status).toBe(401);
    expect((await list(alice, "?status=pending")).body.errcode).toBe("M_INVALID_PARAM");
  });

  it("limits how many a user may have scheduled (MAX_DELAYED_EVENTS_PER_USER) and MAX_EVENT_DELAY", async () => {
    const alice = await newUser("delay");
    const roomId = await createRoom(alice);
    const app = buildApp();
    const vars = { ...env, MAX_DELAYED_EVENTS_PER_USER: "2", MAX_EVENT_DELAY: "90s" };
    const put = (n: number, delay = 60_000) =>
      app.request(`${V3}/rooms/${encodeURIComponent(roomId)}/send/m.room.message/lim${n}?org.matrix.msc4140.delay=${delay}`, {
        method: "PUT",
        headers: { Authorization: `Bearer ${alice.access_token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ body: `n${n}` }),
      }, vars);
    const tooLong = await put(0, 90_001);
    expect(tooLong.status).toBe(400);
    expect(((await tooLong.json()) as Record<string, unknown>)["org.matrix.msc4140.max_delay"]).toBe(90_000);
    const first = (await (await put(1, 90_000)).json()) as { delay_id: string };
    expect((await put(2)).status).toBe(200);
    const third = await put(3);
    expect(third.status).toBe(400);
    expect(await third.json()).toMatchObject({ errcode: "M_UNKNOWN", "org.matrix.msc4140.errcode": "M_MAX_DELAY_UNSUPPORTED" });
    // A cancelled one no longer counts.
    expect((await action(first.delay_id, "cancel")).status).toBe(200);
    expect((await put(4)).status).toBe(200);
  });
});

describe("delayed state events cancelled by a state update (M_CANCELLED_BY_STATE_UPDATE)", () => {
  /** The finalised entry of a delay ID once the room's background cancellation reached it (bounded wait). */
  async function finalisedEntry(user: RegisteredUser, delayId: string) {
    for (let i = 0; i < 100; i++) {
      const found = ((await list(user, "?status=finalised")).body.finalised as { delayed_event: { delay_id: string } }[]).find((f) => f.delayed_event.delay_id === delayId);
      if (found) return found as unknown as { outcome: string; reason: string; error?: Record<string, string> };
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return undefined;
  }

  it("another user's change of the same state cancels it; the owner's own change, other keys and messages do not", async () => {
    const alice = await newUser("delay");
    const bob = await newUser("delay");
    const roomId = await createRoom(alice, { preset: "public_chat", power_level_content_override: { events_default: 0, state_default: 0 } });
    expect((await join(bob, roomId)).status).toBe(200);
    const TYPE = "org.matrix.msc3401.call.member";
    const mine = (await stateDelayed(alice, roomId, TYPE, "shared", 60_000, { left: true })).body.delay_id as string;
    const otherKey = (await stateDelayed(alice, roomId, TYPE, "other", 60_000, { left: true })).body.delay_id as string;

    // alice's own change of the key and a message leave it scheduled.
    expect((await api("PUT", `${r(roomId)}/state/${TYPE}/shared`, { token: alice.access_token, body: { by: "alice" } })).status).toBe(200);
    const noise = await sendDelayed(bob, roomId, 60_000, { body: "noise" });
    expect(noise.status).toBe(200);
    await runDueNow(bob.user_id, noise.body.delay_id);
    expect((await list(alice)).body.scheduled.map((e: { delay_id: string }) => e.delay_id).sort()).toEqual([mine, otherKey].sort());

    // bob changes the same state: alice's delayed event for that key is cancelled, the other key's is not.
    expect((await api("PUT", `${r(roomId)}/state/${TYPE}/shared`, { token: bob.access_token, body: { by: "bob" } })).status).toBe(200);
    const entry = await finalisedEntry(alice, mine);
    expect(entry).toMatchObject({ outcome: "cancel", reason: "error" });
    expect(entry!.error).toMatchObject({ errcode: "M_UNKNOWN", "org.matrix.msc4140.errcode": "M_CANCELLED_BY_STATE_UPDATE" });
    expect((await list(alice)).body.scheduled.map((e: { delay_id: string }) => e.delay_id)).toEqual([otherKey]);

    // The management endpoints answer as for any event no longer scheduled: 404 M_NOT_FOUND (Synapse 1.163.2;
    // matrix-js-sdk's MatrixRTC takes a 404 on restart as "gone" and schedules a new one).
    for (const what of ["restart", "send", "cancel"]) {
      const res = await action(mine, what);
      expect(res.status, what).toBe(404);
      expect(res.body.errcode).toBe("M_NOT_FOUND");
    }
    // Never sent: the state is bob's.
    expect((await api("GET", `${r(roomId)}/state/${TYPE}/shared`, { token: alice.access_token })).body).toEqual({ by: "bob" });

    // A new delayed state event for the key after the change is scheduled and is cancelled by the next change.
    const again = (await stateDelayed(alice, roomId, TYPE, "shared", 60_000, { left: true })).body.delay_id as string;
    expect((await api("PUT", `${r(roomId)}/state/${TYPE}/shared`, { token: bob.access_token, body: { by: "bob", n: 2 } })).status).toBe(200);
    expect(await finalisedEntry(alice, again)).toMatchObject({ outcome: "cancel", reason: "error" });
  });

  it("a delayed state event that is sent cancels other users' delayed events for the same state", async () => {
    const alice = await newUser("delay");
    const bob = await newUser("delay");
    const roomId = await createRoom(alice, { preset: "public_chat", power_level_content_override: { state_default: 0 } });
    expect((await join(bob, roomId)).status).toBe(200);
    const bobs = (await stateDelayed(bob, roomId, "m.example", "k", 60_000, { by: "bob" })).body.delay_id as string;
    const alices = (await stateDelayed(alice, roomId, "m.example", "k", 60_000, { by: "alice" })).body.delay_id as string;
    expect((await action(alices, "send")).status).toBe(200);
    expect(await finalisedEntry(bob, bobs)).toMatchObject({ outcome: "cancel", reason: "error" });
    expect((await api("GET", `${r(roomId)}/state/m.example/k`, { token: bob.access_token })).body).toEqual({ by: "alice" });
  });
});
