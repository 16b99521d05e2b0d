// Checks a JSON text against what Matrix JSON allows before anything stores it. JSON.parse accepts more
// than Matrix can sign or keep: floats and integers beyond ±(2^53−1) (spec: Appendices, "Canonical JSON"
// allows neither, and room versions 6+ refuse them in events), `\uD800`-style escapes that decode to a
// lone surrogate (no UTF-8 encoding exists, so the value cannot be hashed, signed or stored as text) and
// nesting so deep that every recursive walk (canonical JSON, redaction, RPC cloning) overflows the stack.
// JSON.parse also loses the difference between `1` and `1.0`, so the numbers are checked on the text.
import { MAX_SAFE } from "./canonical-json.js";

/** Deeper nesting is refused. Synapse's JSON parser stops at Python's recursion limit (1000 frames,
 * less what the request handler uses); no Matrix content needs more than a few dozen levels. */
export const MAX_JSON_DEPTH = 512;

export type JsonTextProblem =
  | { kind: "too_deep" }
  | { kind: "lone_surrogate" }
  | { kind: "float" }
  | { kind: "integer_out_of_range" };

export interface JsonTextRules {
  /** Refuse what canonical JSON cannot encode: floats, integers outside ±(2^53−1), lone surrogates.
   * Without it only the depth is checked. */
  canonical: boolean;
  maxDepth?: number;
}

const isHigh = (u: number) => u >= 0xd800 && u <= 0xdbff;
const isLow = (u: number) => u >= 0xdc00 && u <= 0xdfff;

function hex4(text: string, at: number): number {
  const s = text.slice(at, at + 4);
  return /^[0-9a-fA-F]{4}$/.test(s) ? parseInt(s, 16) : -1;
}

/**
 * The first problem in `text`, which must already be valid JSON (JSON.parse accepted it), or undefined.
 * One pass over the text: O(length), no recursion.
 */
export function jsonTextProblem(text: string, rules: JsonTextRules): JsonTextProblem | undefined {
  const maxDepth = rules.maxDepth ?? MAX_JSON_DEPTH;
  let depth = 0;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      i++;
      if (!rules.canonical) {
        // Only find the closing quote: skip escapes.
        while (i < n && text.charCodeAt(i) !== 0x22) i += text.charCodeAt(i) === 0x5c ? 2 : 1;
        i++;
        continue;
      }
      while (i < n) {
        const s = text.charCodeAt(i);
        if (s === 0x22) break;
        if (s === 0x5c /* \ */) {
          if (text.charCodeAt(i + 1) === 0x75 /* u */) {
            const u = hex4(text, i + 2);
            if (isHigh(u)) {
              // A high surrogate escape must be followed by a low surrogate escape (a pair).
              if (text.charCodeAt(i + 6) === 0x5c && text.charCodeAt(i + 7) === 0x75 && isLow(hex4(text, i + 8))) {
                i += 12;
                continue;
              }
              return { kind: "lone_surrogate" };
            }
            if (isLow(u)) return { kind: "lone_surrogate" };
            i += 6;
          } else {
            i += 2;
          }
          continue;
        }
        if (isHigh(s)) {
          if (!isLow(text.charCodeAt(i + 1))) return { kind: "lone_surrogate" };
          i += 2;
          continue;
        }
        if (isLow(s)) return { kind: "lone_surrogate" };
        i++;
      }
      i++; // the closing quote
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > maxDepth) return { kind: "too_deep" };
      i++;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
      i++;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      const start = i;
      let float = false;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === 0x2e /* . */ || d === 0x65 /* e */ || d === 0x45 /* E */ || d === 0x2b /* + */) float = true;
        else if (!(d === 0x2d || (d >= 0x30 && d <= 0x39))) break;
        i++;
      }
      if (!rules.canonical) continue;
      if (float) return { kind: "float" };
      const digits = text.slice(start, i).replace("-", "");
      // 2^53−1 has 16 digits; anything longer is out of range without a lossy Number() conversion.
      if (digits.length > 16 || Number(digits) > MAX_SAFE) return { kind: "integer_out_of_range" };
    } else {
      i++;
    }
  }
  return undefined;
}
