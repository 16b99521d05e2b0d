// OpenID (spec: Client-Server API "OpenID", Server-Server API "OpenID"): a token requested by a user is
// answered by /openid/userinfo with that user; unknown, forged or other users' tokens are not.
import { describe, expect, it } from "vitest";
import { api } from "./helpers.js";
import { V3, newUser } from "./room-helpers.js";

const userinfo = (token: string) => api("GET", `/_matrix/federation/v1/openid/userinfo?access_token=${encodeURIComponent(token)}`);

describe("OpenID", () => {
  it("issues a token for the requester that /openid/userinfo answers, without X-Matrix", async () => {
    const alice = await newUser("alice");
    const res = await api("POST", `${V3}/user/${encodeURIComponent(alice.user_id)}/openid/request_token`, { token: alice.access_token, body: {} });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ token_type: "Bearer", matrix_server_name: "test.local", expires_in: 3600 });
    const info = await userinfo(res.body.access_token);
    expect(info.status).toBe(200);
    expect(info.body).toEqual({ sub: alice.user_id });
  });

  it("refuses other users' tokens, forged and unknown tokens, and requests for another user", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    expect((await api("POST", `${V3}/user/${encodeURIComponent(bob.user_id)}/openid/request_token`, { token: alice.access_token, body: {} })).status).toBe(403);
    const real = (await api("POST", `${V3}/user/${encodeURIComponent(alice.user_id)}/openid/request_token`, { token: alice.access_token, body: {} })).body.access_token as string;
    // The same random part under bob's name is not a token bob was given.
    const forged = `${real.slice(0, real.indexOf("."))}.${btoa(bob.user_id).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_")}`;
    for (const token of [forged, "nonsense", `x.${btoa("@ghost:test.local")}`, "a.!!!"]) {
      const res = await userinfo(token);
      expect(res.status).toBe(401);
      expect(res.body.errcode).toBe("M_UNKNOWN_TOKEN");
    }
    expect((await api("GET", "/_matrix/federation/v1/openid/userinfo")).status).toBe(400);
  });
});
