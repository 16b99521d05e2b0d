// Rooms of version org.matrix.msc4348 (MSC4348 portable accounts) on one server: members are named by
// their account keys (`@<account key>`), every event of an account is signed by that key and co-signed
// by this server's key, the account's membership names this server (`org.matrix.msc4348.server_key`), and
// clients get `unsigned.account` (the account name) beside `unsigned.server_domain`.
import { describe, expect, it } from "vitest";
import { MEMBER_SERVER_KEY } from "../../protocol/accounts.js";
import { PARTICIPATION_EVENT_TYPE } from "../../protocol/participation.js";
import { SERVER_NAME, api, type RegisteredUser } from "./helpers.js";
import { V3, allState, byKey, createRoom, join, newUser, putState, r, roomStub, send } from "./room-helpers.js";
import { sync, timeline } from "./sync-helpers.js";

const VERSION = "org.matrix.msc4348";
const P = PARTICIPATION_EVENT_TYPE;

async function serverKey(): Promise<string> {
  const doc = (await api("GET", "/_matrix/key/v3/org.matrix.msc4345/query")).body as { verify_keys: Record<string, { key: string }> };
  return Object.values(doc.verify_keys)[0]!.key;
}

async function accountKey(u: RegisteredUser): Promise<string> {
  const res = await api("GET", "/_matrix/client/unstable/org.matrix.msc4348/account_key", { token: u.access_token });
  expect(res.status).toBe(200);
  return res.body.account_key as string;
}

describe("room version org.matrix.msc4348", () => {
  it("createRoom: the creator is @<account key>; the account key signs and the server key co-signs every event", async () => {
    const key = await serverKey();
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });
    const aliceKey = await accountKey(alice);
    const aliceId = `@${aliceKey}`;
    const res = await allState(alice, roomId);
    expect(res.status).toBe(200);
    const s = byKey(res.body);
    expect(s.get("m.room.create|")!.sender).toBe(aliceId);
    expect(s.get(`${P}|${key}`)!.content).toEqual({ participation: "accepted", unverified_domain: SERVER_NAME });
    expect(s.get(`${P}|${key}`)!.sender).toBe(aliceId);
    // decision 13: the account's membership names the server that speaks for it
    expect(s.get(`m.room.member|${aliceId}`)!.content).toMatchObject({ membership: "join", [MEMBER_SERVER_KEY]: key });
    expect(s.has(`m.room.member|${alice.user_id}`)).toBe(false);

    const pdus = await Promise.all(res.body.map((e: { event_id: string }) => roomStub(roomId).getPdu(e.event_id)));
    for (const pdu of pdus) expect(Object.keys(pdu!.signatures).sort()).toEqual([aliceKey, key].sort());
  });

  it("another local account joins and sends under its own key; clients get unsigned.account and server_domain", async () => {
    const key = await serverKey();
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    const sent = await send(bob, roomId, { msgtype: "m.text", body: "hello" });
    expect(sent.status).toBe(200);
    const bobKey = await accountKey(bob);

    const pdu = await roomStub(roomId).getPdu(sent.body.event_id);
    expect(pdu!.sender).toBe(`@${bobKey}`);
    expect(Object.keys(pdu!.signatures).sort()).toEqual([bobKey, key].sort());

    const hello = timeline(await sync(alice), roomId).find((e) => e.content.body === "hello")!;
    expect(hello.sender).toBe(`@${bobKey}`);
    const unsigned = (hello as unknown as { unsigned: Record<string, unknown> }).unsigned;
    expect(unsigned.account).toBe(bob.user_id.slice(1, bob.user_id.indexOf(":")));
    expect(unsigned.server_domain).toBe(SERVER_NAME);

    const joined = await api("GET", `${r(roomId)}/joined_members`, { token: bob.access_token });
    expect(joined.status).toBe(200);
    expect(Object.keys(joined.body.joined).sort()).toEqual([`@${await accountKey(alice)}`, `@${bobKey}`].sort());
    expect((await api("GET", `${V3}/joined_rooms`, { token: bob.access_token })).body.joined_rooms).toContain(roomId);
  });

  it("power levels name accounts by key: a promoted account may send state", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { room_version: VERSION, preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    const bobId = `@${await accountKey(bob)}`;
    expect((await putState(bob, roomId, "m.room.topic", "", { topic: "before" })).status).toBe(403);
    expect((await putState(alice, roomId, "m.room.power_levels", "", { users: { [bobId]: 50 } })).status).toBe(200);
    expect((await putState(bob, roomId, "m.room.topic", "", { topic: "after" })).status).toBe(200);
    // the power stays with the account key ID, not with a domain-form ID of the same account
    const levels = byKey((await allState(alice, roomId)).body).get("m.room.power_levels|")!;
    expect(levels.content.users).toEqual({ [bobId]: 50 });
  });

  it("a local invitee is invited by account key and joins", async () => {
    const alice = await newUser("alice");
    const carol = await newUser("carol");
    const roomId = await createRoom(alice, { room_version: VERSION, invite: [carol.user_id] });
    const carolId = `@${await accountKey(carol)}`;
    expect(byKey((await allState(alice, roomId)).body).get(`m.room.member|${carolId}`)!.content.membership).toBe("invite");
    expect((await join(carol, roomId)).status).toBe(200);
    expect((await send(carol, roomId, { msgtype: "m.text", body: "in" })).status).toBe(200);
  });

  it("export with release: the server keeps no copy; the account's next key is a new identity; a bad release changes nothing", async () => {
    const dave = await newUser("dave");
    const before = await accountKey(dave);
    const auth = { type: "m.login.password", identifier: { type: "m.id.user", user: dave.user_id }, password: `password-${dave.user_id.slice(1, dave.user_id.indexOf(":"))}` };
    const bad = await api("POST", "/_matrix/client/unstable/org.matrix.msc4348/account_key/export", { token: dave.access_token, body: { release: "yes", auth } });
    expect(bad.status).toBe(400);
    expect(bad.body.errcode).toBe("M_INVALID_PARAM");
    expect(await accountKey(dave)).toBe(before);
    // without release the key stays
    const kept = await api("POST", "/_matrix/client/unstable/org.matrix.msc4348/account_key/export", { token: dave.access_token, body: { auth } });
    expect(kept.status).toBe(200);
    expect(kept.body.released).toBeUndefined();
    expect(await accountKey(dave)).toBe(before);
    const released = await api("POST", "/_matrix/client/unstable/org.matrix.msc4348/account_key/export", { token: dave.access_token, body: { release: true, auth } });
    expect(released.status, JSON.stringify(released.body)).toBe(200);
    expect(released.body).toMatchObject({ account_key: before, released: true });
    expect(typeof released.body.seed).toBe("string");
    const after = await accountKey(dave);
    expect(after).not.toBe(before);
  });
});
