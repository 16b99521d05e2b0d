// When a Destination DO tries again after a failed transaction: exponential back-off with jitter, from a
// minimum (5 s) doubling up to a maximum (1 h). Synapse does the same per destination (its retry limiter,
// synapse/util/retryutils.py: a randomised multiplier on each step, capped); the jitter keeps many queues
// that failed together (one peer down for all rooms, or many peers after our own outage) from retrying in
// lock-step.

export interface BackoffPolicy {
  minMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { minMs: 5_000, maxMs: 60 * 60_000 };

/**
 * The wait before the next attempt after `failures` consecutive failures (1 for the first): `min × 2^(n-1)`,
 * times a random factor in [0.8, 1.2), never below the minimum nor above the maximum.
 */
export function backoffDelay(failures: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const n = Math.max(1, Math.floor(failures));
  // 2^(n-1) overflows to Infinity for huge n; the cap applies before the jitter.
  const base = Math.min(policy.maxMs, policy.minMs * 2 ** Math.min(n - 1, 64));
  const jittered = Math.round(base * (0.8 + 0.4 * random()));
  return Math.min(policy.maxMs, Math.max(policy.minMs, jittered));
}
