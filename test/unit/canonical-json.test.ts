// Canonical JSON and unpadded base64 (spec: Appendices, "Canonical JSON", "Unpadded Base64"),
// against the figures and notes in test/fixtures/vectors/signing.json.
import { describe, expect, it } from "vitest";
import vectors from "../fixtures/vectors/signing.json";
import { decodeBase64, encodeBase64, encodeBase64Url } from "../../protocol/base64.js";
import { CanonicalJsonError, canonicalJson, canonicalJsonBytes, compareCodePoints, utf8ByteLength } from "../../protocol/canonical-json.js";

describe("canonical JSON: spec cases", () => {
  for (const [input, expected] of vectors.canonical_json as [unknown, string][]) {
    it(`encodes ${expected}`, () => {
      expect(canonicalJson(input)).toBe(expected);
    });
  }

  it("encodes the remaining appendix examples", () => {
    expect(canonicalJson({})).toBe("{}");
    expect(canonicalJson({ one: 1, two: "Two" })).toBe('{"one":1,"two":"Two"}');
    expect(canonicalJson(JSON.parse('{"a": "\\u65E5"}'))).toBe('{"a":"日"}');
    expect(canonicalJson(JSON.parse('{"a": -0, "b": 1e10}'))).toBe('{"a":0,"b":10000000000}');
    const nested = {
      auth: {
        success: true,
        mxid: "@john.doe:example.com",
        profile: {
          display_name: "John Doe",
          three_pids: [
            { medium: "email", address: "john.doe@example.org" },
            { medium: "msisdn", address: "123456789" },
          ],
        },
      },
    };
    expect(canonicalJson(nested)).toBe(
      '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}',
    );
  });

  it("encodes UTF-8 bytes raw", () => {
    expect([...canonicalJsonBytes({ a: "日" })]).toEqual([...new TextEncoder().encode('{"a":"日"}')]);
    expect(canonicalJsonBytes("é").length).toBe(4); // quote, two bytes, quote
  });
});

describe("canonical JSON: key order by code point", () => {
  it("puts U+FFFF before an astral character (UTF-16 order would not)", () => {
    const emoji = "😀"; // U+1F600, UTF-16 D83D DE00
    expect(compareCodePoints("\uffff", emoji)).toBeLessThan(0);
    expect(compareCodePoints(emoji, "\uffff")).toBeGreaterThan(0);
    // JavaScript's default string order gets this wrong, which is why compareCodePoints exists.
    expect(["\uffff", emoji].sort()).toEqual([emoji, "\uffff"]);
    expect(canonicalJson({ [emoji]: 2, "\uffff": 1 })).toBe(`{"\uffff":1,"${emoji}":2}`);
  });

  it("orders prefixes first and compares BMP characters by value", () => {
    expect(compareCodePoints("a", "ab")).toBeLessThan(0);
    expect(compareCodePoints("ab", "a")).toBeGreaterThan(0);
    expect(compareCodePoints("b", "a")).toBeGreaterThan(0);
    expect(compareCodePoints("x", "x")).toBe(0);
    expect(compareCodePoints("\ue000", "\ud7ff")).toBeGreaterThan(0);
    expect(canonicalJson({ b: 1, a: 2, A: 3, "": 4 })).toBe('{"":4,"A":3,"a":2,"b":1}');
  });
});

describe("canonical JSON: numbers", () => {
  it("writes -0 as 0 and keeps the integer range ends", () => {
    expect(canonicalJson(-0)).toBe("0");
    expect(canonicalJson(2 ** 53 - 1)).toBe("9007199254740991");
    expect(canonicalJson(-(2 ** 53) + 1)).toBe("-9007199254740991");
  });

  it("rejects floats and integers outside [-(2^53)+1, 2^53-1]", () => {
    expect(() => canonicalJson({ a: 1.5 })).toThrow(CanonicalJsonError);
    expect(() => canonicalJson(2 ** 53)).toThrow(CanonicalJsonError);
    expect(() => canonicalJson(-(2 ** 53))).toThrow(CanonicalJsonError);
    expect(() => canonicalJson([Number.NaN])).toThrow(CanonicalJsonError);
    expect(() => canonicalJson(Number.POSITIVE_INFINITY)).toThrow(CanonicalJsonError);
  });

  it("rejects non-JSON values", () => {
    expect(() => canonicalJson({ a: () => 1 })).toThrow(CanonicalJsonError);
    expect(() => canonicalJson(10n)).toThrow(CanonicalJsonError);
  });
});

describe("canonical JSON: strings", () => {
  it("escapes only \\b \\t \\n \\f \\r \\\" \\\\ and other control characters as lowercase \\u00XX", () => {
    expect(canonicalJson("\b\t\n\f\r\"\\")).toBe('"\\b\\t\\n\\f\\r\\"\\\\"');
    expect(canonicalJson("\u0000\u0001\u000b\u000e\u001f")).toBe('"\\u0000\\u0001\\u000b\\u000e\\u001f"');
    // Everything else is raw: DEL, slash, non-ASCII, U+2028, astral characters.
    expect(canonicalJson("\u007f/é\u2028😀")).toBe('"\u007f/é\u2028😀"');
  });

  it("round-trips through JSON.parse", () => {
    const s = "\u0000\u001f\"\\\b\t\n\f\r日😀\u007f";
    expect(JSON.parse(canonicalJson({ s }))).toEqual({ s });
  });

  it("rejects lone surrogates in values and keys", () => {
    expect(() => canonicalJson("\ud800")).toThrow(CanonicalJsonError);
    expect(() => canonicalJson("a\udc00b")).toThrow(CanonicalJsonError);
    expect(() => canonicalJson("\ud83d")).toThrow(CanonicalJsonError); // high surrogate at the end
    expect(() => canonicalJson("\ude00\ud83d")).toThrow(CanonicalJsonError); // reversed pair
    expect(() => canonicalJson({ "\ud800": 1 })).toThrow(CanonicalJsonError);
  });
});

describe("unpadded base64", () => {
  const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 89 + 251) & 0xff);

  it("encodes without padding (RFC 4648 test vectors)", () => {
    const enc = (s: string) => encodeBase64(new TextEncoder().encode(s));
    expect(enc("")).toBe("");
    expect(enc("f")).toBe("Zg");
    expect(enc("fo")).toBe("Zm8");
    expect(enc("foo")).toBe("Zm9v");
    expect(enc("foob")).toBe("Zm9vYg");
    expect(enc("fooba")).toBe("Zm9vYmE");
    expect(enc("foobar")).toBe("Zm9vYmFy");
  });

  it("uses + and / in the standard alphabet, - and _ in the URL-safe one", () => {
    const b = new Uint8Array([0xfb, 0xff, 0xbf]);
    expect(encodeBase64(b)).toBe("+/+/");
    expect(encodeBase64Url(b)).toBe("-_-_");
  });

  it("round-trips every length, both alphabets, padded and unpadded input", () => {
    for (let n = 0; n < 70; n++) {
      const b = bytes(n);
      expect([...decodeBase64(encodeBase64(b))]).toEqual([...b]);
      expect([...decodeBase64(encodeBase64Url(b))]).toEqual([...b]);
      const padded = encodeBase64(b) + "=".repeat((4 - (encodeBase64(b).length % 4)) % 4);
      expect([...decodeBase64(padded)]).toEqual([...b]);
    }
  });

  it("rejects invalid input", () => {
    expect(() => decodeBase64("Z")).toThrow();
    expect(() => decodeBase64("Zm9v!")).toThrow();
    expect(() => decodeBase64("Zm 9v")).toThrow();
    expect(() => decodeBase64("Zm9vé")).toThrow();
  });
});

describe("canonical JSON: every UTF-16 code unit", () => {
  // The encoder leans on JSON.stringify for strings (protocol/canonical-json.ts): check it against the
  // rule itself for every code unit on its own and between other characters.
  const expected = (c: number): string => {
    const short: Record<number, string> = { 0x08: "\\b", 0x09: "\\t", 0x0a: "\\n", 0x0c: "\\f", 0x0d: "\\r", 0x22: '\\"', 0x5c: "\\\\" };
    if (short[c] !== undefined) return short[c]!;
    if (c < 0x20) return "\\u00" + c.toString(16).padStart(2, "0");
    return String.fromCharCode(c);
  };
  it("escapes exactly the rule's characters and refuses every lone surrogate", () => {
    for (let c = 0; c <= 0xffff; c++) {
      const s = "a" + String.fromCharCode(c) + "b";
      if (c >= 0xd800 && c <= 0xdfff) expect(() => canonicalJson(s)).toThrow(CanonicalJsonError);
      else expect(canonicalJson(s)).toBe('"a' + expected(c) + 'b"');
    }
  });

  it("orders keys by code point when keys have surrogates and characters above them", () => {
    const obj = { "\uffff": 1, "😀": 2, "\ue000x": 3, a: 4, "\ud7ff": 5 };
    expect(canonicalJson(obj)).toBe('{"a":4,"\ud7ff":5,"\ue000x":3,"\uffff":1,"😀":2}');
    expect(canonicalJson({ b: 1, a: undefined, c: [undefined === undefined, null] })).toBe('{"b":1,"c":[true,null]}');
  });
});

describe("utf8ByteLength", () => {
  it("is the length TextEncoder gives, for 1-, 2-, 3- and 4-byte characters and mixes of them", () => {
    const encoder = new TextEncoder();
    const samples = ["", "a", "\u007f", "\u0080", "é", "\u07ff", "\u0800", "日本", "\uffff", "😀", "a😀b", "\ud7ff\ue000", '{"body":"héllo 😀 日"}'];
    // And every boundary code point, alone and between ASCII.
    for (const cp of [0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xffff, 0x10000, 0x10ffff]) samples.push(String.fromCodePoint(cp), `x${String.fromCodePoint(cp)}y`);
    for (const s of samples) expect(utf8ByteLength(s)).toBe(encoder.encode(s).length);
  });
});
