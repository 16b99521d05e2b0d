// End-to-end: matrix-js-sdk against the running server: register, login, whoami, profile, devices,
// refresh, logout.
import * as sdk from "matrix-js-sdk";
import { describe, expect, inject, it } from "vitest";

const baseUrl = inject("baseUrl");
const serverName = inject("serverName");
const unique = (p: string) => `${p}${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`;

/** Registers through user-interactive auth the way a client does: first request, then m.login.dummy. */
async function register(username: string, password: string) {
  const client = sdk.createClient({ baseUrl });
  let session: string | undefined;
  try {
    await client.registerRequest({ username, password });
    throw new Error("registration without auth should ask for user-interactive auth");
  } catch (e) {
    const err = e as sdk.MatrixError;
    expect(err.httpStatus).toBe(401);
    session = (err.data as { session?: string }).session;
    expect(session).toBeTruthy();
  }
  return client.registerRequest({ username, password, auth: { type: "m.login.dummy", session } });
}

describe("accounts with matrix-js-sdk", () => {
  it("registers, logs in, reads whoami, sets a profile, manages devices and logs out", async () => {
    const username = unique("alice");
    const reg = await register(username, "correct horse battery");
    expect(reg.user_id).toBe(`@${username}:${serverName}`);
    expect(reg.access_token).toBeTruthy();

    const anon = sdk.createClient({ baseUrl });
    const login = await anon.loginRequest({
      type: "m.login.password",
      identifier: { type: "m.id.user", user: username },
      password: "correct horse battery",
      initial_device_display_name: "e2e laptop",
    });
    expect(login.user_id).toBe(reg.user_id);

    const client = sdk.createClient({ baseUrl, accessToken: login.access_token, userId: login.user_id, deviceId: login.device_id });
    const who = await client.whoami();
    expect(who.user_id).toBe(reg.user_id);
    expect(who.device_id).toBe(login.device_id);

    await client.setDisplayName("Alice E2E");
    const profile = await client.getProfileInfo(reg.user_id);
    expect(profile.displayname).toBe("Alice E2E");

    const devices = await client.getDevices();
    const ids = devices.devices.map((d) => d.device_id);
    expect(ids).toContain(login.device_id);
    expect(ids).toContain(reg.device_id);
    expect(devices.devices.find((d) => d.device_id === login.device_id)?.display_name).toBe("e2e laptop");

    await client.setDeviceDetails(login.device_id, { display_name: "renamed" });
    expect((await client.getDevice(login.device_id)).display_name).toBe("renamed");

    await client.logout(true);
    await expect(client.whoami()).rejects.toMatchObject({ errcode: "M_UNKNOWN_TOKEN", httpStatus: 401 });
  });

  it("rejects a wrong password and a taken username", async () => {
    const username = unique("bob");
    await register(username, "secret-one");
    const anon = sdk.createClient({ baseUrl });
    await expect(
      anon.loginRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: username }, password: "nope" }),
    ).rejects.toMatchObject({ errcode: "M_FORBIDDEN", httpStatus: 403 });
    // matrix-js-sdk turns the server's 400 M_USER_IN_USE into `false`.
    expect(await anon.isUsernameAvailable(username)).toBe(false);
    expect(await anon.isUsernameAvailable(unique("free"))).toBe(true);
  });

  it("refreshes an access token", async () => {
    const username = unique("carol");
    await register(username, "pw-carol-1");
    const anon = sdk.createClient({ baseUrl });
    const login = await anon.loginRequest({
      type: "m.login.password",
      identifier: { type: "m.id.user", user: username },
      password: "pw-carol-1",
      refresh_token: true,
    });
    expect(login.refresh_token).toBeTruthy();
    expect(login.expires_in_ms).toBeGreaterThan(0);
    const refreshed = await anon.refreshToken(login.refresh_token!);
    expect(refreshed.access_token).not.toBe(login.access_token);
    const client = sdk.createClient({ baseUrl, accessToken: refreshed.access_token });
    expect((await client.whoami()).user_id).toBe(login.user_id);
  });
});
