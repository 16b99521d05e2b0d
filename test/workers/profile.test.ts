// Profiles (spec: Client-Server API, "Profiles").
import { describe, expect, it } from "vitest";
import { api, registerUser, uniqueLocalpart, SERVER_NAME } from "./helpers.js";

const profile = (userId: string, field = "") =>
  `/_matrix/client/v3/profile/${encodeURIComponent(userId)}${field ? "/" + field : ""}`;

describe("profiles", () => {
  it("sets and reads the display name and avatar URL", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    // A fresh user has a readable profile.
    expect((await api("GET", profile(alice.user_id))).status).toBe(200);

    let res = await api("PUT", profile(alice.user_id, "displayname"), { token: alice.access_token, body: { displayname: "Alice W" } });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
    res = await api("PUT", profile(alice.user_id, "avatar_url"), { token: alice.access_token, body: { avatar_url: "mxc://test.local/abc" } });
    expect(res.status).toBe(200);

    res = await api("GET", profile(alice.user_id, "displayname"));
    expect(res).toMatchObject({ status: 200, body: { displayname: "Alice W" } });
    res = await api("GET", profile(alice.user_id, "avatar_url"));
    expect(res).toMatchObject({ status: 200, body: { avatar_url: "mxc://test.local/abc" } });
    // No access token is needed to read a profile.
    res = await api("GET", profile(alice.user_id));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ displayname: "Alice W", avatar_url: "mxc://test.local/abc" });
    // r0 serves the same.
    res = await api("GET", `/_matrix/client/r0/profile/${encodeURIComponent(alice.user_id)}/displayname`);
    expect(res.body).toEqual({ displayname: "Alice W" });
  });

  it("clears a field with an empty string", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    await api("PUT", profile(alice.user_id, "avatar_url"), { token: alice.access_token, body: { avatar_url: "mxc://test.local/x" } });
    const res = await api("PUT", profile(alice.user_id, "avatar_url"), { token: alice.access_token, body: { avatar_url: "" } });
    expect(res.status).toBe(200);
    expect((await api("GET", profile(alice.user_id, "avatar_url"))).body).toEqual({});
    expect((await api("GET", profile(alice.user_id))).body).not.toHaveProperty("avatar_url");
  });

  it("refuses to change another user's profile", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const before = (await api("GET", profile(alice.user_id))).body;
    for (const field of ["displayname", "avatar_url"]) {
      const res = await api("PUT", profile(alice.user_id, field), { token: bob.access_token, body: { [field]: "mxc://x/y" } });
      expect(res.status).toBe(403);
      expect(res.body.errcode).toBe("M_FORBIDDEN");
    }
    expect((await api("GET", profile(alice.user_id))).body).toEqual(before);
  });

  it("requires an access token to change a profile", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const res = await api("PUT", profile(alice.user_id, "displayname"), { body: { displayname: "x" } });
    expect(res.status).toBe(401);
    expect(res.body.errcode).toBe("M_MISSING_TOKEN");
  });

  it("answers 404 M_NOT_FOUND for unknown and remote users", async () => {
    for (const userId of [`@nobody-${crypto.randomUUID()}:${SERVER_NAME}`, "@alice:elsewhere.example"]) {
      for (const field of ["", "displayname", "avatar_url"]) {
        const res = await api("GET", profile(userId, field));
        expect(res.status).toBe(404);
        expect(res.body.errcode).toBe("M_NOT_FOUND");
      }
    }
  });

  it("validates the body", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const put = (field: string, body: unknown) => api("PUT", profile(alice.user_id, field), { token: alice.access_token, body });
    expect((await put("displayname", "{not json")).body.errcode).toBe("M_NOT_JSON");
    expect((await put("displayname", [])).body.errcode).toBe("M_BAD_JSON");
    let res = await put("displayname", {});
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_MISSING_PARAM");
    res = await put("displayname", { displayname: 42 });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_INVALID_PARAM");
    res = await put("avatar_url", { avatar_url: null });
    expect(res.status).toBe(400);
    res = await put("displayname", { displayname: "x".repeat(257) });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe("M_INVALID_PARAM");
    res = await put("avatar_url", { avatar_url: "mxc://a/" + "x".repeat(1000) });
    expect(res.status).toBe(400);
    // The limit itself is allowed.
    expect((await put("displayname", { displayname: "é".repeat(256) })).status).toBe(200);
    expect((await api("GET", profile(alice.user_id, "displayname"))).body.displayname).toBe("é".repeat(256));
  });
});
