// Filters (spec: Client-Server API, "Filtering").
import { describe, expect, it } from "vitest";
import { api, registerUser, uniqueLocalpart } from "./helpers.js";

const filterPath = (userId: string, id?: string) =>
  `/_matrix/client/v3/user/${encodeURIComponent(userId)}/filter${id === undefined ? "" : "/" + encodeURIComponent(id)}`;

const FILTER = {
  room: {
    state: { types: ["m.room.*"], not_rooms: ["!726s6s6q:example.com"], lazy_load_members: true },
    timeline: { limit: 10, types: ["m.room.message"], not_senders: ["@spam:example.com"] },
  },
  presence: { types: ["m.presence"] },
  event_format: "client",
  event_fields: ["type", "content", "sender"],
  "org.example.unknown": { kept: true },
};

describe("filters", () => {
  it("round-trips a filter", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const res = await api("POST", filterPath(alice.user_id), { token: alice.access_token, body: FILTER });
    expect(res.status).toBe(200);
    const id = res.body.filter_id;
    expect(typeof id).toBe("string");
    expect(id.startsWith("{")).toBe(false);
    const got = await api("GET", filterPath(alice.user_id, id), { token: alice.access_token });
    expect(got.status).toBe(200);
    expect(got.body).toEqual(FILTER);
  });

  it("gives different filters different IDs and the same filter the same ID", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const post = (body: unknown) => api("POST", filterPath(alice.user_id), { token: alice.access_token, body });
    const a = (await post({ room: { timeline: { limit: 5 } } })).body.filter_id;
    const b = (await post({ room: { timeline: { limit: 6 } } })).body.filter_id;
    const c = (await post({ room: { timeline: { limit: 5 } } })).body.filter_id;
    expect(a).not.toBe(b);
    expect(c).toBe(a);
    expect((await api("GET", filterPath(alice.user_id, b), { token: alice.access_token })).body).toEqual({ room: { timeline: { limit: 6 } } });
  });

  it("keeps filters per user", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const id = (await api("POST", filterPath(alice.user_id), { token: alice.access_token, body: { presence: { limit: 1 } } })).body.filter_id;
    // Bob cannot read Alice's filter through her user ID...
    let res = await api("GET", filterPath(alice.user_id, id), { token: bob.access_token });
    expect(res.status).toBe(403);
    expect(res.body.errcode).toBe("M_FORBIDDEN");
    // ...nor create one for her...
    res = await api("POST", filterPath(alice.user_id), { token: bob.access_token, body: {} });
    expect(res.status).toBe(403);
    // ...and his own filter namespace does not contain it.
    res = await api("GET", filterPath(bob.user_id, id), { token: bob.access_token });
    expect(res.status).toBe(404);
    expect(res.body.errcode).toBe("M_NOT_FOUND");
  });

  it("answers 404 for unknown filter IDs", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    for (const id of ["999999", "abc", "{}"]) {
      const res = await api("GET", filterPath(alice.user_id, id), { token: alice.access_token });
      expect(res.status).toBe(404);
      expect(res.body.errcode).toBe("M_NOT_FOUND");
    }
  });

  it("rejects malformed filters and bad JSON", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const post = (body: unknown) => api("POST", filterPath(alice.user_id), { token: alice.access_token, body });
    let res = await post("{not json");
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_NOT_JSON");
    for (const bad of [[], { room: "all" }, { room: { timeline: { limit: "ten" } } }, { event_format: "xml" }, { presence: { senders: ["nobody"] } }]) {
      res = await post(bad);
      expect(res.status).toBe(400);
      expect(res.body.errcode).toBe("M_BAD_JSON");
    }
    expect((await api("POST", filterPath(alice.user_id), { body: {} })).status).toBe(401);
  });
});
