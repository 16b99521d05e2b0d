// Other servers' signing keys (spec: Server-Server API, "Retrieving server keys"): fetched from the server
// itself (`GET /_matrix/key/v2/server`) or, failing that, through the notaries in
// `FEDERATION_TRUSTED_KEY_SERVERS` (`POST /_matrix/key/v2/query`); every document is checked (server name,
// self-signature, and the notary's signature) before its keys are cached in D1 until `valid_until_ts`.
// `old_verify_keys` are kept with their `expired_ts`. A server is asked again only when a needed key is
// missing or no longer valid, and not more often than MIN_REFETCH_INTERVAL_MS, so that requests with bad
// signatures cannot make us hammer it.
import { drizzle } from "drizzle-orm/d1";
import { eq } from "drizzle-orm";
import { isJsonObject, type JsonObject } from "../protocol/json.js";
import { parseServerName } from "../protocol/server-name.js";
import { verifyJsonSignature } from "../protocol/signing.js";
import { decodeBase64 } from "../protocol/base64.js";
import { remoteServerKeyDocuments, remoteServerKeys } from "../schema/d1.js";
import type { Env } from "../worker/env.js";
import { serverKeys } from "../worker/server-identity.js";
import { federationAllowed, serverList } from "./config.js";
import { federationRequest } from "./request.js";

/** A verify key usable for an event sent at some time. */
export interface VerifyKey {
  keyId: string;
  publicKey: string;
  /** Signatures by this key are valid for events sent before this time (ms); null: no limit. */
  validUntilTs: number | null;
}

/** A cached key, with whether the server listed it in `old_verify_keys` (not usable for requests). */
export interface ServerKey extends VerifyKey {
  old: boolean;
}

export interface KeyQuery {
  /** The keys must be valid until at least this time (default: now). */
  minimumValidUntilTs?: number;
  /** Key IDs that must be known (e.g. the one a request or event was signed with). */
  keyIds?: string[];
}

type KeysEnv = Pick<
  Env,
  | "DB"
  | "SERVER_NAME"
  | "SIGNING_KEY"
  | "FEDERATION_ENABLED"
  | "FEDERATION_DOMAIN_ALLOWLIST"
  | "FEDERATION_DOH_URL"
  | "FEDERATION_TRUSTED_KEY_SERVERS"
  | "FEDERATION_TEST_FETCHER"
>;

/** A server is not asked for its keys more often than this (successful or not). */
export const MIN_REFETCH_INTERVAL_MS = 60_000;
/** "Servers MUST use the lesser of [valid_until_ts] and 7 days into the future" (keys_server.yaml). */
export const MAX_KEY_VALIDITY_MS = 7 * 24 * 3600_000;
const KEY_FETCH_TIMEOUT_MS = 15_000;

/** The verify keys of `serverName` that this server knows, fetching them when a needed one is missing or
 * expired. Old keys come with their `expired_ts` as `validUntilTs`. */
export async function verifyKeysFor(env: KeysEnv, serverName: string, opts: KeyQuery = {}): Promise<VerifyKey[]> {
  return (await serverKeysFor(env, serverName, opts)).map(({ keyId, publicKey, validUntilTs }) => ({ keyId, publicKey, validUntilTs }));
}

/** As verifyKeysFor, with the `old` flag (request authentication accepts only current keys). */
export async function serverKeysFor(env: KeysEnv, serverName: string, opts: KeyQuery = {}): Promise<ServerKey[]> {
  if (serverName === env.SERVER_NAME) return ownKeys(env);
  const now = Date.now();
  const minimum = opts.minimumValidUntilTs ?? now;
  let keys = await cachedKeys(env, serverName);
  if (satisfies(keys, opts.keyIds, minimum)) return keys;
  // The copy did not answer: read D1 itself (another isolate may have fetched), then fetch if still needed.
  keyMemo.delete(serverName);
  keys = await cachedKeys(env, serverName);
  if (satisfies(keys, opts.keyIds, minimum)) return keys;
  if (await refreshKeys(env, serverName, now)) {
    keyMemo.delete(serverName);
    keys = await cachedKeys(env, serverName);
  }
  return keys;
}

async function ownKeys(env: KeysEnv): Promise<ServerKey[]> {
  const keys = await serverKeys(env);
  return [
    { keyId: keys.current.keyId, publicKey: keys.current.publicKey, validUntilTs: null, old: false },
    ...keys.old.map((k) => ({ keyId: k.keyId, publicKey: k.publicKey, validUntilTs: k.expiredTs, old: true })),
  ];
}

/** Per-isolate copy of the D1 cache, so that a burst of requests or events from one server costs one D1 read
 * (the Worker and each Room DO have their own). Short-lived: another isolate may have fetched newer keys. */
const keyMemo = new Map<string, { keys: ServerKey[]; expiresTs: number }>();
const KEY_MEMO_MS = 60_000;
const KEY_MEMO_MAX = 1000;

/** Servers this isolate asked (or saw asked) for keys, and when: within the interval it does not even try to
 * claim the attempt in D1, so a flood of requests naming unknown keys costs no D1 writes. */
const attemptMemo = new Map<string, number>();

/** Forgets the per-isolate copies (tests that change D1 underneath). */
export function clearServerKeyMemo(): void {
  keyMemo.clear();
  attemptMemo.clear();
}

async function cachedKeys(env: KeysEnv, serverName: string): Promise<ServerKey[]> {
  const now = Date.now();
  const memo = keyMemo.get(serverName);
  if (memo && memo.expiresTs > now) return memo.keys;
  const rows = await drizzle(env.DB).select().from(remoteServerKeys).where(eq(remoteServerKeys.serverName, serverName));
  const keys = rows.map((r) => ({ keyId: r.keyId, publicKey: r.publicKey, validUntilTs: r.validUntilTs, old: r.expiredTs !== null }));
  if (keyMemo.size >= KEY_MEMO_MAX) keyMemo.clear();
  keyMemo.set(serverName, { keys, expiresTs: now + KEY_MEMO_MS });
  return keys;
}

/** Whether the cache answers the query: every wanted key is known, and some current key (or, when keys are
 * named, each named key) is valid until `minimum`. */
function satisfies(keys: ServerKey[], keyIds: string[] | undefined, minimum: number): boolean {
  const valid = (k: ServerKey) => k.validUntilTs === null || k.validUntilTs >= minimum;
  if (keyIds && keyIds.length > 0) {
    return keyIds.every((id) => {
      const k = keys.find((x) => x.keyId === id);
      // An old key's validity ends at its expiry; fetching again would not extend it.
      return k !== undefined && (k.old || valid(k));
    });
  }
  return keys.some((k) => !k.old && valid(k));
}

/** In-isolate de-duplication of concurrent fetches for the same server. */
const inFlight = new Map<string, Promise<boolean>>();

/** Fetches the keys of `serverName` (directly, then through notaries) unless it was asked recently.
 * Returns whether new keys were stored. */
function refreshKeys(env: KeysEnv, serverName: string, now: number): Promise<boolean> {
  let p = inFlight.get(serverName);
  if (!p) {
    p = refreshKeysOnce(env, serverName, now).finally(() => inFlight.delete(serverName));
    inFlight.set(serverName, p);
  }
  return p;
}

async function refreshKeysOnce(env: KeysEnv, serverName: string, now: number): Promise<boolean> {
  if (!parseServerName(serverName) || !federationAllowed(env, serverName)) return false;
  const last = attemptMemo.get(serverName);
  if (last !== undefined && now - last < MIN_REFETCH_INTERVAL_MS) return false;
  if (attemptMemo.size >= KEY_MEMO_MAX) attemptMemo.clear();
  attemptMemo.set(serverName, now);
  // Claim the attempt atomically: only one worker per interval goes to the network for this server.
  const claim = await env.DB.prepare(
    `INSERT INTO remote_server_key_documents (server_name, last_attempt_ts) VALUES (?1, ?2)
     ON CONFLICT (server_name) DO UPDATE SET last_attempt_ts = ?2 WHERE last_attempt_ts <= ?2 - ?3`,
  )
    .bind(serverName, now, MIN_REFETCH_INTERVAL_MS)
    .run();
  if (claim.meta.changes === 0) return false;

  const direct = await fetchDirect(env, serverName);
  if (direct) {
    await storeKeyDocument(env, serverName, direct, now);
    return true;
  }
  for (const notary of serverList(env.FEDERATION_TRUSTED_KEY_SERVERS)) {
    if (notary === serverName.toLowerCase()) continue;
    const docs = await fetchThroughNotary(env, notary, serverName);
    if (docs.length > 0) {
      for (const doc of docs) await storeKeyDocument(env, serverName, doc, now);
      return true;
    }
  }
  return false;
}

async function fetchDirect(env: KeysEnv, serverName: string): Promise<JsonObject | null> {
  const res = await federationRequest(env, { destination: serverName, method: "GET", path: "/_matrix/key/v2/server", timeoutMs: KEY_FETCH_TIMEOUT_MS });
  if (!res.ok || !isJsonObject(res.body)) return null;
  return (await checkKeyDocument(res.body, serverName)) ? res.body : null;
}

/** Asks a notary for `serverName`'s keys; returns the documents that carry valid signatures of both the
 * server and the notary (the notary's keys are fetched from the notary itself). */
async function fetchThroughNotary(env: KeysEnv, notary: string, serverName: string): Promise<JsonObject[]> {
  const res = await federationRequest(env, {
    destination: notary,
    method: "POST",
    path: "/_matrix/key/v2/query",
    body: { server_keys: { [serverName]: {} } },
    timeoutMs: KEY_FETCH_TIMEOUT_MS,
  });
  if (!res.ok || !isJsonObject(res.body) || !Array.isArray(res.body.server_keys)) return [];
  const notaryKeys = (await serverKeysFor(env, notary)).filter((k) => !k.old);
  const out: JsonObject[] = [];
  for (const doc of res.body.server_keys) {
    if (!isJsonObject(doc) || !(await checkKeyDocument(doc, serverName))) continue;
    const sigs = doc.signatures as Record<string, Record<string, unknown>>;
    let notarised = false;
    for (const k of notaryKeys) {
      if (typeof sigs[notary]?.[k.keyId] === "string" && (await verifyJsonSignature(doc, notary, k.keyId, k.publicKey))) {
        notarised = true;
        break;
      }
    }
    if (notarised) out.push(doc);
  }
  return out;
}

function isPublicKey(value: unknown): value is string {
  if (typeof value !== "string") return false;
  try {
    return decodeBase64(value).length === 32;
  } catch {
    return false;
  }
}

/**
 * Checks a key document (keys.yaml): it is about `serverName`, its keys are well-formed, `valid_until_ts` is an
 * integer, and it is signed by the server with at least one of its `verify_keys`, every such signature being
 * valid (as Synapse's `process_v2_response`).
 */
export async function checkKeyDocument(doc: JsonObject, serverName: string): Promise<boolean> {
  if (doc.server_name !== serverName) return false;
  if (!Number.isSafeInteger(doc.valid_until_ts)) return false;
  const verifyKeys = doc.verify_keys;
  if (!isJsonObject(verifyKeys)) return false;
  for (const [id, k] of Object.entries(verifyKeys)) {
    // Ed25519 is the only algorithm; the version is `[a-zA-Z0-9_]+` (keys.yaml).
    if (!/^ed25519:[a-zA-Z0-9_]+$/.test(id)) return false;
    if (!isJsonObject(k) || !isPublicKey(k.key)) return false;
  }
  if (doc.old_verify_keys !== undefined) {
    if (!isJsonObject(doc.old_verify_keys)) return false;
    for (const [id, k] of Object.entries(doc.old_verify_keys)) {
      if (!/^ed25519:[a-zA-Z0-9_]+$/.test(id)) return false;
      if (!isJsonObject(k) || !isPublicKey(k.key) || !Number.isSafeInteger(k.expired_ts)) return false;
    }
  }
  const sigs = doc.signatures;
  if (!isJsonObject(sigs) || !isJsonObject(sigs[serverName])) return false;
  let verified = false;
  for (const keyId of Object.keys(sigs[serverName] as JsonObject)) {
    const k = verifyKeys[keyId];
    if (!isJsonObject(k) || !keyId.startsWith("ed25519:")) continue;
    try {
      if (!(await verifyJsonSignature(doc, serverName, keyId, k.key as string))) return false;
    } catch {
      return false;
    }
    verified = true;
  }
  return verified;
}

/** Stores a checked document's keys (current keys never lose validity to an older document) and keeps the
 * document itself, with only the server's own signatures, for notary answers. */
async function storeKeyDocument(env: KeysEnv, serverName: string, doc: JsonObject, now: number): Promise<void> {
  const validUntil = Math.min(doc.valid_until_ts as number, now + MAX_KEY_VALIDITY_MS);
  const statements: D1PreparedStatement[] = [];
  const upsertCurrent = env.DB.prepare(
    `INSERT INTO remote_server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts)
     VALUES (?1, ?2, ?3, ?4, NULL, ?5)
     ON CONFLICT (server_name, key_id) DO UPDATE SET public_key = ?3, fetched_ts = ?5,
       valid_until_ts = CASE WHEN expired_ts IS NULL AND valid_until_ts > ?4 THEN valid_until_ts ELSE ?4 END, expired_ts = NULL`,
  );
  const upsertOld = env.DB.prepare(
    `INSERT INTO remote_server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts)
     VALUES (?1, ?2, ?3, ?4, ?4, ?5)
     ON CONFLICT (server_name, key_id) DO UPDATE SET public_key = ?3, valid_until_ts = ?4, expired_ts = ?4, fetched_ts = ?5`,
  );
  for (const [keyId, k] of Object.entries(doc.verify_keys as JsonObject)) {
    statements.push(upsertCurrent.bind(serverName, keyId, (k as JsonObject).key as string, validUntil, now));
  }
  for (const [keyId, k] of Object.entries((doc.old_verify_keys ?? {}) as JsonObject)) {
    if (isJsonObject((doc.verify_keys as JsonObject)[keyId])) continue; // listed as current too: current wins
    const o = k as JsonObject;
    statements.push(upsertOld.bind(serverName, keyId, o.key as string, o.expired_ts as number, now));
  }
  const ownSignatures = { [serverName]: (doc.signatures as JsonObject)[serverName]! };
  const kept = JSON.stringify({ ...doc, signatures: ownSignatures });
  statements.push(
    env.DB.prepare(
      `UPDATE remote_server_key_documents SET key_json = ?2, valid_until_ts = ?3, fetched_ts = ?4
       WHERE server_name = ?1 AND (valid_until_ts IS NULL OR valid_until_ts <= ?3)`,
    ).bind(serverName, kept, doc.valid_until_ts as number, now),
  );
  await env.DB.batch(statements);
}

/** The latest key document held for `serverName` (with only its own signatures), fetching a fresher one
 * when it is not valid until `minimumValidUntilTs`. For notary answers (worker/federation/keys.ts). */
export async function keyDocumentFor(env: KeysEnv, serverName: string, minimumValidUntilTs = Date.now()): Promise<JsonObject | null> {
  const read = async () =>
    (await drizzle(env.DB).select().from(remoteServerKeyDocuments).where(eq(remoteServerKeyDocuments.serverName, serverName)).limit(1))[0];
  let row = await read();
  const now = Date.now();
  // keys_server.yaml: "Intermediate notary servers should cache a response for half of its lifetime".
  const halfLife = row?.fetchedTs != null && row.validUntilTs != null ? row.fetchedTs + (row.validUntilTs - row.fetchedTs) / 2 : 0;
  if (!row?.keyJson || (row.validUntilTs ?? 0) < minimumValidUntilTs || now >= halfLife) {
    if (await refreshKeys(env, serverName, now)) row = await read();
  }
  if (!row?.keyJson) return null;
  try {
    const doc = JSON.parse(row.keyJson) as unknown;
    return isJsonObject(doc) ? doc : null;
  } catch {
    return null;
  }
}
