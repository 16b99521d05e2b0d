// `state_after` (MSC4222, `use_state_after`) while the call features land state and sticky events between
// two syncs: a delayed state event (MSC4140) that the server sends on its own, one cancelled by another
// user's change of the same state (M_CANCELLED_BY_STATE_UPDATE), and sticky events (MSC4354), which are not
// state. state_after is the state at the end of the timeline: every state change after the since token,
// including those the timeline shows and those a limited timeline leaves out.
import { describe, expect, it } from "vitest";
import { runDueNow } from "./delayed-helpers.js";
import { api, type RegisteredUser } from "./helpers.js";
import { createRoom, join, newUser, r, send } from "./room-helpers.js";
import { sync, timeline, type SyncBody } from "./sync-helpers.js";

const TYPE = "org.matrix.msc3401.call.member";
const UNSTABLE = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events";

let txn = 0;
function stateDelayed(user: RegisteredUser, roomId: string, stateKey: string, delay: number, content: Record<string, unknown>) {
  return api("PUT", `${r(roomId)}/state/${TYPE}/${encodeURIComponent(stateKey)}?org.matrix.msc4140.delay=${delay}`, { token: user.access_token, body: content });
}
function putState(user: RegisteredUser, roomId: string, stateKey: string, content: Record<string, unknown>) {
  return api("PUT", `${r(roomId)}/state/${TYPE}/${encodeURIComponent(stateKey)}`, { token: user.access_token, body: content });
}
function sendSticky(user: RegisteredUser, roomId: string, content: Record<string, unknown>) {
  return api("PUT", `${r(roomId)}/send/org.matrix.msc4143.rtc.member/sa${++txn}?org.matrix.msc4354.sticky_duration_ms=600000`, { token: user.access_token, body: content });
}

type Ev = { type: string; state_key?: string; event_id: string; content: Record<string, unknown> };
const stateAfter = (body: SyncBody, roomId: string): Ev[] => body.rooms?.join?.[roomId]?.state_after?.events ?? [];
const callState = (body: SyncBody, roomId: string) => stateAfter(body, roomId).filter((e) => e.type === TYPE).map((e) => [e.state_key, e.content]);

/** The event ID of the room's current state at (TYPE, key). */
async function currentId(user: RegisteredUser, roomId: string, key: string): Promise<string> {
  const state = (await api("GET", `${r(roomId)}/state`, { token: user.access_token })).body as Ev[];
  return state.find((e) => e.type === TYPE && e.state_key === key)!.event_id;
}

async function callRoom() {
  const alice = await newUser("stateafter");
  const bob = await newUser("stateafter");
  const roomId = await createRoom(alice, { preset: "public_chat", power_level_content_override: { state_default: 0 } });
  expect((await join(bob, roomId)).status).toBe(200);
  return { alice, bob, roomId };
}

describe("state_after with delayed and sticky events", () => {
  it("a delayed state event sent between two syncs is in state_after, in the timeline and when a limited timeline leaves it out", async () => {
    const { alice, bob, roomId } = await callRoom();
    expect((await putState(alice, roomId, "_alice_DEVICE", { joined: true })).status).toBe(200);
    const first = await sync(bob, { use_state_after: true });
    expect(callState(first, roomId)).toEqual([["_alice_DEVICE", { joined: true }]]);

    // Made due and sent by the alarm (runDueNow: the test's own alarm run, delayed-helpers.ts says why).
    const leave = await stateDelayed(alice, roomId, "_alice_DEVICE", 60_000, {});
    expect(leave.status).toBe(200);
    await runDueNow(alice.user_id, leave.body.delay_id);
    const leaveId = await currentId(alice, roomId, "_alice_DEVICE");
    const second = await sync(bob, { since: first.next_batch, use_state_after: true });
    expect(timeline(second, roomId).map((e) => e.event_id)).toContain(leaveId);
    expect(stateAfter(second, roomId).map((e) => e.event_id)).toEqual([leaveId]);
    expect(second.rooms.join[roomId].state).toBeUndefined();

    // Again, now followed by messages beyond the timeline limit.
    expect((await putState(alice, roomId, "_alice_DEVICE", { joined: true, n: 2 })).status).toBe(200);
    const third = await sync(bob, { since: second.next_batch, use_state_after: true });
    const leaveAgain = await stateDelayed(alice, roomId, "_alice_DEVICE", 60_000, { n: 2 });
    expect(leaveAgain.status).toBe(200);
    await runDueNow(alice.user_id, leaveAgain.body.delay_id);
    const leave2 = await currentId(alice, roomId, "_alice_DEVICE");
    for (let i = 0; i < 3; i++) await send(alice, roomId, { msgtype: "m.text", body: `after ${i}` });
    const fourth = await sync(bob, { since: third.next_batch, use_state_after: true, filter: { room: { timeline: { limit: 2 } } } });
    expect(fourth.rooms.join[roomId].timeline.limited).toBe(true);
    expect(timeline(fourth, roomId).map((e) => e.event_id)).not.toContain(leave2);
    expect(stateAfter(fourth, roomId).map((e) => e.event_id)).toEqual([leave2]);
    expect(callState(fourth, roomId)).toEqual([["_alice_DEVICE", { n: 2 }]]);
  });

  it("a delayed state event cancelled by another user's change never reaches state_after; the change does", async () => {
    const { alice, bob, roomId } = await callRoom();
    const first = await sync(bob, { use_state_after: true });
    const delayId = (await stateDelayed(alice, roomId, "shared", 60_000, { by: "alice-delayed" })).body.delay_id as string;
    expect((await putState(bob, roomId, "shared", { by: "bob" })).status).toBe(200);
    // The cancellation runs after bob's commit; once it is done, sending is refused (404).
    let status = 200;
    for (let i = 0; i < 100 && status !== 404; i++) {
      const listed = await api("GET", `${UNSTABLE}?status=scheduled`, { token: alice.access_token });
      status = (listed.body.scheduled as { delay_id: string }[]).some((e) => e.delay_id === delayId) ? 200 : 404;
      if (status !== 404) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect((await api("POST", `${UNSTABLE}/${encodeURIComponent(delayId)}/send`, { body: {} })).status).toBe(404);
    const second = await sync(bob, { since: first.next_batch, use_state_after: true });
    expect(callState(second, roomId)).toEqual([["shared", { by: "bob" }]]);
    expect(timeline(second, roomId).filter((e) => e.type === TYPE).map((e) => e.content)).toEqual([{ by: "bob" }]);
  });

  it("sticky events are not state: state_after carries the state changes, msc4354_sticky the sticky events", async () => {
    const { alice, bob, roomId } = await callRoom();
    const first = await sync(bob, { use_state_after: true });
    const sticky = (await sendSticky(alice, roomId, { msc4354_sticky_key: "alice-laptop" })).body.event_id as string;
    expect((await putState(alice, roomId, "_alice_DEVICE", { joined: true })).status).toBe(200);
    const joinedId = await currentId(alice, roomId, "_alice_DEVICE");
    for (let i = 0; i < 3; i++) await send(alice, roomId, { msgtype: "m.text", body: `m${i}` });
    const second = await sync(bob, { since: first.next_batch, use_state_after: true, filter: { room: { timeline: { limit: 2 } } } });
    const room = second.rooms.join[roomId];
    expect(room.timeline.limited).toBe(true);
    expect(stateAfter(second, roomId).map((e) => e.event_id)).toEqual([joinedId]);
    expect(room.msc4354_sticky.events.map((e: Ev) => e.event_id)).toEqual([sticky]);
    // A delayed sticky event (MSC4140 with MSC4354) that fires: sticky, and still not state.
    const delayed = await api("PUT", `${r(roomId)}/send/org.matrix.msc4143.rtc.member/sa${++txn}?org.matrix.msc4354.sticky_duration_ms=600000&org.matrix.msc4140.delay=60000`, {
      token: alice.access_token,
      body: { msc4354_sticky_key: "alice-laptop", left: true },
    });
    expect(delayed.status).toBe(200);
    await runDueNow(alice.user_id, delayed.body.delay_id);
    for (let i = 0; i < 3; i++) await send(alice, roomId, { msgtype: "m.text", body: `n${i}` });
    const third = await sync(bob, { since: second.next_batch, use_state_after: true, filter: { room: { timeline: { limit: 2 } } } });
    expect(stateAfter(third, roomId)).toEqual([]);
    expect(third.rooms.join[roomId].msc4354_sticky.events.map((e: Ev) => e.content)).toEqual([{ msc4354_sticky_key: "alice-laptop", left: true }]);
  });
});
