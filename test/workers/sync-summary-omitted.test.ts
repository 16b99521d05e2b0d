// The room summary of an incremental /sync (room/sync-reads.ts roomSync): present when the range changed a
// member event, the room name or the canonical alias (or the sync shows the room's full state), omitted
// otherwise (spec: a count that has not changed since the last sync may be omitted). Messages alone do not
// bring it, so most syncs skip its reads.
import { describe, expect, it } from "vitest";
import { createRoom, join, newUser, putState, send } from "./room-helpers.js";
import { sync } from "./sync-helpers.js";

describe("incremental sync room summary", () => {
  it("is omitted after messages and state that cannot change it, and present after a change that can", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const initial = await sync(alice);
    expect(initial.rooms.join[roomId].summary).toEqual({ "m.joined_member_count": 1, "m.invited_member_count": 0, "m.heroes": [] });
    let since = initial.next_batch as string;
    const next = async () => {
      const body = await sync(alice, { since });
      since = body.next_batch;
      return body.rooms?.join?.[roomId];
    };

    // A message, and a topic (state, but not one the summary is made of): no summary.
    expect((await send(alice, roomId, { msgtype: "m.text", body: "hi" })).status).toBe(200);
    const afterMessage = await next();
    expect(afterMessage.timeline.events).toHaveLength(1);
    expect(afterMessage.summary).toBeUndefined();
    expect((await putState(alice, roomId, "m.room.topic", "", { topic: "t" })).status).toBe(200);
    expect((await next()).summary).toBeUndefined();

    // A join changes the counts and the heroes.
    expect((await join(bob, roomId)).status).toBe(200);
    expect((await next()).summary).toEqual({ "m.joined_member_count": 2, "m.invited_member_count": 0, "m.heroes": [bob.user_id] });
    // A profile change is a member event too (the summary is read again; the same values).
    expect((await putState(bob, roomId, "m.room.member", bob.user_id, { membership: "join", displayname: "Bob" })).status).toBe(200);
    expect((await next()).summary).toEqual({ "m.joined_member_count": 2, "m.invited_member_count": 0, "m.heroes": [bob.user_id] });

    // A name ends the heroes; a canonical alias's change is read again too.
    expect((await putState(alice, roomId, "m.room.name", "", { name: "named" })).status).toBe(200);
    expect((await next()).summary).toEqual({ "m.joined_member_count": 2, "m.invited_member_count": 0 });
    expect((await putState(alice, roomId, "m.room.canonical_alias", "", {})).status).toBe(200);
    expect((await next()).summary).toEqual({ "m.joined_member_count": 2, "m.invited_member_count": 0 });

    // full_state: always.
    expect((await send(alice, roomId, { msgtype: "m.text", body: "again" })).status).toBe(200);
    const full = await sync(alice, { since, full_state: true });
    expect(full.rooms.join[roomId].summary).toEqual({ "m.joined_member_count": 2, "m.invited_member_count": 0 });
  });

  it("is present when a member event changed in the range although the timeline does not show it", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const since = (await sync(alice)).next_batch as string;
    expect((await join(bob, roomId)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await send(alice, roomId, { msgtype: "m.text", body: `m${i}` })).status).toBe(200);
    // A timeline of the last 2 messages: bob's join is before it (limited), in the state section.
    const body = await sync(alice, { since, filter: { room: { timeline: { limit: 2 } } } });
    const room = body.rooms.join[roomId];
    expect(room.timeline.limited).toBe(true);
    expect(room.timeline.events.map((e: { type: string }) => e.type)).toEqual(["m.room.message", "m.room.message"]);
    expect(room.summary).toEqual({ "m.joined_member_count": 2, "m.invited_member_count": 0, "m.heroes": [bob.user_id] });
  });
});
