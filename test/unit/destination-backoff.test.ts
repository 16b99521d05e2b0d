// The Destination DO's retry schedule (durable-objects/destination/backoff.ts).
import { describe, expect, it } from "vitest";
import { backoffDelay } from "../../durable-objects/destination/backoff.js";

const policy = { minMs: 5_000, maxMs: 3_600_000 };
const low = () => 0; // the lowest jitter factor, 0.8
const high = () => 0.999999; // just under the highest, 1.2

describe("backoffDelay", () => {
  it("starts at the minimum and doubles per failure", () => {
    const mid = () => 0.5; // factor 1.0
    expect([1, 2, 3, 4].map((n) => backoffDelay(n, policy, mid))).toEqual([5_000, 10_000, 20_000, 40_000]);
  });

  it("jitters within [0.8, 1.2) but never below the minimum", () => {
    expect(backoffDelay(1, policy, low)).toBe(5_000);
    expect(backoffDelay(1, policy, high)).toBe(6_000);
    expect(backoffDelay(2, policy, low)).toBe(8_000);
    expect(backoffDelay(2, policy, high)).toBe(12_000);
  });

  it("is capped at the maximum, also for huge failure counts", () => {
    expect(backoffDelay(30, policy, high)).toBe(3_600_000);
    expect(backoffDelay(30, policy, low)).toBe(2_880_000);
    expect(backoffDelay(10_000, policy, high)).toBe(3_600_000);
    expect(backoffDelay(Number.MAX_SAFE_INTEGER, policy, high)).toBe(3_600_000);
  });

  it("treats 0 or fewer failures as the first", () => {
    const mid = () => 0.5;
    expect(backoffDelay(0, policy, mid)).toBe(5_000);
    expect(backoffDelay(-3, policy, mid)).toBe(5_000);
  });
});
