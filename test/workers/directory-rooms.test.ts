// Room aliases, directory visibility, the published room list and the space hierarchy with real rooms
// made through POST /createRoom (spec: Client-Server API, "Room aliases", "Published room directory",
// "Spaces").
import { describe, expect, it } from "vitest";
import { api, registerUser, uniqueLocalpart, SERVER_NAME, type RegisteredUser } from "./helpers.js";

const v3 = "/_matrix/client/v3";
const aliasPath = (alias: string) => `${v3}/directory/room/${encodeURIComponent(alias)}`;
const visibilityPath = (roomId: string) => `${v3}/directory/list/room/${encodeURIComponent(roomId)}`;
const aliasesPath = (roomId: string) => `${v3}/rooms/${encodeURIComponent(roomId)}/aliases`;
const statePath = (roomId: string, type: string, stateKey = "") =>
  `${v3}/rooms/${encodeURIComponent(roomId)}/state/${encodeURIComponent(type)}/${encodeURIComponent(stateKey)}`;
const hierarchyPath = (roomId: string, query = "") =>
  `/_matrix/client/v1/rooms/${encodeURIComponent(roomId)}/hierarchy${query ? "?" + query : ""}`;

async function createRoom(user: RegisteredUser, body: Record<string, unknown> = {}): Promise<string> {
  const res = await api("POST", `${v3}/createRoom`, { token: user.access_token, body });
  if (res.status !== 200) throw new Error(`createRoom failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.room_id as string;
}

async function join(user: RegisteredUser, roomIdOrAlias: string): Promise<void> {
  const res = await api("POST", `${v3}/join/${encodeURIComponent(roomIdOrAlias)}`, { token: user.access_token, body: {} });
  if (res.status !== 200) throw new Error(`join failed: ${res.status} ${JSON.stringify(res.body)}`);
}

async function sendState(user: RegisteredUser, roomId: string, type: string, stateKey: string, content: unknown) {
  return api("PUT", statePath(roomId, type, stateKey), { token: user.access_token, body: content });
}

const newAlias = (prefix = "room") => `#${uniqueLocalpart(prefix)}:${SERVER_NAME}`;

describe("room aliases with a room", () => {
  it("creates, resolves, refuses a taken alias with 409, lists and deletes", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const alias = newAlias();

    let res = await api("PUT", aliasPath(alias), { token: alice.access_token, body: { room_id: roomId } });
    expect(res).toMatchObject({ status: 200, body: {} });
    res = await api("GET", aliasPath(alias));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ room_id: roomId, servers: [SERVER_NAME] });

    // Spec: 409 when the alias exists, whichever room it would point to.
    res = await api("PUT", aliasPath(alias), { token: alice.access_token, body: { room_id: roomId } });
    expect(res).toMatchObject({ status: 409, body: { errcode: "M_UNKNOWN" } });
    const other = await createRoom(alice);
    res = await api("PUT", aliasPath(alias), { token: alice.access_token, body: { room_id: other } });
    expect(res.status).toBe(409);
    expect((await api("GET", aliasPath(alias))).body.room_id).toBe(roomId);

    const second = newAlias();
    expect((await api("PUT", aliasPath(second), { token: alice.access_token, body: { room_id: roomId } })).status).toBe(200);
    res = await api("GET", aliasesPath(roomId), { token: alice.access_token });
    expect(res.status).toBe(200);
    expect(res.body.aliases.sort()).toEqual([alias, second].sort());

    expect((await api("DELETE", aliasPath(alias), { token: alice.access_token })).status).toBe(200);
    expect((await api("GET", aliasPath(alias))).status).toBe(404);
    expect((await api("GET", aliasesPath(roomId), { token: alice.access_token })).body.aliases).toEqual([second]);
  });

  it("only lets members create aliases, and only the creator or a powerful member delete them", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const roomId = await createRoom(alice, { preset: "public_chat" });

    // Not in the room: no alias, no alias list.
    let res = await api("PUT", aliasPath(newAlias()), { token: bob.access_token, body: { room_id: roomId } });
    expect(res).toMatchObject({ status: 403, body: { errcode: "M_FORBIDDEN" } });
    expect((await api("GET", aliasesPath(roomId), { token: bob.access_token })).status).toBe(403);

    await join(bob, roomId);
    expect((await api("GET", aliasesPath(roomId), { token: bob.access_token })).status).toBe(200);
    const alicesAlias = newAlias("alices");
    const bobsAlias = newAlias("bobs");
    const bobsOther = newAlias("bobs2");
    expect((await api("PUT", aliasPath(alicesAlias), { token: alice.access_token, body: { room_id: roomId } })).status).toBe(200);
    expect((await api("PUT", aliasPath(bobsAlias), { token: bob.access_token, body: { room_id: roomId } })).status).toBe(200);
    expect((await api("PUT", aliasPath(bobsOther), { token: bob.access_token, body: { room_id: roomId } })).status).toBe(200);

    // Bob (power 0 < 50 for m.room.canonical_alias) may not delete Alice's alias...
    res = await api("DELETE", aliasPath(alicesAlias), { token: bob.access_token });
    expect(res).toMatchObject({ status: 403, body: { errcode: "M_FORBIDDEN" } });
    expect((await api("GET", aliasPath(alicesAlias))).status).toBe(200);
    // ...but his own; Alice (the room's creator, enough power) may delete Bob's.
    expect((await api("DELETE", aliasPath(bobsAlias), { token: bob.access_token })).status).toBe(200);
    expect((await api("DELETE", aliasPath(bobsOther), { token: alice.access_token })).status).toBe(200);
    expect((await api("GET", aliasPath(bobsOther))).status).toBe(404);
  });

  it("removes a deleted alias from m.room.canonical_alias when the user may change it", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await join(bob, roomId);
    const main = newAlias("main");
    const alt = newAlias("alt");
    const bobs = newAlias("bobs");
    for (const [user, alias] of [[alice, main], [alice, alt], [bob, bobs]] as const) {
      expect((await api("PUT", aliasPath(alias), { token: user.access_token, body: { room_id: roomId } })).status).toBe(200);
    }
    expect((await sendState(alice, roomId, "m.room.canonical_alias", "", { alias: main, alt_aliases: [alt, bobs] })).status).toBe(200);
    const canonical = async () => (await api("GET", statePath(roomId, "m.room.canonical_alias"), { token: alice.access_token })).body;

    expect((await api("DELETE", aliasPath(alt), { token: alice.access_token })).status).toBe(200);
    expect(await canonical()).toEqual({ alias: main, alt_aliases: [bobs] });
    expect((await api("DELETE", aliasPath(main), { token: alice.access_token })).status).toBe(200);
    expect(await canonical()).toEqual({ alt_aliases: [bobs] });
    // Bob may delete his own alias but not change the event: the deletion still succeeds (spec note).
    expect((await api("DELETE", aliasPath(bobs), { token: bob.access_token })).status).toBe(200);
    expect((await api("GET", aliasPath(bobs))).status).toBe(404);
    expect(await canonical()).toEqual({ alt_aliases: [bobs] });
    // The event that still names the deleted alias can be re-sent: only new aliases are checked.
    expect((await sendState(alice, roomId, "m.room.canonical_alias", "", { alt_aliases: [bobs], alias: "" })).status).toBe(200);
  });

  it("shows the aliases of a world-readable room to anyone", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const carol = await registerUser(uniqueLocalpart("carol"));
    const roomId = await createRoom(alice, {
      preset: "private_chat",
      initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "world_readable" } }],
    });
    const alias = newAlias();
    expect((await api("PUT", aliasPath(alias), { token: alice.access_token, body: { room_id: roomId } })).status).toBe(200);
    const res = await api("GET", aliasesPath(roomId), { token: carol.access_token });
    expect(res).toMatchObject({ status: 200, body: { aliases: [alias] } });
  });

  it("createRoom's room_alias_name creates the alias, and a taken one is refused", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const name = uniqueLocalpart("named");
    const roomId = await createRoom(alice, { room_alias_name: name });
    expect((await api("GET", aliasPath(`#${name}:${SERVER_NAME}`))).body.room_id).toBe(roomId);
    const res = await api("POST", `${v3}/createRoom`, { token: alice.access_token, body: { room_alias_name: name } });
    expect(res).toMatchObject({ status: 400, body: { errcode: "M_ROOM_IN_USE" } });
    // The join endpoint resolves the alias.
    const bob = await registerUser(uniqueLocalpart("bob"));
    await api("PUT", visibilityPath(roomId), { token: alice.access_token, body: { visibility: "public" } });
    await sendState(alice, roomId, "m.room.join_rules", "", { join_rule: "public" });
    await join(bob, `#${name}:${SERVER_NAME}`);
    expect((await api("GET", aliasesPath(roomId), { token: bob.access_token })).status).toBe(200);
  });
});

describe("m.room.canonical_alias validation", () => {
  it("accepts aliases of the room and refuses others with M_BAD_ALIAS", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const roomId = await createRoom(alice);
    const elsewhere = await createRoom(alice);
    const mine = newAlias("mine");
    const theirs = newAlias("theirs");
    await api("PUT", aliasPath(mine), { token: alice.access_token, body: { room_id: roomId } });
    await api("PUT", aliasPath(theirs), { token: alice.access_token, body: { room_id: elsewhere } });

    let res = await sendState(alice, roomId, "m.room.canonical_alias", "", { alias: mine, alt_aliases: [mine] });
    expect(res.status).toBe(200);
    res = await sendState(alice, roomId, "m.room.canonical_alias", "", { alias: theirs });
    expect(res).toMatchObject({ status: 400, body: { errcode: "M_BAD_ALIAS" } });
    res = await sendState(alice, roomId, "m.room.canonical_alias", "", { alias: mine, alt_aliases: [newAlias("unknown")] });
    expect(res).toMatchObject({ status: 400, body: { errcode: "M_BAD_ALIAS" } });
    res = await sendState(alice, roomId, "m.room.canonical_alias", "", { alias: "not an alias" });
    expect(res).toMatchObject({ status: 400, body: { errcode: "M_INVALID_PARAM" } });
  });
});

describe("directory visibility", () => {
  it("round-trips and is guarded by power in the room", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const roomId = await createRoom(alice, { preset: "public_chat" });
    expect(await api("GET", visibilityPath(roomId))).toMatchObject({ status: 200, body: { visibility: "private" } });

    expect((await api("PUT", visibilityPath(roomId), { token: alice.access_token, body: { visibility: "public" } })).status).toBe(200);
    expect((await api("GET", visibilityPath(roomId))).body).toEqual({ visibility: "public" });

    // Not in the room, then in it without power: refused, unchanged.
    let res = await api("PUT", visibilityPath(roomId), { token: bob.access_token, body: { visibility: "private" } });
    expect(res).toMatchObject({ status: 403, body: { errcode: "M_FORBIDDEN" } });
    await join(bob, roomId);
    res = await api("PUT", visibilityPath(roomId), { token: bob.access_token, body: { visibility: "private" } });
    expect(res.status).toBe(403);
    expect((await api("GET", visibilityPath(roomId))).body.visibility).toBe("public");

    // Raised to moderator, Bob may.
    const pl = await api("GET", statePath(roomId, "m.room.power_levels"), { token: alice.access_token });
    expect(pl.status).toBe(200);
    expect((await sendState(alice, roomId, "m.room.power_levels", "", { ...pl.body, users: { ...pl.body.users, [bob.user_id]: 50 } })).status).toBe(200);
    expect((await api("PUT", visibilityPath(roomId), { token: bob.access_token, body: { visibility: "private" } })).status).toBe(200);
    expect((await api("GET", visibilityPath(roomId))).body.visibility).toBe("private");

    // Spec: visibility defaults to public.
    expect((await api("PUT", visibilityPath(roomId), { token: alice.access_token, body: {} })).status).toBe(200);
    expect((await api("GET", visibilityPath(roomId))).body.visibility).toBe("public");
  });

  it("createRoom's visibility publishes the room", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const pub = await createRoom(alice, { preset: "public_chat", visibility: "public" });
    const priv = await createRoom(alice, { preset: "public_chat" });
    expect((await api("GET", visibilityPath(pub))).body.visibility).toBe("public");
    expect((await api("GET", visibilityPath(priv))).body.visibility).toBe("private");
  });
});

describe("publicRooms", () => {
  it("lists published rooms with their summaries, filtered and paginated, most members first", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const carol = await registerUser(uniqueLocalpart("carol"));
    // A word no other test's rooms contain, so that the filter isolates this test's rooms.
    const word = uniqueLocalpart("word").replaceAll("-", "");

    const big = await createRoom(alice, { preset: "public_chat", visibility: "public", name: `Big ${word}`, topic: "the big one" });
    await join(bob, big);
    await join(carol, big);
    const medium = await createRoom(alice, { preset: "public_chat", visibility: "public", name: "Medium", topic: `About ${word}` });
    await join(bob, medium);
    const aliasName = uniqueLocalpart(word);
    const small = await createRoom(alice, {
      preset: "public_chat",
      visibility: "public",
      room_alias_name: aliasName,
      initial_state: [
        { type: "m.room.history_visibility", state_key: "", content: { history_visibility: "world_readable" } },
        { type: "m.room.guest_access", state_key: "", content: { guest_access: "can_join" } },
        { type: "m.room.avatar", state_key: "", content: { url: "mxc://test.local/avatar" } },
      ],
    });
    const space = await createRoom(alice, {
      preset: "public_chat",
      visibility: "public",
      name: `Space ${word}`,
      creation_content: { type: "m.space" },
    });
    // Published but invite-only: not listed. Matching but unpublished: not listed.
    const inviteOnly = await createRoom(alice, { preset: "private_chat", visibility: "public", name: `Closed ${word}` });
    const unpublished = await createRoom(alice, { preset: "public_chat", name: `Hidden ${word}` });

    const search = (body: Record<string, unknown>) =>
      api("POST", `${v3}/publicRooms`, { token: alice.access_token, body: { ...body, filter: { generic_search_term: word.toUpperCase(), ...(body.filter as object) } } });

    let res = await search({});
    expect(res.status).toBe(200);
    const ids = res.body.chunk.map((c: { room_id: string }) => c.room_id);
    expect(ids.slice(0, 2)).toEqual([big, medium]);
    expect(new Set(ids.slice(2))).toEqual(new Set([small, space]));
    expect(ids).not.toContain(inviteOnly);
    expect(ids).not.toContain(unpublished);
    expect(res.body.total_room_count_estimate).toBe(4);
    expect(res.body.next_batch).toBeUndefined();
    expect(res.body.prev_batch).toBeUndefined();

    const byId = new Map(res.body.chunk.map((c: { room_id: string }) => [c.room_id, c]));
    expect(byId.get(big)).toEqual({
      room_id: big,
      name: `Big ${word}`,
      topic: "the big one",
      num_joined_members: 3,
      world_readable: false,
      guest_can_join: false,
      join_rule: "public",
    });
    expect(byId.get(small)).toEqual({
      room_id: small,
      canonical_alias: `#${aliasName}:${SERVER_NAME}`,
      num_joined_members: 1,
      world_readable: true,
      guest_can_join: true,
      avatar_url: "mxc://test.local/avatar",
      join_rule: "public",
    });
    expect(byId.get(space)).toMatchObject({ room_type: "m.space", num_joined_members: 1 });

    // Room types: only spaces; only rooms without a type.
    res = await search({ filter: { room_types: ["m.space"] } });
    expect(res.body.chunk.map((c: { room_id: string }) => c.room_id)).toEqual([space]);
    res = await search({ filter: { room_types: [null] } });
    expect(res.body.chunk.map((c: { room_id: string }) => c.room_id).sort()).toEqual([big, medium, small].sort());

    // Pagination: one room per page, forwards to the end, then back.
    const pages: string[] = [];
    let since: string | undefined;
    const tokens: string[] = [];
    for (let i = 0; i < 4; i++) {
      res = await search({ limit: 1, ...(since ? { since } : {}) });
      expect(res.body.chunk).toHaveLength(1);
      pages.push(res.body.chunk[0].room_id);
      if (i === 0) expect(res.body.prev_batch).toBeUndefined();
      else expect(typeof res.body.prev_batch).toBe("string");
      since = res.body.next_batch;
      if (i < 3) expect(typeof since).toBe("string");
      tokens.push(res.body.prev_batch);
    }
    expect(since).toBeUndefined();
    expect(pages).toEqual(ids);
    // The last page's prev_batch leads back to the third room.
    res = await search({ limit: 1, since: tokens[3] });
    expect(res.body.chunk.map((c: { room_id: string }) => c.room_id)).toEqual([pages[2]]);
    res = await search({ limit: 2, since: tokens[3] });
    expect(res.body.chunk.map((c: { room_id: string }) => c.room_id)).toEqual([pages[1], pages[2]]);

    // GET: no token, same entries (unfiltered, so look for ours).
    res = await api("GET", `${v3}/publicRooms?limit=500`);
    expect(res.status).toBe(200);
    const all = res.body.chunk.map((c: { room_id: string }) => c.room_id);
    for (const id of [big, medium, small, space]) expect(all).toContain(id);
    expect(all).not.toContain(inviteOnly);
    // Sorted by joined members, descending.
    const counts = res.body.chunk.map((c: { num_joined_members: number }) => c.num_joined_members);
    expect([...counts].sort((a: number, b: number) => b - a)).toEqual(counts);

    // Unpublishing removes a room.
    await api("PUT", visibilityPath(medium), { token: alice.access_token, body: { visibility: "private" } });
    res = await search({});
    expect(res.body.chunk.map((c: { room_id: string }) => c.room_id)).not.toContain(medium);
  });
});

describe("space hierarchy", () => {
  it("walks a space with two children as each user may see it", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const space = await createRoom(alice, { preset: "public_chat", name: "The Space", creation_content: { type: "m.space" } });
    const open = await createRoom(alice, { preset: "public_chat", name: "Open room" });
    const closed = await createRoom(alice, { preset: "private_chat", name: "Closed room" });
    expect((await sendState(alice, space, "m.space.child", open, { via: [SERVER_NAME], order: "b" })).status).toBe(200);
    expect((await sendState(alice, space, "m.space.child", closed, { via: [SERVER_NAME], order: "a", suggested: true })).status).toBe(200);
    // A child without via is no child.
    const removed = await createRoom(alice, { preset: "public_chat" });
    expect((await sendState(alice, space, "m.space.child", removed, {})).status).toBe(200);

    let res = await api("GET", hierarchyPath(space), { token: alice.access_token });
    expect(res.status).toBe(200);
    expect(res.body.rooms.map((r: { room_id: string }) => r.room_id)).toEqual([space, closed, open]);
    const root = res.body.rooms[0];
    expect(root).toMatchObject({ room_id: space, name: "The Space", room_type: "m.space", num_joined_members: 1, join_rule: "public" });
    expect(root.children_state.map((e: { state_key: string }) => e.state_key)).toEqual([closed, open]);
    for (const e of root.children_state) {
      expect(e.type).toBe("m.space.child");
      expect(e.sender).toBe(alice.user_id);
      expect(typeof e.origin_server_ts).toBe("number");
      expect(e.content.via).toEqual([SERVER_NAME]);
    }
    expect(res.body.rooms[1]).toMatchObject({ room_id: closed, name: "Closed room", join_rule: "invite", children_state: [] });
    expect(res.body.next_batch).toBeUndefined();

    // Bob, not in anything: sees the public space and the public child, not the invite-only one.
    res = await api("GET", hierarchyPath(space), { token: bob.access_token });
    expect(res.status).toBe(200);
    expect(res.body.rooms.map((r: { room_id: string }) => r.room_id)).toEqual([space, open]);

    // suggested_only, max_depth.
    res = await api("GET", hierarchyPath(space, "suggested_only=true"), { token: alice.access_token });
    expect(res.body.rooms.map((r: { room_id: string }) => r.room_id)).toEqual([space, closed]);
    expect(res.body.rooms[0].children_state.map((e: { state_key: string }) => e.state_key)).toEqual([closed]);
    res = await api("GET", hierarchyPath(space, "max_depth=0"), { token: alice.access_token });
    expect(res.body.rooms.map((r: { room_id: string }) => r.room_id)).toEqual([space]);

    // Pagination: one room per page.
    const seen: string[] = [];
    let from: string | undefined;
    for (let i = 0; i < 3; i++) {
      res = await api("GET", hierarchyPath(space, `limit=1${from ? `&from=${encodeURIComponent(from)}` : ""}`), { token: alice.access_token });
      expect(res.status).toBe(200);
      expect(res.body.rooms).toHaveLength(1);
      seen.push(res.body.rooms[0].room_id);
      from = res.body.next_batch;
    }
    expect(seen).toEqual([space, closed, open]);
    expect(from).toBeUndefined();

    // A token is bound to its parameters and its user.
    res = await api("GET", hierarchyPath(space, "limit=1"), { token: alice.access_token });
    const token = encodeURIComponent(res.body.next_batch);
    res = await api("GET", hierarchyPath(space, `limit=1&suggested_only=true&from=${token}`), { token: alice.access_token });
    expect(res).toMatchObject({ status: 400, body: { errcode: "M_INVALID_PARAM" } });
    res = await api("GET", hierarchyPath(space, `limit=1&max_depth=3&from=${token}`), { token: alice.access_token });
    expect(res.status).toBe(400);
    res = await api("GET", hierarchyPath(space, `from=${token}`), { token: bob.access_token });
    expect(res.status).toBe(400);
    res = await api("GET", hierarchyPath(space, `from=garbage`), { token: alice.access_token });
    expect(res.status).toBe(400);
  });

  it("refuses a private space to a non-member, and stops at loops", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const outer = await createRoom(alice, { preset: "private_chat", creation_content: { type: "m.space" } });
    const inner = await createRoom(alice, { preset: "private_chat", creation_content: { type: "m.space" } });
    await sendState(alice, outer, "m.space.child", inner, { via: [SERVER_NAME] });
    await sendState(alice, inner, "m.space.child", outer, { via: [SERVER_NAME] });
    expect(await api("GET", hierarchyPath(outer), { token: bob.access_token })).toMatchObject({ status: 403, body: { errcode: "M_FORBIDDEN" } });
    const res = await api("GET", hierarchyPath(outer), { token: alice.access_token });
    expect(res.status).toBe(200);
    expect(res.body.rooms.map((r: { room_id: string }) => r.room_id)).toEqual([outer, inner]);
  });
});
