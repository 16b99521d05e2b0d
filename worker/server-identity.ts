// This server's identity: its name and its ed25519 signing key. The key comes from `SIGNING_KEY`
// (Synapse's signing.key format) or is generated once and kept in D1; every isolate (worker or
// Durable Object) loads it once and caches it. Shared by the worker and the Room DO, which signs events.
import { drizzle } from "drizzle-orm/d1";
import { isNull } from "drizzle-orm";
import { serverSigningKeys } from "../schema/d1.js";
import {
  formatSigningKeyFile,
  generateSigningKey,
  parseSigningKeyFile,
  type SigningKey,
} from "../protocol/signing.js";

export interface ServerKeys {
  current: SigningKey;
  /** Keys this server used before, for `old_verify_keys`. */
  old: { keyId: string; publicKey: string; expiredTs: number }[];
}

interface KeyEnv {
  DB: D1Database;
  SIGNING_KEY?: string;
}

let cached: { source: string; keys: Promise<ServerKeys> } | undefined;

export function serverKeys(env: KeyEnv): Promise<ServerKeys> {
  const source = env.SIGNING_KEY ?? "";
  if (!cached || cached.source !== source) {
    const keys = loadServerKeys(env);
    cached = { source, keys };
    keys.catch(() => (cached = undefined)); // do not cache a failure
  }
  return cached.keys;
}

export async function signingKey(env: KeyEnv): Promise<SigningKey> {
  return (await serverKeys(env)).current;
}

async function loadServerKeys(env: KeyEnv): Promise<ServerKeys> {
  const db = drizzle(env.DB);
  let current: SigningKey;
  if (env.SIGNING_KEY) {
    current = await parseSigningKeyFile(env.SIGNING_KEY);
    // Record it so that, if the configured key is later replaced, this one becomes an old key.
    await db
      .insert(serverSigningKeys)
      .values({ keyId: current.keyId, keyFile: formatSigningKeyFile(current), publicKey: current.publicKey, createdTs: Date.now() })
      .onConflictDoNothing();
  } else {
    const existing = await db.select().from(serverSigningKeys).where(isNull(serverSigningKeys.expiredTs)).limit(1);
    if (existing[0]) {
      current = await parseSigningKeyFile(existing[0].keyFile);
    } else {
      const fresh = await generateSigningKey("a_" + crypto.randomUUID().slice(0, 4));
      // Two isolates may race to create the first key: the insert is conditional, the read decides.
      await env.DB.prepare(
        "INSERT INTO server_signing_keys (key_id, key_file, public_key, created_ts) SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM server_signing_keys WHERE expired_ts IS NULL)",
      )
        .bind(fresh.keyId, formatSigningKeyFile(fresh), fresh.publicKey, Date.now())
        .run();
      const row = await db.select().from(serverSigningKeys).where(isNull(serverSigningKeys.expiredTs)).limit(1);
      current = await parseSigningKeyFile(row[0]!.keyFile);
    }
  }
  const rows = await db.select().from(serverSigningKeys);
  const old = rows
    .filter((r) => r.keyId !== current.keyId)
    .map((r) => ({ keyId: r.keyId, publicKey: r.publicKey, expiredTs: r.expiredTs ?? r.createdTs }));
  return { current, old };
}
