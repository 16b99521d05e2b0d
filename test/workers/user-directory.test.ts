// User directory search (spec: Client-Server API, "User directory"; worker/client/user-directory.ts). By
// default the users who share a room with the searcher or are in a published room; the search itself is
// tested with USER_DIRECTORY_SEARCH_ALL_USERS=true (every local, non-deactivated user).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../worker/index.js";
import { api, registerUser, uniqueLocalpart, type ApiOptions, type ApiResponse } from "./helpers.js";
import { createRoom, join, membership, newUser } from "./room-helpers.js";

const SEARCH = "/_matrix/client/v3/user_directory/search";
const allUsersEnv = { ...env, USER_DIRECTORY_SEARCH_ALL_USERS: "true" };

/** A search with USER_DIRECTORY_SEARCH_ALL_USERS=true (the other requests of the file go to the worker as configured). */
async function searchAll(method: string, path: string, options: ApiOptions = {}): Promise<ApiResponse> {
  const headers = new Headers({ "Content-Type": "application/json" });
  if (options.token !== undefined) headers.set("Authorization", `Bearer ${options.token}`);
  const body = options.body === undefined ? undefined : typeof options.body === "string" ? options.body : JSON.stringify(options.body);
  const res = await buildApp().request(path, { method, headers, body }, allUsersEnv);
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text === "" ? null : JSON.parse(text);
  } catch {
    parsed = null;
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

async function userWithName(prefix: string, displayname?: string) {
  const user = await registerUser(uniqueLocalpart(prefix));
  if (displayname !== undefined) {
    const res = await api("PUT", `/_matrix/client/v3/profile/${encodeURIComponent(user.user_id)}/displayname`, {
      token: user.access_token,
      body: { displayname },
    });
    expect(res.status).toBe(200);
  }
  return user;
}

describe("user directory search (all users)", () => {
  it("finds users by display name, case-insensitively, with their profile", async () => {
    const tag = crypto.randomUUID().slice(0, 6);
    const zed = await userWithName("zed", `Zebedee ${tag}`);
    await api("PUT", `/_matrix/client/v3/profile/${encodeURIComponent(zed.user_id)}/avatar_url`, {
      token: zed.access_token,
      body: { avatar_url: "mxc://test.local/zed" },
    });
    const searcher = await registerUser(uniqueLocalpart("searcher"));
    const res = await searchAll("POST", SEARCH, { token: searcher.access_token, body: { search_term: `zEBEDEE ${tag.toUpperCase()}` } });
    expect(res.status).toBe(200);
    expect(res.body.limited).toBe(false);
    expect(res.body.results).toEqual([{ user_id: zed.user_id, display_name: `Zebedee ${tag}`, avatar_url: "mxc://test.local/zed" }]);
  });

  it("finds users by user ID", async () => {
    const target = await registerUser(uniqueLocalpart("idsearch"));
    const searcher = await registerUser(uniqueLocalpart("searcher"));
    const localpart = target.user_id.slice(1, target.user_id.indexOf(":"));
    const res = await searchAll("POST", SEARCH, { token: searcher.access_token, body: { search_term: localpart } });
    expect(res.status).toBe(200);
    expect(res.body.results.map((r: { user_id: string }) => r.user_id)).toEqual([target.user_id]);
    // The full user ID (longer than D1's 50-byte LIKE limit once padded) and a part of it match too.
    const full = await searchAll("POST", SEARCH, { token: searcher.access_token, body: { search_term: target.user_id.toUpperCase() } });
    expect(full.body.results.map((r: { user_id: string }) => r.user_id)).toEqual([target.user_id]);
    const part = await searchAll("POST", SEARCH, { token: searcher.access_token, body: { search_term: localpart.slice(3, 12) } });
    expect(part.body.results.map((r: { user_id: string }) => r.user_id)).toContain(target.user_id);
  });

  it("respects the limit and reports `limited`", async () => {
    const tag = `lim${crypto.randomUUID().slice(0, 6)}`;
    const users = [];
    for (let i = 0; i < 4; i++) users.push(await userWithName("lim", `${tag} number ${i}`));
    const token = users[0]!.access_token;
    let res = await searchAll("POST", SEARCH, { token, body: { search_term: tag, limit: 2 } });
    expect(res.status).toBe(200);
    expect(res.body.results).toHaveLength(2);
    expect(res.body.limited).toBe(true);
    res = await searchAll("POST", SEARCH, { token, body: { search_term: tag, limit: 4 } });
    expect(res.body.results).toHaveLength(4);
    expect(res.body.limited).toBe(false);
    res = await searchAll("POST", SEARCH, { token, body: { search_term: tag } }); // default limit 10
    expect(res.body.results).toHaveLength(4);
    expect(new Set(res.body.results.map((r: { user_id: string }) => r.user_id))).toEqual(new Set(users.map((u) => u.user_id)));
  });

  it("ranks a display-name prefix match above a match inside the name", async () => {
    const tag = `rk${crypto.randomUUID().slice(0, 6)}`;
    const inner = await userWithName("rank", `Someone ${tag}`);
    const prefix = await userWithName("rank", `${tag} Someone`);
    const res = await searchAll("POST", SEARCH, { token: inner.access_token, body: { search_term: tag } });
    expect(res.body.results.map((r: { user_id: string }) => r.user_id)).toEqual([prefix.user_id, inner.user_id]);
  });

  it("treats SQL wildcards literally and finds nothing for an unknown (long) term", async () => {
    const searcher = await registerUser(uniqueLocalpart("searcher"));
    for (const term of ["%", "_", `no-such-user-${crypto.randomUUID()}`]) {
      const res = await searchAll("POST", SEARCH, { token: searcher.access_token, body: { search_term: term } });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ results: [], limited: false });
    }
  });

  it("omits deactivated users", async () => {
    const tag = `deact${crypto.randomUUID().slice(0, 6)}`;
    const gone = await userWithName("gone", `${tag}`);
    await env.DB.prepare("UPDATE users SET deactivated = 1 WHERE user_id = ?").bind(gone.user_id).run();
    const searcher = await registerUser(uniqueLocalpart("searcher"));
    const res = await searchAll("POST", SEARCH, { token: searcher.access_token, body: { search_term: tag } });
    expect(res.body.results).toEqual([]);
  });

  it("validates the request", async () => {
    const searcher = await registerUser(uniqueLocalpart("searcher"));
    const post = (body: unknown) => searchAll("POST", SEARCH, { token: searcher.access_token, body });
    expect((await post({})).body.errcode).toBe("M_MISSING_PARAM");
    expect((await post({ search_term: 5 })).body.errcode).toBe("M_BAD_JSON");
    expect((await post({ search_term: "a", limit: -1 })).body.errcode).toBe("M_INVALID_PARAM");
    expect((await post({ search_term: "a", limit: "5" })).body.errcode).toBe("M_INVALID_PARAM");
    expect((await post("{")).body.errcode).toBe("M_NOT_JSON");
    expect((await searchAll("POST", SEARCH, { body: { search_term: "a" } })).status).toBe(401);
  });
});

describe("user directory search (default scope)", () => {
  const ids = (res: ApiResponse) => (res.body.results as { user_id: string }[]).map((r) => r.user_id).sort();
  const search = (token: string, term: string) => api("POST", SEARCH, { token, body: { search_term: term } });

  it("finds only users who share a room with the searcher or are in a published room", async () => {
    const tag = `scope${crypto.randomUUID().slice(0, 6)}`;
    const named = async (name: string) => {
      const u = await newUser(tag);
      await api("PUT", `/_matrix/client/v3/profile/${encodeURIComponent(u.user_id)}/displayname`, { token: u.access_token, body: { displayname: `${tag} ${name}` } });
      return u;
    };
    const alice = await named("alice");
    const bob = await named("bob");
    const carol = await named("carol");
    const dave = await named("dave");
    const eve = await named("eve");
    // alice is in a published room; bob and carol share a private room; dave and eve are nowhere yet.
    await createRoom(alice, { visibility: "public", preset: "public_chat" });
    const privateRoom = await createRoom(bob);
    expect((await membership(bob, privateRoom, "invite", { user_id: carol.user_id })).status).toBe(200);
    expect((await join(carol, privateRoom)).status).toBe(200);

    expect(ids(await search(eve.access_token, tag))).toEqual([alice.user_id]);
    // Bob does not find himself: he shares no published room (Complement's TestRoomSpecificUsername*).
    expect(ids(await search(bob.access_token, tag))).toEqual([alice.user_id, carol.user_id].sort());
    expect(ids(await search(alice.access_token, `${tag} alice`))).toEqual([alice.user_id]);
    // A user who only shares a room that is not published is not found by outsiders.
    expect(ids(await search(dave.access_token, `${tag} carol`))).toEqual([]);
    // An invite is not a shared room; joining makes it one.
    expect((await membership(bob, privateRoom, "invite", { user_id: dave.user_id })).status).toBe(200);
    expect(ids(await search(dave.access_token, `${tag} carol`))).toEqual([]);
    expect((await join(dave, privateRoom)).status).toBe(200);
    expect(ids(await search(dave.access_token, `${tag} carol`))).toEqual([carol.user_id]);
    // Leaving ends it.
    expect((await membership(carol, privateRoom, "leave")).status).toBe(200);
    expect(ids(await search(dave.access_token, `${tag} carol`))).toEqual([]);
    // The same search with search-all finds everyone.
    expect(ids(await searchAll("POST", SEARCH, { token: eve.access_token, body: { search_term: tag } }))).toEqual(
      [alice, bob, carol, dave, eve].map((u) => u.user_id).sort(),
    );
  });

  it("a member of a publicly joinable or world-readable room, published or not, finds themselves (as Synapse)", async () => {
    const tag = `self${crypto.randomUUID().slice(0, 6)}`;
    const [joinable, readable, hidden] = await Promise.all([newUser(`${tag}a`), newUser(`${tag}b`), newUser(`${tag}c`)]);
    await createRoom(joinable, { preset: "public_chat" });
    await createRoom(readable, { initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "world_readable" } }] });
    await createRoom(hidden, { initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "shared" } }] });
    expect(ids(await search(joinable.access_token, `${tag}a`))).toEqual([joinable.user_id]);
    expect(ids(await search(readable.access_token, `${tag}b`))).toEqual([readable.user_id]);
    expect(ids(await search(hidden.access_token, `${tag}c`))).toEqual([]);
  });
});
