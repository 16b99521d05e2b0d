// Server-Server API: publishing this server's keys. Spec: "Retrieving server keys".
import { Hono } from "hono";
import type { AppEnv } from "../env.js";
import { serverKeys } from "../server-identity.js";
import { signJson } from "../../protocol/signing.js";
import type { JsonObject } from "../../protocol/json.js";

/** How long other servers may cache our key document (Synapse publishes one day). */
const KEY_VALIDITY_MS = 24 * 60 * 60 * 1000;

export const serverKeyRoutes = new Hono<AppEnv>();

// GET /_matrix/key/v2/server
serverKeyRoutes.get("/_matrix/key/v2/server/:keyId?", async (c) => {
  const keys = await serverKeys(c.env);
  const oldVerifyKeys: JsonObject = {};
  for (const k of keys.old) oldVerifyKeys[k.keyId] = { key: k.publicKey, expired_ts: k.expiredTs };
  const doc: JsonObject = {
    server_name: c.env.SERVER_NAME,
    valid_until_ts: Date.now() + KEY_VALIDITY_MS,
    verify_keys: { [keys.current.keyId]: { key: keys.current.publicKey } },
    old_verify_keys: oldVerifyKeys,
  };
  return c.json(await signJson(doc, c.env.SERVER_NAME, keys.current));
});
