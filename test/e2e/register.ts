// Accounts for the end-to-end tests: registered through the client API the way a client does (first
// request, then user-interactive auth with m.login.dummy and the session it was given), each with a
// unique name so that tests sharing one server never collide. accounts.test.ts tests registration itself.
import * as sdk from "matrix-js-sdk";
import { expect } from "vitest";

/** `prefix` made unique across tests and runs against one server. */
export const unique = (prefix: string): string => `${prefix}${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`;

export interface Account {
  user_id: string;
  access_token: string;
  device_id: string;
}

/** A new account on the server at `baseUrl` named `username` (password `pw-<username>`). */
export async function registerAccount(baseUrl: string, username: string): Promise<Account> {
  const url = `${baseUrl}/_matrix/client/v3/register`;
  const password = `pw-${username}`;
  const first = await fetch(url, { method: "POST", body: JSON.stringify({ username, password }) });
  expect(first.status).toBe(401);
  const { session } = (await first.json()) as { session: string };
  const res = await fetch(url, { method: "POST", body: JSON.stringify({ username, password, auth: { type: "m.login.dummy", session } }) });
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as Account;
}

/** A matrix-js-sdk client (not started) logged in as a new account named after `prefix`. */
export async function newClient(baseUrl: string, prefix: string): Promise<sdk.MatrixClient> {
  const a = await registerAccount(baseUrl, unique(prefix));
  return sdk.createClient({ baseUrl, accessToken: a.access_token, userId: a.user_id, deviceId: a.device_id });
}
