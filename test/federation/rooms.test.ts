// Rooms across servers, for real: Myelin (A, from the stage's global setup), a real Synapse (S) and a second
// Myelin (B, started here so that it can be stopped and started again), all over TLS on loopback with the
// stage's CA. Everything goes through the client APIs of the servers; federation is what carries it.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startServer, type RunningServer } from "../e2e/server.js";
import { call, createRoom, enc, eventually, join, membership, messageBodies, newUser, sendText, stateIds, type Server, type User } from "./client.js";
import { stageCA } from "./more-myelins.js";

const A: Server = inject("myelin");
const S: Server = inject("synapse");
const B_SECRET = "second-myelin-secret";

let b: RunningServer;
let B: Server;
let bPort: number;
/** B's state folder, kept across its restart (startServer keeps a folder it was given). */
const bDataDir = mkdtempSync(path.join(os.tmpdir(), "myelin-fed-b-"));

async function startB(port?: number, dataDir?: string): Promise<RunningServer> {
  return startServer({ REGISTRATION_SHARED_SECRET: B_SECRET }, { https: stageCA(), port, dataDir });
}

beforeAll(async () => {
  b = await startB(undefined, bDataDir);
  bPort = Number(new URL(b.baseUrl).port);
  B = { baseUrl: b.baseUrl, serverName: b.serverName, registrationSharedSecret: B_SECRET };
});

afterAll(async () => {
  await b?.stop();
  rmSync(bDataDir, { recursive: true, force: true });
});

/** A public room on `owner`'s server with an alias, joined by `guest` (of another server) through it. */
async function sharedRoom(owner: User, guest: User, extra: Record<string, unknown> = {}): Promise<string> {
  const alias = `fed${Math.random().toString(36).slice(2, 10)}`;
  const roomId = await createRoom(owner, { preset: "public_chat", room_alias_name: alias, ...extra });
  const joined = await join(guest, `#${alias}:${owner.server.serverName}`);
  expect(joined.status, JSON.stringify(joined.body)).toBe(200);
  expect(joined.body.room_id).toBe(roomId);
  await eventually(`${guest.userId} joined on ${owner.server.serverName}`, async () => (await membership(owner, roomId, guest.userId)) === "join");
  return roomId;
}

/** Sends messages alternately from two users, each only once the previous one arrived on the other server;
 * then both servers must show the same messages, once each, in the same order. */
async function conversation(x: User, y: User, roomId: string, rounds: number): Promise<void> {
  const expected: string[] = [];
  for (let i = 0; i < rounds; i++) {
    for (const [from, to] of [
      [x, y],
      [y, x],
    ] as const) {
      const body = `${from.server.serverName} says ${i}`;
      await sendText(from, roomId, body);
      expected.push(body);
      await eventually(`"${body}" on ${to.server.serverName}`, async () => (await messageBodies(to, roomId)).includes(body));
    }
  }
  expect(await messageBodies(x, roomId)).toEqual(expected);
  expect(await messageBodies(y, roomId)).toEqual(expected);
}

describe("Myelin and Synapse", () => {
  it("a Synapse user joins a Myelin room by alias and a Myelin user joins a Synapse room by alias; messages both ways arrive once, in order", async () => {
    const alice = await newUser(A, "alice");
    const sam = await newUser(S, "sam");
    const onMyelin = await sharedRoom(alice, sam);
    await conversation(alice, sam, onMyelin, 3);
    const onSynapse = await sharedRoom(sam, alice);
    await conversation(sam, alice, onSynapse, 3);
  });

  it("invites both ways: accepted, and rejected", async () => {
    const alice = await newUser(A, "alice");
    const sam = await newUser(S, "sam");
    const carl = await newUser(S, "carl");
    // Myelin invites a Synapse user, who accepts.
    const mine = await createRoom(alice, { preset: "private_chat" });
    expect((await call(alice, "POST", `/rooms/${enc(mine)}/invite`, { user_id: sam.userId })).status).toBe(200);
    await eventually("the invite in Synapse's /sync", async () => {
      const sync = await call(sam, "GET", "/sync?timeout=0");
      return sync.body.rooms?.invite?.[mine] !== undefined;
    });
    expect((await call(sam, "POST", `/rooms/${enc(mine)}/join`, {})).status).toBe(200);
    await eventually("sam joined on Myelin", async () => (await membership(alice, mine, sam.userId)) === "join");
    // ... and another who rejects.
    expect((await call(alice, "POST", `/rooms/${enc(mine)}/invite`, { user_id: carl.userId })).status).toBe(200);
    await eventually("carl's invite on Synapse", async () => (await call(carl, "GET", "/sync?timeout=0")).body.rooms?.invite?.[mine] !== undefined);
    expect((await call(carl, "POST", `/rooms/${enc(mine)}/leave`, {})).status).toBe(200);
    await eventually("carl's rejection on Myelin", async () => (await membership(alice, mine, carl.userId)) === "leave");

    // Synapse invites Myelin users: one accepts, one rejects.
    const bea = await newUser(A, "bea");
    const theirs = await createRoom(sam, { preset: "private_chat" });
    expect((await call(sam, "POST", `/rooms/${enc(theirs)}/invite`, { user_id: alice.userId })).status).toBe(200);
    expect((await call(sam, "POST", `/rooms/${enc(theirs)}/invite`, { user_id: bea.userId })).status).toBe(200);
    const invited = await eventually("the invite in Myelin's /sync", async () => (await call(alice, "GET", "/sync?timeout=0")).body.rooms?.invite?.[theirs]);
    expect(invited.invite_state.events.some((e: { type: string }) => e.type === "m.room.member")).toBe(true);
    expect((await call(alice, "POST", `/rooms/${enc(theirs)}/join`, {})).status).toBe(200);
    await eventually("alice joined on Synapse", async () => (await membership(sam, theirs, alice.userId)) === "join");
    await eventually("bea's invite on Myelin", async () => (await call(bea, "GET", "/sync?timeout=0")).body.rooms?.invite?.[theirs] !== undefined);
    expect((await call(bea, "POST", `/rooms/${enc(theirs)}/leave`, {})).status).toBe(200);
    await eventually("bea's rejection on Synapse", async () => (await membership(sam, theirs, bea.userId)) === "leave");
    const after = await call(bea, "GET", "/sync?timeout=0");
    expect(after.body.rooms?.invite?.[theirs]).toBeUndefined();
    await conversation(sam, alice, theirs, 1);
  });

  it("a Myelin user knocks on a Synapse room, is let in, and joins", async () => {
    const sam = await newUser(S, "sam");
    const alice = await newUser(A, "alice");
    const roomId = await createRoom(sam, { preset: "private_chat", initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }] });
    const knock = await call(alice, "POST", `/knock/${enc(roomId)}?via=${enc(S.serverName)}`, { reason: "let me in" });
    expect(knock.status, JSON.stringify(knock.body)).toBe(200);
    const knocked = await call(alice, "GET", "/sync?timeout=0");
    expect(knocked.body.rooms?.knock?.[roomId]).toBeDefined();
    await eventually("the knock on Synapse", async () => (await membership(sam, roomId, alice.userId)) === "knock");
    expect((await call(sam, "POST", `/rooms/${enc(roomId)}/invite`, { user_id: alice.userId })).status).toBe(200);
    await eventually("the invite on Myelin", async () => (await call(alice, "GET", "/sync?timeout=0")).body.rooms?.invite?.[roomId] !== undefined);
    expect((await call(alice, "POST", `/rooms/${enc(roomId)}/join`, {})).status).toBe(200);
    await conversation(sam, alice, roomId, 1);
  });

  it("a Synapse user knocks on a Myelin room, is let in, and joins", async () => {
    const alice = await newUser(A, "alice");
    const sam = await newUser(S, "sam");
    const roomId = await createRoom(alice, { preset: "private_chat", initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }] });
    const knock = await call(sam, "POST", `/knock/${enc(roomId)}?via=${enc(A.serverName)}`, { reason: "let me in" });
    expect(knock.status, JSON.stringify(knock.body)).toBe(200);
    await eventually("the knock on Myelin", async () => (await membership(alice, roomId, sam.userId)) === "knock");
    expect((await call(alice, "POST", `/rooms/${enc(roomId)}/invite`, { user_id: sam.userId })).status).toBe(200);
    await eventually("the invite on Synapse", async () => (await call(sam, "GET", "/sync?timeout=0")).body.rooms?.invite?.[roomId] !== undefined);
    expect((await call(sam, "POST", `/rooms/${enc(roomId)}/join`, {})).status).toBe(200);
    await conversation(alice, sam, roomId, 1);
  });

  it("a Myelin user who joins a Synapse room later reads the 30 messages sent before the join (backfill)", async () => {
    const sam = await newUser(S, "sam");
    const alice = await newUser(A, "alice");
    const roomId = await createRoom(sam, { preset: "public_chat" });
    const before: string[] = [];
    for (let i = 0; i < 30; i++) {
      const body = `history ${i}`;
      await sendText(sam, roomId, body);
      before.push(body);
    }
    const joined = await join(alice, roomId, [S.serverName]);
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    expect(await messageBodies(alice, roomId)).toEqual(before);
  });

  it("kick and ban across servers: the banned user can neither rejoin nor send", async () => {
    const alice = await newUser(A, "alice");
    const sam = await newUser(S, "sam");
    const roomId = await sharedRoom(alice, sam);
    expect((await call(alice, "POST", `/rooms/${enc(roomId)}/kick`, { user_id: sam.userId, reason: "out" })).status).toBe(200);
    await eventually("the kick on Synapse", async () => (await membership(sam, roomId, sam.userId)) === "leave" || (await call(sam, "GET", `/rooms/${enc(roomId)}/state`)).status === 403);
    // Kicked, not banned: a public room can be joined again.
    expect((await join(sam, roomId, [A.serverName])).status).toBe(200);
    await eventually("the rejoin on Myelin", async () => (await membership(alice, roomId, sam.userId)) === "join");
    expect((await call(alice, "POST", `/rooms/${enc(roomId)}/ban`, { user_id: sam.userId })).status).toBe(200);
    await eventually("the ban on Myelin", async () => (await membership(alice, roomId, sam.userId)) === "ban");
    await eventually("the ban on Synapse", async () => {
      const rejoin = await join(sam, roomId, [A.serverName]);
      return rejoin.status === 403;
    });
    const send = await call(sam, "PUT", `/rooms/${enc(roomId)}/send/m.room.message/banned-${Date.now()}`, { msgtype: "m.text", body: "still here?" });
    expect(send.status).toBe(403);
    expect(await messageBodies(alice, roomId)).not.toContain("still here?");

    // And the other way: Synapse's room bans a Myelin user, whose server then refuses their sends.
    const room2 = await sharedRoom(sam, alice);
    expect((await call(sam, "POST", `/rooms/${enc(room2)}/ban`, { user_id: alice.userId })).status).toBe(200);
    // The banned user still reads the history up to the ban: the ban event shows that it arrived.
    await eventually("the ban on Myelin", async () => {
      const page = await call(alice, "GET", `/rooms/${enc(room2)}/messages?dir=b&limit=5`);
      return (page.body.chunk as { type: string; state_key?: string; content: { membership?: string } }[]).some(
        (e) => e.type === "m.room.member" && e.state_key === alice.userId && e.content.membership === "ban",
      );
    });
    const refused = await call(alice, "PUT", `/rooms/${enc(room2)}/send/m.room.message/b-${Date.now()}`, { msgtype: "m.text", body: "no" });
    expect(refused.status).toBe(403);
  });

  it("concurrent state changes on both sides converge to the same state on both servers", async () => {
    const alice = await newUser(A, "alice");
    const sam = await newUser(S, "sam");
    const roomId = await sharedRoom(alice, sam);
    // Give sam the power to change state.
    const pl = (await call(alice, "GET", `/rooms/${enc(roomId)}/state/m.room.power_levels/`)).body;
    pl.users = { ...(pl.users ?? {}), [sam.userId]: 100 };
    expect((await call(alice, "PUT", `/rooms/${enc(roomId)}/state/m.room.power_levels/`, pl)).status).toBe(200);
    await eventually("sam's power on Synapse", async () => (await call(sam, "GET", `/rooms/${enc(roomId)}/state/m.room.power_levels/`)).body.users?.[sam.userId] === 100);
    // Both servers change the same state at the same moment, several times.
    for (let i = 0; i < 3; i++) {
      await Promise.all([
        call(alice, "PUT", `/rooms/${enc(roomId)}/state/m.room.topic/`, { topic: `A ${i}` }),
        call(sam, "PUT", `/rooms/${enc(roomId)}/state/m.room.topic/`, { topic: `S ${i}` }),
        call(alice, "PUT", `/rooms/${enc(roomId)}/state/m.room.name/`, { name: `A ${i}` }),
        call(sam, "PUT", `/rooms/${enc(roomId)}/state/m.room.name/`, { name: `S ${i}` }),
      ]);
    }
    // A message from each side merges the forks on both servers.
    await sendText(alice, roomId, "merge from A");
    await sendText(sam, roomId, "merge from S");
    await eventually("identical state on both servers", async () => {
      const [a, s] = await Promise.all([stateIds(alice, roomId), stateIds(sam, roomId)]);
      if (a.size !== s.size) return false;
      for (const [k, v] of a) if (s.get(k) !== v) return false;
      return true;
    });
  });
});

describe("two Myelin servers", () => {
  it("join by alias both ways; messages both ways arrive once, in order; invites accepted and rejected", async () => {
    const alice = await newUser(A, "alice");
    const bo = await newUser(B, "bo");
    const onA = await sharedRoom(alice, bo);
    await conversation(alice, bo, onA, 2);
    const onB = await sharedRoom(bo, alice);
    await conversation(bo, alice, onB, 2);

    const bree = await newUser(B, "bree");
    const ada = await newUser(A, "ada");
    const privateA = await createRoom(alice, { preset: "private_chat" });
    expect((await call(alice, "POST", `/rooms/${enc(privateA)}/invite`, { user_id: bree.userId })).status).toBe(200);
    expect((await call(alice, "POST", `/rooms/${enc(privateA)}/invite`, { user_id: bo.userId })).status).toBe(200);
    await eventually("bree's invite on B", async () => (await call(bree, "GET", "/sync?timeout=0")).body.rooms?.invite?.[privateA] !== undefined);
    expect((await call(bree, "POST", `/rooms/${enc(privateA)}/join`, {})).status).toBe(200);
    await eventually("bree joined on A", async () => (await membership(alice, privateA, bree.userId)) === "join");
    await eventually("bo's invite on B", async () => (await call(bo, "GET", "/sync?timeout=0")).body.rooms?.invite?.[privateA] !== undefined);
    expect((await call(bo, "POST", `/rooms/${enc(privateA)}/leave`, {})).status).toBe(200);
    await eventually("bo's rejection on A", async () => (await membership(alice, privateA, bo.userId)) === "leave");

    const privateB = await createRoom(bo, { preset: "private_chat" });
    expect((await call(bo, "POST", `/rooms/${enc(privateB)}/invite`, { user_id: ada.userId })).status).toBe(200);
    await eventually("ada's invite on A", async () => (await call(ada, "GET", "/sync?timeout=0")).body.rooms?.invite?.[privateB] !== undefined);
    expect((await call(ada, "POST", `/rooms/${enc(privateB)}/join`, {})).status).toBe(200);
    await conversation(bo, ada, privateB, 1);
  });

  it("a peer that was down receives everything once it is back", async () => {
    const alice = await newUser(A, "alice");
    const bo = await newUser(B, "bo");
    const roomId = await sharedRoom(alice, bo);
    await conversation(alice, bo, roomId, 1);
    await b.stop();
    const missed: string[] = [];
    for (let i = 0; i < 5; i++) {
      const body = `while you were away ${i}`;
      await sendText(alice, roomId, body);
      missed.push(body);
    }
    b = await startB(bPort, bDataDir);
    // Saying something tells A that B is back (its queue's back-off is reset by B's request).
    await sendText(bo, roomId, "back again");
    await eventually("the missed messages on B", async () => {
      const seen = await messageBodies(bo, roomId);
      return missed.every((m) => seen.includes(m));
    }, 60_000);
    const seen = await messageBodies(bo, roomId);
    for (const m of missed) expect(seen.filter((x) => x === m)).toHaveLength(1);
    await eventually("B's message on A", async () => (await messageBodies(alice, roomId)).includes("back again"));
  });
});
