// Account data (spec: Client-Server API, "Client Config") and its storage in the User Durable Object.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, registerUser, uniqueLocalpart } from "./helpers.js";

const V3 = "/_matrix/client/v3";
const globalPath = (userId: string, type: string) => `${V3}/user/${encodeURIComponent(userId)}/account_data/${encodeURIComponent(type)}`;
const roomPath = (userId: string, roomId: string, type: string) =>
  `${V3}/user/${encodeURIComponent(userId)}/rooms/${encodeURIComponent(roomId)}/account_data/${encodeURIComponent(type)}`;
const ROOM = "!room:test.local";

describe("global account data", () => {
  it("round-trips and overwrites", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const path = globalPath(alice.user_id, "org.example.config");
    let res = await api("PUT", path, { token: alice.access_token, body: { theme: "dark", nested: { n: 1.5 } } });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
    res = await api("GET", path, { token: alice.access_token });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ theme: "dark", nested: { n: 1.5 } });
    await api("PUT", path, { token: alice.access_token, body: { theme: "light" } });
    expect((await api("GET", path, { token: alice.access_token })).body).toEqual({ theme: "light" });
    // r0 reads the same data.
    const r0 = path.replace("/v3/", "/r0/");
    expect((await api("GET", r0, { token: alice.access_token })).body).toEqual({ theme: "light" });
  });

  it("answers 404 M_NOT_FOUND when unset", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const res = await api("GET", globalPath(alice.user_id, "org.example.unset"), { token: alice.access_token });
    expect(res.status).toBe(404);
    expect(res.body.errcode).toBe("M_NOT_FOUND");
  });

  it("refuses another user's account data with 403", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const path = globalPath(alice.user_id, "org.example.secret");
    await api("PUT", path, { token: alice.access_token, body: { v: 1 } });
    let res = await api("GET", path, { token: bob.access_token });
    expect(res.status).toBe(403);
    expect(res.body.errcode).toBe("M_FORBIDDEN");
    res = await api("PUT", path, { token: bob.access_token, body: { v: 2 } });
    expect(res.status).toBe(403);
    expect(res.body.errcode).toBe("M_FORBIDDEN");
    expect((await api("GET", path, { token: alice.access_token })).body).toEqual({ v: 1 });
    // Without a token: 401.
    expect((await api("GET", path)).status).toBe(401);
  });

  it("rejects bodies that are not JSON objects", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const path = globalPath(alice.user_id, "org.example.bad");
    let res = await api("PUT", path, { token: alice.access_token, body: "{nope" });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_NOT_JSON");
    res = await api("PUT", path, { token: alice.access_token, body: ["a"] });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_BAD_JSON");
    res = await api("PUT", path, { token: alice.access_token, body: "" });
    expect(res.status).toBe(400);
    expect((await api("GET", path, { token: alice.access_token })).status).toBe(404);
  });

  it("refuses the server-managed types m.fully_read and m.push_rules with 405 M_BAD_JSON", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    for (const type of ["m.fully_read", "m.push_rules"]) {
      for (const path of [globalPath(alice.user_id, type), roomPath(alice.user_id, ROOM, type)]) {
        const res = await api("PUT", path, { token: alice.access_token, body: { event_id: "$x" } });
        expect(res.status).toBe(405);
        expect(res.body.errcode).toBe("M_BAD_JSON");
      }
    }
    expect((await api("GET", globalPath(alice.user_id, "m.fully_read"), { token: alice.access_token })).status).toBe(404);
  });

  it("answers the effective push rules for GET m.push_rules", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const res = await api("GET", globalPath(alice.user_id, "m.push_rules"), { token: alice.access_token });
    expect(res.status).toBe(200);
    expect(res.body.global.override.map((r: { rule_id: string }) => r.rule_id)).toContain(".m.rule.master");
  });
});

describe("room account data", () => {
  it("round-trips per room, separately from global data and other rooms", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const type = "m.tag";
    const path = roomPath(alice.user_id, ROOM, type);
    let res = await api("PUT", path, { token: alice.access_token, body: { tags: { "m.favourite": { order: 0.5 } } } });
    expect(res.status).toBe(200);
    res = await api("GET", path, { token: alice.access_token });
    expect(res).toMatchObject({ status: 200, body: { tags: { "m.favourite": { order: 0.5 } } } });
    // No inheritance between global and room data (spec: "Client Config").
    expect((await api("GET", globalPath(alice.user_id, type), { token: alice.access_token })).status).toBe(404);
    const other = await api("GET", roomPath(alice.user_id, "!other:test.local", type), { token: alice.access_token });
    expect(other.status).toBe(404);
    expect(other.body.errcode).toBe("M_NOT_FOUND");
    // Version 12 room IDs have no server name.
    const v12 = roomPath(alice.user_id, "!Q7n7BFv2Gm1A9sRb4mX3cT0uYzK8dWeLhJiNpOoVrSf", type);
    expect((await api("PUT", v12, { token: alice.access_token, body: { tags: {} } })).status).toBe(200);
  });

  it("refuses another user's room account data with 403", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const path = roomPath(alice.user_id, ROOM, "org.example.x");
    expect((await api("PUT", path, { token: bob.access_token, body: { a: 1 } })).status).toBe(403);
    expect((await api("GET", path, { token: bob.access_token })).body.errcode).toBe("M_FORBIDDEN");
  });

  it("rejects invalid room IDs with M_INVALID_PARAM", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    for (const roomId of ["#alias:test.local", "room", "!" + "x".repeat(255)]) {
      for (const method of ["GET", "PUT"]) {
        const res = await api(method, roomPath(alice.user_id, roomId, "org.example.x"), { token: alice.access_token, body: method === "PUT" ? { a: 1 } : undefined });
        expect(res.status).toBe(400);
        expect(res.body.errcode).toBe("M_INVALID_PARAM");
      }
    }
  });

  it("rejects bad JSON", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const res = await api("PUT", roomPath(alice.user_id, ROOM, "org.example.x"), { token: alice.access_token, body: "[1" });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_NOT_JSON");
  });
});

describe("User DO account data stream", () => {
  it("stamps every write with an increasing stream position and reports changes since a position", async () => {
    const userId = `@stream-${crypto.randomUUID()}:test.local`;
    const store = env.USERS.get(env.USERS.idFromName(userId));
    expect(await store.streamPosition()).toBe(0);
    const p1 = await store.setAccountData(null, "a.one", { v: 1 });
    const p2 = await store.setAccountData("!r:test.local", "a.two", { v: 2 });
    const p3 = await store.setAccountData(null, "a.one", { v: 3 });
    expect(p1).toBeGreaterThan(0);
    expect(p2).toBeGreaterThan(p1);
    expect(p3).toBeGreaterThan(p2);
    expect(await store.streamPosition()).toBe(p3);

    const all = await store.accountDataSince(0);
    expect(all.position).toBe(p3);
    expect(all.global).toEqual({ "a.one": { v: 3 } });
    expect(all.rooms).toEqual({ "!r:test.local": { "a.two": { v: 2 } } });

    const sinceP2 = await store.accountDataSince(p2);
    expect(sinceP2.global).toEqual({ "a.one": { v: 3 } });
    expect(sinceP2.rooms).toEqual({});
    const none = await store.accountDataSince(p3);
    expect(none).toEqual({ position: p3, global: {}, rooms: {} });
  });
});

describe("room tags (spec: Room Tagging)", () => {
  const tagsPath = (userId: string, roomId: string, tag?: string) =>
    `${V3}/user/${encodeURIComponent(userId)}/rooms/${encodeURIComponent(roomId)}/tags${tag === undefined ? "" : `/${encodeURIComponent(tag)}`}`;

  it("sets, lists and removes tags kept as the room's m.tag account data, with float orders", async () => {
    const alice = await registerUser(uniqueLocalpart("tagger"));
    const token = alice.access_token;
    expect(await api("GET", tagsPath(alice.user_id, ROOM), { token })).toMatchObject({ status: 200, body: { tags: {} } });
    // Two tags set at once: neither change is lost.
    const [a, b] = await Promise.all([
      api("PUT", tagsPath(alice.user_id, ROOM, "m.favourite"), { token, body: { order: 0.25 } }),
      api("PUT", tagsPath(alice.user_id, ROOM, "u.work"), { token, body: {} }),
    ]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect((await api("GET", tagsPath(alice.user_id, ROOM), { token })).body).toEqual({ tags: { "m.favourite": { order: 0.25 }, "u.work": {} } });
    // The same data is the room's m.tag account data, which /sync delivers.
    expect((await api("GET", roomPath(alice.user_id, ROOM, "m.tag"), { token })).body).toEqual({ tags: { "m.favourite": { order: 0.25 }, "u.work": {} } });
    expect((await api("DELETE", tagsPath(alice.user_id, ROOM, "u.work"), { token })).status).toBe(200);
    expect((await api("DELETE", tagsPath(alice.user_id, ROOM, "u.never-set"), { token })).status).toBe(200);
    expect((await api("GET", tagsPath(alice.user_id, ROOM), { token })).body).toEqual({ tags: { "m.favourite": { order: 0.25 } } });
  });

  it("refuses a non-number order, another user's tags and a tag over 255 bytes; changes nothing", async () => {
    const alice = await registerUser(uniqueLocalpart("tagger"));
    const bob = await registerUser(uniqueLocalpart("tagger"));
    const bad = await api("PUT", tagsPath(alice.user_id, ROOM, "m.lowpriority"), { token: alice.access_token, body: { order: "first" } });
    expect([bad.status, bad.body.errcode]).toEqual([400, "M_INVALID_PARAM"]);
    const other = await api("PUT", tagsPath(alice.user_id, ROOM, "m.lowpriority"), { token: bob.access_token, body: {} });
    expect(other.status).toBe(403);
    expect((await api("GET", tagsPath(alice.user_id, ROOM), { token: bob.access_token })).status).toBe(403);
    expect((await api("PUT", tagsPath(alice.user_id, ROOM, "t".repeat(255)), { token: alice.access_token, body: {} })).status).toBe(200);
    expect((await api("PUT", tagsPath(alice.user_id, ROOM, "t".repeat(256)), { token: alice.access_token, body: {} })).status).toBe(400);
    expect(Object.keys((await api("GET", tagsPath(alice.user_id, ROOM), { token: alice.access_token })).body.tags)).toEqual(["t".repeat(255)]);
  });
});
