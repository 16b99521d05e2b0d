// Device management: GET /devices, GET/PUT/DELETE /devices/{deviceId}, POST /delete_devices.
import { describe, expect, it } from "vitest";
import { api, login, registerUser, uniqueLocalpart } from "./helpers.js";

const passwordAuth = (user: string, password: string, session?: string) => ({
  type: "m.login.password",
  identifier: { type: "m.id.user", user },
  password,
  ...(session ? { session } : {}),
});

describe("device management", () => {
  it("lists, reads and renames devices, with last-seen information", async () => {
    const localpart = uniqueLocalpart("devs");
    const user = await registerUser(localpart, undefined, { initialDeviceDisplayName: "First" });
    const second = await login(localpart, `password-${localpart}`, { device_id: "SECOND" });
    await api("GET", "/_matrix/client/v3/account/whoami", { token: second.body.access_token, headers: { "CF-Connecting-IP": "198.51.100.4" } });

    const list = await api("GET", "/_matrix/client/v3/devices", { token: user.access_token });
    expect(list.status).toBe(200);
    const ids = list.body.devices.map((d: { device_id: string }) => d.device_id).sort();
    expect(ids).toEqual([user.device_id, "SECOND"].sort());

    const one = await api("GET", `/_matrix/client/v3/devices/${user.device_id}`, { token: user.access_token });
    expect(one.body).toMatchObject({ device_id: user.device_id, display_name: "First" });
    expect(typeof one.body.last_seen_ts).toBe("number");
    const seen = await api("GET", "/_matrix/client/v3/devices/SECOND", { token: user.access_token });
    expect(seen.body.last_seen_ip).toBe("198.51.100.4");

    const rename = await api("PUT", "/_matrix/client/v3/devices/SECOND", { token: user.access_token, body: { display_name: "Renamed" } });
    expect(rename.status).toBe(200);
    expect((await api("GET", "/_matrix/client/r0/devices/SECOND", { token: user.access_token })).body.display_name).toBe("Renamed");
  });

  it("answers 404 M_NOT_FOUND for unknown devices and for other users' devices", async () => {
    const user = await registerUser(uniqueLocalpart("nf"));
    const stranger = await registerUser(uniqueLocalpart("stranger"));
    const missing = await api("GET", "/_matrix/client/v3/devices/NOPE", { token: user.access_token });
    expect(missing.status).toBe(404);
    expect(missing.body.errcode).toBe("M_NOT_FOUND");
    expect((await api("GET", `/_matrix/client/v3/devices/${stranger.device_id}`, { token: user.access_token })).status).toBe(404);
    const put = await api("PUT", "/_matrix/client/v3/devices/NOPE", { token: user.access_token, body: { display_name: "x" } });
    expect(put.status).toBe(404);
    const badName = await api("PUT", `/_matrix/client/v3/devices/${user.device_id}`, { token: user.access_token, body: { display_name: 7 } });
    expect(badName.body.errcode).toBe("M_BAD_JSON");
    expect((await api("GET", "/_matrix/client/v3/devices")).body.errcode).toBe("M_MISSING_TOKEN");
  });

  it("deletes a device only after UIA with the account password", async () => {
    const localpart = uniqueLocalpart("del");
    const user = await registerUser(localpart);
    const victim = await login(localpart, `password-${localpart}`, { device_id: "VICTIM" });

    const first = await api("DELETE", "/_matrix/client/v3/devices/VICTIM", { token: user.access_token });
    expect(first.status).toBe(401);
    expect(first.body.flows).toEqual([{ stages: ["m.login.password"] }]);
    expect((await api("GET", "/_matrix/client/v3/devices/VICTIM", { token: user.access_token })).status).toBe(200);

    const wrong = await api("DELETE", "/_matrix/client/v3/devices/VICTIM", {
      token: user.access_token,
      body: { auth: passwordAuth(localpart, "wrong", first.body.session) },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.body.errcode).toBe("M_FORBIDDEN");
    expect((await api("GET", "/_matrix/client/v3/account/whoami", { token: victim.body.access_token })).status).toBe(200);

    // The session belongs to this device deletion; it cannot authorise another operation.
    const reused = await api("POST", "/_matrix/client/v3/delete_devices", {
      token: user.access_token,
      body: { devices: [user.device_id], auth: passwordAuth(localpart, `password-${localpart}`, first.body.session) },
    });
    expect(reused.status).toBe(403);

    const ok = await api("DELETE", "/_matrix/client/v3/devices/VICTIM", {
      token: user.access_token,
      body: { auth: passwordAuth(localpart, `password-${localpart}`, first.body.session) },
    });
    expect(ok.status).toBe(200);
    expect((await api("GET", "/_matrix/client/v3/devices/VICTIM", { token: user.access_token })).status).toBe(404);
    expect((await api("GET", "/_matrix/client/v3/account/whoami", { token: victim.body.access_token })).body.errcode).toBe("M_UNKNOWN_TOKEN");
  });

  it("deletes several devices with POST /delete_devices after UIA", async () => {
    const localpart = uniqueLocalpart("bulk");
    const user = await registerUser(localpart);
    const a = await login(localpart, `password-${localpart}`, { device_id: "BULKA" });
    const b = await login(localpart, `password-${localpart}`, { device_id: "BULKB" });
    const first = await api("POST", "/_matrix/client/v3/delete_devices", { token: user.access_token, body: { devices: ["BULKA", "BULKB"] } });
    expect(first.status).toBe(401);
    expect((await api("GET", "/_matrix/client/v3/account/whoami", { token: a.body.access_token })).status).toBe(200);
    const ok = await api("POST", "/_matrix/client/v3/delete_devices", {
      token: user.access_token,
      body: { devices: ["BULKA", "BULKB"], auth: passwordAuth(localpart, `password-${localpart}`, first.body.session) },
    });
    expect(ok.status).toBe(200);
    for (const t of [a.body.access_token, b.body.access_token]) {
      expect((await api("GET", "/_matrix/client/v3/account/whoami", { token: t })).status).toBe(401);
    }
    const list = await api("GET", "/_matrix/client/v3/devices", { token: user.access_token });
    expect(list.body.devices.map((d: { device_id: string }) => d.device_id)).toEqual([user.device_id]);
    const bad = await api("POST", "/_matrix/client/v3/delete_devices", { token: user.access_token, body: { devices: "BULKA" } });
    expect(bad.body.errcode).toBe("M_BAD_JSON");
  });
});
