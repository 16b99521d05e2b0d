// Profiles (spec: Client-Server API, "Profiles").
import { describe, expect, it } from "vitest";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
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

  it("answers 404 M_NOT_FOUND for unknown local users and 400 for an invalid user ID", async () => {
    for (const field of ["", "displayname", "avatar_url"]) {
      const res = await api("GET", profile(`@nobody-${crypto.randomUUID()}:${SERVER_NAME}`, field));
      expect(res.status).toBe(404);
      expect(res.body.errcode).toBe("M_NOT_FOUND");
      const invalid = await api("GET", profile("@no-server-name", field));
      expect(invalid.status).toBe(400);
      expect(invalid.body.errcode).toBe("M_INVALID_PARAM");
    }
  });

  // Spec: Server-Server API, GET /_matrix/federation/v1/query/profile; the other server is played by
  // test/workers/remote-homeserver.mjs (its users are all called "profile on <server>").
  it("asks another server for its users' profiles (one field, or all) and passes its refusal on", async () => {
    const server = uniqueServer("profile");
    const bob = `@bob:${server}`;
    expect(await api("GET", profile(bob))).toMatchObject({ status: 200, body: { displayname: `profile on ${server}` } });
    expect((await api("GET", profile(bob))).body).toEqual({ displayname: `profile on ${server}` });
    expect(await api("GET", profile(bob, "displayname"))).toMatchObject({ status: 200, body: { displayname: `profile on ${server}` } });
    expect(await api("GET", profile(bob, "avatar_url"))).toMatchObject({ status: 200, body: {} });

    const path = "/_matrix/federation/v1/query/profile";
    const unknown = uniqueServer("profile");
    await remoteControl("/_test/answer", { server: unknown, method: "GET", path, status: 404, body: { errcode: "M_NOT_FOUND", error: "no such user" } });
    const missing = await api("GET", profile(`@nobody:${unknown}`, "displayname"));
    expect(missing).toMatchObject({ status: 404, body: { errcode: "M_NOT_FOUND" } });
    const asked = await remoteControl<{ query: string }[]>(`/_test/answered?server=${encodeURIComponent(unknown)}`);
    expect(asked.map((r) => new URLSearchParams(r.query).get("field"))).toEqual(["displayname"]);
    expect(asked.map((r) => new URLSearchParams(r.query).get("user_id"))).toEqual([`@nobody:${unknown}`]);

    // A server error or an answer that is not a profile is a 502; a value that is not a string is left out.
    const failing = uniqueServer("profile");
    await remoteControl("/_test/answer", { server: failing, method: "GET", path, status: 500, body: { errcode: "M_UNKNOWN", error: "oops" } });
    expect(await api("GET", profile(`@x:${failing}`))).toMatchObject({ status: 502, body: { errcode: "M_UNKNOWN" } });
    const odd = uniqueServer("profile");
    await remoteControl("/_test/answer", { server: odd, method: "GET", path, body: { displayname: 42, avatar_url: "mxc://odd/x", extra: true } });
    expect((await api("GET", profile(`@x:${odd}`))).body).toEqual({ avatar_url: "mxc://odd/x" });
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
