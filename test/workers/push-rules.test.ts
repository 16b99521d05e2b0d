// Push rules API (spec: Client-Server API, "Push Rules: API"), stored in the User Durable Object.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, registerUser, uniqueLocalpart } from "./helpers.js";

const R = "/_matrix/client/v3/pushrules";
type Rule = { rule_id: string; default: boolean; enabled: boolean; actions: unknown[]; conditions?: unknown[]; pattern?: string };

async function user() {
  const u = await registerUser(uniqueLocalpart("push"));
  return { ...u, token: u.access_token };
}

async function ids(token: string, kind: string): Promise<string[]> {
  const res = await api("GET", `${R}/global/`, { token });
  expect(res.status).toBe(200);
  return (res.body[kind] as Rule[]).filter((r) => !r.default).map((r) => r.rule_id);
}

describe("push rules: reading", () => {
  it("serves the default ruleset under /pushrules/ and /pushrules/global/", async () => {
    const alice = await user();
    const all = await api("GET", `${R}/`, { token: alice.token });
    expect(all.status).toBe(200);
    expect(Object.keys(all.body)).toEqual(["global"]);
    const global = all.body.global;
    for (const kind of ["override", "content", "room", "sender", "underride"]) expect(Array.isArray(global[kind])).toBe(true);
    expect(global.override[0]).toMatchObject({ rule_id: ".m.rule.master", default: true, enabled: false });
    expect(global.underride.map((r: Rule) => r.rule_id)).toContain(".m.rule.message");
    // The invite rule names this user.
    const invite = global.override.find((r: Rule) => r.rule_id === ".m.rule.invite_for_me");
    expect(JSON.stringify(invite.conditions)).toContain(alice.user_id);
    expect((await api("GET", `${R}/global/`, { token: alice.token })).body).toEqual(global);
    expect((await api("GET", "/_matrix/client/r0/pushrules/", { token: alice.token })).body).toEqual(all.body);
    expect((await api("GET", `${R}/global/underride/`, { token: alice.token })).body).toEqual(global.underride);
  });

  it("serves one rule, its enabled flag and its actions", async () => {
    const alice = await user();
    let res = await api("GET", `${R}/global/override/.m.rule.master`, { token: alice.token });
    expect(res).toMatchObject({ status: 200, body: { rule_id: ".m.rule.master", default: true, enabled: false, actions: [] } });
    res = await api("GET", `${R}/global/override/.m.rule.master/enabled`, { token: alice.token });
    expect(res.body).toEqual({ enabled: false });
    res = await api("GET", `${R}/global/underride/.m.rule.message/actions`, { token: alice.token });
    expect(res.status).toBe(200);
    expect(res.body.actions).toContain("notify");
  });

  it("answers 404 for unknown rules, 400 for unknown kinds, 401 without a token", async () => {
    const alice = await user();
    for (const suffix of ["", "/enabled", "/actions"]) {
      const res = await api("GET", `${R}/global/override/nope${suffix}`, { token: alice.token });
      expect(res.status).toBe(404);
      expect(res.body.errcode).toBe("M_NOT_FOUND");
    }
    const badKind = await api("GET", `${R}/global/bogus/x`, { token: alice.token });
    expect(badKind.status).toBe(400);
    // MSC4306's postcontent kind is known but has no rules here: its rules are not found, and none can be added.
    for (const [method, suffix] of [["GET", ""], ["GET", "/enabled"], ["PUT", "/enabled"], ["GET", "/actions"], ["DELETE", ""]] as const) {
      const res = await api(method, `${R}/global/postcontent/.io.element.msc4306.rule.subscribed_thread${suffix}`, { token: alice.token, body: method === "PUT" ? { enabled: false } : undefined });
      expect(res.status, `${method} ${suffix}`).toBe(404);
      expect(res.body.errcode).toBe("M_NOT_FOUND");
    }
    expect((await api("GET", `${R}/global/postcontent/`, { token: alice.token })).body).toEqual([]);
    const put = await api("PUT", `${R}/global/postcontent/mine`, { token: alice.token, body: { actions: ["notify"] } });
    expect(put.status).toBe(400);
    expect((await api("GET", `${R}/`)).status).toBe(401);
  });
});

describe("push rules: changes", () => {
  it("creates rules, placing them with before/after", async () => {
    const alice = await user();
    const put = (id: string, query = "", body: unknown = { actions: ["notify"], pattern: id }) =>
      api("PUT", `${R}/global/content/${id}${query}`, { token: alice.token, body });

    expect((await put("a")).status).toBe(200);
    // New rules without before/after become the most important user rule.
    expect((await put("b")).status).toBe(200);
    expect(await ids(alice.token, "content")).toEqual(["b", "a"]);
    expect((await put("c", "?before=a")).status).toBe(200);
    expect(await ids(alice.token, "content")).toEqual(["b", "c", "a"]);
    expect((await put("d", "?after=a")).status).toBe(200);
    expect(await ids(alice.token, "content")).toEqual(["b", "c", "a", "d"]);
    expect((await put("e", "?after=b")).status).toBe(200);
    expect(await ids(alice.token, "content")).toEqual(["b", "e", "c", "a", "d"]);

    // A created rule is enabled and readable; user rules rank above the content defaults.
    const got = await api("GET", `${R}/global/content/c`, { token: alice.token });
    expect(got.body).toEqual({ rule_id: "c", default: false, enabled: true, actions: ["notify"], pattern: "c" });
    const content = (await api("GET", `${R}/global/`, { token: alice.token })).body.content as Rule[];
    const firstDefault = content.findIndex((r) => r.default);
    if (firstDefault >= 0) expect(content.slice(firstDefault).every((r) => r.default)).toBe(true);

    // Updating keeps the rule's place.
    expect((await put("c", "", { actions: [{ set_tweak: "highlight" }], pattern: "cake*" })).status).toBe(200);
    expect(await ids(alice.token, "content")).toEqual(["b", "e", "c", "a", "d"]);
    expect((await api("GET", `${R}/global/content/c/actions`, { token: alice.token })).body).toEqual({ actions: [{ set_tweak: "highlight" }] });
  });

  it("refuses before/after naming an unknown or a server-default rule", async () => {
    const alice = await user();
    let res = await api("PUT", `${R}/global/override/x?before=missing`, { token: alice.token, body: { actions: [], conditions: [] } });
    expect(res.status).toBe(400);
    res = await api("PUT", `${R}/global/override/x?after=.m.rule.master`, { token: alice.token, body: { actions: [], conditions: [] } });
    expect(res.status).toBe(400);
    expect(await ids(alice.token, "override")).toEqual([]);
  });

  it("validates rule IDs and bodies", async () => {
    const alice = await user();
    const put = (path: string, body: unknown) => api("PUT", `${R}/global/${path}`, { token: alice.token, body });
    expect((await put("room/.m.rule.mine", { actions: [] })).status).toBe(400);
    expect((await put(`room/${encodeURIComponent("a/b")}`, { actions: [] })).status).toBe(400);
    let res = await put("content/nopattern", { actions: ["notify"] });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_BAD_JSON");
    res = await put("override/noactions", { conditions: [] });
    expect(res.body.errcode).toBe("M_BAD_JSON");
    res = await put("override/badaction", { actions: ["explode"], conditions: [] });
    expect(res.body.errcode).toBe("M_BAD_JSON");
    res = await put("override/x", "{nope");
    expect(res.body.errcode).toBe("M_NOT_JSON");
    res = await put("bogus/x", { actions: [] });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_INVALID_PARAM");
    for (const kind of ["override", "content", "room", "sender", "underride"]) expect(await ids(alice.token, kind)).toEqual([]);
  });

  it("enables and disables user and default rules", async () => {
    const alice = await user();
    const roomRule = `${R}/global/room/${encodeURIComponent("!r:test.local")}`;
    expect((await api("PUT", roomRule, { token: alice.token, body: { actions: ["notify"] } })).status).toBe(200);
    expect((await api("GET", `${roomRule}/enabled`, { token: alice.token })).body).toEqual({ enabled: true });
    expect((await api("PUT", `${roomRule}/enabled`, { token: alice.token, body: { enabled: false } })).status).toBe(200);
    expect((await api("GET", `${roomRule}/enabled`, { token: alice.token })).body).toEqual({ enabled: false });
    expect((await api("GET", roomRule, { token: alice.token })).body.enabled).toBe(false);

    const master = `${R}/global/override/.m.rule.master`;
    expect((await api("PUT", `${master}/enabled`, { token: alice.token, body: { enabled: true } })).status).toBe(200);
    expect((await api("GET", `${master}/enabled`, { token: alice.token })).body).toEqual({ enabled: true });

    let res = await api("PUT", `${master}/enabled`, { token: alice.token, body: { enabled: "yes" } });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_BAD_JSON");
    res = await api("PUT", `${master}/enabled`, { token: alice.token, body: {} });
    expect(res.status).toBe(400);
    res = await api("PUT", `${R}/global/override/nope/enabled`, { token: alice.token, body: { enabled: true } });
    expect(res.status).toBe(404);
    expect((await api("GET", `${master}/enabled`, { token: alice.token })).body).toEqual({ enabled: true });
  });

  it("keeps the historical dont_notify action as set (Synapse and Complement's TestPushRuleCacheHealth)", async () => {
    const alice = await user();
    const rule = `${R}/global/sender/${encodeURIComponent(alice.user_id)}`;
    expect((await api("PUT", rule, { token: alice.token, body: { actions: ["dont_notify"] } })).status).toBe(200);
    const all = await api("GET", `${R}/`, { token: alice.token });
    expect(all.body.global.sender[0]).toMatchObject({ rule_id: alice.user_id, actions: ["dont_notify"] });
    expect((await api("GET", `${rule}/actions`, { token: alice.token })).body).toEqual({ actions: ["dont_notify"] });
  });

  it("changes the actions of user and default rules", async () => {
    const alice = await user();
    const msg = `${R}/global/underride/.m.rule.message/actions`;
    expect((await api("PUT", msg, { token: alice.token, body: { actions: [] } })).status).toBe(200);
    expect((await api("GET", msg, { token: alice.token })).body).toEqual({ actions: [] });
    let res = await api("PUT", msg, { token: alice.token, body: { actions: "notify" } });
    expect(res.status).toBe(400);
    res = await api("PUT", `${R}/global/underride/nope/actions`, { token: alice.token, body: { actions: [] } });
    expect(res.status).toBe(404);
    expect(res.body.errcode).toBe("M_NOT_FOUND");
  });

  it("deletes user rules, and refuses unknown and default rules", async () => {
    const alice = await user();
    const rule = `${R}/global/sender/${encodeURIComponent("@spam:example.org")}`;
    await api("PUT", rule, { token: alice.token, body: { actions: [] } });
    expect(await ids(alice.token, "sender")).toEqual(["@spam:example.org"]);
    expect((await api("DELETE", rule, { token: alice.token })).status).toBe(200);
    expect(await ids(alice.token, "sender")).toEqual([]);
    let res = await api("DELETE", rule, { token: alice.token });
    expect(res.status).toBe(404);
    expect(res.body.errcode).toBe("M_NOT_FOUND");
    res = await api("DELETE", `${R}/global/override/.m.rule.master`, { token: alice.token });
    expect(res.status).toBe(400);
    expect((await api("GET", `${R}/global/override/.m.rule.master`, { token: alice.token })).status).toBe(200);
  });

  it("keeps rules per user", async () => {
    const alice = await user();
    const bob = await user();
    await api("PUT", `${R}/global/content/mine`, { token: alice.token, body: { actions: ["notify"], pattern: "x" } });
    expect(await ids(alice.token, "content")).toEqual(["mine"]);
    expect(await ids(bob.token, "content")).toEqual([]);
    expect((await api("GET", `${R}/global/content/mine`, { token: bob.token })).status).toBe(404);
  });

  it("shows changes as m.push_rules account data, with a new stream position", async () => {
    const alice = await user();
    const store = env.USERS.get(env.USERS.idFromName(alice.user_id));
    const before = await store.streamPosition();
    await api("PUT", `${R}/global/override/.m.rule.master/enabled`, { token: alice.token, body: { enabled: true } });
    const after = await store.streamPosition();
    expect(after).toBeGreaterThan(before);
    const delta = await store.accountDataSince(before, alice.user_id);
    const content = delta.global["m.push_rules"] as { global: { override: Rule[] } };
    expect(content.global.override[0]).toMatchObject({ rule_id: ".m.rule.master", enabled: true });
    expect((await store.accountDataSince(after, alice.user_id)).global).toEqual({});
    // GET account_data/m.push_rules answers the same content.
    const res = await api("GET", `/_matrix/client/v3/user/${encodeURIComponent(alice.user_id)}/account_data/m.push_rules`, { token: alice.token });
    expect(res.body).toEqual(content);
  });
});
