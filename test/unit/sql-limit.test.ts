import { describe, expect, it } from "vitest";
import { sqlLimit } from "../../durable-objects/sql-limit.js";

describe("sqlLimit", () => {
  it("writes a non-negative integer", () => {
    expect(sqlLimit(40)).toBe("40");
    expect(sqlLimit(1)).toBe("1");
    expect(sqlLimit(2.9)).toBe("2");
  });

  it("never writes a negative limit (SQLite reads it as no limit) nor anything but digits", () => {
    expect(sqlLimit(0)).toBe("0");
    expect(sqlLimit(-1)).toBe("0");
    expect(sqlLimit(Number.NaN)).toBe("0");
    expect(sqlLimit(Number.NEGATIVE_INFINITY)).toBe("0");
    expect(sqlLimit(Number.POSITIVE_INFINITY)).toBe(String(Number.MAX_SAFE_INTEGER));
    expect(sqlLimit(Number.MAX_SAFE_INTEGER)).toBe(String(Number.MAX_SAFE_INTEGER));
    expect(sqlLimit(Number.MAX_SAFE_INTEGER * 4)).toMatch(/^[0-9]+$/);
  });
});
