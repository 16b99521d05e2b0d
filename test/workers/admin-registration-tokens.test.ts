// Synapse admin API: registration tokens (create, list with `valid`, get, update, delete), and
// POST /register honouring them (uses counted, an exhausted or expired token refused). Tokens make every
// registration of this file need one, so the admin is made first and tests run in order.
import { describe, expect, it } from "vitest";
import { registerUser, uniqueLocalpart } from "./helpers.js";
import { adminApi, registerAdmin } from "./admin-helpers.js";
import type { RegisteredUser } from "./helpers.js";

let admin: RegisteredUser;
const T = "/v1/registration_tokens";

describe("registration tokens admin API", () => {
  it("creates tokens: given, generated with a length, with limits; refuses bad ones", async () => {
    admin = await registerAdmin();
    const now = Date.now();
    let res = await adminApi(admin, "POST", `${T}/new`, { token: "once_only-1.~", uses_allowed: 1 });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ token: "once_only-1.~", uses_allowed: 1, pending: 0, completed: 0, expiry_time: null });
    res = await adminApi(admin, "POST", `${T}/new`, { length: 64 });
    expect(res.body.token).toMatch(/^[A-Za-z0-9._~-]{64}$/);
    expect(res.body.uses_allowed).toBeNull();
    const generated = res.body.token as string;
    res = await adminApi(admin, "POST", `${T}/new`, {});
    expect(res.body.token).toHaveLength(16);
    expect((await adminApi(admin, "DELETE", `${T}/${res.body.token}`)).status).toBe(200);
    res = await adminApi(admin, "POST", `${T}/new`, { token: "later", expiry_time: now + 3_600_000, uses_allowed: 0 });
    expect(res.body).toMatchObject({ token: "later", uses_allowed: 0, expiry_time: now + 3_600_000 });

    for (const body of [
      { token: "once_only-1.~" }, // exists
      { token: "bad token" },
      { token: "x".repeat(65) },
      { length: 0 },
      { length: 65 },
      { uses_allowed: -1 },
      { expiry_time: now - 1000 },
      { expiry_time: "soon" },
      { token: "both", length: 5 },
    ]) {
      const bad = await adminApi(admin, "POST", `${T}/new`, body);
      expect([JSON.stringify(body), bad.status, bad.body.errcode]).toEqual([JSON.stringify(body), 400, "M_INVALID_PARAM"]);
    }
    // A float is refused for every JSON body (M_BAD_JSON).
    expect((await adminApi(admin, "POST", `${T}/new`, { uses_allowed: 1.5 })).status).toBe(400);
    const all = await adminApi(admin, "GET", T);
    expect(all.body.registration_tokens.map((t: { token: string }) => t.token).sort()).toEqual([generated, "later", "once_only-1.~"].sort());
  });

  it("lists valid and invalid tokens, gets, updates and deletes one", async () => {
    // "later" allows 0 uses: invalid until updated.
    let res = await adminApi(admin, "GET", `${T}?valid=false`);
    expect(res.body.registration_tokens.map((t: { token: string }) => t.token)).toEqual(["later"]);
    res = await adminApi(admin, "PUT", `${T}/later`, { uses_allowed: 2 });
    expect(res.body).toMatchObject({ token: "later", uses_allowed: 2 });
    expect((await adminApi(admin, "GET", `${T}?valid=false`)).body.registration_tokens).toEqual([]);
    expect((await adminApi(admin, "GET", `${T}?valid=true`)).body.registration_tokens).toHaveLength(3);
    // null removes the limit; the expiry stays unless given.
    res = await adminApi(admin, "PUT", `${T}/later`, { uses_allowed: null });
    expect(res.body.uses_allowed).toBeNull();
    expect(res.body.expiry_time).toBeGreaterThan(Date.now());
    expect((await adminApi(admin, "PUT", `${T}/later`, { expiry_time: null })).body.expiry_time).toBeNull();
    expect((await adminApi(admin, "PUT", `${T}/later`, { uses_allowed: -3 })).status).toBe(400);
    expect((await adminApi(admin, "GET", `${T}/later`)).body).toMatchObject({ uses_allowed: null, expiry_time: null });
    expect((await adminApi(admin, "GET", `${T}?valid=maybe`)).status).toBe(400);

    expect((await adminApi(admin, "GET", `${T}/nope`)).body.errcode).toBe("M_NOT_FOUND");
    expect((await adminApi(admin, "PUT", `${T}/nope`, { uses_allowed: 1 })).body.errcode).toBe("M_NOT_FOUND");
    expect((await adminApi(admin, "DELETE", `${T}/later`)).body).toEqual({});
    expect((await adminApi(admin, "DELETE", `${T}/later`)).body.errcode).toBe("M_NOT_FOUND");
  });

  it("registration uses a token once per allowed use and counts it", async () => {
    await registerUser(uniqueLocalpart("tok"), undefined, { registrationToken: "once_only-1.~" });
    const row = (await adminApi(admin, "GET", `${T}/once_only-1.~`)).body;
    expect(row).toMatchObject({ uses_allowed: 1, completed: 1, pending: 0 });
    expect((await adminApi(admin, "GET", `${T}?valid=false`)).body.registration_tokens.map((t: { token: string }) => t.token)).toEqual(["once_only-1.~"]);
    await expect(registerUser(uniqueLocalpart("tok"), undefined, { registrationToken: "once_only-1.~" })).rejects.toThrow();
    // Raising the limit makes it usable again.
    await adminApi(admin, "PUT", `${T}/once_only-1.~`, { uses_allowed: 2 });
    await registerUser(uniqueLocalpart("tok"), undefined, { registrationToken: "once_only-1.~" });
    expect((await adminApi(admin, "GET", `${T}/once_only-1.~`)).body.completed).toBe(2);
  });
});
