// State snapshots ("state groups") stored as deltas in a skip structure, so that the state at any event
// is read without replaying the room from its create event (DESIGN.md: "Big state is read as deltas").
//
// Every state group g has a parent (the state it was derived from) and a depth: parent depth + 1, a
// root has depth 0. g stores only its delta against its BASE: the ancestor at depth `d & (d - 1)` (the
// depth with its lowest set bit cleared), as in a Fenwick tree. Reading g follows base pointers to the
// root, at most popcount(d) hops (about log2 of the number of state changes on the path), merging the
// deltas so that the entry nearest to g wins. A new group's delta is the merge of the deltas on its
// parent's base chain down to (excluding) the base, plus its own changes: with one change per group that
// is at most lowbit(d) entries, so N state changes cost O(N log N) stored entries instead of the O(N^2)
// of full snapshots, and O(log N) row reads per snapshot instead of O(N) of a plain delta chain.
//
// A delta entry with a NULL event ID removes the key (a resolved state may lack a key its parent had).
// A small in-memory LRU keeps a few materialised maps (the current state above all): reading a group
// whose base chain passes through a cached group starts from that map.
import { splitStateKey, stateKey, type StateKey } from "../../protocol/pdu.js";

/** A state map as read from a group: (type, state_key) -> event ID. Shared with the cache: do not mutate. */
export type ReadonlyStateMap = ReadonlyMap<StateKey, string>;

/** Changes to apply to a parent's state: an event ID sets the key, null removes it. */
export type StateChanges = ReadonlyMap<StateKey, string | null>;

interface GroupRow {
  id: number;
  parent: number | null;
  base: number | null;
  depth: number;
}

const EMPTY: ReadonlyStateMap = new Map();

/** The depth of a group's base: clear the lowest set bit. */
export const baseDepth = (depth: number): number => depth & (depth - 1);

export class StateGroupStore {
  private readonly cache = new Map<number, ReadonlyStateMap>();

  constructor(
    private readonly sql: SqlStorage,
    private readonly cacheSize = 8,
  ) {}

  private row(id: number): GroupRow {
    const row = this.sql
      .exec<{ id: number; parent: number | null; base: number | null; depth: number }>(
        "SELECT id, parent, base, depth FROM state_groups WHERE id = ?",
        id,
      )
      .toArray()[0];
    if (!row) throw new Error(`unknown state group ${id}`);
    return row;
  }

  /** The stored delta of one group. */
  private delta(id: number): { key: StateKey; eventId: string | null }[] {
    const out: { key: StateKey; eventId: string | null }[] = [];
    for (const r of this.sql.exec<{ type: string; state_key: string; event_id: string | null }>(
      "SELECT type, state_key, event_id FROM state_group_entries WHERE state_group = ?",
      id,
    )) {
      out.push({ key: stateKey(r.type, r.state_key), eventId: r.event_id });
    }
    return out;
  }

  /**
   * Stores a new state group: `parent`'s state with `changes` applied (parent null: the changes are the
   * whole state). Returns its ID. Call inside the storage transaction of the event it belongs to.
   */
  create(parent: number | null, changes: StateChanges): number {
    let depth = 0;
    let base: number | null = null;
    const delta = new Map<StateKey, string | null>();
    if (parent !== null) {
      const p = this.row(parent);
      depth = p.depth + 1;
      const target = baseDepth(depth);
      // Walk the parent's base chain down to the group at depth `target` (it is on that chain: the
      // target is the parent's depth with trailing bits cleared). Nearer groups win.
      let node: GroupRow = p;
      while (node.depth > target) {
        for (const { key, eventId } of this.delta(node.id)) if (!delta.has(key)) delta.set(key, eventId);
        if (node.base === null) throw new Error(`state group ${node.id} at depth ${node.depth} has no base`);
        node = this.row(node.base);
      }
      base = node.id;
    }
    for (const [key, eventId] of changes) delta.set(key, eventId);
    if (base === null) for (const [key, eventId] of delta) if (eventId === null) delta.delete(key);

    const id = this.sql
      .exec<{ id: number }>("INSERT INTO state_groups (parent, base, depth) VALUES (?, ?, ?) RETURNING id", parent, base, depth)
      .one().id;
    for (const [key, eventId] of delta) {
      const [type, sk] = splitStateKey(key);
      this.sql.exec("INSERT INTO state_group_entries (state_group, type, state_key, event_id) VALUES (?, ?, ?, ?)", id, type, sk, eventId);
    }
    // The new state is usually read next (it is the state after a new event): derive it from a cached
    // parent when possible instead of walking the chain again.
    if (parent !== null) {
      const parentState = this.cache.get(parent);
      if (parentState) {
        const state = new Map(parentState);
        for (const [key, eventId] of changes) {
          if (eventId === null) state.delete(key);
          else state.set(key, eventId);
        }
        this.remember(id, state);
      }
    }
    return id;
  }

  /** A group's state if it is in the cache (no read, the cache order unchanged). */
  cached(group: number | null): ReadonlyStateMap | undefined {
    return group === null ? EMPTY : this.cache.get(group);
  }

  /** The full state of a group (null: the empty state before the create event). */
  load(group: number | null): ReadonlyStateMap {
    if (group === null) return EMPTY;
    const cached = this.cache.get(group);
    if (cached) {
      this.remember(group, cached);
      return cached;
    }
    // Collect the base chain up to the root or the first cached group.
    const chain: number[] = [];
    let node: number | null = group;
    let start: ReadonlyStateMap = EMPTY;
    while (node !== null) {
      const hit = this.cache.get(node);
      if (hit) {
        start = hit;
        break;
      }
      chain.push(node);
      node = this.row(node).base;
    }
    const state = new Map(start);
    // Apply from the oldest delta to the newest, so the entry nearest to `group` wins.
    for (let i = chain.length - 1; i >= 0; i--) {
      for (const { key, eventId } of this.delta(chain[i]!)) {
        if (eventId === null) state.delete(key);
        else state.set(key, eventId);
      }
    }
    this.remember(group, state);
    return state;
  }

  /** One entry of a group's state without materialising it (the nearest delta that names the key wins). */
  lookup(group: number | null, type: string, sk: string): string | undefined {
    if (group === null) return undefined;
    const cached = this.cache.get(group);
    if (cached) return cached.get(stateKey(type, sk));
    let node: number | null = group;
    while (node !== null) {
      const hit = this.cache.get(node);
      if (hit) return hit.get(stateKey(type, sk));
      const r = this.sql
        .exec<{ event_id: string | null }>(
          "SELECT event_id FROM state_group_entries WHERE state_group = ? AND type = ? AND state_key = ?",
          node,
          type,
          sk,
        )
        .toArray()[0];
      if (r) return r.event_id ?? undefined;
      node = this.row(node).base;
    }
    return undefined;
  }

  /** Number of groups read to materialise `group` without the cache (the base chain length). */
  chainLength(group: number): number {
    let hops = 0;
    let node: number | null = group;
    while (node !== null) {
      hops += 1;
      node = this.row(node).base;
    }
    return hops;
  }

  /** Number of delta entries stored for `group`. */
  deltaSize(group: number): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM state_group_entries WHERE state_group = ?", group).one().n;
  }

  depthOf(group: number): number {
    return this.row(group).depth;
  }

  /** Drops the in-memory cache (tests; after a failed transaction rolled back groups it had cached). */
  clearCache(): void {
    this.cache.clear();
  }

  /** Forgets cached groups with IDs from `firstId` on (their rows were rolled back). */
  forgetFrom(firstId: number): void {
    for (const id of [...this.cache.keys()]) if (id >= firstId) this.cache.delete(id);
  }

  private remember(id: number, state: ReadonlyStateMap): void {
    this.cache.delete(id);
    this.cache.set(id, state);
    while (this.cache.size > this.cacheSize) {
      const oldest = this.cache.keys().next().value as number;
      this.cache.delete(oldest);
    }
  }
}

/** The changes that turn state `from` into state `to` (null for removed keys). */
export function diffStates(from: ReadonlyStateMap, to: ReadonlyStateMap): Map<StateKey, string | null> {
  const changes = new Map<StateKey, string | null>();
  for (const [key, eventId] of to) if (from.get(key) !== eventId) changes.set(key, eventId);
  for (const key of from.keys()) if (!to.has(key)) changes.set(key, null);
  return changes;
}
