// The workers stage runs many test files in one workerd; each must start from a fresh state
// (test/workers/fresh-state.ts). This file and isolation-2.test.ts each check that, then leave state behind.
import { describe, it } from "vitest";
import { expectFreshStart, leaveStateBehind } from "./isolation-probe.js";

describe("test file isolation (1 of 2)", () => {
  it("starts with empty storage, fresh module state and a reset remote stand-in, then leaves state behind", async () => {
    await expectFreshStart();
    await leaveStateBehind();
  });
});
