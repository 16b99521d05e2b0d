// LIMIT clauses of hot SQLite statements, written as literals instead of bound parameters.
//
// SQLite (3.47, the version in workerd) lets the value of a bound LIMIT shape the query plan
// (sqlite3ExprIsInteger marks the parameter in the statement's `expmask`), and binding a marked parameter
// expires the statement: every run of a `... LIMIT ?` statement is prepared twice, once by the
// statement cache and once more at its first step (sqlite3Reprepare). Profiled on an initial /sync of a
// user in 1,000 rooms, those second preparations of the timeline read and the sticky-event read were
// about 4% of all CPU. A literal limit is part of the statement's text: one preparation per distinct
// value (the limits used are a handful of constants), reused from workerd's statement cache.

/** `n` as a LIMIT literal: a non-negative integer (SQLite reads a negative LIMIT as "no limit", which no
 * caller means); NaN is 0, Infinity the largest safe integer. */
export function sqlLimit(n: number): string {
  if (Number.isNaN(n) || n <= 0) return "0";
  return String(Math.min(Math.floor(n), Number.MAX_SAFE_INTEGER));
}
