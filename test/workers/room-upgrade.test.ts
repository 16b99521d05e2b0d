// POST /rooms/{roomId}/upgrade (worker/client/room-upgrades.ts, durable-objects/room/upgrade.ts; spec:
// "Room Upgrades", "Server behaviour") and POST /report (worker/client/reporting.ts).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, type RegisteredUser } from "./helpers.js";
import { V3, allState, byKey, createRoom, join, membership, newUser, putState, r, send } from "./room-helpers.js";

const upgrade = (user: RegisteredUser, roomId: string, body: unknown) => api("POST", `${r(roomId)}/upgrade`, { token: user.access_token, body });

async function stateOf(user: RegisteredUser, roomId: string) {
  const res = await allState(user, roomId);
  expect(res.status).toBe(200);
  return byKey(res.body);
}

describe("POST /rooms/{roomId}/upgrade", () => {
  it("creates the replacement room with the copied state, tombstones the old one, moves aliases and restricts talking", async () => {
    const alice = await newUser("upg");
    const bob = await newUser("upg");
    const mallory = await newUser("upg");
    const aliasName = `upg-${crypto.randomUUID().slice(0, 8)}`;
    const oldRoom = await createRoom(alice, {
      room_version: "11",
      preset: "public_chat",
      visibility: "public",
      name: "Old name",
      topic: "Old topic",
      room_alias_name: aliasName,
      initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    expect((await join(bob, oldRoom)).status).toBe(200);
    expect((await join(mallory, oldRoom)).status).toBe(200);
    expect((await membership(alice, oldRoom, "ban", { user_id: mallory.user_id, reason: "spam" })).status).toBe(200);
    const lastBefore = (await send(bob, oldRoom, { msgtype: "m.text", body: "last words" })).body.event_id;

    const res = await upgrade(alice, oldRoom, { new_version: "12" });
    expect(res.status).toBe(200);
    const newRoom: string = res.body.replacement_room;
    expect(newRoom).not.toBe(oldRoom);

    const next = await stateOf(alice, newRoom);
    const create = next.get("m.room.create|")!;
    expect(create.content.room_version).toBe("12");
    // A v12 room (its ID the create event's hash) names its predecessor without event_id (MSC4291).
    expect(create.content.predecessor).toEqual({ room_id: oldRoom });
    expect(lastBefore).toMatch(/^\$/);
    expect(create.sender).toBe(alice.user_id);
    expect(next.get("m.room.name|")!.content.name).toBe("Old name");
    expect(next.get("m.room.topic|")!.content.topic).toBe("Old topic");
    expect(next.get("m.room.join_rules|")!.content.join_rule).toBe("public");
    expect(next.get("m.room.encryption|")!.content.algorithm).toBe("m.megolm.v1.aes-sha2");
    expect(next.get("m.room.history_visibility|")!.content.history_visibility).toBe("shared");
    // v12: the upgrading user is the creator and must not be listed in `users`.
    const newPowerLevels = next.get("m.room.power_levels|")!.content;
    expect((newPowerLevels.users as Record<string, number>)[alice.user_id]).toBeUndefined();
    expect(next.get(`m.room.member|${alice.user_id}`)!.content.membership).toBe("join");
    expect(next.get(`m.room.member|${bob.user_id}`)).toBeUndefined();
    expect(next.get(`m.room.member|${mallory.user_id}`)!.content).toEqual({ membership: "ban", reason: "spam" });
    expect(next.get("m.room.canonical_alias|")!.content.alias).toBe(`#${aliasName}:test.local`);

    const old = await stateOf(alice, oldRoom);
    expect(old.get("m.room.tombstone|")!.content).toEqual({ body: "This room has been replaced", replacement_room: newRoom });
    const oldPowerLevels = old.get("m.room.power_levels|")!.content;
    expect(oldPowerLevels.events_default).toBe(50);
    expect(oldPowerLevels.invite).toBe(50);
    expect(old.get("m.room.canonical_alias|")!.content).toEqual({});
    // Bob can no longer talk in the old room.
    expect((await send(bob, oldRoom, { msgtype: "m.text", body: "still here?" })).status).toBe(403);

    const resolved = await api("GET", `${V3}/directory/room/${encodeURIComponent(`#${aliasName}:test.local`)}`);
    expect(resolved.body.room_id).toBe(newRoom);
    expect((await api("GET", `${V3}/directory/list/room/${encodeURIComponent(newRoom)}`)).body.visibility).toBe("public");
    expect((await api("GET", `${V3}/directory/list/room/${encodeURIComponent(oldRoom)}`)).body.visibility).toBe("private");

    // Bob follows to the new room.
    expect((await join(bob, newRoom)).status).toBe(200);
  });

  it("raises the upgrading user's power only while copying, then restores the old power levels (v10 -> v11)", async () => {
    const alice = await newUser("upg");
    const bob = await newUser("upg");
    const oldRoom = await createRoom(alice, {
      room_version: "10",
      preset: "private_chat",
      invite: [bob.user_id],
      power_level_content_override: { users: { [alice.user_id]: 100, [bob.user_id]: 60 }, events: { "m.room.tombstone": 60 } },
    });
    expect((await join(bob, oldRoom)).status).toBe(200);
    const lastEvent = (await api("GET", `${r(oldRoom)}/messages?dir=b&limit=1`, { token: bob.access_token })).body.chunk[0].event_id;
    const res = await upgrade(bob, oldRoom, { new_version: "11" });
    expect(res.status).toBe(200);
    const next = await stateOf(bob, res.body.replacement_room);
    expect(next.get("m.room.create|")!.content.room_version).toBe("11");
    // Older versions still name the old room's last event before the upgrade.
    expect(next.get("m.room.create|")!.content.predecessor).toEqual({ room_id: oldRoom, event_id: lastEvent });
    const users = next.get("m.room.power_levels|")!.content.users as Record<string, number>;
    expect(users).toEqual({ [alice.user_id]: 100, [bob.user_id]: 60 });
    expect(next.get("m.room.join_rules|")!.content.join_rule).toBe("invite");
  });

  it("copies the room type and space children", async () => {
    const alice = await newUser("upg");
    const child = await createRoom(alice);
    const space = await createRoom(alice, { creation_content: { type: "m.space" } });
    expect((await putState(alice, space, "m.space.child", child, { via: ["test.local"] })).status).toBe(200);
    const res = await upgrade(alice, space, { new_version: "12" });
    expect(res.status).toBe(200);
    const next = await stateOf(alice, res.body.replacement_room);
    expect(next.get("m.room.create|")!.content.type).toBe("m.space");
    expect(next.get(`m.space.child|${child}`)!.content).toEqual({ via: ["test.local"] });
  });

  it("403 without the power to send the tombstone, 400 for unknown versions and bad bodies", async () => {
    const alice = await newUser("upg");
    const bob = await newUser("upg");
    const outsider = await newUser("upg");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    expect((await join(bob, roomId)).status).toBe(200);
    const denied = await upgrade(bob, roomId, { new_version: "12" });
    expect(denied.status).toBe(403);
    expect(denied.body.errcode).toBe("M_FORBIDDEN");
    expect((await upgrade(outsider, roomId, { new_version: "12" })).status).toBe(403);
    const unsupported = await upgrade(alice, roomId, { new_version: "999" });
    expect(unsupported.status).toBe(400);
    expect(unsupported.body.errcode).toBe("M_UNSUPPORTED_ROOM_VERSION");
    expect((await upgrade(alice, roomId, {})).body.errcode).toBe("M_MISSING_PARAM");
    expect((await upgrade(alice, roomId, { new_version: 12 })).body.errcode).toBe("M_BAD_JSON");
    expect((await upgrade(alice, roomId, { new_version: "12", additional_creators: ["not a user"] })).body.errcode).toBe("M_INVALID_PARAM");
    // Nothing happened to the room.
    expect((await stateOf(alice, roomId)).get("m.room.tombstone|")).toBeUndefined();
  });
});

describe("POST /report", () => {
  it("stores reports of events by members and of rooms by anyone; 404 otherwise", async () => {
    const alice = await newUser("rep");
    const bob = await newUser("rep");
    const roomId = await createRoom(alice);
    const eventId = (await send(alice, roomId, { msgtype: "m.text", body: "offensive" })).body.event_id as string;

    const ok = await api("POST", `${r(roomId)}/report/${encodeURIComponent(eventId)}`, { token: alice.access_token, body: { reason: "rude", score: -100 } });
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({});
    const rows = await env.DB.prepare("SELECT reporter, room_id, event_id, reason FROM reports WHERE room_id = ?").bind(roomId).all();
    expect(rows.results).toEqual([{ reporter: alice.user_id, room_id: roomId, event_id: eventId, reason: "rude" }]);

    // Not joined, unknown event, bad reason.
    expect((await api("POST", `${r(roomId)}/report/${encodeURIComponent(eventId)}`, { token: bob.access_token, body: {} })).status).toBe(404);
    expect((await api("POST", `${r(roomId)}/report/${encodeURIComponent("$missing")}`, { token: alice.access_token, body: {} })).status).toBe(404);
    expect((await api("POST", `${r(roomId)}/report/${encodeURIComponent(eventId)}`, { token: alice.access_token, body: { reason: 5 } })).body.errcode).toBe("M_BAD_JSON");

    // Rooms: the reporter need not be in the room; unknown rooms are 404; a reason is required.
    expect((await api("POST", `${r(roomId)}/report`, { token: bob.access_token, body: { reason: "" } })).status).toBe(200);
    expect((await api("POST", `${r("!missing:test.local")}/report`, { token: bob.access_token, body: { reason: "x" } })).status).toBe(404);
    expect((await api("POST", `${r(roomId)}/report`, { token: bob.access_token, body: {} })).body.errcode).toBe("M_MISSING_PARAM");
    const roomReports = await env.DB.prepare("SELECT reporter, event_id, reason FROM reports WHERE room_id = ? AND event_id IS NULL").bind(roomId).all();
    expect(roomReports.results).toEqual([{ reporter: bob.user_id, event_id: null, reason: "" }]);
  });
});

describe("push rules follow an upgrade", () => {
  it("copies the upgrader's and each joining local user's rules about the old room to the new one", async () => {
    const alice = await newUser("upgpr");
    const bob = await newUser("upgpr");
    const oldRoom = await createRoom(alice, { room_version: "10", preset: "public_chat" });
    expect((await join(bob, oldRoom)).status).toBe(200);
    const rules = "/_matrix/client/v3/pushrules/global";
    for (const u of [alice, bob]) {
      expect((await api("PUT", `${rules}/room/${encodeURIComponent(oldRoom)}`, { token: u.access_token, body: { actions: ["dont_notify"] } })).status).toBe(200);
    }
    const override = { actions: ["notify"], conditions: [{ kind: "event_match", key: "room_id", pattern: oldRoom }] };
    expect((await api("PUT", `${rules}/override/mine`, { token: bob.access_token, body: override })).status).toBe(200);

    const newRoom: string = (await upgrade(alice, oldRoom, { new_version: "11" })).body.replacement_room;
    const roomRule = (u: RegisteredUser, roomId: string) => api("GET", `${rules}/room/${encodeURIComponent(roomId)}`, { token: u.access_token });
    expect((await roomRule(alice, newRoom)).body).toMatchObject({ rule_id: newRoom, actions: ["dont_notify"], enabled: true });
    expect((await roomRule(alice, oldRoom)).status).toBe(200);
    // Bob's are copied when he joins the new room, not before.
    expect((await roomRule(bob, newRoom)).status).toBe(404);
    expect((await join(bob, newRoom)).status).toBe(200);
    expect((await roomRule(bob, newRoom)).body).toMatchObject({ rule_id: newRoom, actions: ["dont_notify"] });
    const overrides = (await api("GET", `${rules}/override/`, { token: bob.access_token })).body as { rule_id: string; conditions?: { pattern?: string }[] }[];
    // A rule that names the old room only in a condition keeps its one copy (its ID names no room, and
    // copies are made under new IDs only).
    expect(overrides.filter((r) => r.rule_id === "mine")).toHaveLength(1);
  });

  it("copies the creator's rules when createRoom names a predecessor by hand (Complement's manual upgrade)", async () => {
    const alice = await newUser("upgman");
    const oldRoom = await createRoom(alice, { room_version: "10", preset: "public_chat" });
    const rules = "/_matrix/client/v3/pushrules/global";
    expect((await api("PUT", `${rules}/room/${encodeURIComponent(oldRoom)}`, { token: alice.access_token, body: { actions: ["dont_notify"] } })).status).toBe(200);
    const plain = await createRoom(alice, { room_version: "11", preset: "public_chat" });
    const newRoom = await createRoom(alice, { room_version: "11", preset: "public_chat", creation_content: { predecessor: { room_id: oldRoom } } });
    const roomRule = (roomId: string) => api("GET", `${rules}/room/${encodeURIComponent(roomId)}`, { token: alice.access_token });
    expect((await roomRule(newRoom)).body).toMatchObject({ rule_id: newRoom, actions: ["dont_notify"] });
    expect((await roomRule(plain)).status).toBe(404);
  });
});
