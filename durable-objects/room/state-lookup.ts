// A few entries of the state at a state group in one query (for history visibility: the
// m.room.history_visibility event and the reader's membership at each event of a page).
//
// state-groups.ts stores each group as a delta against its base group (a skip list: the base chain of a
// group has O(log N) groups), and `StateGroupStore.lookup` walks that chain one key at a time with two
// queries per hop. This reads the same tables for several keys at once: one recursive query follows the
// base chain and joins the delta entries of the wanted keys; the entry of the group nearest to the start
// wins, and a NULL event ID there means the key is not in the state.
import { stateKey, type StateKey } from "../../protocol/pdu.js";

/** The event ID of each (type, state_key) in the state of `group` (null: the empty state before the
 * create event), or undefined where the key is not in the state. */
export function lookupStateKeys(sql: SqlStorage, group: number | null, keys: readonly (readonly [string, string])[]): (string | undefined)[] {
  if (group === null || keys.length === 0) return keys.map(() => undefined);
  const wanted = keys.map(() => "(e.type = ? AND e.state_key = ?)").join(" OR ");
  const found = new Map<StateKey, string | null>();
  for (const r of sql.exec<{ type: string; state_key: string; event_id: string | null }>(
    `WITH RECURSIVE chain(id, n) AS (
       SELECT ?, 0
       UNION ALL SELECT g.base, c.n + 1 FROM state_groups g JOIN chain c ON g.id = c.id WHERE g.base IS NOT NULL
     )
     SELECT e.type, e.state_key, e.event_id FROM chain c JOIN state_group_entries e ON e.state_group = c.id
     WHERE ${wanted} ORDER BY c.n`,
    group,
    ...keys.flat(),
  )) {
    const k = stateKey(r.type, r.state_key);
    if (!found.has(k)) found.set(k, r.event_id);
  }
  return keys.map(([type, sk]) => found.get(stateKey(type, sk)) ?? undefined);
}
