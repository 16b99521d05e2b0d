// An isolate's short-lived memory of access-token look-ups (issue 13: the send path). Without it every
// authenticated request waits for one D1 query before it does anything else; a client that sends or syncs
// keeps using one token, so the answer is kept for TOKEN_CACHE_TTL_MS.
//
// What this changes, exactly:
// - In this isolate a token stops working at once when it is revoked: every write that can end a token
//   or change what it grants (logout, device deletion, login with an existing device ID, refresh-token
//   rotation, deactivation, the admin API's admin and deactivation flags) calls `forgetCachedTokens()`
//   after the write. Locally (`npm start`, the tests) every request runs in this one isolate.
// - Another isolate of a deployed Worker may accept a revoked token for up to TOKEN_CACHE_TTL_MS, and a
//   change made to D1 directly (`wrangler d1 execute`) is seen within that time. Synapse's workers share
//   such a cache too, invalidated over replication; Workers have no channel between isolates.
// - An expired token is refused at its expiry (checked at every use), cached or not. Tokens not yet used
//   after a refresh (their first use revokes the old refresh token) and deactivated users are never kept.
// - Unknown tokens are never remembered: a token issued by another isolate works at once.

/** How long a token's row is used without asking D1 again. */
export const TOKEN_CACHE_TTL_MS = 5_000;
/** Entries kept at most; past that the memory starts again (a burst of logins cannot grow it for ever). */
const MAX_ENTRIES = 10_000;

interface Entry<Row> {
  row: Row;
  at: number;
}

const entries = new Map<string, Entry<unknown>>();
/** Bumped by every revocation: a look-up that started before one must not store what it read. */
let generation = 0;

/** The row remembered for a token hash, if it is younger than TOKEN_CACHE_TTL_MS. */
export function cachedTokenRow<Row>(tokenHash: string, now: number): Row | undefined {
  const entry = entries.get(tokenHash);
  if (!entry) return undefined;
  if (now - entry.at >= TOKEN_CACHE_TTL_MS || now < entry.at) {
    entries.delete(tokenHash);
    return undefined;
  }
  return entry.row as Row;
}

/** The generation to pass to `rememberTokenRow` (read before the D1 query). */
export function tokenCacheGeneration(): number {
  return generation;
}

/** Keeps a row read from D1, unless a revocation happened since the look-up started. */
export function rememberTokenRow<Row>(tokenHash: string, row: Row, lookupGeneration: number, now: number): void {
  if (lookupGeneration !== generation) return;
  if (entries.size >= MAX_ENTRIES) entries.clear();
  entries.set(tokenHash, { row, at: now });
}

/** Forgets every token of this isolate: call after any write that revokes tokens or changes their users. */
export function forgetCachedTokens(): void {
  generation += 1;
  entries.clear();
}
