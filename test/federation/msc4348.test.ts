// Room version org.matrix.msc4348 (MSC4348 portable accounts, on MSC4345) between three Myelin servers
// over TLS on loopback: A (the stage's Myelin) creates the room; B is accepted and bob joins from B as
// `@<account key>` and is given power; bob's account then moves to C (its key exported on B, imported by
// an account on C, C accepted): C co-signs bob's next membership, bob keeps his user ID and his power on
// every server, and B can no longer send for him. Everything goes through the client APIs.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { call, createRoom, enc, eventually, join, messageBodies, newUser, sendText, type Server, type User } from "./client.js";
import { messageEvent, moreMyelins, serverKeyOf } from "./more-myelins.js";

const VERSION = "org.matrix.msc4348";
const P = "org.matrix.msc4345.participation";
const SERVER_KEY_FIELD = "org.matrix.msc4348.server_key";
const ACCOUNT_KEY = "/_matrix/client/unstable/org.matrix.msc4348/account_key";
const A: Server = inject("myelin");

const servers = moreMyelins();
let B: Server;
let C: Server;
beforeAll(async () => {
  [B, C] = await Promise.all([servers.start("msc4348-b-secret"), servers.start("msc4348-c-secret")]);
}, 180_000);
afterAll(() => servers.stopAll());

/** The account's `@<account key>` ID (its server holds the key: made on first use). */
async function accountId(user: User): Promise<string> {
  const res = await fetch(`${user.server.baseUrl}${ACCOUNT_KEY}`, { headers: { Authorization: `Bearer ${user.accessToken}` } });
  return ((await res.json()) as { user_id: string }).user_id;
}

/** POST/PUT with the password as user-interactive auth (the test users' password is pw-federation-1). */
async function withPassword(user: User, method: "POST" | "PUT", path: string, body: Record<string, unknown>) {
  const auth = { type: "m.login.password", identifier: { type: "m.id.user", user: user.userId }, password: "pw-federation-1" };
  const res = await fetch(`${user.server.baseUrl}${path}`, {
    method,
    headers: { Authorization: `Bearer ${user.accessToken}`, "Content-Type": "application/json" },
    body: JSON.stringify({ ...body, auth }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function stateEvent(user: User, roomId: string, type: string, stateKey: string): Promise<Record<string, unknown> | undefined> {
  const res = await call(user, "GET", `/rooms/${enc(roomId)}/state/${type}/${enc(stateKey)}`);
  return res.status === 200 ? (res.body as Record<string, unknown>) : undefined;
}

async function accept(admin: User, roomId: string, serverKey: string, domain: string): Promise<void> {
  const res = await call(admin, "PUT", `/rooms/${enc(roomId)}/state/${P}/${enc(serverKey)}`, { participation: "accepted", unverified_domain: domain });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

/** Joins `user` (through A) to a room its server is not accepted in yet: asked, accepted by `admin`, joined. */
async function joinThroughAcceptance(user: User, admin: User, roomId: string, serverKey: string): Promise<void> {
  const first = await join(user, roomId, [A.serverName]);
  expect(first.status, JSON.stringify(first.body)).toBe(403);
  expect(first.body.errcode).toBe("ORG.MATRIX.MSC4345_PARTICIPATION_PENDING");
  await eventually("the request on A", async () => (await stateEvent(admin, roomId, P, serverKey))?.participation === "requested");
  await accept(admin, roomId, serverKey, user.server.serverName);
  const joined = await join(user, roomId, [A.serverName]);
  expect(joined.status, JSON.stringify(joined.body)).toBe(200);
}

describe("org.matrix.msc4348 between three Myelin servers", () => {
  it("an account moves from B to C and keeps its user ID and its power; B can no longer send for it", async () => {
    const [keyA, keyB, keyC] = await Promise.all([serverKeyOf(A), serverKeyOf(B), serverKeyOf(C)]);
    const alice = await newUser(A, "alice");
    const bob = await newUser(B, "bob");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });
    const aliceId = await accountId(alice);
    const bobId = await accountId(bob);
    expect(bobId).toMatch(/^@[A-Za-z0-9_-]{43}$/);
    expect((await stateEvent(alice, roomId, "m.room.member", aliceId))?.[SERVER_KEY_FIELD]).toBe(keyA);

    // B takes part (accepted by alice on A); bob joins as @<account key>, named as hosted by B.
    await joinThroughAcceptance(bob, alice, roomId, keyB);
    await eventually("bob's join on A", async () => (await stateEvent(alice, roomId, "m.room.member", bobId))?.[SERVER_KEY_FIELD] === keyB);
    // alice gives bob's account power 50 (enough for state events at state_default).
    const levels = await call(alice, "PUT", `/rooms/${enc(roomId)}/state/m.room.power_levels/`, { users: { [bobId]: 50 } });
    expect(levels.status, JSON.stringify(levels.body)).toBe(200);
    await eventually("the power levels on B", async () => ((await stateEvent(bob, roomId, "m.room.power_levels", ""))?.users as Record<string, number> | undefined)?.[bobId] === 50);
    await sendText(bob, roomId, "hello from B");
    const fromB = await eventually("B's message on A", () => messageEvent(alice, roomId, "hello from B"));
    expect(fromB.sender).toBe(bobId);
    await eventually("A's domain verified on B for alice's events", async () => {
      await sendText(alice, roomId, "ping");
      return (await messageEvent(bob, roomId, "ping"))?.sender === aliceId;
    });

    // The move: bob exports his account key on B (after his password), releasing it (B keeps no copy);
    // an account on C imports it.
    const exported = await withPassword(bob, "POST", `${ACCOUNT_KEY}/export`, { release: true });
    expect(exported.status, JSON.stringify(exported.body)).toBe(200);
    expect(exported.body.released).toBe(true);
    const bobOnC = await newUser(C, "bob");
    const imported = await withPassword(bobOnC, "PUT", ACCOUNT_KEY, { seed: exported.body.seed });
    expect(imported.status, JSON.stringify(imported.body)).toBe(200);
    expect(imported.body.user_id).toBe(bobId);

    // C takes part (accepted by alice), then C co-signs bob's next membership: the account moved.
    await joinThroughAcceptance(bobOnC, alice, roomId, keyC);
    for (const [who, user] of [["A", alice], ["C", bobOnC], ["B", bob]] as const) {
      await eventually(`the move on ${who}`, async () => (await stateEvent(user, roomId, "m.room.member", bobId))?.[SERVER_KEY_FIELD] === keyC);
    }
    expect((await stateEvent(alice, roomId, "m.room.member", bobId))?.membership).toBe("join");

    // Same user ID, same power: from C, bob changes the topic (50 needed) and chats.
    const powerOnA = (await stateEvent(alice, roomId, "m.room.power_levels", ""))?.users as Record<string, number>;
    expect(powerOnA[bobId]).toBe(50);
    const topic = await call(bobOnC, "PUT", `/rooms/${enc(roomId)}/state/m.room.topic/`, { topic: "moved to C" });
    expect(topic.status, JSON.stringify(topic.body)).toBe(200);
    await eventually("the topic from C on A", async () => (await stateEvent(alice, roomId, "m.room.topic", ""))?.topic === "moved to C");
    await sendText(bobOnC, roomId, "hello from C");
    const fromC = await eventually("C's message on A", () => messageEvent(alice, roomId, "hello from C"));
    expect(fromC.sender).toBe(bobId);
    // (B has no member left in the room, so later events are not sent to it: it learned of the move, above.)
    const onC = await messageEvent(bobOnC, roomId, "hello from C");
    expect(onC?.unsigned?.account).toBe(bobOnC.userId.slice(1, bobOnC.userId.indexOf(":")));

    // The old server can no longer send for the account: its events are not co-signed by C.
    const stale = await call(bob, "PUT", `/rooms/${enc(roomId)}/send/m.room.message/stale1`, { msgtype: "m.text", body: "stale from B" });
    expect(stale.status).toBe(403);
    expect(stale.body.error).toMatch(/co-signed/);
    await sendText(alice, roomId, "after the move");
    await eventually("A's later message on C", async () => (await messageBodies(bobOnC, roomId)).includes("after the move"));
    expect(await messageBodies(alice, roomId)).not.toContain("stale from B");
    expect(await messageBodies(bobOnC, roomId)).not.toContain("stale from B");

    // B released the key: its account now has a new one, and joining again makes a new identity there,
    // without bob's power; bob's account stays on C.
    const newId = await accountId(bob);
    expect(newId).not.toBe(bobId);
    const rejoin = await join(bob, roomId, [A.serverName]);
    expect(rejoin.status, JSON.stringify(rejoin.body)).toBe(200);
    await eventually("B's new identity on A", async () => (await stateEvent(alice, roomId, "m.room.member", newId))?.[SERVER_KEY_FIELD] === keyB);
    expect(((await stateEvent(alice, roomId, "m.room.power_levels", ""))?.users as Record<string, number>)[newId]).toBeUndefined();
    expect((await stateEvent(alice, roomId, "m.room.member", bobId))?.[SERVER_KEY_FIELD]).toBe(keyC);
    void keyA;
  });
});
