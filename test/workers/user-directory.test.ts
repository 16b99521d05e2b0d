// User directory search (spec: Client-Server API, "User directory"). This server searches all local,
// non-deactivated users (see worker/client/user-directory.ts).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, registerUser, uniqueLocalpart } from "./helpers.js";

const SEARCH = "/_matrix/client/v3/user_directory/search";

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

describe("user directory search", () => {
  it("finds users by display name, case-insensitively, with their profile", async () => {
    const tag = crypto.randomUUID().slice(0, 6);
    const zed = await userWithName("zed", `Zebedee ${tag}`);
    await api("PUT", `/_matrix/client/v3/profile/${encodeURIComponent(zed.user_id)}/avatar_url`, {
      token: zed.access_token,
      body: { avatar_url: "mxc://test.local/zed" },
    });
    const searcher = await registerUser(uniqueLocalpart("searcher"));
    const res = await api("POST", SEARCH, { token: searcher.access_token, body: { search_term: `zEBEDEE ${tag.toUpperCase()}` } });
    expect(res.status).toBe(200);
    expect(res.body.limited).toBe(false);
    expect(res.body.results).toEqual([{ user_id: zed.user_id, display_name: `Zebedee ${tag}`, avatar_url: "mxc://test.local/zed" }]);
  });

  it("finds users by user ID", async () => {
    const target = await registerUser(uniqueLocalpart("idsearch"));
    const searcher = await registerUser(uniqueLocalpart("searcher"));
    const localpart = target.user_id.slice(1, target.user_id.indexOf(":"));
    const res = await api("POST", SEARCH, { token: searcher.access_token, body: { search_term: localpart } });
    expect(res.status).toBe(200);
    expect(res.body.results.map((r: { user_id: string }) => r.user_id)).toEqual([target.user_id]);
    // The full user ID (longer than D1's 50-byte LIKE limit once padded) and a part of it match too.
    const full = await api("POST", SEARCH, { token: searcher.access_token, body: { search_term: target.user_id.toUpperCase() } });
    expect(full.body.results.map((r: { user_id: string }) => r.user_id)).toEqual([target.user_id]);
    const part = await api("POST", SEARCH, { token: searcher.access_token, body: { search_term: localpart.slice(3, 12) } });
    expect(part.body.results.map((r: { user_id: string }) => r.user_id)).toContain(target.user_id);
  });

  it("respects the limit and reports `limited`", async () => {
    const tag = `lim${crypto.randomUUID().slice(0, 6)}`;
    const users = [];
    for (let i = 0; i < 4; i++) users.push(await userWithName("lim", `${tag} number ${i}`));
    const token = users[0]!.access_token;
    let res = await api("POST", SEARCH, { token, body: { search_term: tag, limit: 2 } });
    expect(res.status).toBe(200);
    expect(res.body.results).toHaveLength(2);
    expect(res.body.limited).toBe(true);
    res = await api("POST", SEARCH, { token, body: { search_term: tag, limit: 4 } });
    expect(res.body.results).toHaveLength(4);
    expect(res.body.limited).toBe(false);
    res = await api("POST", SEARCH, { token, body: { search_term: tag } }); // default limit 10
    expect(res.body.results).toHaveLength(4);
    expect(new Set(res.body.results.map((r: { user_id: string }) => r.user_id))).toEqual(new Set(users.map((u) => u.user_id)));
  });

  it("ranks a display-name prefix match above a match inside the name", async () => {
    const tag = `rk${crypto.randomUUID().slice(0, 6)}`;
    const inner = await userWithName("rank", `Someone ${tag}`);
    const prefix = await userWithName("rank", `${tag} Someone`);
    const res = await api("POST", SEARCH, { token: inner.access_token, body: { search_term: tag } });
    expect(res.body.results.map((r: { user_id: string }) => r.user_id)).toEqual([prefix.user_id, inner.user_id]);
  });

  it("treats SQL wildcards literally and finds nothing for an unknown (long) term", async () => {
    const searcher = await registerUser(uniqueLocalpart("searcher"));
    for (const term of ["%", "_", `no-such-user-${crypto.randomUUID()}`]) {
      const res = await api("POST", SEARCH, { token: searcher.access_token, body: { search_term: term } });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ results: [], limited: false });
    }
  });

  it("omits deactivated users", async () => {
    const tag = `deact${crypto.randomUUID().slice(0, 6)}`;
    const gone = await userWithName("gone", `${tag}`);
    await env.DB.prepare("UPDATE users SET deactivated = 1 WHERE user_id = ?").bind(gone.user_id).run();
    const searcher = await registerUser(uniqueLocalpart("searcher"));
    const res = await api("POST", SEARCH, { token: searcher.access_token, body: { search_term: tag } });
    expect(res.body.results).toEqual([]);
  });

  it("validates the request", async () => {
    const searcher = await registerUser(uniqueLocalpart("searcher"));
    const post = (body: unknown) => api("POST", SEARCH, { token: searcher.access_token, body });
    expect((await post({})).body.errcode).toBe("M_MISSING_PARAM");
    expect((await post({ search_term: 5 })).body.errcode).toBe("M_BAD_JSON");
    expect((await post({ search_term: "a", limit: -1 })).body.errcode).toBe("M_INVALID_PARAM");
    expect((await post({ search_term: "a", limit: "5" })).body.errcode).toBe("M_INVALID_PARAM");
    expect((await post("{")).body.errcode).toBe("M_NOT_JSON");
    expect((await api("POST", SEARCH, { body: { search_term: "a" } })).status).toBe(401);
  });
});
