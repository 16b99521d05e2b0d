import { describe, expect, it } from "vitest";
import { MAX_JSON_DEPTH, jsonTextProblem } from "../../protocol/json-text.js";

const strict = (t: string) => jsonTextProblem(t, { canonical: true })?.kind;
const lenient = (t: string) => jsonTextProblem(t, { canonical: false })?.kind;

describe("jsonTextProblem", () => {
  it("finds floats and out-of-range integers outside strings only", () => {
    expect(strict('{"a":1.5}')).toBe("float");
    expect(strict('{"a":-2E+3}')).toBe("float");
    expect(strict('{"a":9007199254740991,"b":-9007199254740991}')).toBeUndefined();
    expect(strict('{"a":9007199254740992}')).toBe("integer_out_of_range");
    expect(strict('{"a":-9007199254740992}')).toBe("integer_out_of_range");
    expect(strict('{"a":"1.5 and 9007199254740993 \\" 1e9"}')).toBeUndefined();
    expect(strict('{"1.5":0}')).toBeUndefined();
    expect(lenient('{"a":1.5,"b":1e400}')).toBeUndefined();
  });

  it("finds lone surrogates, escaped or raw, and accepts pairs", () => {
    expect(strict('["\\ud83d\\ude00"]')).toBeUndefined();
    expect(strict('["\\uD83D\\uDE00"]')).toBeUndefined();
    expect(strict('["😀"]')).toBeUndefined();
    expect(strict('["\\ud83d"]')).toBe("lone_surrogate");
    expect(strict('["\\ud83dx"]')).toBe("lone_surrogate");
    expect(strict('["\\ud83d\\u0041"]')).toBe("lone_surrogate");
    expect(strict('["\\ude00"]')).toBe("lone_surrogate");
    expect(strict('["\ud83d"]')).toBe("lone_surrogate");
    expect(strict('["\\\\ud83d"]')).toBeUndefined(); // an escaped backslash, then plain text
    expect(lenient('["\\ud83d"]')).toBeUndefined();
  });

  it("refuses nesting beyond the limit, counting brackets in strings as text", () => {
    const nest = (d: number) => "[".repeat(d) + "]".repeat(d);
    expect(strict(nest(MAX_JSON_DEPTH))).toBeUndefined();
    expect(strict(nest(MAX_JSON_DEPTH + 1))).toBe("too_deep");
    expect(lenient(nest(MAX_JSON_DEPTH + 1))).toBe("too_deep");
    expect(strict(`{"a":"${"[".repeat(MAX_JSON_DEPTH + 5)}"}`)).toBeUndefined();
    expect(lenient(`{"a":"\\"${"[".repeat(MAX_JSON_DEPTH + 5)}"}`)).toBeUndefined();
    // Siblings do not add up: depth is the deepest path, not the number of brackets.
    expect(strict("[" + "[],".repeat(MAX_JSON_DEPTH * 2) + "[]]")).toBeUndefined();
  });
});
