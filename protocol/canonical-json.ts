// Canonical JSON (spec: Appendices, "Canonical JSON"): object keys sorted by Unicode code point, no
// insignificant whitespace, integers only in [-(2^53)+1, 2^53-1], minimal escaping, raw UTF-8.
import type { JsonValue } from "./json.js";

export class CanonicalJsonError extends Error {
  override name = "CanonicalJsonError";
}

export const MAX_SAFE = 2 ** 53 - 1;

/** Compares strings by Unicode code point. JavaScript's default `<` compares UTF-16 code units,
 * which orders astral characters (surrogate pairs) before U+E000..U+FFFF: wrong for Matrix. */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1; // a surrogate (astral code point) sorts after any BMP unit
    return x - y;
  }
  return a.length - b.length;
}

function encodeString(s: string): string {
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let esc: string | undefined;
    if (c < 0x20 || c === 0x22 || c === 0x5c) {
      switch (c) {
        case 0x08: esc = "\\b"; break;
        case 0x09: esc = "\\t"; break;
        case 0x0a: esc = "\\n"; break;
        case 0x0c: esc = "\\f"; break;
        case 0x0d: esc = "\\r"; break;
        case 0x22: esc = '\\"'; break;
        case 0x5c: esc = "\\\\"; break;
        default: esc = "\\u00" + c.toString(16).padStart(2, "0");
      }
    } else if (c >= 0xd800 && c <= 0xdfff) {
      // A high surrogate must be followed by a low one; anything else is a lone surrogate.
      const next = s.charCodeAt(i + 1);
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      throw new CanonicalJsonError("lone surrogate in string");
    }
    if (esc !== undefined) {
      out += s.slice(start, i) + esc;
      start = i + 1;
    }
  }
  return out + s.slice(start) + '"';
}

/** Serialises a value as canonical JSON. Throws CanonicalJsonError for floats, out-of-range
 * integers, lone surrogates and non-JSON values. */
export function canonicalJson(value: JsonValue | unknown): string {
  switch (typeof value) {
    case "string":
      return encodeString(value);
    case "number":
      if (!Number.isInteger(value)) throw new CanonicalJsonError("floats are not allowed in canonical JSON");
      if (Math.abs(value) > MAX_SAFE) throw new CanonicalJsonError("integer out of range");
      return Object.is(value, -0) ? "0" : String(value);
    case "boolean":
      return value ? "true" : "false";
    case "object": {
      if (value === null) return "null";
      if (Array.isArray(value)) return "[" + value.map((v) => canonicalJson(v)).join(",") + "]";
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort(compareCodePoints);
      return "{" + keys.map((k) => encodeString(k) + ":" + canonicalJson(obj[k])).join(",") + "}";
    }
    default:
      throw new CanonicalJsonError(`not a JSON value: ${typeof value}`);
  }
}

const encoder = new TextEncoder();
export const canonicalJsonBytes = (value: unknown): Uint8Array => encoder.encode(canonicalJson(value));
