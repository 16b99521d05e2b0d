// Ordering events by their auth edges (spec: Server-Server API, "Authorization rules": an event is checked
// against its auth events, so those must be checked first). Used when a batch of events arrives together:
// the state and auth chain of a send_join answer, the auth chain of an event after a gap.
import { authEventIds, type Pdu } from "./pdu.js";
import { MinHeap } from "./state-res.js";

/**
 * The event IDs of `events` with every event after the auth events it references within the batch
 * (references outside the batch are taken as already known). Among events that are ready at the same
 * time, lower depth comes first, then the event ID, so the order does not depend on the input order.
 * Events in an auth cycle (which no valid room has) come last, in the same tie-break order.
 */
export function authOrder(events: ReadonlyMap<string, Pdu>): string[] {
  const waitingOn = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const [id, pdu] of events) {
    let n = 0;
    for (const authId of new Set(authEventIds(pdu))) {
      if (!events.has(authId) || authId === id) continue;
      n += 1;
      const list = dependents.get(authId);
      if (list) list.push(id);
      else dependents.set(authId, [id]);
    }
    waitingOn.set(id, n);
  }
  const before = (a: string, b: string): number => {
    const da = events.get(a)!.depth;
    const db = events.get(b)!.depth;
    if (da !== db) return da < db ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  };
  const ready = new MinHeap<string>(before);
  for (const [id, n] of waitingOn) if (n === 0) ready.push(id);
  const out: string[] = [];
  for (let id = ready.pop(); id !== undefined; id = ready.pop()) {
    out.push(id);
    for (const next of dependents.get(id) ?? []) {
      const n = waitingOn.get(next)! - 1;
      waitingOn.set(next, n);
      if (n === 0) ready.push(next);
    }
  }
  if (out.length < events.size) {
    const placed = new Set(out);
    out.push(...[...events.keys()].filter((id) => !placed.has(id)).sort(before));
  }
  return out;
}

