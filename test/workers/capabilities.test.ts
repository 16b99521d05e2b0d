// GET /capabilities (spec: Client-Server API, "Capabilities negotiation").
import { describe, expect, it } from "vitest";
import { ROOM_VERSIONS } from "../../protocol/room-versions.js";
import { api, registerUser, uniqueLocalpart } from "./helpers.js";

describe("capabilities", () => {
  it("lists the server's capabilities", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const res = await api("GET", "/_matrix/client/v3/capabilities", { token: alice.access_token });
    expect(res.status).toBe(200);
    const caps = res.body.capabilities;
    expect(caps["m.change_password"]).toEqual({ enabled: true });
    expect(caps["m.set_displayname"]).toEqual({ enabled: true });
    expect(caps["m.set_avatar_url"]).toEqual({ enabled: true });
    expect(caps["m.3pid_changes"]).toEqual({ enabled: false });
    expect(caps["m.room_versions"].default).toBe("12");
    const expected: Record<string, string> = {};
    for (let v = 1; v <= 12; v++) expected[String(v)] = "stable";
    expected["org.matrix.msc4345"] = "unstable"; // MSC4345 server participation
    expected["org.matrix.msc4348"] = "unstable"; // MSC4348 portable accounts
    expect(caps["m.room_versions"].available).toEqual(expected);
    expect(Object.keys(caps["m.room_versions"].available)).toHaveLength(ROOM_VERSIONS.size);
    expect((await api("GET", "/_matrix/client/r0/capabilities", { token: alice.access_token })).body).toEqual(res.body);
  });

  it("requires an access token", async () => {
    const res = await api("GET", "/_matrix/client/v3/capabilities");
    expect(res.status).toBe(401);
    expect(res.body.errcode).toBe("M_MISSING_TOKEN");
    const bad = await api("GET", "/_matrix/client/v3/capabilities", { token: "nonsense" });
    expect(bad.status).toBe(401);
    expect(bad.body.errcode).toBe("M_UNKNOWN_TOKEN");
  });
});
