// MSC4140 delayed state events cancelled by a state update (`M_CANCELLED_BY_STATE_UPDATE`): a user's
// scheduled delayed state event is cancelled when the same state (type, state_key) of the room changes
// through another event before it is sent, so that it does not undo a newer change. Synapse
// (handlers/delayed_events.py `_handle_state_deltas`) does this for every current-state change: a change by
// a local user cancels the delayed events of every *other* user for that key; a change by a user of another
// server cancels everybody's. It finalises them with an error whose `org.matrix.msc4140.errcode` is
// M_CANCELLED_BY_STATE_UPDATE (newer Synapse; 1.163.2 deletes them).
//
// The delayed events live in one DelayedEventsDurableObject per user, so the room keeps a small list of
// who has scheduled a delayed state event for which key (`delayed_state_watch`, registered by that DO when
// it schedules one). After a commit that changed such a key, the room tells those users' DOs to cancel
// (in the background: the write does not wait; a crash before it is done leaves the event scheduled).
import type { Env } from "../../worker/env.js";
import type { PersistResult, RoomEngine } from "./engine.js";

const SCHEMA = `CREATE TABLE IF NOT EXISTS delayed_state_watch (
  user_id TEXT NOT NULL,
  type TEXT NOT NULL,
  state_key TEXT NOT NULL,
  PRIMARY KEY (type, state_key, user_id)
)`;
const ready = new WeakSet<RoomEngine>();
function ensureSchema(engine: RoomEngine): void {
  if (ready.has(engine)) return;
  engine.sql.exec(SCHEMA);
  ready.add(engine);
}

/** A user scheduled a delayed state event for (type, stateKey) in this room. */
export function watchDelayedState(engine: RoomEngine, userId: string, type: string, stateKey: string): void {
  ensureSchema(engine);
  engine.sql.exec("INSERT OR IGNORE INTO delayed_state_watch (user_id, type, state_key) VALUES (?, ?, ?)", userId, type, stateKey);
}

/** The users whose delayed state events a commit's state changes cancel, per changed key. */
export function watchersToCancel(engine: RoomEngine, results: readonly PersistResult[]): { userId: string; type: string; stateKey: string }[] {
  const fresh = results.filter((r) => !r.duplicate && r.rejectedReason === null && !r.softFailed);
  if (fresh.length === 0) return [];
  ensureSchema(engine);
  if (engine.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM delayed_state_watch").one().n === 0) return [];
  const out: { userId: string; type: string; stateKey: string }[] = [];
  for (const result of fresh) {
    const meta = engine.events.meta(result.eventId);
    if (!meta || meta.stateKey === null || meta.outlier) continue;
    // Only a change of the current state counts (state_deltas has a row for it), as Synapse reads deltas.
    const changed = engine.sql
      .exec("SELECT 1 FROM state_deltas WHERE stream_ordering = ? AND type = ? AND state_key = ? AND event_id = ?", meta.streamOrdering, meta.type, meta.stateKey, meta.eventId)
      .toArray().length;
    if (changed === 0) continue;
    // A local user's own change leaves their own delayed events; another server's user's change cancels all.
    const spared = engine.isLocalUser(meta.sender) ? meta.sender : "";
    const users = engine.sql
      .exec<{ user_id: string }>("SELECT user_id FROM delayed_state_watch WHERE type = ? AND state_key = ? AND user_id <> ?", meta.type, meta.stateKey, spared)
      .toArray();
    for (const u of users) out.push({ userId: u.user_id, type: meta.type, stateKey: meta.stateKey });
  }
  return out;
}

/** After a commit: tells the users' DelayedEvents DOs to cancel (room.ts runs it in the background). */
export async function cancelDelayedStateEvents(engine: RoomEngine, env: Env, results: readonly PersistResult[]): Promise<void> {
  let targets: { userId: string; type: string; stateKey: string }[];
  try {
    targets = watchersToCancel(engine, results);
  } catch (e) {
    console.warn("delayed state events: watch list unreadable", e instanceof Error ? e.message : e);
    return;
  }
  const roomId = engine.meta()?.roomId;
  if (targets.length === 0 || roomId === undefined) return;
  await Promise.all(
    targets.map(async ({ userId, type, stateKey }) => {
      try {
        const stub = env.DELAYED_EVENTS.get(env.DELAYED_EVENTS.idFromName(userId));
        const { remaining } = await stub.cancelForStateUpdate(roomId, type, stateKey);
        // Nothing scheduled for the key any more (one being sent right now is left alone): stop watching.
        if (remaining === 0) engine.sql.exec("DELETE FROM delayed_state_watch WHERE type = ? AND state_key = ? AND user_id = ?", type, stateKey, userId);
      } catch (e) {
        console.warn("delayed state events not cancelled", userId, e instanceof Error ? e.message : e);
      }
    }),
  );
}
