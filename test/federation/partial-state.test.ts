// Partial-state joins (issue 19): a Myelin user joins a Synapse room with many members. Myelin asks for the
// state without member events (omit_members), so the join returns early; the member list is fetched in the
// background (durable-objects/room/partial-state.ts) until Myelin knows every member.
import { describe, expect, inject, it } from "vitest";
import { call, createRoom, enc, eventually, join, messageBodies, newUser, sendText, type Server } from "./client.js";

const A: Server = inject("myelin");
const S: Server = inject("synapse");
const MEMBERS = 40;

async function joinedMembers(user: Awaited<ReturnType<typeof newUser>>, roomId: string): Promise<string[]> {
  const res = await call(user, "GET", `/rooms/${enc(roomId)}/joined_members`);
  return res.status === 200 ? Object.keys(res.body.joined as Record<string, unknown>) : [];
}

describe("partial-state join of a Synapse room", () => {
  it(`joins a room of ${MEMBERS} Synapse members at once, chats, and learns every member in the background`, async () => {
    const owner = await newUser(S, "owner");
    const roomId = await createRoom(owner, { preset: "public_chat" });
    const members = [owner.userId];
    for (let i = 0; i < MEMBERS - 1; i++) {
      const m = await newUser(S, "member");
      expect((await join(m, roomId)).status).toBe(200);
      members.push(m.userId);
    }
    await sendText(owner, roomId, "before the join");
    const alice = await newUser(A, "alice");
    const joined = await join(alice, roomId, [S.serverName]);
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    const membersAtOnce = joinedMembers(alice, roomId);
    // Usable at once: history and new messages both ways.
    await sendText(owner, roomId, "welcome");
    await eventually("the welcome on Myelin", async () => (await messageBodies(alice, roomId)).includes("welcome"));
    await sendText(alice, roomId, "hello all");
    await eventually("alice's message on Synapse", async () => (await messageBodies(owner, roomId)).includes("hello all"));
    // The whole member list: /joined_members waits for the resync, as Synapse's does, rather than
    // answering the partial list (asked at once after the join, it would list only a few members).
    const all = await membersAtOnce;
    expect(new Set(all)).toEqual(new Set([...members, alice.userId]));
    // An event after the resync is built on the completed state: the state stays whole (it once fell
    // back to the partial state of the event before it).
    await sendText(owner, roomId, "after the resync");
    await eventually("the last message on Myelin", async () => (await messageBodies(alice, roomId)).includes("after the resync"));
    // And the state agrees with Synapse's.
    const mine = await call(alice, "GET", `/rooms/${enc(roomId)}/state`);
    const theirs = await call(owner, "GET", `/rooms/${enc(roomId)}/state`);
    const ids = (events: { event_id: string }[]) => new Set(events.map((e) => e.event_id));
    expect(ids(mine.body)).toEqual(ids(theirs.body));
  });
});
