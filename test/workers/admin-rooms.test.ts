// Synapse admin API: rooms (list, details, members, state, block, delete with purge), event and room
// reports, server notices and media administration.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../worker/index.js";
import type { Env } from "../../worker/env.js";
import { api, SERVER_NAME, type RegisteredUser } from "./helpers.js";
import { adminApi, enc, registerAdmin } from "./admin-helpers.js";
import { createRoom, getState, join, membership, newUser, r, roomStub, send } from "./room-helpers.js";
import { sync } from "./sync-helpers.js";

/** The room list once the rooms' event index rows (written after commit, in the background) are in. */
async function listedRooms(admin: RegisteredUser, query: string, expected: number): Promise<{ status: number; body: any }> {
  let res = await adminApi(admin, "GET", `/v1/rooms?${query}`);
  for (let i = 0; i < 50 && res.status === 200 && res.body.rooms.length < expected; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    res = await adminApi(admin, "GET", `/v1/rooms?${query}`);
  }
  return res;
}

describe("rooms", () => {
  it("lists rooms with search_term, order_by, dir and paging", async () => {
    const admin = await registerAdmin();
    const owner = await newUser("lister");
    const guest = await newUser("joiner");
    const tag = `Zq${crypto.randomUUID().slice(0, 6)}`;
    const a = await createRoom(owner, { name: `${tag} Alpha`, preset: "public_chat", visibility: "public" });
    const b = await createRoom(owner, { name: `${tag} Beta`, room_alias_name: `${tag.toLowerCase()}-b` });
    const c = await createRoom(owner, { name: `${tag} Gamma`, preset: "public_chat" });
    expect((await join(guest, c)).status).toBe(200);

    let res = await listedRooms(admin, `search_term=${tag.toLowerCase()}`, 3);
    expect(res.status).toBe(200);
    expect(res.body.rooms.map((x: { room_id: string }) => x.room_id)).toEqual([a, b, c]);
    expect(res.body).toMatchObject({ offset: 0, total_rooms: 3 });
    expect(res.body.next_batch).toBeUndefined();
    expect(res.body.rooms[0]).toMatchObject({
      room_id: a,
      name: `${tag} Alpha`,
      joined_members: 1,
      joined_local_members: 1,
      version: expect.any(String),
      creator: owner.user_id,
      federatable: true,
      public: true,
      join_rules: "public",
      history_visibility: "shared",
      room_type: null,
      encryption: null,
    });
    expect(res.body.rooms[0].state_events).toBeGreaterThan(4);
    expect(res.body.rooms[1]).toMatchObject({ canonical_alias: `#${tag.toLowerCase()}-b:${SERVER_NAME}`, public: false, join_rules: "invite" });

    // By size, descending; ties by room ID.
    res = await adminApi(admin, "GET", `/v1/rooms?search_term=${tag}&order_by=joined_members&dir=b`);
    expect(res.body.rooms[0].room_id).toBe(c);
    expect(res.body.rooms[0].joined_members).toBe(2);
    // The alias and the room ID are searched too.
    expect((await adminApi(admin, "GET", `/v1/rooms?search_term=${enc(`${tag.toLowerCase()}-b`)}`)).body.rooms.map((x: { room_id: string }) => x.room_id)).toEqual([b]);
    expect((await adminApi(admin, "GET", `/v1/rooms?search_term=${enc(c)}`)).body.rooms.map((x: { room_id: string }) => x.room_id)).toEqual([c]);
    // Paging.
    res = await adminApi(admin, "GET", `/v1/rooms?search_term=${tag}&limit=2`);
    expect(res.body.rooms).toHaveLength(2);
    expect(res.body.next_batch).toBe(2);
    res = await adminApi(admin, "GET", `/v1/rooms?search_term=${tag}&limit=2&from=2`);
    expect(res.body.rooms.map((x: { room_id: string }) => x.room_id)).toEqual([c]);
    expect(res.body).toMatchObject({ offset: 2, prev_batch: 0, total_rooms: 3 });
    expect(res.body.next_batch).toBeUndefined();
    expect((await adminApi(admin, "GET", `/v1/rooms?search_term=${tag}&public_rooms=true`)).body.rooms.map((x: { room_id: string }) => x.room_id)).toEqual([a]);

    for (const bad of ["order_by=secret", "dir=sideways", "from=-2", "limit=ten", "search_term="]) {
      const res2 = await adminApi(admin, "GET", `/v1/rooms?${bad}`);
      expect([bad, res2.status]).toEqual([bad, 400]);
    }
  });

  it("shows a room's details, members and state; 404 for an unknown room, 400 for a bad ID", async () => {
    const admin = await registerAdmin();
    const owner = await newUser("details");
    const other = await newUser("member");
    const roomId = await createRoom(owner, { name: "Detailed", topic: "All about it", preset: "public_chat" });
    await join(other, roomId);
    const res = await adminApi(admin, "GET", `/v1/rooms/${enc(roomId)}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ room_id: roomId, name: "Detailed", topic: "All about it", joined_members: 2, joined_local_members: 2, joined_local_devices: 2, public: false });
    const members = await adminApi(admin, "GET", `/v1/rooms/${enc(roomId)}/members`);
    expect(members.body).toEqual({ members: [owner.user_id, other.user_id].sort(), total: 2 });
    const state = await adminApi(admin, "GET", `/v1/rooms/${enc(roomId)}/state`);
    const types = state.body.state.map((e: { type: string }) => e.type);
    expect(types).toContain("m.room.create");
    expect(types).toContain("m.room.topic");
    expect(state.body.state.find((e: { type: string }) => e.type === "m.room.name").content).toEqual({ name: "Detailed" });

    const unknown = `!unknown-${crypto.randomUUID().slice(0, 8)}:${SERVER_NAME}`;
    for (const path of [`/v1/rooms/${enc(unknown)}`, `/v1/rooms/${enc(unknown)}/members`, `/v1/rooms/${enc(unknown)}/state`]) {
      const r404 = await adminApi(admin, "GET", path);
      expect([path, r404.status, r404.body.errcode]).toEqual([path, 404, "M_NOT_FOUND"]);
    }
    expect((await adminApi(admin, "GET", `/v1/rooms/not-a-room`)).status).toBe(400);
  });

  it("blocks a room: local users cannot join or be invited until it is unblocked", async () => {
    const admin = await registerAdmin();
    const owner = await newUser("blockowner");
    const user = await newUser("blocked");
    const roomId = await createRoom(owner, { preset: "public_chat" });
    expect((await adminApi(admin, "GET", `/v1/rooms/${enc(roomId)}/block`)).body).toEqual({ block: false });
    expect((await adminApi(admin, "PUT", `/v1/rooms/${enc(roomId)}/block`, { block: "yes" })).status).toBe(400);
    expect((await adminApi(admin, "PUT", `/v1/rooms/${enc(roomId)}/block`, { block: true })).body).toEqual({ block: true });
    expect((await adminApi(admin, "GET", `/v1/rooms/${enc(roomId)}/block`)).body).toEqual({ block: true, user_id: admin.user_id });
    const refused = await join(user, roomId);
    expect([refused.status, refused.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    expect((await membership(owner, roomId, "invite", { user_id: user.user_id })).status).toBe(403);
    // Members may still talk and leave.
    expect((await send(owner, roomId, { msgtype: "m.text", body: "still here" })).status).toBe(200);
    expect((await adminApi(admin, "PUT", `/v1/rooms/${enc(roomId)}/block`, { block: false })).body).toEqual({ block: false });
    expect((await join(user, roomId)).status).toBe(200);
  });

  it("deletes a room (v2): members leave and move to a new room, aliases go, the room is purged and blocked", async () => {
    const admin = await registerAdmin();
    const owner = await newUser("doomed");
    const member = await newUser("kicked");
    const invitee = await newUser("invited");
    const alias = `doomed-${crypto.randomUUID().slice(0, 6)}`;
    const roomId = await createRoom(owner, { preset: "public_chat", room_alias_name: alias, visibility: "public" });
    await join(member, roomId);
    await membership(owner, roomId, "invite", { user_id: invitee.user_id });
    await send(member, roomId, { msgtype: "m.text", body: "bad content" });
    const before = await sync(member);
    await listedRooms(admin, `search_term=${enc(roomId)}`, 1);
    const directoryRooms = () => env.DB.prepare("SELECT count(*) AS n FROM directory_rooms WHERE room_id = ?").bind(roomId).first<{ n: number }>();
    expect((await directoryRooms())!.n).toBe(1);

    expect((await adminApi(admin, "DELETE", `/v2/rooms/${enc(roomId)}`, { purge: "yes" })).status).toBe(400);
    expect((await adminApi(admin, "DELETE", `/v2/rooms/${enc(roomId)}`, { new_room_user_id: "@ghost-creator:test.local" })).status).toBe(400);
    expect((await adminApi(admin, "DELETE", `/v2/rooms/${enc(roomId)}`, { new_room_user_id: "@someone:elsewhere.example" })).status).toBe(400);
    expect((await adminApi(admin, "GET", `/v2/rooms/${enc(roomId)}/delete_status`)).status).toBe(404);
    const res = await adminApi(admin, "DELETE", `/v2/rooms/${enc(roomId)}`, { new_room_user_id: admin.user_id, room_name: "Moved", message: "Gone.", block: true, purge: true });
    expect(res.status).toBe(200);
    const deleteId = res.body.delete_id as string;
    expect(typeof deleteId).toBe("string");

    const status = await adminApi(admin, "GET", `/v2/rooms/delete_status/${deleteId}`);
    expect(status.body.status).toBe("complete");
    expect(status.body.shutdown_room.kicked_users.sort()).toEqual([owner.user_id, member.user_id].sort());
    expect(status.body.shutdown_room.failed_to_kick_users).toEqual([]);
    expect(status.body.shutdown_room.local_aliases).toEqual([`#${alias}:${SERVER_NAME}`]);
    const newRoom = status.body.shutdown_room.new_room_id as string;
    const byRoom = await adminApi(admin, "GET", `/v2/rooms/${enc(roomId)}/delete_status`);
    expect(byRoom.body.results).toEqual([{ ...status.body, delete_id: deleteId, room_id: roomId }]);

    // The room is gone: unknown to the admin API, the DO, the alias directory and the event index.
    expect((await adminApi(admin, "GET", `/v1/rooms/${enc(roomId)}`)).status).toBe(404);
    expect(await roomStub(roomId).roomInfo()).toBeNull();
    expect((await api("GET", `/_matrix/client/v3/directory/room/${enc(`#${alias}:${SERVER_NAME}`)}`)).status).toBe(404);
    expect((await env.DB.prepare("SELECT count(*) AS n FROM event_rooms WHERE room_id = ?").bind(roomId).first<{ n: number }>())!.n).toBe(0);
    // The user directory's rows too (the members' leaves removed theirs; the purge, the room's).
    expect((await directoryRooms())!.n).toBe(0);
    expect((await env.DB.prepare("SELECT count(*) AS n FROM directory_members WHERE room_id = ?").bind(roomId).first<{ n: number }>())!.n).toBe(0);
    expect((await adminApi(admin, "GET", `/v1/rooms?search_term=${enc(roomId)}`)).body.rooms).toEqual([]);
    // The members were moved to the new room, where the admin's message waits; the invite was rejected.
    expect((await getState(member, newRoom, "m.room.member", member.user_id)).body.membership).toBe("join");
    expect((await adminApi(admin, "GET", `/v1/rooms/${enc(newRoom)}`)).body).toMatchObject({ name: "Moved", joined_members: 3 });
    const next = await sync(member, { since: before.next_batch });
    expect(next.rooms.leave[roomId]).toBeDefined();
    expect(next.rooms.join[newRoom].timeline.events.some((e: { content: { body?: string } }) => e.content.body === "Gone.")).toBe(true);
    expect((await sync(invitee)).rooms?.invite?.[roomId]).toBeUndefined();
    // Blocked: nobody joins it again (not even through a new room of the same ID).
    expect((await join(member, roomId)).status).toBe(403);
    // A second delete of the now unknown room is 404 unless it blocks.
    expect((await adminApi(admin, "DELETE", `/v2/rooms/${enc(roomId)}`, {})).status).toBe(404);
    expect((await adminApi(admin, "DELETE", `/v2/rooms/${enc(roomId)}`, { block: true })).status).toBe(200);
    expect((await adminApi(admin, "GET", "/v2/rooms/delete_status/nope")).status).toBe(404);
  });

  it("deletes without purge (v1): the members leave, the room's history stays", async () => {
    const admin = await registerAdmin();
    const owner = await newUser("kept");
    const roomId = await createRoom(owner);
    const res = await adminApi(admin, "DELETE", `/v1/rooms/${enc(roomId)}`, { purge: false });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ kicked_users: [owner.user_id], failed_to_kick_users: [], local_aliases: [], new_room_id: null });
    expect((await adminApi(admin, "GET", `/v1/rooms/${enc(roomId)}`)).body).toMatchObject({ joined_members: 0 });
    expect((await adminApi(admin, "GET", `/v1/rooms/${enc(roomId)}/block`)).body).toEqual({ block: false });
  });
});

describe("joining users to rooms", () => {
  it("joins a local user to a public room, and to a private one the admin is in (inviting first)", async () => {
    const admin = await registerAdmin();
    const owner = await newUser("joinowner");
    const user = await newUser("joined");
    const alias = `pub-${crypto.randomUUID().slice(0, 6)}`;
    const publicRoom = await createRoom(owner, { preset: "public_chat", room_alias_name: alias });
    let res = await adminApi(admin, "POST", `/v1/join/${enc(`#${alias}:${SERVER_NAME}`)}`, { user_id: user.user_id });
    expect(res.body).toEqual({ room_id: publicRoom });
    expect((await getState(owner, publicRoom, "m.room.member", user.user_id)).body.membership).toBe("join");

    const privateRoom = await createRoom(owner);
    res = await adminApi(admin, "POST", `/v1/join/${enc(privateRoom)}`, { user_id: user.user_id });
    expect([res.status, res.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    expect((await getState(owner, privateRoom, "m.room.member", user.user_id)).status).toBe(404);
    await membership(owner, privateRoom, "invite", { user_id: admin.user_id });
    await join(admin, privateRoom);
    await api("PUT", `${r(privateRoom)}/state/m.room.power_levels/`, {
      token: owner.access_token,
      body: { ...(await getState(owner, privateRoom, "m.room.power_levels")).body, invite: 0 },
    });
    res = await adminApi(admin, "POST", `/v1/join/${enc(privateRoom)}`, { user_id: user.user_id });
    expect(res.body).toEqual({ room_id: privateRoom });
    expect((await getState(owner, privateRoom, "m.room.member", user.user_id)).body.membership).toBe("join");

    expect((await adminApi(admin, "POST", `/v1/join/${enc(publicRoom)}`, { user_id: "@x:elsewhere.example" })).status).toBe(400);
    expect((await adminApi(admin, "POST", `/v1/join/${enc(publicRoom)}`, { user_id: "@nobody-joins:test.local" })).status).toBe(404);
    expect((await adminApi(admin, "POST", `/v1/join/${enc(`!nothing:${SERVER_NAME}`)}`, { user_id: user.user_id })).status).toBe(404);
    expect((await adminApi(admin, "POST", `/v1/join/${enc(`#missing:${SERVER_NAME}`)}`, { user_id: user.user_id })).status).toBe(404);
    expect((await adminApi(admin, "POST", `/v1/join/${enc(publicRoom)}`, {})).status).toBe(400);
  });
});

describe("reports", () => {
  it("lists, shows and deletes event reports and room reports", async () => {
    const admin = await registerAdmin();
    const owner = await newUser("reported");
    const reporter = await newUser("reporter");
    const roomId = await createRoom(owner, { name: "Reported Room", topic: "Spam", preset: "public_chat" });
    await join(reporter, roomId);
    const eventId = (await send(owner, roomId, { msgtype: "m.text", body: "offensive" })).body.event_id as string;
    expect((await api("POST", `${r(roomId)}/report/${enc(eventId)}`, { token: reporter.access_token, body: { reason: "rude" } })).status).toBe(200);
    expect((await api("POST", `${r(roomId)}/report`, { token: reporter.access_token, body: { reason: "whole room" } })).status).toBe(200);

    let res = await adminApi(admin, "GET", `/v1/event_reports?room_id=${enc(roomId)}`);
    expect(res.status).toBe(200);
    expect(res.body.total).toBe(1);
    const report = res.body.event_reports[0];
    expect(report).toMatchObject({ room_id: roomId, event_id: eventId, user_id: reporter.user_id, sender: owner.user_id, reason: "rude", name: "Reported Room", canonical_alias: null });
    res = await adminApi(admin, "GET", `/v1/event_reports/${report.id}`);
    expect(res.body.event_json).toMatchObject({ type: "m.room.message", content: { body: "offensive" }, sender: owner.user_id });
    expect((await adminApi(admin, "GET", `/v1/event_reports?user_id=${enc(reporter.user_id)}&sender_user_id=${enc(owner.user_id)}`)).body.event_reports).toHaveLength(1);
    expect((await adminApi(admin, "GET", `/v1/event_reports?user_id=${enc("@somebody-else")}`)).body).toMatchObject({ event_reports: [], total: 0 });

    res = await adminApi(admin, "GET", `/v1/room_reports?room_id=${enc(roomId)}`);
    expect(res.body.total).toBe(1);
    const roomReport = res.body.room_reports[0];
    expect(roomReport).toMatchObject({ room_id: roomId, user_id: reporter.user_id, reason: "whole room", name: "Reported Room", topic: "Spam" });
    expect((await adminApi(admin, "GET", `/v1/room_reports/${roomReport.id}`)).body).toEqual(roomReport);
    // An event report is not a room report and the other way round.
    expect((await adminApi(admin, "GET", `/v1/room_reports/${report.id}`)).status).toBe(404);
    expect((await adminApi(admin, "GET", `/v1/event_reports/${roomReport.id}`)).status).toBe(404);
    expect((await adminApi(admin, "GET", "/v1/event_reports/abc")).status).toBe(400);

    expect((await adminApi(admin, "DELETE", `/v1/event_reports/${report.id}`)).body).toEqual({});
    expect((await adminApi(admin, "DELETE", `/v1/event_reports/${report.id}`)).status).toBe(404);
    expect((await adminApi(admin, "DELETE", `/v1/room_reports/${roomReport.id}`)).body).toEqual({});
    expect((await adminApi(admin, "GET", `/v1/room_reports?room_id=${enc(roomId)}`)).body.total).toBe(0);
  });

  it("pages event reports with from/limit/next_token and dir", async () => {
    const admin = await registerAdmin();
    const owner = await newUser("paged");
    const roomId = await createRoom(owner);
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const eventId = (await send(owner, roomId, { msgtype: "m.text", body: `m${i}` })).body.event_id as string;
      await api("POST", `${r(roomId)}/report/${enc(eventId)}`, { token: owner.access_token, body: { reason: `r${i}` } });
      ids.push(eventId);
    }
    let res = await adminApi(admin, "GET", `/v1/event_reports?room_id=${enc(roomId)}&limit=2`);
    expect(res.body.event_reports.map((x: { reason: string }) => x.reason)).toEqual(["r2", "r1"]);
    expect(res.body.next_token).toBe(2);
    res = await adminApi(admin, "GET", `/v1/event_reports?room_id=${enc(roomId)}&limit=2&from=2`);
    expect(res.body.event_reports.map((x: { reason: string }) => x.reason)).toEqual(["r0"]);
    expect(res.body.next_token).toBeUndefined();
    res = await adminApi(admin, "GET", `/v1/event_reports?room_id=${enc(roomId)}&dir=f`);
    expect(res.body.event_reports.map((x: { event_id: string }) => x.event_id)).toEqual(ids);
  });
});

describe("server notices", () => {
  const app = buildApp();
  const noticesEnv: Env = { ...(env as unknown as Env), SERVER_NOTICES_LOCALPART: "notices", SERVER_NOTICES_DISPLAY_NAME: "Server Notices Bot", SERVER_NOTICES_ROOM_NAME: "Notices" };
  const notice = async (admin: RegisteredUser, body: unknown, e: Env = noticesEnv, txnId?: string) => {
    const res = await app.fetch(
      new Request(`https://${SERVER_NAME}/_synapse/admin/v1/send_server_notice${txnId ? `/${txnId}` : ""}`, {
        method: txnId ? "PUT" : "POST",
        headers: { Authorization: `Bearer ${admin.access_token}`, "Content-Type": "application/json" },
        body: JSON.stringify(body),
      }),
      e,
    );
    return { status: res.status, body: (await res.json()) as any };
  };

  it("is off unless configured", async () => {
    const admin = await registerAdmin();
    const user = await newUser("nonotice");
    const res = await notice(admin, { user_id: user.user_id, content: { msgtype: "m.text", body: "hi" } }, env as unknown as Env);
    expect(res.status).toBe(400);
  });

  it("sends notices from the system user in a room tagged m.server_notice, reused until the user leaves", async () => {
    const admin = await registerAdmin();
    const user = await newUser("noticed");
    const content = { msgtype: "m.text", body: "Maintenance tonight" };
    const first = await notice(admin, { user_id: user.user_id, content });
    expect(first.status).toBe(200);
    expect(first.body.event_id).toMatch(/^\$/);
    const invited = await sync(user);
    const [roomId] = Object.keys(invited.rooms.invite);
    expect(roomId).toBeDefined();
    const tag = await api("GET", `/_matrix/client/v3/user/${enc(user.user_id)}/rooms/${enc(roomId!)}/account_data/m.tag`, { token: user.access_token });
    expect(tag.body).toEqual({ tags: { "m.server_notice": {} } });
    // The invite cannot be rejected (Synapse: M_CANNOT_LEAVE_SERVER_NOTICE_ROOM); the user stays invited.
    const leave = () =>
      app.fetch(
        new Request(`https://${SERVER_NAME}${r(roomId!)}/leave`, { method: "POST", headers: { Authorization: `Bearer ${user.access_token}`, "Content-Type": "application/json" }, body: "{}" }),
        noticesEnv,
      );
    const rejected = await leave();
    expect(rejected.status).toBe(403);
    expect(((await rejected.json()) as { errcode: string }).errcode).toBe("M_CANNOT_LEAVE_SERVER_NOTICE_ROOM");
    expect((await roomStub(roomId!).membership(user.user_id))?.membership).toBe("invite");
    expect((await join(user, roomId!)).status).toBe(200);
    const state = await api("GET", `${r(roomId!)}/state`, { token: user.access_token });
    const byType = (type: string, key = "") => state.body.find((e: { type: string; state_key: string }) => e.type === type && e.state_key === key);
    expect(byType("m.room.name").content.name).toBe("Notices");
    expect(byType("m.room.create").content["m.federate"]).toBe(false);
    expect(byType("m.room.member", "@notices:test.local").content.displayname).toBe("Server Notices Bot");
    // The user cannot post there.
    expect((await send(user, roomId!, { msgtype: "m.text", body: "reply" })).status).toBe(403);

    const second = await notice(admin, { user_id: user.user_id, content: { msgtype: "m.text", body: "Done" } }, noticesEnv, "txn-1");
    const retry = await notice(admin, { user_id: user.user_id, content: { msgtype: "m.text", body: "Done" } }, noticesEnv, "txn-1");
    expect(retry.body.event_id).toBe(second.body.event_id);
    const messages = await api("GET", `${r(roomId!)}/messages?dir=b&limit=5`, { token: user.access_token });
    expect(messages.body.chunk.filter((e: { type: string }) => e.type === "m.room.message").map((e: { content: { body: string } }) => e.content.body)).toEqual(["Done", "Maintenance tonight"]);

    // Once joined the user may leave; the next notice invites them back into the same room (as Synapse).
    expect((await leave()).status).toBe(200);
    expect((await notice(admin, { user_id: user.user_id, content: { msgtype: "m.text", body: "Again" } })).status).toBe(200);
    const rows = await env.DB.prepare("SELECT room_id FROM server_notice_rooms WHERE user_id = ?").bind(user.user_id).first<{ room_id: string }>();
    expect(rows!.room_id).toBe(roomId);
    expect((await roomStub(roomId!).membership(user.user_id))?.membership).toBe("invite");
    // The system user cannot log in.
    expect((await api("POST", "/_matrix/client/v3/login", { body: { type: "m.login.password", identifier: { type: "m.id.user", user: "notices" }, password: "" } })).status).toBe(403);
  });

  it("refuses bad requests", async () => {
    const admin = await registerAdmin();
    const user = await newUser("badnotice");
    for (const [body, status] of [
      [{ content: { body: "x" } }, 400],
      [{ user_id: user.user_id }, 400],
      [{ user_id: user.user_id, content: "text" }, 400],
      [{ user_id: "@someone:elsewhere.example", content: { body: "x" } }, 400],
      [{ user_id: "@nobody-here-at-all:test.local", content: { body: "x" } }, 404],
    ] as const) {
      expect([JSON.stringify(body), (await notice(admin, body)).status]).toEqual([JSON.stringify(body), status]);
    }
    expect((await env.DB.prepare("SELECT count(*) AS n FROM server_notice_rooms WHERE user_id = ?").bind(user.user_id).first<{ n: number }>())!.n).toBe(0);
  });
});

describe("media", () => {
  async function upload(user: RegisteredUser, text: string): Promise<string> {
    const res = await buildApp().fetch(
      new Request(`https://${SERVER_NAME}/_matrix/media/v3/upload?filename=f.txt`, { method: "POST", headers: { Authorization: `Bearer ${user.access_token}`, "Content-Type": "text/plain" }, body: text }),
      env,
    );
    const body = (await res.json()) as { content_uri: string };
    return body.content_uri.split("/").pop()!;
  }
  const download = async (user: RegisteredUser, mediaId: string) => {
    const res = await buildApp().fetch(new Request(`https://${SERVER_NAME}/_matrix/client/v1/media/download/${SERVER_NAME}/${mediaId}`, { headers: { Authorization: `Bearer ${user.access_token}` } }), env);
    await res.arrayBuffer();
    return res.status;
  };

  it("lists a user's media, quarantines (by file, user and room, skipping protected files) and deletes", async () => {
    const admin = await registerAdmin();
    const user = await newUser("uploader");
    const [m1, m2, m3] = [await upload(user, "one"), await upload(user, "two two"), await upload(user, "three")];
    let res = await adminApi(admin, "GET", `/v1/users/${enc(user.user_id)}/media`);
    expect(res.body.total).toBe(3);
    expect(res.body.media.map((m: { media_id: string }) => m.media_id).sort()).toEqual([m1, m2, m3].sort());
    expect(res.body.media.find((m: { media_id: string }) => m.media_id === m2)).toMatchObject({ media_type: "text/plain", media_length: 7, upload_name: "f.txt", quarantined_by: null, safe_from_quarantine: false });
    res = await adminApi(admin, "GET", `/v1/users/${enc(user.user_id)}/media?order_by=media_length&dir=b&limit=1`);
    expect(res.body.media[0].media_id).toBe(m2);
    expect(res.body.next_token).toBe(1);

    // One file.
    expect((await adminApi(admin, "POST", `/v1/media/quarantine/${SERVER_NAME}/${m1}`)).body).toEqual({});
    expect(await download(user, m1)).toBe(404);
    expect((await adminApi(admin, "POST", `/v1/media/unquarantine/${SERVER_NAME}/${m1}`)).body).toEqual({});
    expect(await download(user, m1)).toBe(200);
    // By room: the files the room's events name.
    const roomId = await createRoom(user);
    await send(user, roomId, { msgtype: "m.file", body: "f.txt", url: `mxc://${SERVER_NAME}/${m3}` });
    res = await adminApi(admin, "GET", `/v1/room/${enc(roomId)}/media`);
    expect(res.body).toEqual({ local: [`mxc://${SERVER_NAME}/${m3}`], remote: [] });
    expect((await adminApi(admin, "POST", `/v1/room/${enc(roomId)}/media/quarantine`)).body).toEqual({ num_quarantined: 1 });
    expect(await download(user, m3)).toBe(404);
    // By user, except protected files.
    expect((await adminApi(admin, "POST", `/v1/media/protect/${m2}`)).body).toEqual({});
    expect((await adminApi(admin, "POST", `/v1/user/${enc(user.user_id)}/media/quarantine`)).body).toEqual({ num_quarantined: 1 });
    expect(await download(user, m1)).toBe(404);
    expect(await download(user, m2)).toBe(200);
    res = await adminApi(admin, "GET", `/v1/users/${enc(user.user_id)}/media`);
    expect(res.body.media.filter((m: { quarantined_by: string | null }) => m.quarantined_by === admin.user_id)).toHaveLength(2);

    // Delete one, then the rest.
    expect((await adminApi(admin, "DELETE", `/v1/media/${SERVER_NAME}/${m2}`)).body).toEqual({ deleted_media: [m2], total: 1 });
    expect(await download(user, m2)).toBe(404);
    expect((await env.MEDIA.get(`local/${m2}`))).toBeNull();
    expect((await adminApi(admin, "DELETE", `/v1/media/${SERVER_NAME}/${m2}`)).status).toBe(404);
    expect((await adminApi(admin, "DELETE", `/v1/media/elsewhere.example/${m2}`)).status).toBe(400);
    res = await adminApi(admin, "DELETE", `/v1/users/${enc(user.user_id)}/media`);
    expect(res.body.total).toBe(2);
    expect(res.body.deleted_media.sort()).toEqual([m1, m3].sort());
    expect((await adminApi(admin, "GET", `/v1/users/${enc(user.user_id)}/media`)).body).toEqual({ media: [], total: 0 });
    expect((await adminApi(admin, "GET", `/v1/users/${enc("@nobody-media:test.local")}/media`)).status).toBe(404);
    // Nothing of the user's is left in the statistics either.
    expect((await adminApi(admin, "GET", `/v1/statistics/users/media?search_term=${enc(user.user_id)}`)).body).toEqual({ users: [], total: 0 });
    expect((await adminApi(admin, "GET", `/v1/room/${enc(`!nope:${SERVER_NAME}`)}/media`)).status).toBe(404);
  });
});

describe("media statistics", () => {
  it("counts uploads per user, ordered and filtered", async () => {
    const admin = await registerAdmin();
    const big = await newUser("bigstat");
    const small = await newUser("smallstat");
    const upload = (user: RegisteredUser, text: string) =>
      buildApp().fetch(new Request(`https://${SERVER_NAME}/_matrix/media/v3/upload`, { method: "POST", headers: { Authorization: `Bearer ${user.access_token}`, "Content-Type": "text/plain" }, body: text }), env);
    await (await upload(big, "aaaaaaaaaa")).arrayBuffer();
    await (await upload(big, "bbbbb")).arrayBuffer();
    await (await upload(small, "c")).arrayBuffer();
    let res = await adminApi(admin, "GET", "/v1/statistics/users/media?search_term=stat-&order_by=media_length&dir=b");
    expect(res.body.users).toEqual([
      { user_id: big.user_id, displayname: big.user_id.slice(1, big.user_id.indexOf(":")), media_count: 2, media_length: 15 },
      { user_id: small.user_id, displayname: small.user_id.slice(1, small.user_id.indexOf(":")), media_count: 1, media_length: 1 },
    ]);
    expect(res.body.total).toBe(2);
    res = await adminApi(admin, "GET", "/v1/statistics/users/media?search_term=stat-&order_by=media_count&limit=1");
    expect(res.body.users.map((u: { user_id: string }) => u.user_id)).toEqual([small.user_id]);
    expect(res.body.next_token).toBe(1);
    expect((await adminApi(admin, "GET", `/v1/statistics/users/media?search_term=stat-&until_ts=${Date.now() - 3_600_000}`)).body.total).toBe(0);
    for (const bad of ["order_by=size", "search_term=", "from_ts=x", "from_ts=10&until_ts=5"]) {
      expect([bad, (await adminApi(admin, "GET", `/v1/statistics/users/media?${bad}`)).status]).toEqual([bad, 400]);
    }
  });
});
