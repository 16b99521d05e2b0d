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

// Vite reads the sources at build time (the unit tests have no file system types).
const sources: Record<string, string> = import.meta.glob("../../durable-objects/**/*.ts", { query: "?raw", import: "default", eager: true });

describe("Durable Object SQL", () => {
  it("binds no LIMIT: a bound LIMIT expires its statement at every run (durable-objects/sql-limit.ts)", () => {
    expect(Object.keys(sources).length).toBeGreaterThan(50);
    const bound = Object.entries(sources).flatMap(([file, text]) =>
      text.split("\n").flatMap((line, i) => (/LIMIT \?/.test(line) && !line.trimStart().startsWith("//") ? [`${file}:${i + 1}`] : [])),
    );
    expect(bound).toEqual([]);
  });
});
