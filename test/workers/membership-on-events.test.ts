// MSC4115 (`unsigned.membership`): events served to clients carry the reader's membership at the time of
// the event (durable-objects/room/history-visibility.ts `membershipAt`), on /sync, /messages, /context,
// /event and /relations. As Complement's TestMembershipOnEvents: a message before a join is `leave`, the
// join and everything after it `join`; a leave after a join counts as `join` (the "more joined" one).
import { describe, expect, it } from "vitest";
import { api } from "./helpers.js";
import { createRoom, join, membership, newUser, r, send } from "./room-helpers.js";
import { sync, timeline } from "./sync-helpers.js";

type Ev = { event_id: string; type: string; state_key?: string; unsigned?: { membership?: string } };
const membershipOf = (events: Ev[], id: string) => events.find((e) => e.event_id === id)?.unsigned?.membership;

describe("MSC4115 unsigned.membership", () => {
  it("is the reader's membership at each event on sync, messages, context, event and relations", async () => {
    const alice = await newUser("m4115");
    const bob = await newUser("m4115");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const pre = (await send(alice, roomId, { msgtype: "m.text", body: "prejoin" })).body.event_id as string;
    expect((await join(bob, roomId)).status).toBe(200);
    const post = (await send(alice, roomId, { msgtype: "m.text", body: "postjoin" })).body.event_id as string;

    const body = await sync(bob, { filter: JSON.stringify({ room: { timeline: { limit: 50 } } }) });
    const events = timeline(body, roomId) as Ev[];
    let seenJoin = false;
    for (const ev of events) {
      if (ev.type === "m.room.member" && ev.state_key === bob.user_id) seenJoin = true;
      expect(ev.unsigned?.membership, ev.event_id).toBe(seenJoin ? "join" : "leave");
    }
    expect(seenJoin).toBe(true);
    expect(membershipOf(events, pre)).toBe("leave");
    expect(membershipOf(events, post)).toBe("join");

    const messages = await api("GET", `${r(roomId)}/messages?dir=b&limit=50`, { token: bob.access_token });
    expect(messages.status).toBe(200);
    expect(membershipOf(messages.body.chunk, pre)).toBe("leave");
    expect(membershipOf(messages.body.chunk, post)).toBe("join");
    // The room creator was joined for all of it but the create event (before their own join: leave).
    const own = await api("GET", `${r(roomId)}/messages?dir=b&limit=50`, { token: alice.access_token });
    expect(membershipOf(own.body.chunk, pre)).toBe("join");
    expect(own.body.chunk.find((e: Ev) => e.type === "m.room.create").unsigned.membership).toBe("leave");

    const ev = await api("GET", `${r(roomId)}/event/${encodeURIComponent(pre)}`, { token: bob.access_token });
    expect(ev.body.unsigned.membership).toBe("leave");
    const ctx = await api("GET", `${r(roomId)}/context/${encodeURIComponent(post)}?limit=10`, { token: bob.access_token });
    expect(ctx.body.event.unsigned.membership).toBe("join");
    expect(membershipOf(ctx.body.events_before, pre)).toBe("leave");

    const reply = (await send(alice, roomId, { msgtype: "m.text", body: "in thread", "m.relates_to": { rel_type: "m.thread", event_id: post } })).body
      .event_id as string;
    const rel = await api("GET", `/_matrix/client/v1/rooms/${encodeURIComponent(roomId)}/relations/${encodeURIComponent(post)}`, { token: bob.access_token });
    expect(membershipOf(rel.body.chunk, reply)).toBe("join");

    // After Bob leaves: his leave event counts as `join` (more joined than leave); what he still may read
    // keeps the membership it had.
    const leave = (await membership(bob, roomId, "leave")).status;
    expect(leave).toBe(200);
    const after = await api("GET", `${r(roomId)}/messages?dir=b&limit=50`, { token: bob.access_token });
    const leaveEvent = (after.body.chunk as Ev[]).find((e) => e.type === "m.room.member" && e.state_key === bob.user_id);
    expect(leaveEvent?.unsigned?.membership).toBe("join");
    expect(membershipOf(after.body.chunk, post)).toBe("join");
    expect(membershipOf(after.body.chunk, pre)).toBe("leave");
  });

  it("is not put on state listings", async () => {
    const alice = await newUser("m4115s");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const state = await api("GET", `${r(roomId)}/state`, { token: alice.access_token });
    expect(state.status).toBe(200);
    for (const e of state.body as Ev[]) expect(e.unsigned?.membership).toBeUndefined();
  });
});
