// GET /capabilities (spec: Client-Server API, "Capabilities negotiation").
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ROOM_VERSIONS } from "../../protocol/room-versions.js";
import { buildApp } from "../../worker/index.js";
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

  it("DEFAULT_ROOM_VERSION sets the advertised default and the version of a room created without one; an unknown one is ignored", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const app = buildApp();
    const headers = { Authorization: `Bearer ${alice.access_token}`, "Content-Type": "application/json" };
    for (const [setting, expected] of [["10", "10"], ["99", "12"], ["", "12"]] as const) {
      const vars = { ...env, DEFAULT_ROOM_VERSION: setting };
      const caps = (await (await app.request("/_matrix/client/v3/capabilities", { headers }, vars)).json()) as { capabilities: Record<string, { default: string }> };
      expect(caps.capabilities["m.room_versions"]!.default).toBe(expected);
      const created = await app.request("/_matrix/client/v3/createRoom", { method: "POST", headers, body: "{}" }, vars);
      expect(created.status).toBe(200);
      const roomId = ((await created.json()) as { room_id: string }).room_id;
      const create = await api("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.create/`, { token: alice.access_token });
      expect(create.body.room_version).toBe(expected);
      // An explicit version still wins.
      const explicit = await app.request("/_matrix/client/v3/createRoom", { method: "POST", headers, body: JSON.stringify({ room_version: "11" }) }, vars);
      const explicitId = ((await explicit.json()) as { room_id: string }).room_id;
      expect((await api("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(explicitId)}/state/m.room.create/`, { token: alice.access_token })).body.room_version).toBe("11");
    }
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
