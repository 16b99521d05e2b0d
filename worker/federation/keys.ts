// Server-Server API: this server's keys and the notary endpoints. Spec: "Retrieving server keys" →
// "Publishing Keys" (keys_server.yaml) and "Querying Keys Through Another Server" (keys_query.yaml).
// Documents are sent as canonical JSON, byte for byte: a peer checks the signature over what it receives.
import { Hono, type Context } from "hono";
import { canonicalJson } from "../../protocol/canonical-json.js";
import { MatrixError, badJson, notJson } from "../../protocol/errors.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { signJson } from "../../protocol/signing.js";
import { parseServerName } from "../../protocol/server-name.js";
import { federationEnabled } from "../../federation-client/config.js";
import { keyDocumentFor } from "../../federation-client/server-keys.js";
import type { AppEnv, Env } from "../env.js";
import { serverKeys, signingKey } from "../server-identity.js";
import { ownServerKey } from "../../durable-objects/room/key-identity.js";

/** How long other servers may cache our key document (Synapse publishes one day). */
const KEY_VALIDITY_MS = 24 * 60 * 60 * 1000;
/** At most this many servers are looked up per notary query (each may cost a fetch). */
const MAX_NOTARY_SERVERS = 100;

export const serverKeyRoutes = new Hono<AppEnv>();

/** A JSON response whose body is exactly the canonical JSON of `value`. */
function canonicalResponse(c: Context<AppEnv>, value: JsonObject): Response {
  return c.body(canonicalJson(value), 200, { "Content-Type": "application/json" });
}

/** Our key document, signed by our current key. */
export async function ownKeyDocument(env: Pick<Env, "DB" | "SIGNING_KEY" | "SERVER_NAME">): Promise<JsonObject> {
  const keys = await serverKeys(env);
  const oldVerifyKeys: JsonObject = {};
  for (const k of keys.old) oldVerifyKeys[k.keyId] = { key: k.publicKey, expired_ts: k.expiredTs };
  const doc: JsonObject = {
    server_name: env.SERVER_NAME,
    valid_until_ts: Date.now() + KEY_VALIDITY_MS,
    verify_keys: { [keys.current.keyId]: { key: keys.current.publicKey } },
    old_verify_keys: oldVerifyKeys,
  };
  return signJson(doc, env.SERVER_NAME, keys.current);
}

/**
 * MSC4345 "Introducing /_matrix/key/v3/query" (unstable `/_matrix/key/v3/org.matrix.msc4345/query`):
 * the server key this domain uses in rooms of org.matrix.msc4345, in the server-key form those rooms
 * write it (room/key-identity.ts), signed by that key, and without `valid_until_ts` (decision 11: keys
 * are never time-bounded; revocation is a participation event). A server verifies a participation's
 * `unverified_domain` by finding the participation's key here. Myelin's reading of "only admit
 * ownership of keys ... through participation within a room": this server has one key, the signing
 * key `/_matrix/key/v2/server` already publishes, so answering everyone tells nothing new.
 */
export async function participationKeyDocument(env: Pick<Env, "DB" | "SIGNING_KEY" | "SERVER_NAME">): Promise<JsonObject> {
  const key = await signingKey(env);
  const serverKey = ownServerKey(key);
  const doc: JsonObject = { server_name: env.SERVER_NAME, verify_keys: { [key.keyId]: { key: serverKey } } };
  return signJson(doc, serverKey, key);
}

// GET /_matrix/key/v3/org.matrix.msc4345/query
serverKeyRoutes.get("/_matrix/key/v3/org.matrix.msc4345/query", async (c) => canonicalResponse(c, await participationKeyDocument(c.env)));

// GET /_matrix/key/v2/server (the deprecated `/{keyId}` form is answered the same way, as Synapse does)
serverKeyRoutes.get("/_matrix/key/v2/server/:keyId?", async (c) => canonicalResponse(c, await ownKeyDocument(c.env)));

/** The documents a notary returns for one server: its latest document with our signature added. */
async function notarise(env: Env, serverName: string, minimumValidUntilTs: number): Promise<JsonObject[]> {
  if (serverName === env.SERVER_NAME) return [await ownKeyDocument(env)];
  if (!parseServerName(serverName) || !federationEnabled(env)) return [];
  const doc = await keyDocumentFor(env, serverName, minimumValidUntilTs);
  if (!doc) return [];
  return [await signJson(doc, env.SERVER_NAME, await signingKey(env))];
}

function parseMinimum(value: unknown, now: number): number | null {
  if (value === undefined || value === null) return now;
  if (typeof value === "number" && Number.isSafeInteger(value)) return value;
  return null;
}

// GET /_matrix/key/v2/query/{serverName}
serverKeyRoutes.get("/_matrix/key/v2/query/:serverName", async (c) => {
  const now = Date.now();
  const q = c.req.query("minimum_valid_until_ts");
  let minimum = now;
  if (q !== undefined) {
    if (!/^\d{1,16}$/.test(q)) throw new MatrixError(400, "M_INVALID_PARAM", "minimum_valid_until_ts must be an integer");
    minimum = Number(q);
  }
  const serverKeysList = await notarise(c.env, c.req.param("serverName"), minimum);
  return canonicalResponse(c, { server_keys: serverKeysList });
});

// POST /_matrix/key/v2/query
serverKeyRoutes.post("/_matrix/key/v2/query", async (c) => {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    throw notJson();
  }
  if (!isJsonObject(body) || !isJsonObject(body.server_keys)) throw badJson("server_keys must be an object");
  const now = Date.now();
  const queries = Object.entries(body.server_keys);
  if (queries.length > MAX_NOTARY_SERVERS) throw badJson(`At most ${MAX_NOTARY_SERVERS} servers per query`);
  const out: JsonObject[] = [];
  for (const [serverName, criteria] of queries) {
    if (!isJsonObject(criteria)) throw badJson(`server_keys.${serverName} must be an object`);
    // The most demanding criterion of the requested keys; with no key IDs given, "now".
    let minimum = now;
    const perKey = Object.values(criteria);
    if (perKey.length > 0) {
      minimum = 0;
      for (const k of perKey) {
        if (!isJsonObject(k)) throw badJson("query criteria must be objects");
        const m = parseMinimum(k.minimum_valid_until_ts, now);
        if (m === null) throw badJson("minimum_valid_until_ts must be an integer");
        minimum = Math.max(minimum, m);
      }
    }
    out.push(...(await notarise(c.env, serverName, minimum)));
  }
  return canonicalResponse(c, { server_keys: out });
});
