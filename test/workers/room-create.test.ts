// POST /createRoom: presets, every request field, room versions (v12 room IDs from the create event hash,
// creators), the spec's event order, and failures that store nothing.
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { api } from "./helpers.js";
import { V3, allState, byKey, createRoom, getState, newUser, r, roomStub, send } from "./room-helpers.js";

describe("createRoom", () => {
  it("private_chat by default, room version 12: room ID from the create event, creator not in power levels", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice);
    // v12 (MSC4291): `!` + URL-safe unpadded base64 of the create event's reference hash, no server name.
    expect(roomId).toMatch(/^![A-Za-z0-9_-]{43}$/);
    const state = await allState(alice, roomId);
    expect(state.status).toBe(200);
    const s = byKey(state.body);
    const create = s.get("m.room.create|")!;
    expect(create.sender).toBe(alice.user_id);
    expect(create.content.room_version).toBe("12");
    expect(create.content.creator).toBeUndefined();
    expect((create as unknown as { event_id: string }).event_id).toBe("$" + roomId.slice(1));
    // The stored create event has no room_id (MSC4291); the client format adds it.
    const pdu = await roomStub(roomId).getPdu("$" + roomId.slice(1));
    expect(pdu).not.toBeNull();
    expect(pdu!.room_id).toBeUndefined();
    expect((create as unknown as { room_id: string }).room_id).toBe(roomId);

    expect(s.get("m.room.join_rules|")!.content).toEqual({ join_rule: "invite" });
    expect(s.get("m.room.history_visibility|")!.content).toEqual({ history_visibility: "shared" });
    expect(s.get("m.room.guest_access|")!.content).toEqual({ guest_access: "can_join" });
    expect(s.get(`m.room.member|${alice.user_id}`)!.content.membership).toBe("join");
    const pl = s.get("m.room.power_levels|")!.content as { users: Record<string, number>; events: Record<string, number>; state_default: number };
    expect(pl.users).toEqual({});
    // Every member of a private chat may invite (Synapse's preset); public rooms keep 50.
    expect((pl as unknown as { invite: number }).invite).toBe(0);
    // v12: tombstone explicitly above state_default.
    expect(pl.events["m.room.tombstone"]).toBe(150);
    expect(pl.events["m.room.tombstone"]).toBeGreaterThan(pl.state_default);
  });

  it("public_chat: public join rule, no guest access event, published when visibility is public", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { visibility: "public" });
    const s = byKey((await allState(alice, roomId)).body);
    expect(s.get("m.room.join_rules|")!.content).toEqual({ join_rule: "public" });
    expect(s.get("m.room.history_visibility|")!.content).toEqual({ history_visibility: "shared" });
    expect(s.has("m.room.guest_access|")).toBe(false);
    expect((s.get("m.room.power_levels|")!.content as { invite: number }).invite).toBe(50);
    const dir = await api("GET", `${V3}/directory/list/room/${encodeURIComponent(roomId)}`);
    expect(dir.body).toEqual({ visibility: "public" });

    const priv = await createRoom(alice, { preset: "public_chat" });
    const dir2 = await api("GET", `${V3}/directory/list/room/${encodeURIComponent(priv)}`);
    expect(dir2.body).toEqual({ visibility: "private" });
  });

  it("trusted_private_chat: invitees become additional creators in v12, power 100 before", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const carol = await newUser("carol");
    const v12 = await createRoom(alice, {
      preset: "trusted_private_chat",
      invite: [bob.user_id],
      creation_content: { additional_creators: [carol.user_id, bob.user_id] },
    });
    const s12 = byKey((await allState(alice, v12)).body);
    expect(s12.get("m.room.create|")!.content.additional_creators).toEqual([carol.user_id, bob.user_id]);
    expect((s12.get("m.room.power_levels|")!.content as { users: object }).users).toEqual({});
    expect(s12.get(`m.room.member|${bob.user_id}`)!.content.membership).toBe("invite");
    expect(s12.get("m.room.join_rules|")!.content).toEqual({ join_rule: "invite" });
    // bob is a creator: once joined, he has unlimited power (he may give others 1000).
    expect((await api("POST", `${r(v12)}/join`, { token: bob.access_token, body: {} })).status).toBe(200);
    const plBob = await api("PUT", `${r(v12)}/state/m.room.power_levels/`, {
      token: bob.access_token,
      body: { users: { "@dave:test.local": 1000 }, events_default: 0, state_default: 50 },
    });
    expect(plBob.status, JSON.stringify(plBob.body)).toBe(200);
    // Creators cannot be listed in users (v12 auth rules): a bad request, 400 as from Synapse.
    const listed = await api("PUT", `${r(v12)}/state/m.room.power_levels/`, { token: bob.access_token, body: { users: { [carol.user_id]: 100 } } });
    expect(listed.status).toBe(400);

    const v11 = await createRoom(alice, { preset: "trusted_private_chat", invite: [bob.user_id], room_version: "11" });
    const s11 = byKey((await allState(alice, v11)).body);
    expect(s11.get("m.room.create|")!.content.additional_creators).toBeUndefined();
    expect(s11.get("m.room.create|")!.content.creator).toBeUndefined();
    expect((s11.get("m.room.power_levels|")!.content as { users: object }).users).toEqual({ [alice.user_id]: 100, [bob.user_id]: 100 });
    expect(v11).toMatch(/^![^:]+:test\.local$/);
  });

  it("applies name, topic, initial_state, power_level_content_override, creation_content, invite and is_direct", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    await api("PUT", `${V3}/profile/${encodeURIComponent(bob.user_id)}/displayname`, { token: bob.access_token, body: { displayname: "Bob B" } });
    const roomId = await createRoom(alice, {
      name: "The Room",
      topic: "About things",
      invite: [bob.user_id],
      is_direct: true,
      creation_content: { "m.federate": false, type: "m.space", room_version: "1", creator: "@mallory:x" },
      power_level_content_override: { events_default: 10, users: { [bob.user_id]: 60 } },
      initial_state: [
        { type: "m.room.join_rules", content: { join_rule: "public" } },
        { type: "m.room.name", content: { name: "overridden by name" } },
        { type: "org.example.custom", state_key: "k", content: { x: 1 } },
        { type: "m.room.history_visibility", content: { history_visibility: "joined" } },
      ],
    });
    const s = byKey((await allState(alice, roomId)).body);
    const create = s.get("m.room.create|")!.content;
    expect(create["m.federate"]).toBe(false);
    expect(create.type).toBe("m.space");
    // The server overwrites room_version and (v11+) drops creator.
    expect(create.room_version).toBe("12");
    expect(create.creator).toBeUndefined();
    expect(s.get("m.room.name|")!.content).toEqual({ name: "The Room" });
    expect(s.get("m.room.topic|")!.content).toEqual({ topic: "About things", "m.topic": { "m.text": [{ body: "About things" }] } });
    // initial_state takes precedence over the preset.
    expect(s.get("m.room.join_rules|")!.content).toEqual({ join_rule: "public" });
    expect(s.get("m.room.history_visibility|")!.content).toEqual({ history_visibility: "joined" });
    expect(s.get("org.example.custom|k")!.content).toEqual({ x: 1 });
    const pl = s.get("m.room.power_levels|")!.content as Record<string, unknown>;
    expect(pl.events_default).toBe(10);
    expect(pl.users).toEqual({ [bob.user_id]: 60 });
    expect(pl.ban).toBe(50);
    const invite = s.get(`m.room.member|${bob.user_id}`)!;
    expect(invite.content).toEqual({ membership: "invite", displayname: "Bob B", is_direct: true });
    expect(invite.sender).toBe(alice.user_id);
  });

  it("sends the initial events in the spec's order", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const aliasName = `order-${crypto.randomUUID().slice(0, 8)}`;
    const roomId = await createRoom(alice, {
      room_alias_name: aliasName,
      name: "n",
      topic: "t",
      invite: [bob.user_id],
      initial_state: [{ type: "org.example.first", content: {} }],
    });
    const events = (await allState(alice, roomId)).body as { event_id: string; type: string; state_key: string }[];
    const depth = new Map<string, number>();
    for (const e of events) depth.set(`${e.type}|${e.state_key}`, (await roomStub(roomId).getPdu(e.event_id))!.depth);
    const order = [
      "m.room.create|",
      `m.room.member|${alice.user_id}`,
      "m.room.power_levels|",
      "m.room.canonical_alias|",
      "m.room.join_rules|",
      "m.room.history_visibility|",
      "m.room.guest_access|",
      "org.example.first|",
      "m.room.name|",
      "m.room.topic|",
      `m.room.member|${bob.user_id}`,
    ];
    expect(order.map((k) => depth.get(k))).toEqual(order.map((_, i) => i + 1));
    // The alias exists and is the canonical alias.
    const alias = `#${aliasName}:test.local`;
    const s = byKey(events as never);
    expect(s.get("m.room.canonical_alias|")!.content).toEqual({ alias });
    const resolved = await api("GET", `${V3}/directory/room/${encodeURIComponent(alias)}`);
    expect(resolved.body.room_id).toBe(roomId);
    // A second room cannot take the alias.
    const again = await api("POST", `${V3}/createRoom`, { token: alice.access_token, body: { room_alias_name: aliasName } });
    expect(again.status).toBe(400);
    expect(again.body.errcode).toBe("M_ROOM_IN_USE");
  });

  it("supports every room version, with its room and event ID formats", async () => {
    const alice = await newUser("alice");
    for (const version of ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"]) {
      const roomId = await createRoom(alice, { room_version: version, name: `v${version}` });
      const create = await getState(alice, roomId, "m.room.create", "", "event");
      expect(create.status).toBe(200);
      expect(create.body.content.room_version).toBe(version);
      if (version === "12") expect(roomId).not.toContain(":");
      else expect(roomId).toMatch(/:test\.local$/);
      // v1-v10 carry `creator`; v11+ use the sender.
      expect(create.body.content.creator).toBe(Number(version) <= 10 ? alice.user_id : undefined);
      const sent = await send(alice, roomId, { msgtype: "m.text", body: `hello ${version}` });
      expect(sent.status, `v${version}: ${JSON.stringify(sent.body)}`).toBe(200);
      if (version === "1" || version === "2") expect(sent.body.event_id).toMatch(/^\$[^:]+:test\.local$/);
      else if (version === "3") expect(sent.body.event_id).toMatch(/^\$[A-Za-z0-9+/]{43}$/);
      else expect(sent.body.event_id).toMatch(/^\$[A-Za-z0-9_-]{43}$/);
    }
  });

  it("refuses bad requests and stores nothing for an initial state the rules reject", async () => {
    const alice = await newUser("alice");
    const post = (body: unknown) => api("POST", `${V3}/createRoom`, { token: alice.access_token, body });
    const unsupported = await post({ room_version: "99" });
    expect(unsupported.status).toBe(400);
    expect(unsupported.body.errcode).toBe("M_UNSUPPORTED_ROOM_VERSION");
    expect((await post({ preset: "nope" })).status).toBe(400);
    expect((await post({ invite: ["not-a-user"] })).status).toBe(400);
    expect((await post({ initial_state: [{ type: "x" }] })).status).toBe(400);
    expect((await api("POST", `${V3}/createRoom`, { body: {} })).status).toBe(401);

    // v11: the creator lowers their own level below what the preset's events need.
    const weak = await post({ room_version: "11", power_level_content_override: { users: { [alice.user_id]: 10 } } });
    expect(weak.status).toBe(400);
    expect(weak.body.errcode).toBe("M_INVALID_ROOM_STATE");
    // v12: creators must not be listed in power levels.
    const listed = await post({ power_level_content_override: { users: { [alice.user_id]: 100 } } });
    expect(listed.status).toBe(400);
    expect(listed.body.errcode).toBe("M_INVALID_ROOM_STATE");
    // v1-v11: an override of users that leaves the creator out is refused up front (Synapse).
    const without = await post({ room_version: "10", power_level_content_override: { users: {} } });
    expect(without.status).toBe(400);
  });

  it("a failed createRoom leaves no room behind", async () => {
    const alice = await newUser("alice");
    const ids = await env.DB.prepare("SELECT COUNT(*) AS n FROM room_aliases").first<{ n: number }>();
    const aliasName = `fail-${crypto.randomUUID().slice(0, 8)}`;
    const res = await api("POST", `${V3}/createRoom`, {
      token: alice.access_token,
      body: { room_alias_name: aliasName, power_level_content_override: { users: { [alice.user_id]: 1 } } },
    });
    expect(res.status).toBe(400);
    // The alias reserved for it was released.
    const after = await env.DB.prepare("SELECT COUNT(*) AS n FROM room_aliases").first<{ n: number }>();
    expect(after!.n).toBe(ids!.n);
    const resolved = await api("GET", `${V3}/directory/room/${encodeURIComponent(`#${aliasName}:test.local`)}`);
    expect(resolved.status).toBe(404);
  });
  it("v12: power levels naming a creator in users get 400 M_BAD_JSON (as Synapse); naming anyone else is fine", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const carol = await newUser("carol");
    const roomId = await createRoom(alice, { room_version: "12", creation_content: { additional_creators: [bob.user_id] } });
    const pl = (await getState(alice, roomId, "m.room.power_levels")).body;
    for (const creator of [alice.user_id, bob.user_id]) {
      const res = await api("PUT", `${r(roomId)}/state/m.room.power_levels/`, { token: alice.access_token, body: { ...pl, users: { [creator]: 100 } } });
      expect(res.status).toBe(400);
      expect(res.body.errcode).toBe("M_BAD_JSON");
    }
    expect((await getState(alice, roomId, "m.room.power_levels")).body).toEqual(pl);
    const ok = await api("PUT", `${r(roomId)}/state/m.room.power_levels/`, { token: alice.access_token, body: { ...pl, users: { [carol.user_id]: 50 } } });
    expect(ok.status).toBe(200);
  });
});
