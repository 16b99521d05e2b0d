// Simplified sliding sync (MSC4186) with the sticky events extension (MSC4354, MSC4480) under Synapse's name
// `org.matrix.msc4354.sticky_events` (synapse/handlers/sliding_sync/extensions.py; matrix-js-sdk's
// ExtensionStickyEvents): a joined room's unexpired sticky events, for every room a list matches (in range
// or not) or a subscription names, each once per `since` (`next_batch` `sticky_<N>`), without those the
// room's timeline in the same response carries; a room joined later gets the ones sent before the join.
import { describe, expect, it } from "vitest";
import { api, type RegisteredUser } from "./helpers.js";
import { createRoom, join, newUser, r, send } from "./room-helpers.js";

const SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
const EXT = "org.matrix.msc4354.sticky_events";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = any;

let txn = 0;
async function sendSticky(user: RegisteredUser, roomId: string, duration: number, key: string): Promise<string> {
  const res = await api("PUT", `${r(roomId)}/send/org.matrix.msc4143.rtc.member/sss${++txn}?org.matrix.msc4354.sticky_duration_ms=${duration}`, {
    token: user.access_token,
    body: { msc4354_sticky_key: key },
  });
  expect(res.status).toBe(200);
  return res.body.event_id as string;
}

class Connection {
  pos: string | undefined;
  since: string | undefined;
  constructor(
    private readonly user: RegisteredUser,
    private readonly range: [number, number] = [0, 9],
  ) {}

  async sync(): Promise<Body> {
    const body = {
      lists: { all: { ranges: [this.range], timeline_limit: 1, required_state: [] } },
      extensions: { [EXT]: { enabled: true, limit: 100, ...(this.since ? { since: this.since } : {}) } },
    };
    const res = await api("POST", `${SS}${this.pos ? `?pos=${this.pos}` : ""}`, { token: this.user.access_token, body });
    if (res.status !== 200) throw new Error(`sliding sync failed: ${res.status} ${JSON.stringify(res.body)}`);
    this.pos = res.body.pos;
    this.since = res.body.extensions[EXT].next_batch;
    return res.body;
  }
}

const stickyIds = (body: Body, roomId: string): string[] => (body.extensions[EXT].rooms[roomId]?.events ?? []).map((e: Body) => e.event_id);
const text = (body: string) => ({ msgtype: "m.text", body });

describe("sliding sync: sticky events extension", () => {
  it("delivers unexpired sticky events once, beyond the timeline limit, without duplicating the timeline", async () => {
    const alice = await newUser("ssst");
    const bob = await newUser("ssstb");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    const s1 = await sendSticky(alice, roomId, 600_000, "one");
    const expired = await sendSticky(alice, roomId, 0, "gone");
    await send(alice, roomId, text("after the sticky event"));

    const conn = new Connection(bob);
    const first = await conn.sync();
    expect(first.rooms[roomId].timeline.map((e: Body) => e.content.body)).toEqual(["after the sticky event"]);
    expect(stickyIds(first, roomId)).toEqual([s1]);
    expect(stickyIds(first, roomId)).not.toContain(expired);
    expect(first.extensions[EXT].next_batch).toMatch(/^sticky_[0-9]+$/);
    const event = first.extensions[EXT].rooms[roomId].events[0];
    expect(event.msc4354_sticky).toEqual({ duration_ms: 600_000 });

    // Once: not again with the next `since`.
    await send(alice, roomId, text("news"));
    const second = await conn.sync();
    expect(second.extensions[EXT].rooms).toEqual({});

    // A new one behind a message; and one the timeline carries itself is not repeated here.
    const s2 = await sendSticky(alice, roomId, 600_000, "two");
    await send(alice, roomId, text("more news"));
    const third = await conn.sync();
    expect(stickyIds(third, roomId)).toEqual([s2]);
    const s3 = await sendSticky(alice, roomId, 600_000, "three");
    const fourth = await conn.sync();
    expect(fourth.rooms[roomId].timeline.map((e: Body) => e.event_id)).toEqual([s3]);
    expect(fourth.extensions[EXT].rooms).toEqual({});

    // A member who joins later gets the unexpired ones from before the join.
    const carol = await newUser("ssstc");
    const carolConn = new Connection(carol);
    await carolConn.sync();
    expect((await join(carol, roomId)).status).toBe(200);
    const joined = await carolConn.sync();
    expect(stickyIds(joined, roomId)).toEqual([s1, s2, s3]);
  });

  it("covers rooms a list matches outside its range, and refuses a malformed since", async () => {
    const alice = await newUser("ssso");
    const quiet = await createRoom(alice);
    const busy = await createRoom(alice);
    await send(alice, busy, text("busy"));
    const conn = new Connection(alice, [0, 0]);
    const first = await conn.sync();
    expect(first.lists.all.ops[0].room_ids).toEqual([busy]);
    // A sticky event does not bump the quiet room into the range, but the extension carries it.
    const s = await sendSticky(alice, quiet, 600_000, "out of range");
    const next = await conn.sync();
    expect(next.lists.all.ops[0].room_ids).toEqual([busy]);
    expect(next.rooms[quiet]).toBeUndefined();
    expect(stickyIds(next, quiet)).toEqual([s]);

    const bad = await api("POST", SS, { token: alice.access_token, body: { extensions: { [EXT]: { enabled: true, since: "s12" } } } });
    expect(bad.status).toBe(400);
    expect(bad.body.errcode).toBe("M_INVALID_PARAM");
  });
});

describe("sliding sync: sticky events extension and long-polling", () => {
  it("a waiting request without the extension's since is not answered early for recent rooms", async () => {
    const alice = await newUser("sssw");
    const roomId = await createRoom(alice);
    await sendSticky(alice, roomId, 600_000, "k");
    const body = { lists: { all: { ranges: [[0, 9]], timeline_limit: 1, required_state: [] } }, extensions: { [EXT]: { enabled: true } } };
    const first = await api("POST", SS, { token: alice.access_token, body });
    expect(first.status).toBe(200);
    // No since (a client that never sends one): a room with recent events is no news, the request waits
    // until the message wakes it (answered at once, it would not carry the message).
    const poll = api("POST", `${SS}?pos=${first.body.pos}&timeout=30000`, { token: alice.access_token, body });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const sent = await send(alice, roomId, text("wake"));
    const waited = await poll;
    expect(waited.status).toBe(200);
    expect(waited.body.rooms[roomId].timeline.map((e: Body) => e.event_id)).toEqual([sent.body.event_id]);
  });
});
