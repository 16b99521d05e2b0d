// Threaded receipts (spec: POST /rooms/{roomId}/receipt/{receiptType}/{eventId}, `thread_id`; 400 "The
// event_id is not related to the thread_id"): which events a receipt of a thread may name, as Synapse
// decides (durable-objects/room/ephemeral.ts `receiptThreadOf`, Complement TestThreadedReceipts): the thread's
// events, its root, and events related to either through other relations (an annotation to a reference to
// the root); `main` takes events outside every thread.
import { describe, expect, it } from "vitest";
import { api, type RegisteredUser } from "./helpers.js";
import { createRoom, join, newUser, r, send } from "./room-helpers.js";

async function text(user: RegisteredUser, roomId: string, body: string, relatesTo?: Record<string, unknown>, type = "m.room.message"): Promise<string> {
  const content: Record<string, unknown> = type === "m.room.message" ? { msgtype: "m.text", body } : {};
  if (relatesTo) content["m.relates_to"] = relatesTo;
  const res = await send(user, roomId, content, type);
  expect(res.status).toBe(200);
  return res.body.event_id;
}

describe("threaded receipts", () => {
  it("accept the thread's events, its root and what relates to them; refuse the others", async () => {
    const alice = await newUser("thr");
    const bob = await newUser("thr");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    const a = await text(alice, roomId, "root");
    const b = await text(alice, roomId, "in thread", { rel_type: "m.thread", event_id: a });
    const d = await text(alice, roomId, "main timeline");
    const f = await text(alice, roomId, "reference", { rel_type: "m.reference", event_id: a });
    const g = await text(alice, roomId, "", { rel_type: "m.annotation", event_id: f, key: "test" }, "m.reaction");
    const h = await text(alice, roomId, "", { rel_type: "m.annotation", event_id: b, key: "x" }, "m.reaction");

    const receipt = async (eventId: string, threadId: string) => {
      const res = await api("POST", `${r(roomId)}/receipt/m.read/${encodeURIComponent(eventId)}`, { token: bob.access_token, body: { thread_id: threadId } });
      return res.status === 200 ? 200 : `${res.status} ${res.body.errcode}`;
    };
    // Thread A: its root, its reply, a reaction to the reply, and (Complement's case) a reaction to a
    // reference to the root.
    expect(await receipt(a, a)).toBe(200);
    expect(await receipt(b, a)).toBe(200);
    expect(await receipt(h, a)).toBe(200);
    expect(await receipt(f, a)).toBe(200);
    expect(await receipt(g, a)).toBe(200);
    // Not in thread A.
    expect(await receipt(d, a)).toBe("400 M_INVALID_PARAM");
    expect(await receipt(d, b)).toBe("400 M_INVALID_PARAM");
    // The main timeline: events in no thread (the root is in the main timeline); not the thread's events.
    expect(await receipt(a, "main")).toBe(200);
    expect(await receipt(g, "main")).toBe(200);
    expect(await receipt(d, "main")).toBe(200);
    expect(await receipt(b, "main")).toBe("400 M_INVALID_PARAM");
    expect(await receipt(h, "main")).toBe("400 M_INVALID_PARAM");
  });
});

describe("a user's unthreaded and threaded receipts on one event (MSC4102)", () => {
  /** The m.read receipt data of `userId` on `eventId` in `roomId`'s ephemeral events of a sync. */
  async function readReceiptIn(user: RegisteredUser, roomId: string, userId: string, eventId: string, since?: string) {
    const res = await api("GET", `/_matrix/client/v3/sync${since ? `?since=${encodeURIComponent(since)}&timeout=0` : ""}`, { token: user.access_token });
    expect(res.status).toBe(200);
    const events = (res.body.rooms?.join?.[roomId]?.ephemeral?.events ?? []) as { type: string; content: Record<string, Record<string, Record<string, unknown>>> }[];
    const receipt = events.find((e) => e.type === "m.receipt");
    return { data: receipt?.content[eventId]?.["m.read"]?.[userId], next: res.body.next_batch as string };
  }

  for (const order of ["unthreaded first", "threaded first"] as const) {
    it(`sync shows the unthreaded one (${order})`, async () => {
      const alice = await newUser("clash");
      const bob = await newUser("clash");
      const roomId = await createRoom(alice, { preset: "public_chat" });
      expect((await join(bob, roomId)).status).toBe(200);
      const a = await text(alice, roomId, "root");
      const b = await text(alice, roomId, "in thread", { rel_type: "m.thread", event_id: a });
      const before = await readReceiptIn(alice, roomId, alice.user_id, b);
      const post = async (body: Record<string, unknown>) =>
        expect((await api("POST", `${r(roomId)}/receipt/m.read/${encodeURIComponent(b)}`, { token: alice.access_token, body })).status).toBe(200);
      const bodies = [{}, { thread_id: a }];
      if (order === "threaded first") bodies.reverse();
      for (const body of bodies) await post(body);

      // Initial sync (the room's receipts), for the sender and for another member.
      expect((await readReceiptIn(alice, roomId, alice.user_id, b)).data).toEqual({ ts: expect.any(Number) });
      expect((await readReceiptIn(bob, roomId, alice.user_id, b)).data).toEqual({ ts: expect.any(Number) });
      // Incremental sync covering both receipts (the User DO's copies).
      expect((await readReceiptIn(alice, roomId, alice.user_id, b, before.next)).data).toEqual({ ts: expect.any(Number) });
    });
  }
});
