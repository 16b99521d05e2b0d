// Synapse admin API: admin-only access to every endpoint, and the user account endpoints (list, query,
// create/modify, deactivate with erase, reset password, whois, the admin flag).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, login, registerUser, uniqueLocalpart, type RegisteredUser } from "./helpers.js";
import { ADMIN, adminApi, enc, registerAdmin } from "./admin-helpers.js";
import { createRoom, getState, join, newUser } from "./room-helpers.js";

const whoami = (user: RegisteredUser) => api("GET", "/_matrix/client/v3/account/whoami", { token: user.access_token });

describe("admin API access", () => {
  const someone = "@nobody:test.local";
  const someRoom = "!nowhere:test.local";
  const endpoints: [string, string][] = [
    ["GET", "/v2/users"],
    ["GET", "/v3/users"],
    ["GET", `/v2/users/${enc(someone)}`],
    ["PUT", `/v2/users/${enc(someone)}`],
    ["POST", `/v1/deactivate/${enc(someone)}`],
    ["POST", `/v1/reset_password/${enc(someone)}`],
    ["GET", `/v1/users/${enc(someone)}/admin`],
    ["PUT", `/v1/users/${enc(someone)}/admin`],
    ["GET", `/v1/users/${enc(someone)}/joined_rooms`],
    ["GET", `/v1/whois/${enc(someone)}`],
    ["GET", "/v1/rooms"],
    ["GET", `/v1/rooms/${enc(someRoom)}`],
    ["GET", `/v1/rooms/${enc(someRoom)}/members`],
    ["GET", `/v1/rooms/${enc(someRoom)}/state`],
    ["GET", `/v1/rooms/${enc(someRoom)}/block`],
    ["PUT", `/v1/rooms/${enc(someRoom)}/block`],
    ["DELETE", `/v1/rooms/${enc(someRoom)}`],
    ["DELETE", `/v2/rooms/${enc(someRoom)}`],
    ["GET", `/v2/rooms/${enc(someRoom)}/delete_status`],
    ["GET", "/v2/rooms/delete_status/abc"],
    ["GET", "/v1/registration_tokens"],
    ["POST", "/v1/registration_tokens/new"],
    ["GET", "/v1/registration_tokens/abc"],
    ["PUT", "/v1/registration_tokens/abc"],
    ["DELETE", "/v1/registration_tokens/abc"],
    ["GET", "/v1/event_reports"],
    ["GET", "/v1/event_reports/1"],
    ["DELETE", "/v1/event_reports/1"],
    ["GET", "/v1/room_reports"],
    ["GET", "/v1/room_reports/1"],
    ["DELETE", "/v1/room_reports/1"],
    ["POST", "/v1/send_server_notice"],
    ["PUT", "/v1/send_server_notice/txn1"],
    ["GET", `/v1/users/${enc(someone)}/media`],
    ["DELETE", `/v1/users/${enc(someone)}/media`],
    ["DELETE", "/v1/media/test.local/abc"],
    ["POST", "/v1/media/quarantine/test.local/abc"],
    ["POST", "/v1/media/unquarantine/test.local/abc"],
    ["POST", "/v1/media/protect/abc"],
    ["POST", "/v1/media/unprotect/abc"],
    ["POST", `/v1/user/${enc(someone)}/media/quarantine`],
    ["GET", `/v1/room/${enc(someRoom)}/media`],
    ["POST", `/v1/room/${enc(someRoom)}/media/quarantine`],
    ["GET", "/v1/statistics/users/media"],
    ["GET", `/v1/users/${enc(someone)}/pushers`],
    ["POST", `/v1/join/${enc(someRoom)}`],
    ["GET", `/v2/users/${enc(someone)}/devices`],
    ["GET", `/v2/users/${enc(someone)}/devices/ABC`],
    ["PUT", `/v2/users/${enc(someone)}/devices/ABC`],
    ["DELETE", `/v2/users/${enc(someone)}/devices/ABC`],
    ["POST", `/v2/users/${enc(someone)}/delete_devices`],
  ];

  it("refuses every endpoint to a user without the admin flag (403 M_FORBIDDEN) and without a token (401)", async () => {
    const user = await newUser("plain");
    for (const [method, path] of endpoints) {
      const res = await adminApi(user, method, path, method === "GET" || method === "DELETE" ? undefined : { block: true, admin: true });
      expect([method, path, res.status, res.body?.errcode]).toEqual([method, path, 403, "M_FORBIDDEN"]);
      const anonymous = await api(method, `${ADMIN}${path}`);
      expect([method, path, anonymous.status, anonymous.body?.errcode]).toEqual([method, path, 401, "M_MISSING_TOKEN"]);
    }
    // The refused calls changed nothing: the user is still no admin, the room is not blocked.
    expect((await env.DB.prepare("SELECT count(*) AS n FROM blocked_rooms").first<{ n: number }>())!.n).toBe(0);
  });

  it("answers the server version without authentication (admin tools read it at login)", async () => {
    const res = await api("GET", `${ADMIN}/v1/server_version`);
    expect(res.status).toBe(200);
    expect(res.body.server_version).toMatch(/^Myelin /);
  });

  it("lets an admin in, and an admin made by another admin", async () => {
    const admin = await registerAdmin();
    const user = await newUser("promoted");
    expect((await adminApi(admin, "GET", `/v1/users/${enc(user.user_id)}/admin`)).body).toEqual({ admin: false });
    expect((await adminApi(admin, "PUT", `/v1/users/${enc(user.user_id)}/admin`, { admin: true })).status).toBe(200);
    expect((await adminApi(user, "GET", `/v1/users/${enc(user.user_id)}/admin`)).body).toEqual({ admin: true });
    expect((await adminApi(user, "GET", "/v2/users?limit=1")).status).toBe(200);
    // An admin cannot demote themselves (Synapse), but can demote another.
    const self = await adminApi(user, "PUT", `/v1/users/${enc(user.user_id)}/admin`, { admin: false });
    expect(self.status).toBe(400);
    expect((await adminApi(admin, "PUT", `/v1/users/${enc(user.user_id)}/admin`, { admin: false })).status).toBe(200);
    expect((await adminApi(user, "GET", "/v2/users?limit=1")).status).toBe(403);
    expect((await adminApi(admin, "PUT", `/v1/users/${enc(user.user_id)}/admin`, { admin: "yes" })).status).toBe(400);
    expect((await adminApi(admin, "GET", `/v1/users/${enc("@ghost-admin:test.local")}/admin`)).body.errcode).toBe("M_NOT_FOUND");
  });
});

describe("users", () => {
  it("lists users with name, user_id, admins and deactivated filters and pages them", async () => {
    const admin = await registerAdmin();
    const tag = uniqueLocalpart("lst").replace(/-/g, "");
    const names = [`${tag}a`, `${tag}b`, `${tag}c`];
    const users = [];
    for (const n of names) users.push(await registerUser(n));
    await api("PUT", `/_matrix/client/v3/profile/${enc(users[2]!.user_id)}/displayname`, { token: users[2]!.access_token, body: { displayname: "Zed Findable" } });
    expect((await adminApi(admin, "POST", `/v1/deactivate/${enc(users[1]!.user_id)}`, {})).status).toBe(200);

    let res = await adminApi(admin, "GET", `/v2/users?name=${tag}`);
    expect(res.status).toBe(200);
    expect(res.body.users.map((u: { name: string }) => u.name)).toEqual([users[0]!.user_id, users[2]!.user_id]);
    expect(res.body.total).toBe(2);
    expect(res.body.next_token).toBeUndefined();
    expect(res.body.users[1]).toMatchObject({ displayname: "Zed Findable", admin: false, deactivated: false, is_guest: false, erased: false });
    expect(typeof res.body.users[0].creation_ts).toBe("number");
    expect(res.body.users[0].creation_ts).toBeGreaterThan(1_600_000_000_000); // ms in the list

    // name matches display names too; deactivated=true includes the deactivated account.
    expect((await adminApi(admin, "GET", "/v2/users?name=zed%20find")).body.users.map((u: { name: string }) => u.name)).toContain(users[2]!.user_id);
    res = await adminApi(admin, "GET", `/v2/users?name=${tag}&deactivated=true`);
    expect(res.body.total).toBe(3);
    expect(res.body.users[1]).toMatchObject({ name: users[1]!.user_id, deactivated: true });
    // v3: deactivated=true lists only the deactivated.
    res = await adminApi(admin, "GET", `/v3/users?user_id=${tag}&deactivated=true`);
    expect(res.body.users.map((u: { name: string }) => u.name)).toEqual([users[1]!.user_id]);

    // Paging: limit 1 gives a next_token until the last page; from = total gives nothing.
    res = await adminApi(admin, "GET", `/v2/users?user_id=${tag}&deactivated=true&limit=2`);
    expect(res.body.users).toHaveLength(2);
    expect(res.body.next_token).toBe("2");
    res = await adminApi(admin, "GET", `/v2/users?user_id=${tag}&deactivated=true&limit=2&from=2`);
    expect(res.body.users.map((u: { name: string }) => u.name)).toEqual([users[2]!.user_id]);
    expect(res.body.next_token).toBeUndefined();
    res = await adminApi(admin, "GET", `/v2/users?user_id=${tag}&deactivated=true&from=3`);
    expect(res.body).toMatchObject({ users: [], total: 3 });
    // dir=b reverses; order_by displayname puts the one with a display name set by the user... by name.
    res = await adminApi(admin, "GET", `/v2/users?user_id=${tag}&deactivated=true&dir=b`);
    expect(res.body.users.map((u: { name: string }) => u.name)).toEqual([users[2]!.user_id, users[1]!.user_id, users[0]!.user_id]);
    // admins=true finds the admin only.
    res = await adminApi(admin, "GET", `/v2/users?admins=true&user_id=${enc(admin.user_id)}`);
    expect(res.body.users).toHaveLength(1);
    expect(res.body.users[0].admin).toBe(true);
    expect((await adminApi(admin, "GET", `/v2/users?admins=false&user_id=${enc(admin.user_id)}`)).body.total).toBe(0);

    for (const bad of ["from=-1", "limit=x", "deactivated=yes", "order_by=password", "dir=x", "guests=1"]) {
      const r = await adminApi(admin, "GET", `/v2/users?${bad}`);
      expect([bad, r.status, r.body.errcode]).toEqual([bad, 400, "M_INVALID_PARAM"]);
    }
    // LIKE wildcards in the filter are literal.
    expect((await adminApi(admin, "GET", "/v2/users?name=%25")).body.total).toBe(0);
  });

  it("queries one user (404 unknown, 400 another server's)", async () => {
    const admin = await registerAdmin();
    const user = await newUser("query");
    const res = await adminApi(admin, "GET", `/v2/users/${enc(user.user_id)}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ name: user.user_id, admin: false, deactivated: false, threepids: [], external_ids: [], user_type: null, locked: false });
    expect(res.body.creation_ts).toBeLessThan(10_000_000_000); // seconds, as Synapse's query
    expect(typeof res.body.last_seen_ts).toBe("number");
    const unknown = await adminApi(admin, "GET", `/v2/users/${enc("@nobody-here:test.local")}`);
    expect([unknown.status, unknown.body.errcode]).toEqual([404, "M_NOT_FOUND"]);
    expect((await adminApi(admin, "GET", `/v2/users/${enc("@someone:elsewhere.example")}`)).status).toBe(400);
  });

  it("creates a user with PUT (201) who can log in, then modifies them (200)", async () => {
    const admin = await registerAdmin();
    const localpart = uniqueLocalpart("made");
    const userId = `@${localpart}:test.local`;
    let res = await adminApi(admin, "PUT", `/v2/users/${enc(userId)}`, { password: "first-pw", displayname: "Made By Admin", admin: false, user_type: "bot", threepids: [] });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ name: userId, displayname: "Made By Admin", user_type: "bot", admin: false });
    const session = await login(localpart, "first-pw");
    expect(session.status).toBe(200);
    const user = session.body as RegisteredUser;

    // The new display name goes into the user's rooms; a new password logs out their devices.
    const roomId = await createRoom(user);
    res = await adminApi(admin, "PUT", `/v2/users/${enc(userId)}`, { displayname: "Renamed", password: "second-pw", avatar_url: "mxc://test.local/abc", user_type: null });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ displayname: "Renamed", avatar_url: "mxc://test.local/abc", user_type: null });
    expect((await whoami(user)).status).toBe(401);
    expect((await login(localpart, "first-pw")).status).toBe(403);
    const again = (await login(localpart, "second-pw")).body as RegisteredUser;
    const member = await getState(again, roomId, "m.room.member", userId);
    expect(member.body).toMatchObject({ displayname: "Renamed", avatar_url: "mxc://test.local/abc", membership: "join" });

    // logout_devices: false keeps the sessions.
    expect((await adminApi(admin, "PUT", `/v2/users/${enc(userId)}`, { password: "third-pw", logout_devices: false })).status).toBe(200);
    expect((await whoami(again)).status).toBe(200);

    // Deactivate through PUT, reactivate only with a password.
    expect((await adminApi(admin, "PUT", `/v2/users/${enc(userId)}`, { deactivated: true })).body.deactivated).toBe(true);
    expect((await whoami(again)).status).toBe(401);
    expect((await adminApi(admin, "PUT", `/v2/users/${enc(userId)}`, { deactivated: false })).status).toBe(400);
    expect((await adminApi(admin, "PUT", `/v2/users/${enc(userId)}`, { deactivated: false, password: "back-pw" })).body.deactivated).toBe(false);
    expect((await login(localpart, "back-pw")).status).toBe(200);

    // Bad input changes nothing.
    for (const body of [{ admin: "yes" }, { displayname: 5 }, { user_type: "wizard" }, { avatar_url: "http://x" }, { locked: true }, { threepids: [{ medium: "email", address: "a@b.c" }] }, { password: 12 }]) {
      const bad = await adminApi(admin, "PUT", `/v2/users/${enc(userId)}`, body);
      expect([JSON.stringify(body), bad.status]).toEqual([JSON.stringify(body), 400]);
    }
    expect((await adminApi(admin, "GET", `/v2/users/${enc(userId)}`)).body).toMatchObject({ displayname: "Renamed", user_type: null, admin: false });
    expect((await adminApi(admin, "PUT", `/v2/users/${enc("@x:elsewhere.example")}`, {})).status).toBe(400);
    expect((await adminApi(admin, "PUT", `/v2/users/${enc("@UPPER:test.local")}`, {})).status).toBe(400);
    expect((await adminApi(admin, "PUT", `/v2/users/${enc(userId)}`, "not json")).body.errcode).toBe("M_NOT_JSON");
  });

  it("deactivates with erase: no login, profile removed, rooms left", async () => {
    const admin = await registerAdmin();
    const owner = await newUser("owner");
    const user = await newUser("erased");
    const roomId = await createRoom(owner, { preset: "public_chat" });
    expect((await join(user, roomId)).status).toBe(200);
    const res = await adminApi(admin, "POST", `/v1/deactivate/${enc(user.user_id)}`, { erase: true });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id_server_unbind_result: "success" });
    expect((await whoami(user)).status).toBe(401);
    const details = (await adminApi(admin, "GET", `/v2/users/${enc(user.user_id)}`)).body;
    expect(details).toMatchObject({ deactivated: true, erased: true, displayname: null, avatar_url: null });
    expect((await getState(owner, roomId, "m.room.member", user.user_id)).body.membership).toBe("leave");
    expect((await adminApi(admin, "POST", `/v1/deactivate/${enc("@nobody-at-all:test.local")}`, {})).status).toBe(404);
    expect((await adminApi(admin, "POST", `/v1/deactivate/${enc(owner.user_id)}`, { erase: "yes" })).status).toBe(400);
    expect((await whoami(owner)).status).toBe(200);
  });

  it("resets a password, logging devices out unless asked not to", async () => {
    const admin = await registerAdmin();
    const localpart = uniqueLocalpart("reset");
    const user = await registerUser(localpart, "old-pw");
    const path = `/v1/reset_password/${enc(user.user_id)}`;
    expect((await adminApi(admin, "POST", path, {})).status).toBe(400);
    expect((await adminApi(admin, "POST", path, { new_password: "new-pw", logout_devices: false })).body).toEqual({});
    expect((await whoami(user)).status).toBe(200);
    expect((await login(localpart, "old-pw")).status).toBe(403);
    expect((await adminApi(admin, "POST", path, { new_password: "newer-pw" })).status).toBe(200);
    expect((await whoami(user)).status).toBe(401);
    expect((await login(localpart, "newer-pw")).status).toBe(200);
    expect((await adminApi(admin, "POST", `/v1/reset_password/${enc("@missing-user:test.local")}`, { new_password: "x" })).status).toBe(404);
  });

  it("whois lists devices; the client-server whois is for admins and the user themselves", async () => {
    const admin = await registerAdmin();
    const user = await newUser("whois");
    const other = await newUser("nosy");
    const res = await adminApi(admin, "GET", `/v1/whois/${enc(user.user_id)}`);
    expect(res.status).toBe(200);
    expect(res.body.user_id).toBe(user.user_id);
    expect(Object.keys(res.body.devices)).toEqual([user.device_id]);
    expect(res.body.devices[user.device_id].sessions[0].connections[0].last_seen).toBeGreaterThan(0);
    const client = (who: RegisteredUser) => api("GET", `/_matrix/client/v3/admin/whois/${enc(user.user_id)}`, { token: who.access_token });
    expect((await client(admin)).body.user_id).toBe(user.user_id);
    expect((await client(user)).status).toBe(200);
    expect((await client(other)).body.errcode).toBe("M_FORBIDDEN");
  });

  it("lists a user's pushers; deactivation removes them", async () => {
    const admin = await registerAdmin();
    const user = await newUser("pushed");
    const pusher = { kind: "http", app_id: "org.example.app", pushkey: "key-1", app_display_name: "App", device_display_name: "Phone", lang: "en", data: { url: "https://push.example/_matrix/push/v1/notify" } };
    expect((await api("POST", "/_matrix/client/v3/pushers/set", { token: user.access_token, body: pusher })).status).toBe(200);
    let res = await adminApi(admin, "GET", `/v1/users/${enc(user.user_id)}/pushers`);
    expect(res.body).toEqual({ pushers: [{ ...pusher, profile_tag: "" }].map(({ kind, app_id, pushkey, app_display_name, device_display_name, lang, data, profile_tag }) => ({ kind, app_id, pushkey, app_display_name, device_display_name, lang, data, profile_tag })), total: 1 });
    await adminApi(admin, "POST", `/v1/deactivate/${enc(user.user_id)}`, {});
    res = await adminApi(admin, "GET", `/v1/users/${enc(user.user_id)}/pushers`);
    expect(res.body).toEqual({ pushers: [], total: 0 });
    expect((await adminApi(admin, "GET", `/v1/users/${enc("@nobody-pushes:test.local")}/pushers`)).status).toBe(404);
  });

  it("lists a user's joined rooms", async () => {
    const admin = await registerAdmin();
    const user = await newUser("rooms");
    const a = await createRoom(user);
    const b = await createRoom(user);
    const res = await adminApi(admin, "GET", `/v1/users/${enc(user.user_id)}/joined_rooms`);
    expect(res.body.total).toBe(2);
    expect([...res.body.joined_rooms].sort()).toEqual([a, b].sort());
  });
});

describe("devices", () => {
  it("lists, shows, renames and deletes a user's devices", async () => {
    const admin = await registerAdmin();
    const localpart = uniqueLocalpart("devices");
    const first = await registerUser(localpart, "pw");
    const second = (await login(localpart, "pw", { initial_device_display_name: "Phone" })).body as RegisteredUser;
    const third = (await login(localpart, "pw")).body as RegisteredUser;
    const base = `/v2/users/${enc(first.user_id)}/devices`;
    let res = await adminApi(admin, "GET", base);
    expect(res.body.total).toBe(3);
    expect(res.body.devices.map((d: { device_id: string }) => d.device_id).sort()).toEqual([first.device_id, second.device_id, third.device_id].sort());
    res = await adminApi(admin, "GET", `${base}/${second.device_id}`);
    expect(res.body).toMatchObject({ device_id: second.device_id, display_name: "Phone", user_id: first.user_id });
    expect((await adminApi(admin, "PUT", `${base}/${second.device_id}`, { display_name: "Old phone" })).body).toEqual({});
    expect((await adminApi(admin, "GET", `${base}/${second.device_id}`)).body.display_name).toBe("Old phone");
    expect((await adminApi(admin, "PUT", `${base}/${second.device_id}`, { display_name: 3 })).status).toBe(400);
    expect((await adminApi(admin, "PUT", `${base}/NOPE`, { display_name: "x" })).status).toBe(404);
    expect((await adminApi(admin, "GET", `${base}/NOPE`)).status).toBe(404);

    expect((await adminApi(admin, "DELETE", `${base}/${second.device_id}`)).body).toEqual({});
    expect((await whoami(second)).status).toBe(401);
    expect((await whoami(first)).status).toBe(200);
    expect((await adminApi(admin, "POST", `/v2/users/${enc(first.user_id)}/delete_devices`, { devices: "all" })).status).toBe(400);
    expect((await adminApi(admin, "POST", `/v2/users/${enc(first.user_id)}/delete_devices`, { devices: [first.device_id, third.device_id, "UNKNOWN"] })).body).toEqual({});
    expect((await whoami(first)).status).toBe(401);
    expect((await whoami(third)).status).toBe(401);
    expect((await adminApi(admin, "GET", base)).body).toEqual({ devices: [], total: 0 });
    expect((await adminApi(admin, "GET", `/v2/users/${enc("@no-devices-user:test.local")}/devices`)).status).toBe(404);
    expect((await adminApi(admin, "GET", `/v2/users/${enc("@x:elsewhere.example")}/devices`)).status).toBe(400);
  });
});
