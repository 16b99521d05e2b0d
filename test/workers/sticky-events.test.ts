// Sticky events (MSC4354): `org.matrix.msc4354.sticky_duration_ms` on PUT /send puts
// `msc4354_sticky: { duration_ms }` (capped at one hour) on the event, and /sync delivers the room's
// unexpired sticky events that the timeline leaves out in `msc4354_sticky` (worker/client/sticky-events.ts,
// durable-objects/room/sync-reads.ts). A duration of 0 is an already expired sticky event.
import { describe, expect, it } from "vitest";
import { api, type RegisteredUser } from "./helpers.js";
import { createRoom, join, newUser, r, send } from "./room-helpers.js";
import { sync, timeline } from "./sync-helpers.js";

let txn = 0;
function sendSticky(user: RegisteredUser, roomId: string, duration: number | string, content: Record<string, unknown>, extra = "") {
  return api("PUT", `${r(roomId)}/send/org.matrix.msc4143.rtc.member/s${++txn}?org.matrix.msc4354.sticky_duration_ms=${duration}${extra}`, {
    token: user.access_token,
    body: content,
  });
}

const LIMIT_2 = { room: { timeline: { limit: 2 } } };
const stickyIds = (body: { rooms?: { join?: Record<string, { msc4354_sticky?: { events: { event_id: string }[] } }> } }, roomId: string) =>
  (body.rooms?.join?.[roomId]?.msc4354_sticky?.events ?? []).map((e) => e.event_id);

describe("sticky events", () => {
  it("carry their duration, capped at one hour, and a TTL; bad durations are refused", async () => {
    const alice = await newUser("sticky");
    const roomId = await createRoom(alice);
    const sent = await sendSticky(alice, roomId, 60_000, { msc4354_sticky_key: "k1" });
    expect(sent.status).toBe(200);
    const event = await api("GET", `${r(roomId)}/event/${encodeURIComponent(sent.body.event_id)}`, { token: alice.access_token });
    expect(event.body.msc4354_sticky).toEqual({ duration_ms: 60_000 });
    expect(event.body.unsigned.msc4354_sticky_duration_ttl_ms).toBeGreaterThan(0);
    expect(event.body.unsigned.msc4354_sticky_duration_ttl_ms).toBeLessThanOrEqual(60_000);

    const atCap = await sendSticky(alice, roomId, 3_600_000, {});
    const overCap = await sendSticky(alice, roomId, 3_600_001, {});
    for (const id of [atCap.body.event_id, overCap.body.event_id]) {
      const e = await api("GET", `${r(roomId)}/event/${encodeURIComponent(id)}`, { token: alice.access_token });
      expect(e.body.msc4354_sticky).toEqual({ duration_ms: 3_600_000 });
    }
    for (const bad of ["-1", "soon", "1.5"]) {
      const res = await sendSticky(alice, roomId, bad, {});
      expect(res.status, bad).toBe(400);
      expect(res.body.errcode).toBe("M_INVALID_PARAM");
    }
    // An ordinary event has no sticky fields.
    const plain = await send(alice, roomId, { msgtype: "m.text", body: "plain" });
    const p = await api("GET", `${r(roomId)}/event/${encodeURIComponent(plain.body.event_id)}`, { token: alice.access_token });
    expect(p.body.msc4354_sticky).toBeUndefined();
    expect(p.body.unsigned.msc4354_sticky_duration_ttl_ms).toBeUndefined();
    expect((await api("GET", "/_matrix/client/versions")).body.unstable_features["org.matrix.msc4354"]).toBe(true);
  });

  it("reach a member who joins later, beyond the timeline limit; expired ones do not", async () => {
    const alice = await newUser("sticky");
    const bob = await newUser("sticky");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const live = await sendSticky(alice, roomId, 600_000, { msc4354_sticky_key: "live" });
    await sendSticky(alice, roomId, 0, { msc4354_sticky_key: "expired" });
    for (let i = 0; i < 4; i++) await send(alice, roomId, { msgtype: "m.text", body: `m${i}` });
    expect((await join(bob, roomId)).status).toBe(200);

    const initial = await sync(bob, { filter: LIMIT_2 });
    const inTimeline = timeline(initial, roomId).map((e) => e.event_id);
    expect(inTimeline).not.toContain(live.body.event_id);
    expect(stickyIds(initial, roomId)).toEqual([live.body.event_id]);
    const delivered = initial.rooms.join[roomId].msc4354_sticky.events[0];
    expect(delivered).toMatchObject({ type: "org.matrix.msc4143.rtc.member", sender: alice.user_id, msc4354_sticky: { duration_ms: 600_000 } });

    // Incremental: a sticky event sent since the last sync that a limited timeline leaves out.
    const later = await sendSticky(alice, roomId, 600_000, { msc4354_sticky_key: "later" });
    for (let i = 0; i < 4; i++) await send(alice, roomId, { msgtype: "m.text", body: `n${i}` });
    const next = await sync(bob, { filter: LIMIT_2, since: initial.next_batch });
    expect(next.rooms.join[roomId].timeline.limited).toBe(true);
    expect(stickyIds(next, roomId)).toEqual([later.body.event_id]);

    // Nothing sticky left out: no section.
    await send(alice, roomId, { msgtype: "m.text", body: "quiet" });
    const quiet = await sync(bob, { filter: LIMIT_2, since: next.next_batch });
    expect(quiet.rooms.join[roomId].msc4354_sticky).toBeUndefined();
  });

  it("in a small room read whole by an initial sync: the same as the sticky index gives", async () => {
    // Under the timeline's batch size, the room's initial sync reads every event in one query and takes
    // the sticky ones from it (room/sync-reads.ts); a limited timeline asks the index. Both agree.
    const alice = await newUser("sticky");
    const roomId = await createRoom(alice);
    const live = await sendSticky(alice, roomId, 600_000, { msc4354_sticky_key: "live" });
    await sendSticky(alice, roomId, 0, { msc4354_sticky_key: "expired" });
    await send(alice, roomId, { msgtype: "m.text", body: "after" });
    const noRtc = { room: { timeline: { not_types: ["org.matrix.msc4143.rtc.member"] } } };

    const whole = await sync(alice, { filter: noRtc });
    expect(whole.rooms.join[roomId].timeline.limited).toBe(false);
    expect(timeline(whole, roomId).map((e) => e.event_id)).not.toContain(live.body.event_id);
    expect(stickyIds(whole, roomId)).toEqual([live.body.event_id]);
    const limited = await sync(alice, { filter: LIMIT_2 });
    expect(limited.rooms.join[roomId].timeline.limited).toBe(true);
    expect(stickyIds(limited, roomId)).toEqual([live.body.event_id]);
    // In the timeline: not again in the sticky section.
    const all = await sync(alice);
    expect(all.rooms.join[roomId].timeline.limited).toBe(false);
    expect(timeline(all, roomId).map((e) => e.event_id)).toContain(live.body.event_id);
    expect(all.rooms.join[roomId].msc4354_sticky).toBeUndefined();
  });

  it("can be delayed (MSC4140 with MSC4354)", async () => {
    const alice = await newUser("sticky");
    const roomId = await createRoom(alice);
    const scheduled = await sendSticky(alice, roomId, 120_000, { msc4354_sticky_key: "leave" }, "&org.matrix.msc4140.delay=60000");
    expect(scheduled.status).toBe(200);
    const sent = await api("POST", `/_matrix/client/unstable/org.matrix.msc4140/delayed_events/${encodeURIComponent(scheduled.body.delay_id)}/send`, { body: {} });
    expect(sent.status).toBe(200);
    const list = await api("GET", "/_matrix/client/unstable/org.matrix.msc4140/delayed_events?status=finalised", { token: alice.access_token });
    const eventId = list.body.finalised[0].event_id as string;
    const event = await api("GET", `${r(roomId)}/event/${encodeURIComponent(eventId)}`, { token: alice.access_token });
    expect(event.body.msc4354_sticky).toEqual({ duration_ms: 120_000 });
  });
});
