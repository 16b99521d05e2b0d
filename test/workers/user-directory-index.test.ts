// The user directory's rows in D1, kept by each Room DO from its current state
// (durable-objects/room/directory-index.ts) and searched by worker/client/user-directory.ts: other servers'
// members with the profile of their member event, the join rule and history visibility that make a room
// public for the directory, and a room that is behind (a crash between its commit and the D1 write, or a
// room from before the index) catching up.
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { JsonObject } from "../../protocol/json.js";
import type { DirectoryIndex } from "../../durable-objects/room/directory-index.js";
import { rewritesWhole } from "../../durable-objects/room/directory-index.js";
import type { RoomEngine } from "../../durable-objects/room/engine.js";
import { uniqueServer } from "./federation-helpers.js";
import { federationApi, leaveFromRemote, signTemplate } from "./federation-room-helpers.js";
import { api, type RegisteredUser } from "./helpers.js";
import { rawRoom } from "./partial-state-helpers.js";
import { createRoom, join, membership, newUser, putState, send } from "./room-helpers.js";

const enc = encodeURIComponent;
type RoomInstance = { engine: RoomEngine; directory: DirectoryIndex };

async function search(user: RegisteredUser, term: string): Promise<{ user_id: string; display_name?: string; avatar_url?: string }[]> {
  const res = await api("POST", "/_matrix/client/v3/user_directory/search", { token: user.access_token, body: { search_term: term } });
  expect(res.status).toBe(200);
  return res.body.results;
}

/** `userId` of `remote` joins (or, joined, changes their profile in) our room through make_join/send_join. */
async function remoteMember(remote: string, roomId: string, userId: string, profile: JsonObject): Promise<void> {
  const made = await federationApi(remote, "GET", `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(userId)}?ver=12`);
  expect(made.status, JSON.stringify(made.body)).toBe(200);
  const event = made.body.event as JsonObject;
  const signed = await signTemplate(remote, "12", event, { origin_server_ts: Date.now(), content: { ...(event.content as JsonObject), ...profile } });
  const sent = await federationApi(remote, "PUT", `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(signed.eventId)}`, signed.pdu);
  expect(sent.status, JSON.stringify(sent.body)).toBe(200);
}

const rowsOf = async (roomId: string) =>
  (await env.DB.prepare("SELECT user_id, local, displayname FROM directory_members WHERE room_id = ? ORDER BY user_id").bind(roomId).all()).results;

describe("the user directory index", () => {
  it("other servers' members: found by their member event's name once joined, by the new name after a change, not after leaving", async () => {
    const tag = `dx${crypto.randomUUID().slice(0, 6)}`;
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const remote = uniqueServer("dir");
    // The names are single words that the user ID does not contain: a search by name finds them only by name.
    const quentin = `@u-${tag}:${remote}`;
    await remoteMember(remote, roomId, quentin, { displayname: `Quentin${tag}`, avatar_url: `mxc://${remote}/q` });
    expect(await search(alice, `quentin${tag}`)).toEqual([{ user_id: quentin, display_name: `Quentin${tag}`, avatar_url: `mxc://${remote}/q` }]);
    // This server's members are stored as local (searched by their global profile, not copied).
    expect(await rowsOf(roomId)).toEqual(
      [
        { user_id: alice.user_id, local: 1, displayname: null },
        { user_id: quentin, local: 0, displayname: `Quentin${tag}` },
      ].sort((a, b) => (a.user_id < b.user_id ? -1 : 1)),
    );

    await remoteMember(remote, roomId, quentin, { displayname: `Rupert${tag}` });
    expect(await search(alice, `quentin${tag}`)).toEqual([]);
    expect(await search(alice, `rupert${tag}`)).toEqual([{ user_id: quentin, display_name: `Rupert${tag}` }]);

    await leaveFromRemote(remote, roomId, quentin);
    expect(await search(alice, tag)).toEqual([]);
    expect((await rowsOf(roomId)).map((r) => r.user_id)).toEqual([alice.user_id]);
  });

  it("another server's member whose name is not a string, or too long, is found by user ID without it", async () => {
    const tag = `dv${crypto.randomUUID().slice(0, 6)}`;
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const remote = uniqueServer("dir");
    const odd = `@odd-${tag}:${remote}`;
    const long = `@long-${tag}:${remote}`;
    await remoteMember(remote, roomId, odd, { displayname: { nested: "object" }, avatar_url: 7 });
    // 256 characters is the longest name kept; 1,001 is over the avatar limit.
    await remoteMember(remote, roomId, long, { displayname: "x".repeat(257), avatar_url: `mxc://${remote}/${"a".repeat(990)}` });
    expect(await search(alice, `odd-${tag}`)).toEqual([{ user_id: odd }]);
    expect(await search(alice, `long-${tag}`)).toEqual([{ user_id: long }]);
    await remoteMember(remote, roomId, long, { displayname: "y".repeat(256) });
    expect(await search(alice, `long-${tag}`)).toEqual([{ user_id: long, display_name: "y".repeat(256) }]);
  });

  it("a member of another server in two of the searcher's rooms is one result", async () => {
    const tag = `dy${crypto.randomUUID().slice(0, 6)}`;
    const alice = await newUser("alice");
    const remote = uniqueServer("dir");
    const walt = `@walt-${tag}:${remote}`;
    for (const name of [`Walt ${tag}`, `Walter ${tag}`]) {
      const roomId = await createRoom(alice, { preset: "public_chat" });
      await remoteMember(remote, roomId, walt, { displayname: name });
    }
    const found = await search(alice, `walt`);
    expect(found.filter((u) => u.user_id === walt)).toHaveLength(1);
  });

  it("a change of the join rule or of the history visibility makes members findable by themselves, and back", async () => {
    const tag = `dz${crypto.randomUUID().slice(0, 6)}`;
    const zoe = await newUser(tag);
    const roomId = await createRoom(zoe, { preset: "private_chat" });
    expect(await search(zoe, tag)).toEqual([]);
    expect((await putState(zoe, roomId, "m.room.join_rules", "", { join_rule: "public" })).status).toBe(200);
    expect((await search(zoe, tag)).map((u) => u.user_id)).toEqual([zoe.user_id]);
    expect((await putState(zoe, roomId, "m.room.join_rules", "", { join_rule: "invite" })).status).toBe(200);
    expect(await search(zoe, tag)).toEqual([]);
    expect((await putState(zoe, roomId, "m.room.history_visibility", "", { history_visibility: "world_readable" })).status).toBe(200);
    expect((await search(zoe, tag)).map((u) => u.user_id)).toEqual([zoe.user_id]);
  });

  it("a room behind its position writes what it lacks: all members without a position, the changes since it otherwise", async () => {
    const tag = `dw${crypto.randomUUID().slice(0, 6)}`;
    const [owner, bob, carol] = await Promise.all([newUser(`${tag}o`), newUser(`${tag}b`), newUser(`${tag}c`)]);
    const roomId = await createRoom(owner);
    for (const u of [bob, carol]) {
      expect((await membership(owner, roomId, "invite", { user_id: u.user_id })).status).toBe(200);
      expect((await join(u, roomId)).status).toBe(200);
    }
    expect((await search(owner, tag)).map((u) => u.user_id).sort()).toEqual([bob.user_id, carol.user_id].sort());
    const room = rawRoom(roomId);
    const behind = () => runInDurableObject(room, async (instance) => (instance as unknown as RoomInstance).directory.behind());
    const update = () => runInDurableObject(room, async (instance) => (instance as unknown as RoomInstance).directory.update());
    expect(await behind()).toBe(false);

    // As if the room predated the index: no rows, no position.
    await env.DB.prepare("DELETE FROM directory_members WHERE room_id = ?").bind(roomId).run();
    await runInDurableObject(room, async (instance) => (instance as unknown as RoomInstance).engine.sql.exec("DELETE FROM directory_index"));
    expect(await search(owner, tag)).toEqual([]);
    expect(await behind()).toBe(true);
    // What the DO's start runs (its constructor) writes it, in the background.
    await runInDurableObject(room, async (instance) => (instance as unknown as { catchUpDirectory(): void }).catchUpDirectory());
    await expect.poll(async () => (await search(owner, tag)).map((u) => u.user_id).sort()).toEqual([bob.user_id, carol.user_id].sort());
    expect(await behind()).toBe(false);

    // As if Carol's leave committed but its D1 write was lost: her row stays and the position is before it.
    const before = await runInDurableObject(room, async (instance) => (instance as unknown as RoomInstance).engine.sql.exec<{ through: number }>("SELECT through FROM directory_index").one().through);
    expect((await membership(carol, roomId, "leave")).status).toBe(200);
    await env.DB.prepare("INSERT INTO directory_members (room_id, user_id, local) VALUES (?, ?, 1)").bind(roomId, carol.user_id).run();
    await runInDurableObject(room, async (instance) => (instance as unknown as RoomInstance).engine.sql.exec("UPDATE directory_index SET through = ?", before));
    expect((await search(owner, tag)).map((u) => u.user_id).sort()).toEqual([bob.user_id, carol.user_id].sort());
    expect(await behind()).toBe(true);
    await update();
    expect((await search(owner, tag)).map((u) => u.user_id)).toEqual([bob.user_id]);
    expect(await behind()).toBe(false);

    // The same left behind again: the room's next commit of any event (a message here) catches up.
    await env.DB.prepare("INSERT INTO directory_members (room_id, user_id, local) VALUES (?, ?, 1)").bind(roomId, carol.user_id).run();
    await runInDurableObject(room, async (instance) => (instance as unknown as RoomInstance).engine.sql.exec("UPDATE directory_index SET through = ?", before));
    expect((await send(owner, roomId, { msgtype: "m.text", body: "hello" })).status).toBe(200);
    await expect.poll(async () => (await search(owner, tag)).map((u) => u.user_id)).toEqual([bob.user_id]);
    expect(await behind()).toBe(false);
  });

  it("a commit of other state moves the position past it without a write (the check after each commit stays short)", async () => {
    const owner = await newUser("topic");
    const roomId = await createRoom(owner);
    const room = rawRoom(roomId);
    const read = () =>
      runInDurableObject(room, async (instance) => {
        const sql = (instance as unknown as RoomInstance).engine.sql;
        return {
          through: sql.exec<{ through: number }>("SELECT through FROM directory_index").one().through,
          head: sql.exec<{ head: number }>("SELECT MAX(stream_ordering) AS head FROM state_deltas").one().head,
        };
      });
    const before = await read();
    expect(before.through).toBe(before.head);
    expect((await putState(owner, roomId, "m.room.topic", "", { topic: "news" })).status).toBe(200);
    const after = await read();
    expect(after.head).toBeGreaterThan(before.head);
    expect(after.through).toBe(after.head);
  });

  it("a join is answered even when its directory write never finishes", async () => {
    const [owner, bob] = await Promise.all([newUser("slow"), newUser("slowbob")]);
    const roomId = await createRoom(owner, { preset: "public_chat" });
    const room = rawRoom(roomId);
    // A D1 that never answers: the room's directory writes hang.
    await runInDurableObject(room, async (instance) => {
      (instance as unknown as RoomInstance).directory.update = () => new Promise<void>(() => {});
    });
    // Without the bound, this request would never be answered (the test would time out).
    expect((await join(bob, roomId)).status).toBe(200);
  });

  it("more changed members than the limit since the position: the room's rows are written whole", () => {
    expect(rewritesWhole(500)).toBe(false);
    expect(rewritesWhole(501)).toBe(true);
  });
});
