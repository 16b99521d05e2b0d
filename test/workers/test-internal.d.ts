// The pool's runner module (@cloudflare/vitest-pool-workers 0.23, dist/worker/lib/cloudflare/test-internal.mjs),
// which `cloudflare:test` re-exports from. test/workers/fresh-state.ts uses two of its functions that
// `cloudflare:test` does not re-export.
declare module "cloudflare:test-internal" {
  /** Deletes every Durable Object's storage (D1 and R2 included: Miniflare keeps them in Durable Objects). */
  export function reset(): Promise<void>;
  /** Tears down every Durable Object instance (its in-memory state and whatever it is running). */
  export function abortAllDurableObjects(): Promise<void>;
  /** Awaits the waitUntil promises registered so far (and those they register). */
  export function waitForGlobalWaitUntil(): Promise<void>;
}
