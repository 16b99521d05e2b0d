// Room aliases and published-directory visibility (spec: Client-Server API, "Room aliases",
// "Published room directory"). These tests need no room: they exercise syntax, D1 bookkeeping and
// the refusals that come before any room state is read. directory-rooms.test.ts covers the rest with
// real rooms.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { parseRoomAlias, validateCanonicalAlias } from "../../worker/directory-store.js";
import { orderedChildren } from "../../worker/client/space-hierarchy.js";
import { RoomStateSnapshot, type StateEventView } from "../../worker/room-summary.js";
import { api, registerUser, uniqueLocalpart, SERVER_NAME } from "./helpers.js";
import { forgetCachedTokens } from "../../worker/token-cache.js";

const aliasPath = (alias: string) => `/_matrix/client/v3/directory/room/${encodeURIComponent(alias)}`;
const visibilityPath = (roomId: string) => `/_matrix/client/v3/directory/list/room/${encodeURIComponent(roomId)}`;

/** A room ID no room has. */
const unknownRoomId = () => `!${crypto.randomUUID().replaceAll("-", "")}:${SERVER_NAME}`;

async function insertAliasRow(alias: string, roomId: string, creator: string): Promise<void> {
  await env.DB.prepare("INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES (?, ?, ?, ?)")
    .bind(alias, roomId, creator, Date.now())
    .run();
}

async function makeAdmin(userId: string): Promise<void> {
  await env.DB.prepare("UPDATE users SET admin = 1 WHERE user_id = ?").bind(userId).run();
  forgetCachedTokens(); // a direct D1 edit is otherwise seen within TOKEN_CACHE_TTL_MS (worker/token-cache.ts)
}

describe("room alias grammar", () => {
  it("accepts aliases of the appendix grammar", () => {
    expect(parseRoomAlias("#room:example.org")).toEqual({ alias: "#room:example.org", localpart: "room", serverName: "example.org" });
    // The localpart ends at the first colon; the server name may carry a port or an IPv6 literal.
    expect(parseRoomAlias("#room:localhost:8448")?.serverName).toBe("localhost:8448");
    expect(parseRoomAlias("#room:[::1]:8448")?.serverName).toBe("[::1]:8448");
    // Any non-surrogate code points except ':' and NUL: spaces, slashes, emoji.
    expect(parseRoomAlias("#a b/c😀:example.org")?.localpart).toBe("a b/c😀");
    // Exactly 255 bytes is allowed.
    const server = "example.org";
    const fits = "#" + "a".repeat(255 - 2 - server.length) + ":" + server;
    expect(new TextEncoder().encode(fits).length).toBe(255);
    expect(parseRoomAlias(fits)).not.toBeNull();
  });

  it("refuses what is not a room alias", () => {
    for (const bad of [
      "room:example.org", // no sigil
      "!room:example.org",
      "#room", // no server name
      "#:example.org", // empty localpart
      "#room:", // empty server name
      "#room:exa mple.org", // invalid server name
      "#ro\u0000om:example.org",
      "#ro\uD800om:example.org", // lone surrogate
      "#" + "a".repeat(250) + ":example.org", // over 255 bytes
      "#" + "é".repeat(122) + ":example.org", // under 255 characters but 257 bytes
    ]) {
      expect(parseRoomAlias(bad), bad).toBeNull();
    }
  });
});

describe("space children order", () => {
  it("orders children as the spec's example does, and drops children without via", () => {
    const child = (roomId: string, ts: number, content: Record<string, unknown>): StateEventView => ({
      event_id: `$${roomId}`,
      type: "m.space.child",
      state_key: roomId,
      sender: "@a:example.org",
      origin_server_ts: ts,
      content: content as StateEventView["content"],
    });
    const state = new RoomStateSnapshot("!space:example.org", "11", [
      child("!b:example.org", 1640341000000, { order: " ", via: ["example.org"] }),
      child("!a:example.org", 1640141000000, { order: "aaaa", via: ["example.org"] }),
      child("!c:example.org", 1640841000000, { order: "first", via: ["example.org"] }),
      child("!e:example.org", 1640641000000, { via: ["example.org"] }),
      child("!d:example.org", 1640741000000, { via: ["example.org"] }),
      // An invalid order (over 50 characters, or outside \x20-\x7E) counts as none.
      child("!f:example.org", 1640641000000, { order: "x".repeat(51), via: ["example.org"] }),
      child("!g:example.org", 1640001000000, { order: "\u00e9", via: ["example.org"], suggested: true }),
      // Not children: no via, empty via, via with a non-string.
      child("!x:example.org", 1, {}),
      child("!y:example.org", 1, { via: [] }),
      child("!z:example.org", 1, { via: [1] }),
    ]);
    expect(orderedChildren(state, false).map((e) => e.state_key)).toEqual([
      "!b:example.org",
      "!a:example.org",
      "!c:example.org",
      "!g:example.org",
      "!e:example.org", // same timestamp as !f: room ID decides
      "!f:example.org",
      "!d:example.org",
    ]);
    expect(orderedChildren(state, true).map((e) => e.state_key)).toEqual(["!g:example.org"]);
  });
});

describe("PUT /directory/room/{roomAlias}", () => {
  it("requires an access token", async () => {
    const res = await api("PUT", aliasPath(`#x:${SERVER_NAME}`), { body: { room_id: unknownRoomId() } });
    expect(res.status).toBe(401);
    expect(res.body.errcode).toBe("M_MISSING_TOKEN");
  });

  it("refuses invalid aliases and aliases of other servers with M_INVALID_PARAM", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    for (const alias of ["nosigil:test.local", `#nocolon`, `#${"a".repeat(260)}:${SERVER_NAME}`, "#room:other.example"]) {
      const res = await api("PUT", aliasPath(alias), { token: alice.access_token, body: { room_id: unknownRoomId() } });
      expect(res.status, alias).toBe(400);
      expect(res.body.errcode, alias).toBe("M_INVALID_PARAM");
    }
  });

  it("refuses a missing or malformed room_id", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const alias = `#${uniqueLocalpart("r")}:${SERVER_NAME}`;
    let res = await api("PUT", aliasPath(alias), { token: alice.access_token, body: {} });
    expect(res).toMatchObject({ status: 400, body: { errcode: "M_MISSING_PARAM" } });
    res = await api("PUT", aliasPath(alias), { token: alice.access_token, body: { room_id: "not-a-room" } });
    expect(res).toMatchObject({ status: 400, body: { errcode: "M_INVALID_PARAM" } });
    res = await api("PUT", aliasPath(alias), { token: alice.access_token, body: { room_id: 5 } });
    expect(res).toMatchObject({ status: 400, body: { errcode: "M_INVALID_PARAM" } });
    res = await api("PUT", aliasPath(alias), { token: alice.access_token, body: "{not json" });
    expect(res).toMatchObject({ status: 400, body: { errcode: "M_NOT_JSON" } });
  });

  it("refuses a room this server does not know, and creates nothing", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const alias = `#${uniqueLocalpart("r")}:${SERVER_NAME}`;
    const res = await api("PUT", aliasPath(alias), { token: alice.access_token, body: { room_id: unknownRoomId() } });
    expect(res).toMatchObject({ status: 404, body: { errcode: "M_NOT_FOUND" } });
    expect((await api("GET", aliasPath(alias))).status).toBe(404);
  });
});

describe("GET /directory/room/{roomAlias}", () => {
  it("resolves a stored alias without authentication", async () => {
    const alias = `#${uniqueLocalpart("r")}:${SERVER_NAME}`;
    const roomId = unknownRoomId();
    await insertAliasRow(alias, roomId, "@someone:test.local");
    const res = await api("GET", aliasPath(alias));
    expect(res.status).toBe(200);
    expect(res.body.room_id).toBe(roomId);
    expect(res.body.servers[0]).toBe(SERVER_NAME);
    // r0 too; and an alias with a slash in it survives the URL encoding.
    const slashed = `#a/b ${uniqueLocalpart("r")}:${SERVER_NAME}`;
    await insertAliasRow(slashed, roomId, "@someone:test.local");
    expect((await api("GET", `/_matrix/client/r0/directory/room/${encodeURIComponent(slashed)}`)).body.room_id).toBe(roomId);
  });

  it("answers 404 M_NOT_FOUND for an unknown alias and 400 for an invalid one", async () => {
    let res = await api("GET", aliasPath(`#${uniqueLocalpart("nope")}:${SERVER_NAME}`));
    expect(res).toMatchObject({ status: 404, body: { errcode: "M_NOT_FOUND" } });
    // Another server's alias would need federation: not found here.
    res = await api("GET", aliasPath("#room:other.example"));
    expect(res).toMatchObject({ status: 404, body: { errcode: "M_NOT_FOUND" } });
    res = await api("GET", aliasPath("room-without-sigil"));
    expect(res).toMatchObject({ status: 400, body: { errcode: "M_INVALID_PARAM" } });
  });
});

describe("DELETE /directory/room/{roomAlias}", () => {
  it("lets the alias's creator delete it", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const alias = `#${uniqueLocalpart("r")}:${SERVER_NAME}`;
    await insertAliasRow(alias, unknownRoomId(), alice.user_id);
    const res = await api("DELETE", aliasPath(alias), { token: alice.access_token });
    expect(res).toMatchObject({ status: 200, body: {} });
    expect((await api("GET", aliasPath(alias))).status).toBe(404);
    // Deleting again: gone.
    expect((await api("DELETE", aliasPath(alias), { token: alice.access_token })).status).toBe(404);
  });

  it("forbids other users (who have no power in the room) and keeps the alias", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const alias = `#${uniqueLocalpart("r")}:${SERVER_NAME}`;
    await insertAliasRow(alias, unknownRoomId(), alice.user_id);
    const res = await api("DELETE", aliasPath(alias), { token: bob.access_token });
    expect(res).toMatchObject({ status: 403, body: { errcode: "M_FORBIDDEN" } });
    expect((await api("GET", aliasPath(alias))).status).toBe(200);
  });

  it("lets a server admin delete any alias", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const admin = await registerUser(uniqueLocalpart("admin"));
    await makeAdmin(admin.user_id);
    const alias = `#${uniqueLocalpart("r")}:${SERVER_NAME}`;
    await insertAliasRow(alias, unknownRoomId(), alice.user_id);
    expect((await api("DELETE", aliasPath(alias), { token: admin.access_token })).status).toBe(200);
    expect((await api("GET", aliasPath(alias))).status).toBe(404);
  });

  it("answers 404 for an unknown alias, 400 for an invalid one, 401 without a token", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    expect((await api("DELETE", aliasPath(`#${uniqueLocalpart("nope")}:${SERVER_NAME}`), { token: alice.access_token })).body.errcode).toBe(
      "M_NOT_FOUND",
    );
    expect((await api("DELETE", aliasPath("bad"), { token: alice.access_token })).body.errcode).toBe("M_INVALID_PARAM");
    expect((await api("DELETE", aliasPath(`#x:${SERVER_NAME}`))).status).toBe(401);
  });
});

describe("GET /rooms/{roomId}/aliases", () => {
  it("is forbidden for a room the user is not in, and open to server admins", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const roomId = unknownRoomId();
    const alias = `#${uniqueLocalpart("r")}:${SERVER_NAME}`;
    await insertAliasRow(alias, roomId, alice.user_id);
    const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/aliases`;
    expect(await api("GET", path, { token: alice.access_token })).toMatchObject({ status: 403, body: { errcode: "M_FORBIDDEN" } });
    await makeAdmin(alice.user_id);
    expect(await api("GET", path, { token: alice.access_token })).toMatchObject({ status: 200, body: { aliases: [alias] } });
    expect((await api("GET", path)).status).toBe(401);
    expect((await api("GET", `/_matrix/client/v3/rooms/not-a-room/aliases`, { token: alice.access_token })).body.errcode).toBe(
      "M_INVALID_PARAM",
    );
  });
});

describe("/directory/list/room/{roomId}", () => {
  it("reads a stored visibility without authentication", async () => {
    const roomId = unknownRoomId();
    await env.DB.prepare("INSERT INTO room_directory (room_id, visibility, updated_ts) VALUES (?, 'public', 0)").bind(roomId).run();
    expect(await api("GET", visibilityPath(roomId))).toMatchObject({ status: 200, body: { visibility: "public" } });
  });

  it("answers 404 for an unknown room", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    expect(await api("GET", visibilityPath(unknownRoomId()))).toMatchObject({ status: 404, body: { errcode: "M_NOT_FOUND" } });
    const res = await api("PUT", visibilityPath(unknownRoomId()), { token: alice.access_token, body: { visibility: "public" } });
    expect(res).toMatchObject({ status: 404, body: { errcode: "M_NOT_FOUND" } });
  });

  it("validates the visibility and requires a token to change it", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const res = await api("PUT", visibilityPath(unknownRoomId()), { token: alice.access_token, body: { visibility: "everyone" } });
    expect(res).toMatchObject({ status: 400, body: { errcode: "M_INVALID_PARAM" } });
    expect((await api("PUT", visibilityPath(unknownRoomId()), { body: { visibility: "public" } })).status).toBe(401);
  });
});

describe("validateCanonicalAlias", () => {
  it("accepts aliases that point to the room and refuses others", async () => {
    const roomId = unknownRoomId();
    const mine = `#${uniqueLocalpart("mine")}:${SERVER_NAME}`;
    const other = `#${uniqueLocalpart("other")}:${SERVER_NAME}`;
    await insertAliasRow(mine, roomId, "@a:test.local");
    await insertAliasRow(other, unknownRoomId(), "@a:test.local");
    const e = env as unknown as Parameters<typeof validateCanonicalAlias>[0];

    await expect(validateCanonicalAlias(e, roomId, { alias: mine, alt_aliases: [mine] }, null)).resolves.toBeUndefined();
    // No alias at all, or an empty one, is fine.
    await expect(validateCanonicalAlias(e, roomId, {}, null)).resolves.toBeUndefined();
    await expect(validateCanonicalAlias(e, roomId, { alias: "" }, null)).resolves.toBeUndefined();

    await expect(validateCanonicalAlias(e, roomId, { alias: other }, null)).rejects.toMatchObject({ status: 400, errcode: "M_BAD_ALIAS" });
    await expect(validateCanonicalAlias(e, roomId, { alt_aliases: [mine, other] }, null)).rejects.toMatchObject({ errcode: "M_BAD_ALIAS" });
    const missing = `#${uniqueLocalpart("missing")}:${SERVER_NAME}`;
    await expect(validateCanonicalAlias(e, roomId, { alias: missing }, null)).rejects.toMatchObject({ errcode: "M_BAD_ALIAS" });
    // A remote alias cannot be checked without federation.
    await expect(validateCanonicalAlias(e, roomId, { alias: "#r:other.example" }, null)).rejects.toMatchObject({ errcode: "M_BAD_ALIAS" });
    // Bad syntax is M_INVALID_PARAM.
    await expect(validateCanonicalAlias(e, roomId, { alias: "nope" }, null)).rejects.toMatchObject({ errcode: "M_INVALID_PARAM" });
    await expect(validateCanonicalAlias(e, roomId, { alias: 3 }, null)).rejects.toMatchObject({ errcode: "M_INVALID_PARAM" });
    await expect(validateCanonicalAlias(e, roomId, { alt_aliases: "x" }, null)).rejects.toMatchObject({ errcode: "M_INVALID_PARAM" });
    await expect(validateCanonicalAlias(e, roomId, { alt_aliases: ["bad"] }, null)).rejects.toMatchObject({ errcode: "M_INVALID_PARAM" });
  });

  it("checks only aliases that are new compared with the current event", async () => {
    const roomId = unknownRoomId();
    const gone = `#${uniqueLocalpart("gone")}:${SERVER_NAME}`; // deleted since: no mapping
    const e = env as unknown as Parameters<typeof validateCanonicalAlias>[0];
    const current = { alias: gone, alt_aliases: [gone] };
    await expect(validateCanonicalAlias(e, roomId, { alias: gone }, current)).resolves.toBeUndefined();
    await expect(validateCanonicalAlias(e, roomId, { alt_aliases: [gone] }, current)).resolves.toBeUndefined();
    await expect(validateCanonicalAlias(e, roomId, { alias: gone }, { alt_aliases: [gone] })).rejects.toMatchObject({ errcode: "M_BAD_ALIAS" });
  });
});

describe("publicRooms without rooms", () => {
  it("GET needs no token; POST does", async () => {
    const res = await api("GET", "/_matrix/client/v3/publicRooms");
    expect(res.status).toBe(200);
    expect(Array.isArray(res.body.chunk)).toBe(true);
    expect(typeof res.body.total_room_count_estimate).toBe("number");
    expect((await api("POST", "/_matrix/client/v3/publicRooms", { body: {} })).status).toBe(401);
  });

  it("refuses bad parameters", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    expect((await api("GET", "/_matrix/client/v3/publicRooms?limit=-1")).body.errcode).toBe("M_INVALID_PARAM");
    expect((await api("GET", "/_matrix/client/v3/publicRooms?limit=ten")).body.errcode).toBe("M_INVALID_PARAM");
    expect((await api("GET", "/_matrix/client/v3/publicRooms?since=garbage")).body.errcode).toBe("M_INVALID_PARAM");
    // Another server's directory is asked over federation (federation-public-rooms.test.ts); a name that
    // is not a server name is refused.
    expect((await api("GET", `/_matrix/client/v3/publicRooms?server=${encodeURIComponent("bad name!")}`)).body.errcode).toBe("M_INVALID_PARAM");
    const post = (body: unknown) => api("POST", "/_matrix/client/v3/publicRooms", { token: alice.access_token, body });
    for (const body of [
      { limit: "5" },
      { limit: -2 },
      { since: 7 },
      { filter: "x" },
      { filter: { generic_search_term: 5 } },
      { filter: { room_types: "m.space" } },
      { filter: { room_types: [5] } },
      { include_all_networks: "yes" },
      { include_all_networks: true, third_party_instance_id: "irc" },
      // Synapse's form is `<service id>|<network id>` (ThirdPartyInstanceID.from_string).
      { third_party_instance_id: "irc" },
      { third_party_instance_id: "a|b|c" },
    ]) {
      const res = await post(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.errcode, JSON.stringify(body)).toBe("M_INVALID_PARAM");
    }
    // A third-party network this server does not bridge has no rooms.
    expect((await post({ third_party_instance_id: "nosuchbridge|irc" })).body).toEqual({ chunk: [], total_room_count_estimate: 0 });
    // The server's own name is the local directory.
    expect((await api("GET", `/_matrix/client/v3/publicRooms?server=${SERVER_NAME}`)).status).toBe(200);
  });
});

describe("hierarchy without rooms", () => {
  it("is forbidden for an unknown room and validates its parameters", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const path = `/_matrix/client/v1/rooms/${encodeURIComponent(unknownRoomId())}/hierarchy`;
    expect(await api("GET", path, { token: alice.access_token })).toMatchObject({ status: 403, body: { errcode: "M_FORBIDDEN" } });
    expect((await api("GET", path)).status).toBe(401);
    for (const q of ["limit=0", "limit=x", "max_depth=-1", "suggested_only=maybe"]) {
      const res = await api("GET", `${path}?${q}`, { token: alice.access_token });
      expect(res.status, q).toBe(400);
      expect(res.body.errcode, q).toBe("M_INVALID_PARAM");
    }
  });
});
