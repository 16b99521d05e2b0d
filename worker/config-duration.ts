// Durations in configuration, written as Synapse writes them (`parse_duration`): a bare number is
// milliseconds, or a number with a unit `ms`, `s`, `m`, `h`, `d`, `w` or `y` (e.g. "1h", "86400000").

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000, y: 31_536_000_000 };

/** The duration in ms; `fallback` when unset, and (with a warning) when malformed or not positive. */
export function parseDurationMs(raw: string | undefined, fallback: number, name: string): number {
  if (raw === undefined || raw.trim() === "") return fallback;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*$/.exec(raw);
  const ms = m ? Math.floor(Number(m[1]) * UNIT_MS[m[2] ?? "ms"]!) : NaN;
  if (!Number.isSafeInteger(ms) || ms <= 0) {
    console.warn(`ignoring malformed duration ${name}=${JSON.stringify(raw)}`);
    return fallback;
  }
  return ms;
}
