// Helpers for the admin API tests: a server admin made through shared-secret registration (the test
// configuration sets REGISTRATION_SHARED_SECRET = "test-shared-secret").
import { registrationMac } from "../../worker/admin/register.js";
import { api, uniqueLocalpart, type ApiResponse, type RegisteredUser } from "./helpers.js";

export const ADMIN = "/_synapse/admin";

export async function registerAdmin(prefix = "admin"): Promise<RegisteredUser> {
  const nonce = (await api("GET", `${ADMIN}/v1/register`)).body.nonce as string;
  const username = uniqueLocalpart(prefix);
  const password = `password-${username}`;
  const mac = await registrationMac("test-shared-secret", nonce, username, password, true);
  const res = await api("POST", `${ADMIN}/v1/register`, { body: { nonce, username, password, admin: true, mac } });
  if (res.status !== 200) throw new Error(`admin registration failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as RegisteredUser;
}

/** An admin API call with the given user's token. */
export function adminApi(user: RegisteredUser, method: string, path: string, body?: unknown): Promise<ApiResponse> {
  return api(method, `${ADMIN}${path}`, { token: user.access_token, body });
}

export const enc = encodeURIComponent;
