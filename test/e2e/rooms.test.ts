// End-to-end: a two-user conversation through matrix-js-sdk's request API against the running server:
// create a private room, invite, join, talk, read history, kick, and the 403s a client meets.
import * as sdk from "matrix-js-sdk";
import { describe, expect, inject, it } from "vitest";
import { newClient, unique } from "./register.js";

const baseUrl = inject("baseUrl");

const newUser = (prefix: string): Promise<sdk.MatrixClient> => newClient(baseUrl, prefix);

describe("two users in a room", () => {
  it("create, invite, join, talk, paginate, kick", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const { room_id: roomId } = await alice.createRoom({
      preset: sdk.Preset.PrivateChat,
      name: "E2E room",
      topic: "testing",
    });
    expect(roomId).toMatch(/^!/);

    // Bob cannot join an invite-only room uninvited.
    await expect(bob.joinRoom(roomId)).rejects.toMatchObject({ httpStatus: 403, errcode: "M_FORBIDDEN" });
    await alice.invite(roomId, bob.getUserId()!);
    await bob.joinRoom(roomId);
    expect((await bob.getJoinedRooms()).joined_rooms).toContain(roomId);
    const members = await alice.getJoinedRoomMembers(roomId);
    expect(Object.keys(members.joined).sort()).toEqual([alice.getUserId(), bob.getUserId()].sort());

    const sent: string[] = [];
    for (let i = 0; i < 12; i++) {
      const from = i % 2 === 0 ? alice : bob;
      const res = await from.sendTextMessage(roomId, `message ${i}`);
      sent.push(res.event_id);
    }
    // A retried transaction ID gives back the same event.
    const txn = unique("txn");
    const first = await alice.sendEvent(roomId, "m.room.message" as never, { msgtype: "m.text", body: "once" } as never, txn);
    const again = await alice.sendEvent(roomId, "m.room.message" as never, { msgtype: "m.text", body: "once" } as never, txn);
    expect(again.event_id).toBe(first.event_id);

    // Bob reads the history backwards in pages of 5 and sees every message once, newest first.
    const seen: string[] = [];
    let from: string | null = null;
    for (let page = 0; page < 10; page++) {
      const res = await bob.createMessagesRequest(roomId, from, 5, sdk.Direction.Backward);
      for (const ev of res.chunk) if (ev.type === "m.room.message") seen.push(ev.event_id!);
      if (!res.end) break;
      from = res.end;
    }
    expect(seen.slice(0, 13)).toEqual([first.event_id, ...sent.slice().reverse()]);
    expect(new Set(seen).size).toBe(seen.length);

    const ev = await bob.fetchRoomEvent(roomId, sent[0]!);
    expect(ev.content).toMatchObject({ body: "message 0" });

    // Bob may not kick Alice (power 0 < kick 50); Alice may kick Bob, who then cannot send.
    await expect(bob.kick(roomId, alice.getUserId()!)).rejects.toMatchObject({ httpStatus: 403 });
    await alice.kick(roomId, bob.getUserId()!, "bye");
    await expect(bob.sendTextMessage(roomId, "still here?")).rejects.toMatchObject({ httpStatus: 403 });
    const state = await alice.getStateEvent(roomId, "m.room.member", bob.getUserId()!);
    expect(state).toMatchObject({ membership: "leave", reason: "bye" });
  });
});
