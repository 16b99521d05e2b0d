// POST /_matrix/client/v3/users/{userId}/report (worker/client/reporting.ts; spec: "Reporting content",
// report_user.yaml): reports of local users are kept in D1 `user_reports`; reports of unknown or remote
// users are answered alike and dropped, as Synapse does; bad input is a Matrix error and stores nothing.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, type RegisteredUser } from "./helpers.js";
import { V3, newUser } from "./room-helpers.js";

const report = (by: RegisteredUser, userId: string, body: unknown) =>
  api("POST", `${V3}/users/${encodeURIComponent(userId)}/report`, { token: by.access_token, body });

async function reportsOf(userId: string) {
  return (await env.DB.prepare("SELECT reporter, target_user_id, reason FROM user_reports WHERE target_user_id = ? ORDER BY id").bind(userId).all()).results;
}

describe("POST /users/{userId}/report", () => {
  it("stores a report of a local user, and another one when reported again", async () => {
    const alice = await newUser("urep");
    const bob = await newUser("urep");
    const ok = await report(alice, bob.user_id, { reason: "spam" });
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({});
    expect((await report(alice, bob.user_id, { reason: "" })).status).toBe(200);
    expect(await reportsOf(bob.user_id)).toEqual([
      { reporter: alice.user_id, target_user_id: bob.user_id, reason: "spam" },
      { reporter: alice.user_id, target_user_id: bob.user_id, reason: "" },
    ]);
  });

  it("answers 200 for unknown and remote users without keeping the report (existence is not revealed)", async () => {
    const alice = await newUser("urep");
    for (const target of ["@nobody-here:test.local", "@someone:other.example"]) {
      const res = await report(alice, target, { reason: "x" });
      expect(res.status).toBe(200);
      expect(await reportsOf(target)).toEqual([]);
    }
  });

  it("refuses bad input with Matrix errors and stores nothing", async () => {
    const alice = await newUser("urep");
    const bob = await newUser("urep");
    expect((await report(alice, bob.user_id, {})).body.errcode).toBe("M_BAD_JSON");
    expect((await report(alice, bob.user_id, { reason: 5 })).body.errcode).toBe("M_BAD_JSON");
    // Synapse's bound: 1000 characters pass, 1001 do not.
    expect((await report(alice, bob.user_id, { reason: "r".repeat(1001) })).body.errcode).toBe("M_BAD_JSON");
    expect((await report(alice, bob.user_id, "not json")).body.errcode).toBe("M_NOT_JSON");
    expect((await report(alice, "not-a-user", { reason: "x" })).status).toBe(400);
    expect(await reportsOf(bob.user_id)).toEqual([]);
    expect((await report(alice, bob.user_id, { reason: "r".repeat(1000) })).status).toBe(200);
    expect((await reportsOf(bob.user_id)).length).toBe(1);
    // Authentication is required.
    expect((await api("POST", `${V3}/users/${encodeURIComponent(bob.user_id)}/report`, { body: { reason: "x" } })).status).toBe(401);
  });
});
