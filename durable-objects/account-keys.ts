// MSC4348 (portable accounts): how an account gets its account key, the smallest workable flow. The
// server generates the key the first time it is needed and holds it (D1 `account_keys`); its owner can
// read the public key, export the private seed (after proving the password), and import a seed exported
// elsewhere, which is how an account moves: export on the old server, import on the new one, and the
// account keeps its `@<account key>` identity (and so its power in rooms of that version). One account
// key belongs to at most one account of a server.
import { MatrixError } from "../protocol/errors.js";
import { accountSigningKey } from "../protocol/accounts.js";
import { encodeBase64 } from "../protocol/base64.js";
import type { SigningKey } from "../protocol/signing.js";
import type { Env } from "../worker/env.js";

export interface AccountKey {
  accountKey: string;
  /** The private seed, unpadded standard base64. */
  seed: string;
  key: SigningKey;
}

type Row = { account_key: string; seed: string };

async function fromRow(row: Row): Promise<AccountKey> {
  const { key, accountKey } = await accountSigningKey(row.seed);
  return { accountKey, seed: row.seed, key };
}

/** The account's key, generated and stored on first use (concurrent first uses agree on one). */
export async function accountKeyOf(env: Pick<Env, "DB">, userId: string): Promise<AccountKey> {
  const existing = await env.DB.prepare("SELECT account_key, seed FROM account_keys WHERE user_id = ?").bind(userId).first<Row>();
  if (existing) return fromRow(existing);
  const seed = encodeBase64(crypto.getRandomValues(new Uint8Array(32)));
  const { accountKey } = await accountSigningKey(seed);
  await env.DB.prepare("INSERT OR IGNORE INTO account_keys (user_id, account_key, seed, created_ts) VALUES (?, ?, ?, ?)").bind(userId, accountKey, seed, Date.now()).run();
  const row = await env.DB.prepare("SELECT account_key, seed FROM account_keys WHERE user_id = ?").bind(userId).first<Row>();
  return fromRow(row!);
}

/**
 * Makes `seed` (exported from this or another server) the account's key. Refused (400 M_INVALID_PARAM)
 * for a malformed seed, and when another account of this server holds that key.
 */
export async function importAccountKey(env: Pick<Env, "DB">, userId: string, seed: unknown): Promise<AccountKey> {
  if (typeof seed !== "string") throw new MatrixError(400, "M_INVALID_PARAM", "seed must be the 32-byte private seed in unpadded base64");
  let imported: { accountKey: string };
  try {
    imported = await accountSigningKey(seed);
  } catch {
    throw new MatrixError(400, "M_INVALID_PARAM", "seed must be the 32-byte private seed in unpadded base64");
  }
  const normalised = seed.replace(/=$/, "");
  const holder = await env.DB.prepare("SELECT user_id FROM account_keys WHERE account_key = ?").bind(imported.accountKey).first<{ user_id: string }>();
  if (holder && holder.user_id !== userId) throw new MatrixError(400, "M_INVALID_PARAM", "Another account of this server holds that account key");
  await env.DB.prepare(
    "INSERT INTO account_keys (user_id, account_key, seed, created_ts) VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET account_key = excluded.account_key, seed = excluded.seed, created_ts = excluded.created_ts",
  )
    .bind(userId, imported.accountKey, normalised, Date.now())
    .run();
  return fromRow({ account_key: imported.accountKey, seed: normalised });
}

/** The local account holding `accountKey`, if any. */
export async function accountOfKey(env: Pick<Env, "DB">, accountKey: string): Promise<{ userId: string; key: SigningKey } | undefined> {
  const row = await env.DB.prepare("SELECT user_id, account_key, seed FROM account_keys WHERE account_key = ?").bind(accountKey).first<Row & { user_id: string }>();
  if (!row) return undefined;
  return { userId: row.user_id, key: (await fromRow(row)).key };
}

/** The local accounts holding any of `accountKeys` (in chunks: D1 limits bound parameters). */
export async function accountsOfKeys(env: Pick<Env, "DB">, accountKeys: readonly string[]): Promise<{ userId: string; accountKey: string; key: SigningKey }[]> {
  const out: { userId: string; accountKey: string; key: SigningKey }[] = [];
  for (let i = 0; i < accountKeys.length; i += 50) {
    const chunk = accountKeys.slice(i, i + 50);
    const rows = await env.DB.prepare(`SELECT user_id, account_key, seed FROM account_keys WHERE account_key IN (${chunk.map(() => "?").join(",")})`)
      .bind(...chunk)
      .all<Row & { user_id: string }>();
    for (const row of rows.results) out.push({ userId: row.user_id, accountKey: row.account_key, key: (await fromRow(row)).key });
  }
  return out;
}

/** Forgets the account's key (exported with `release`): this server keeps no copy. */
export async function releaseAccountKey(env: Pick<Env, "DB">, userId: string): Promise<void> {
  await env.DB.prepare("DELETE FROM account_keys WHERE user_id = ?").bind(userId).run();
}
