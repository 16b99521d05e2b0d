// Bounded concurrency for calls that fan out to many Durable Objects (a big room's fan-out round, the
// remote members a resync brings): at most `n` calls in flight, so that thousands of DOs are not opened
// at once (locally they share one process and its file handles; docs/fan-out.md "Big rooms").

/** `fn` over `items` with at most `n` calls at a time; the results in the items' order. */
export async function inParallel<T, R>(items: readonly T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, n), items.length) }, worker));
  return results;
}
