// Client-Server API: "Account management" (whoami, password change, deactivation).
// Spec: content/client-server-api "Account registration and management", "Current account information".
import { Hono } from "hono";
import { badJson, invalidParam, missingParam } from "../../protocol/errors.js";
import { deactivateUser, deleteAllDevices, setPasswordHash } from "../accounts.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { roomStub } from "../room-store.js";
import { userStore } from "../user-store.js";
import { readJsonObject } from "../http.js";
import { hashPassword } from "../password.js";
import { finishUiaSession, userInteractiveAuth } from "../uia.js";
import { MAX_PASSWORD_LENGTH } from "./registration.js";

export const accountRoutes = new Hono<AppEnv>();

const CLIENT = "/_matrix/client/:version{v3|r0}";

// GET /_matrix/client/v3/account/whoami
accountRoutes.get(`${CLIENT}/account/whoami`, requireAuth, (c) => {
  const { userId, deviceId } = requester(c);
  // An application service without `device_id=` acts with no device (Synapse leaves device_id out).
  return c.json(deviceId === "" ? { user_id: userId, is_guest: false } : { user_id: userId, device_id: deviceId, is_guest: false });
});

// POST /_matrix/client/v3/account/password
accountRoutes.post(`${CLIENT}/account/password`, requireAuth, async (c) => {
  const { userId, deviceId } = requester(c);
  const body = await readJsonObject(c);
  const newPassword = body.new_password;
  if (newPassword === undefined) throw missingParam("Missing new_password");
  if (typeof newPassword !== "string") throw badJson("new_password must be a string");
  if (newPassword.length > MAX_PASSWORD_LENGTH) throw invalidParam("Password too long");
  const logoutDevices = body.logout_devices ?? true;
  if (typeof logoutDevices !== "boolean") throw badJson("logout_devices must be a boolean");

  const auth = await userInteractiveAuth(c.env, body, {
    method: "POST",
    operation: "account/password",
    flows: [["m.login.password"]],
    userId,
  });
  await setPasswordHash(c.env, userId, await hashPassword(newPassword));
  // Spec: logout_devices (default true) revokes the user's other access tokens and their devices; the
  // device that made the request stays logged in.
  if (logoutDevices) await deleteAllDevices(c.env, userId, deviceId);
  await finishUiaSession(c.env, auth);
  return c.json({});
});

// POST /_matrix/client/v3/account/deactivate
accountRoutes.post(`${CLIENT}/account/deactivate`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const body = await readJsonObject(c);
  const erase = body.erase ?? false;
  if (typeof erase !== "boolean") throw badJson("erase must be a boolean");

  const auth = await userInteractiveAuth(c.env, body, {
    method: "POST",
    operation: "account/deactivate",
    flows: [["m.login.password"]],
    userId,
  });
  await deactivateUser(c.env, userId, erase);
  await leaveAllRooms(c.env, userId);
  await finishUiaSession(c.env, auth);
  // No identity server bindings are kept, so there is nothing to unbind.
  return c.json({ id_server_unbind_result: "no-support" });
});

/** A deactivated user leaves every room they are joined to (as Synapse does), so that they stop
 * counting as members and receiving events. Failures are logged, not fatal: the account is already
 * deactivated and a room that refuses the leave (e.g. already left) changes nothing. */
export async function leaveAllRooms(env: Env, userId: string): Promise<void> {
  for (const roomId of await userStore(env, userId).joinedRooms()) {
    try {
      const result = await roomStub(env, roomId).updateMembership({ sender: userId, target: userId, action: "leave" });
      if ("error" in result) console.warn("deactivation: leave refused", roomId, result.error.errcode);
    } catch (e) {
      console.warn("deactivation: leave failed", roomId, e instanceof Error ? e.message : e);
    }
  }
}
