// Application services on the Client-Server API (worker/appservice/): the as_token as the sender,
// identity assertion with user_id=, device masquerading, timestamp massaging, m.login.application_service
// for /register and /login, exclusive namespaces for users and aliases. Errors as Synapse's.
import { describe, expect, it } from "vitest";
import { api, registerUser, uniqueLocalpart, SERVER_NAME } from "./helpers.js";
import { createRoom, newUser, r, V3 } from "./room-helpers.js";
import { registerAppservice, type TestAppservice } from "./appservice-helpers.js";

const whoami = (token: string, query = "") => api("GET", `${V3}/account/whoami${query}`, { token });

async function asRegister(svc: TestAppservice, username: string, extra: Record<string, unknown> = {}) {
  return api("POST", `${V3}/register`, { token: svc.asToken, body: { type: "m.login.application_service", username, ...extra } });
}

describe("as_token authentication", () => {
  it("authenticates as the sender, with no device", async () => {
    const svc = await registerAppservice();
    const res = await whoami(svc.asToken);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ user_id: svc.sender, is_guest: false });
  });

  it("user_id= acts as a registered user in the namespace; outside it 403; not registered 403", async () => {
    const svc = await registerAppservice();
    const puppet = `@${svc.prefix}alice:${SERVER_NAME}`;
    const unregistered = await whoami(svc.asToken, `?user_id=${encodeURIComponent(puppet)}`);
    expect(unregistered.status).toBe(403);
    expect(unregistered.body).toEqual({ errcode: "M_FORBIDDEN", error: `Application service has not registered this user (${puppet})` });

    expect((await asRegister(svc, `${svc.prefix}alice`)).status).toBe(200);
    const ok = await whoami(svc.asToken, `?user_id=${encodeURIComponent(puppet)}`);
    expect(ok.status).toBe(200);
    expect(ok.body.user_id).toBe(puppet);

    const outsider = await newUser("outsider");
    const denied = await whoami(svc.asToken, `?user_id=${encodeURIComponent(outsider.user_id)}`);
    expect(denied.status).toBe(403);
    expect(denied.body.errcode).toBe("M_FORBIDDEN");
    expect(denied.body.error).toBe(`Application service cannot masquerade as this user (${outsider.user_id}).`);
    // The sender is always allowed.
    expect((await whoami(svc.asToken, `?user_id=${encodeURIComponent(svc.sender)}`)).body.user_id).toBe(svc.sender);
  });

  it("an unknown token is still M_UNKNOWN_TOKEN; an ordinary token ignores user_id=", async () => {
    expect((await whoami("as-not-registered")).body.errcode).toBe("M_UNKNOWN_TOKEN");
    const user = await newUser("plain");
    const res = await whoami(user.access_token, "?user_id=%40someone%3Atest.local");
    expect(res.body.user_id).toBe(user.user_id);
  });

  it("device_id= selects one of the user's devices (MSC4326); an unknown device is 400 M_EXCLUSIVE", async () => {
    const svc = await registerAppservice();
    const reg = await asRegister(svc, `${svc.prefix}dev`, { device_id: "PUPPETDEV" });
    expect(reg.status).toBe(200);
    const q = `?user_id=${encodeURIComponent(reg.body.user_id)}`;
    const known = await whoami(svc.asToken, `${q}&device_id=PUPPETDEV`);
    expect(known.body).toEqual({ user_id: reg.body.user_id, device_id: "PUPPETDEV", is_guest: false });
    const unstable = await whoami(svc.asToken, `${q}&org.matrix.msc3202.device_id=PUPPETDEV`);
    expect(unstable.body.device_id).toBe("PUPPETDEV");
    const unknown = await whoami(svc.asToken, `${q}&device_id=NOSUCH`);
    expect(unknown.status).toBe(400);
    expect(unknown.body.errcode).toBe("M_EXCLUSIVE");
  });
});

describe("m.login.application_service", () => {
  it("registers users in the namespace without password or UIA, also with registration closed", async () => {
    const svc = await registerAppservice();
    const res = await asRegister(svc, `${svc.prefix}bob`);
    expect(res.status).toBe(200);
    expect(res.body.user_id).toBe(`@${svc.prefix}bob:${SERVER_NAME}`);
    expect(typeof res.body.access_token).toBe("string");
    expect((await whoami(res.body.access_token)).body.user_id).toBe(res.body.user_id);
    // Again: taken.
    expect((await asRegister(svc, `${svc.prefix}bob`)).body.errcode).toBe("M_USER_IN_USE");
  });

  it("refuses users outside the namespace with M_EXCLUSIVE, and the type without an as_token", async () => {
    const svc = await registerAppservice();
    const outside = await asRegister(svc, uniqueLocalpart("nope"));
    expect(outside.status).toBe(400);
    expect(outside.body).toEqual({ errcode: "M_EXCLUSIVE", error: "Invalid user localpart for this application service." });
    const noToken = await api("POST", `${V3}/register`, { body: { type: "m.login.application_service", username: `${svc.prefix}x` } });
    expect(noToken.status).toBe(401);
    expect(noToken.body.errcode).toBe("M_MISSING_TOKEN");
    const user = await newUser("tok");
    const wrongToken = await api("POST", `${V3}/register`, { token: user.access_token, body: { type: "m.login.application_service", username: `${svc.prefix}x` } });
    expect(wrongToken.status).toBe(401);
    expect(wrongToken.body.errcode).toBe("M_UNKNOWN_TOKEN");
  });

  it("with io.element.msc4190 no access token is issued", async () => {
    const svc = await registerAppservice({ "io.element.msc4190": true });
    const res = await asRegister(svc, `${svc.prefix}enc`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ user_id: `@${svc.prefix}enc:${SERVER_NAME}`, home_server: SERVER_NAME });
  });

  it("logs a namespaced user in; a user outside the namespace is 403", async () => {
    const svc = await registerAppservice();
    await asRegister(svc, `${svc.prefix}carol`, { inhibit_login: true });
    const login = await api("POST", `${V3}/login`, {
      token: svc.asToken,
      body: { type: "m.login.application_service", identifier: { type: "m.id.user", user: `${svc.prefix}carol` }, device_id: "CAROLDEV" },
    });
    expect(login.status).toBe(200);
    expect(login.body.user_id).toBe(`@${svc.prefix}carol:${SERVER_NAME}`);
    expect(login.body.device_id).toBe("CAROLDEV");
    expect((await whoami(login.body.access_token)).body.device_id).toBe("CAROLDEV");

    const outsider = await newUser("lout");
    const denied = await api("POST", `${V3}/login`, {
      token: svc.asToken,
      body: { type: "m.login.application_service", identifier: { type: "m.id.user", user: outsider.user_id } },
    });
    expect(denied.status).toBe(403);
    const noToken = await api("POST", `${V3}/login`, { body: { type: "m.login.application_service", identifier: { type: "m.id.user", user: "x" } } });
    expect(noToken.status).toBe(401);
    const flows = await api("GET", `${V3}/login`);
    expect(flows.body.flows).toContainEqual({ type: "m.login.application_service" });
  });
});

describe("exclusive namespaces", () => {
  it("an ordinary registration in an exclusive user namespace is M_EXCLUSIVE; a non-exclusive one is allowed", async () => {
    const svc = await registerAppservice();
    const res = await api("POST", `${V3}/register`, { body: { username: `${svc.prefix}squatter`, password: "pw-squatter-123" } });
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ errcode: "M_EXCLUSIVE", error: "This user ID is reserved by an application service." });
    const available = await api("GET", `${V3}/register/available?username=${svc.prefix}squatter`);
    expect(available.body.errcode).toBe("M_EXCLUSIVE");
    // The sender is exclusive too.
    const sender = await api("GET", `${V3}/register/available?username=${svc.registration.senderLocalpart}`);
    expect(sender.body.errcode).toBe("M_EXCLUSIVE");

    const shared = await registerAppservice({ namespaces: { users: [{ exclusive: false, regex: "@_shared_.*" }] } });
    expect(shared).toBeDefined();
    const ok = await registerUser(`_shared_${uniqueLocalpart("u")}`);
    expect(ok.user_id).toMatch(/^@_shared_/);
  });

  it("aliases: others may not take an exclusive alias; the service may, without being in the room", async () => {
    const svc = await registerAppservice();
    const owner = await newUser("aliasowner");
    const roomId = await createRoom(owner);
    const alias = `#${svc.prefix}room:${SERVER_NAME}`;
    const taken = await api("PUT", `${V3}/directory/room/${encodeURIComponent(alias)}`, { token: owner.access_token, body: { room_id: roomId } });
    expect(taken.status).toBe(400);
    expect(taken.body).toEqual({ errcode: "M_EXCLUSIVE", error: "This alias is reserved by an application service." });

    const byService = await api("PUT", `${V3}/directory/room/${encodeURIComponent(alias)}`, { token: svc.asToken, body: { room_id: roomId } });
    expect(byService.status).toBe(200);
    const outside = await api("PUT", `${V3}/directory/room/${encodeURIComponent(`#elsewhere-${svc.prefix}:${SERVER_NAME}`)}`, { token: svc.asToken, body: { room_id: roomId } });
    expect(outside.status).toBe(400);
    expect(outside.body.errcode).toBe("M_EXCLUSIVE");
  });
});

describe("timestamp massaging", () => {
  it("ts= sets origin_server_ts on send and state for services only", async () => {
    const svc = await registerAppservice();
    const roomId = await createRoom({ access_token: svc.asToken, user_id: svc.sender, device_id: "" });
    const sent = await api("PUT", `${r(roomId)}/send/m.room.message/t1?ts=1234567890123`, { token: svc.asToken, body: { msgtype: "m.text", body: "old" } });
    expect(sent.status).toBe(200);
    const ev = await api("GET", `${r(roomId)}/event/${encodeURIComponent(sent.body.event_id)}`, { token: svc.asToken });
    expect(ev.body.origin_server_ts).toBe(1234567890123);

    const state = await api("PUT", `${r(roomId)}/state/m.room.topic/?ts=1000`, { token: svc.asToken, body: { topic: "then" } });
    expect(state.status).toBe(200);
    const topic = await api("GET", `${r(roomId)}/event/${encodeURIComponent(state.body.event_id)}`, { token: svc.asToken });
    expect(topic.body.origin_server_ts).toBe(1000);

    const bad = await api("PUT", `${r(roomId)}/send/m.room.message/t2?ts=soon`, { token: svc.asToken, body: { msgtype: "m.text", body: "x" } });
    expect(bad.status).toBe(400);
    expect(bad.body.errcode).toBe("M_INVALID_PARAM");

    const user = await newUser("tsuser");
    const own = await createRoom(user);
    const plain = await api("PUT", `${r(own)}/send/m.room.message/t3?ts=1000`, { token: user.access_token, body: { msgtype: "m.text", body: "now" } });
    const plainEv = await api("GET", `${r(own)}/event/${encodeURIComponent(plain.body.event_id)}`, { token: user.access_token });
    expect(plainEv.body.origin_server_ts).toBeGreaterThan(1_700_000_000_000);
  });
});

describe("MSC4190 device management", () => {
  it("creates devices with PUT /devices/{id} (201, then 200) and deletes them without UIA", async () => {
    const svc = await registerAppservice({ "io.element.msc4190": true });
    const reg = await asRegister(svc, `${svc.prefix}dev4190`);
    const q = `user_id=${encodeURIComponent(reg.body.user_id)}`;
    const created = await api("PUT", `${V3}/devices/BRIDGEDEV?${q}`, { token: svc.asToken, body: { display_name: "bridge" } });
    expect(created.status).toBe(201);
    const again = await api("PUT", `${V3}/devices/BRIDGEDEV?${q}`, { token: svc.asToken, body: { display_name: "renamed" } });
    expect(again.status).toBe(200);
    const listed = await api("GET", `${V3}/devices?${q}`, { token: svc.asToken });
    expect(listed.body.devices).toEqual([{ device_id: "BRIDGEDEV", display_name: "renamed" }]);
    // The device can now be masqueraded.
    expect((await whoami(svc.asToken, `?${q}&device_id=BRIDGEDEV`)).body.device_id).toBe("BRIDGEDEV");
    const deleted = await api("DELETE", `${V3}/devices/BRIDGEDEV?${q}`, { token: svc.asToken, body: {} });
    expect(deleted.status).toBe(200);
    expect((await api("GET", `${V3}/devices?${q}`, { token: svc.asToken })).body.devices).toEqual([]);
  });

  it("without the flag, PUT /devices of an unknown device is 404 and deleting needs UIA", async () => {
    const svc = await registerAppservice();
    const reg = await asRegister(svc, `${svc.prefix}nodev`, { device_id: "HASDEV" });
    const q = `user_id=${encodeURIComponent(reg.body.user_id)}`;
    expect((await api("PUT", `${V3}/devices/NEWDEV?${q}`, { token: svc.asToken, body: {} })).status).toBe(404);
    expect((await api("DELETE", `${V3}/devices/HASDEV?${q}`, { token: svc.asToken, body: {} })).status).toBe(401);
  });
});

describe("appservice room directory", () => {
  it("PUT /directory/list/appservice/{networkId}/{roomId} is for services only", async () => {
    const svc = await registerAppservice();
    const user = await newUser("dirlist");
    const roomId = await createRoom(user);
    const path = `${V3}/directory/list/appservice/irc-net/${encodeURIComponent(roomId)}`;
    expect((await api("PUT", path, { token: svc.asToken, body: { visibility: "public" } })).status).toBe(200);
    const denied = await api("PUT", path, { token: user.access_token, body: { visibility: "public" } });
    expect(denied.status).toBe(403);
    expect((await api("PUT", path, { token: svc.asToken, body: { visibility: "sideways" } })).body.errcode).toBe("M_INVALID_PARAM");
    expect((await api("DELETE", path, { token: svc.asToken })).status).toBe(200);
  });

  it("/publicRooms lists a network's rooms by third_party_instance_id, and all with include_all_networks", async () => {
    const svc = await registerAppservice();
    const other = await registerAppservice();
    const user = await newUser("netlist");
    const bridged = await createRoom(user, { preset: "public_chat", name: "bridged channel" });
    const local = await createRoom(user, { preset: "public_chat", name: "local room" });
    expect((await api("PUT", `${V3}/directory/list/room/${encodeURIComponent(local)}`, { token: user.access_token, body: { visibility: "public" } })).status).toBe(200);
    const path = `${V3}/directory/list/appservice/irc-net/${encodeURIComponent(bridged)}`;
    expect((await api("PUT", path, { token: svc.asToken, body: {} })).status).toBe(200);

    const list = async (body: Record<string, unknown>) => {
      const res = await api("POST", `${V3}/publicRooms`, { token: user.access_token, body });
      expect(res.status).toBe(200);
      return (res.body.chunk as { room_id: string }[]).map((c) => c.room_id);
    };
    expect(await list({ third_party_instance_id: `${svc.registration.id}|irc-net` })).toEqual([bridged]);
    // Another network of the service, the same network name of another service: nothing.
    expect(await list({ third_party_instance_id: `${svc.registration.id}|other-net` })).toEqual([]);
    expect(await list({ third_party_instance_id: `${other.registration.id}|irc-net` })).toEqual([]);
    // The default is this server's own directory only; include_all_networks adds every network's rooms.
    const plain = await list({});
    expect(plain).toContain(local);
    expect(plain).not.toContain(bridged);
    const all = await list({ include_all_networks: true });
    expect(all).toContain(local);
    expect(all).toContain(bridged);
    // GET /publicRooms (no body) is this server's own directory.
    expect((await api("GET", `${V3}/publicRooms`)).body.chunk.map((c: { room_id: string }) => c.room_id)).not.toContain(bridged);

    expect((await api("DELETE", path, { token: svc.asToken })).status).toBe(200);
    expect(await list({ third_party_instance_id: `${svc.registration.id}|irc-net` })).toEqual([]);
    expect(await list({ include_all_networks: true })).not.toContain(bridged);
  });
});
