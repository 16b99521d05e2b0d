// MSC4348 (portable accounts), the account key of a local account (worker/account-keys.ts):
//   GET  /_matrix/client/unstable/org.matrix.msc4348/account_key          the public key and `@<key>` ID
//   POST /_matrix/client/unstable/org.matrix.msc4348/account_key/export   the private seed (password UIA)
//   PUT  /_matrix/client/unstable/org.matrix.msc4348/account_key          import a seed exported elsewhere
//                                                                          (password UIA): the account move
// and the accounts query other servers make (MSC4243's `/accounts`, unstable name of the proposals README):
//   POST /_matrix/federation/v1/query/org.matrix.msc4348.accounts
import { Hono } from "hono";
import { ACCOUNTS_QUERY_PATH, accountKeyUserId, isAccountKey, signAccountRecord } from "../../protocol/accounts.js";
import { MatrixError } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import { accountKeyOf, accountOfKey, importAccountKey, releaseAccountKey } from "../account-keys.js";
import { localpartOf, requester, requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { roomStub } from "../room-store.js";
import { finishUiaSession, userInteractiveAuth } from "../uia.js";
import { userStore } from "../user-store.js";
import { requestOrigin } from "../federation/auth.js";

export const accountKeyRoutes = new Hono<AppEnv>();

const BASE = "/_matrix/client/unstable/org.matrix.msc4348/account_key";

// GET /_matrix/client/unstable/org.matrix.msc4348/account_key
accountKeyRoutes.get(BASE, requireAuth, async (c) => {
  const { accountKey } = await accountKeyOf(c.env, requester(c).userId);
  return c.json({ account_key: accountKey, user_id: accountKeyUserId(accountKey) });
});

// POST /_matrix/client/unstable/org.matrix.msc4348/account_key/export
accountKeyRoutes.post(`${BASE}/export`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const body = await readJsonObject(c);
  if (body.release !== undefined && typeof body.release !== "boolean") throw new MatrixError(400, "M_INVALID_PARAM", "release must be a boolean");
  // The seed is the account itself: its owner proves the password, as for deleting a device.
  const auth = await userInteractiveAuth(c.env, body, { method: "POST", operation: "msc4348_export_account_key", flows: [["m.login.password"]], userId });
  const { accountKey, seed } = await accountKeyOf(c.env, userId);
  // `release: true` (Myelin's, for a move): the key leaves this server with the export, so this server can
  // never sign for that account again (not even a membership moving it back); this account gets a new key
  // (a new identity in org.matrix.msc4348 rooms) the next time it needs one.
  if (body.release === true) await releaseAccountKey(c.env, userId);
  await finishUiaSession(c.env, auth);
  return c.json({ account_key: accountKey, seed, ...(body.release === true ? { released: true } : {}) });
});

// PUT /_matrix/client/unstable/org.matrix.msc4348/account_key {seed}
accountKeyRoutes.put(BASE, requireAuth, async (c) => {
  const { userId } = requester(c);
  const body = await readJsonObject(c, { allowEmpty: false });
  const auth = await userInteractiveAuth(c.env, body, { method: "PUT", operation: "msc4348_import_account_key", flows: [["m.login.password"]], userId });
  const { accountKey } = await importAccountKey(c.env, userId, body.seed);
  await finishUiaSession(c.env, auth);
  return c.json({ account_key: accountKey, user_id: accountKeyUserId(accountKey) });
});

/** At most this many keys per accounts query, and rooms looked at per account for the shared-room check. */
const MAX_QUERY_KEYS = 100;
const MAX_ROOMS_CHECKED = 200;

/** Whether `server` has a joined member in a room the local account is joined to (MSC4348: "the requested
 * server must verify that the requesting server is participating in common rooms"). */
async function sharesRoomWith(env: Env, userId: string, server: string): Promise<boolean> {
  const rooms = (await userStore(env, userId).joinedRooms()).slice(0, MAX_ROOMS_CHECKED);
  for (const roomId of rooms) {
    if ((await roomStub(env, roomId).joinedServers()).includes(server)) return true;
  }
  return false;
}

// POST /_matrix/federation/v1/query/org.matrix.msc4348.accounts {account_keys: [...]}
accountKeyRoutes.post(ACCOUNTS_QUERY_PATH, async (c) => {
  const origin = requestOrigin(c);
  const body = await readJsonObject(c, { allowEmpty: false });
  const keys = body.account_keys;
  if (!Array.isArray(keys) || keys.some((k) => typeof k !== "string")) throw new MatrixError(400, "M_BAD_JSON", "account_keys must be a list of strings");
  if (keys.length > MAX_QUERY_KEYS) throw new MatrixError(400, "M_INVALID_PARAM", `At most ${MAX_QUERY_KEYS} account keys per query`);
  const out: Record<string, JsonObject> = {};
  for (const accountKey of new Set(keys as string[])) {
    const account = isAccountKey(accountKey) ? await accountOfKey(c.env, accountKey) : undefined;
    // Unknown keys, and keys of accounts that share no room with the asking server, look the same.
    if (!account || !(await sharesRoomWith(c.env, account.userId, origin))) {
      out[accountKey] = { errcode: "M_NOT_FOUND", error: "Unknown account key" };
      continue;
    }
    out[accountKey] = await signAccountRecord(accountKey, account.key, localpartOf(account.userId, c.env) ?? "", c.env.SERVER_NAME);
  }
  return c.json({ account_keys: out });
});

