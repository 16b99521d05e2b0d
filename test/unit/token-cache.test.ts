// worker/token-cache.ts: the isolate's memory of access-token look-ups (issue 13, the send path). Pure module
// state with the clock passed in, so the edges of its lifetime are tested here; the revocations that must
// clear it are tested end to end in test/workers/token-cache.test.ts.
import { beforeEach, describe, expect, it } from "vitest";
import { TOKEN_CACHE_TTL_MS, cachedTokenRow, forgetCachedTokens, rememberTokenRow, tokenCacheGeneration } from "../../worker/token-cache.js";

describe("token cache", () => {
  beforeEach(() => forgetCachedTokens());

  it("answers a remembered row until TOKEN_CACHE_TTL_MS have passed, and not at that age", () => {
    const t = 1_000_000;
    rememberTokenRow("h1", { user: "a" }, tokenCacheGeneration(), t);
    expect(cachedTokenRow("h1", t)).toEqual({ user: "a" });
    expect(cachedTokenRow("h1", t + TOKEN_CACHE_TTL_MS - 1)).toEqual({ user: "a" });
    expect(cachedTokenRow("h1", t + TOKEN_CACHE_TTL_MS)).toBeUndefined();
    // Once too old it is gone, even for an earlier clock.
    expect(cachedTokenRow("h1", t)).toBeUndefined();
  });

  it("does not trust a row from the future (a clock that went back)", () => {
    rememberTokenRow("h2", { user: "b" }, tokenCacheGeneration(), 5_000);
    expect(cachedTokenRow("h2", 4_999)).toBeUndefined();
  });

  it("forgets everything at a revocation, and a look-up that started before it stores nothing", () => {
    rememberTokenRow("h3", { user: "c" }, tokenCacheGeneration(), 10);
    const before = tokenCacheGeneration();
    forgetCachedTokens();
    expect(cachedTokenRow("h3", 10)).toBeUndefined();
    // The D1 read of a look-up that began before the revocation may be older than the revocation's write.
    rememberTokenRow("h4", { user: "d" }, before, 10);
    expect(cachedTokenRow("h4", 10)).toBeUndefined();
    rememberTokenRow("h4", { user: "d" }, tokenCacheGeneration(), 10);
    expect(cachedTokenRow("h4", 10)).toEqual({ user: "d" });
  });

  it("unknown hashes are not found", () => {
    expect(cachedTokenRow("nothing", 0)).toBeUndefined();
  });
});
