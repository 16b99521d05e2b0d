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

// Strings: JSON.stringify escapes exactly what canonical JSON escapes (`"`, `\\`, \b \t \n \f \r and the
// other C0 controls as lowercase \u00XX) and leaves everything else raw, except lone surrogates, which it
// writes as \udXXX escapes (ES2019 "well-formed JSON.stringify") and canonical JSON refuses. So a
// well-formed string is encoded natively; this is most of the work of hashing and signing an event.
// (String.prototype.isWellFormed is ES2024, newer than the lib this project targets; V8 has it.)
const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();
/** A character at or above U+D800 in a key: only then do UTF-16 order and code point order differ. */
const HIGH_UNIT = /[\ud800-\uffff]/;

function encodeString(s: string): string {
  if (!isWellFormed(s)) throw new CanonicalJsonError("lone surrogate in string");
  return JSON.stringify(s);
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
      if (Array.isArray(value)) {
        let out = "[";
        for (let i = 0; i < value.length; i++) out += (i === 0 ? "" : ",") + canonicalJson(value[i]);
        return out + "]";
      }
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj).sort();
      for (const k of keys) {
        if (HIGH_UNIT.test(k)) {
          keys.sort(compareCodePoints);
          break;
        }
      }
      let out = "{";
      let first = true;
      for (const k of keys) {
        const v = obj[k];
        if (v === undefined) continue;
        out += (first ? "" : ",") + encodeString(k) + ":" + canonicalJson(v);
        first = false;
      }
      return out + "}";
    }
    default:
      throw new CanonicalJsonError(`not a JSON value: ${typeof value}`);
  }
}

const encoder = new TextEncoder();
export const canonicalJsonBytes = (value: unknown): Uint8Array => encoder.encode(canonicalJson(value));

const ASCII = /^[\x00-\x7f]*$/;

/** The UTF-8 length of a well-formed string (canonical JSON text) without encoding it: what a size check
 * needs of a part it does not hash. A surrogate pair is 4 bytes, 2 per code unit. */
export function utf8ByteLength(s: string): number {
  if (ASCII.test(s)) return s.length;
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    n += c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 1 : 2;
  }
  return n;
}
