// A room's hand-over of its accepted events to queue Durable Objects, in commit order and without touching
// the commit: federation's Destination DOs (room/outbound.ts) and the application services' Appservice DOs
// (room/appservice-outbound.ts) are both fed this way.
//
// The room's `events` table is the log; a cursor (one row in `table`, a stream ordering) says up to where
// every accepted event (not rejected, not soft-failed, not an outlier) has been handed over. After a commit
// the hand-over runs outside the room's write queue (the writer never waits for it), reads rounds of
// ROUND_EVENTS events from the cursor, gives each round to the target (which puts them into its queues and
// throws if any queue failed) and moves the cursor once the round is stored. Before it starts, the room's
// alarm is armed (by the caller, `armRetry`), so a crash or a failed queue call is retried from the room's
// alarm (`retry`), with a delay doubling from RETRY_MS up to the target's maximum. A retried round may put an
// event into a queue twice: the queue ignores an event it still holds, and the receiver deduplicates by
// event ID (at least once, in order).
import type { PersistResult, RoomEngine } from "./engine.js";
import { sqlLimit } from "../sql-limit.js";

/** Events read per round (each queue gets one call per round). */
const ROUND_EVENTS = 100;
/** First retry of a failed hand-over (the room's alarm). */
const RETRY_MS = 10_000;

/** An accepted event as the hand-over reads it. `json` is the stored wire form. */
export type HandOverRow = {
  stream_ordering: number;
  event_id: string;
  type: string;
  state_key: string | null;
  sender: string;
  json: string;
  membership: string | null;
};

export interface HandOverTarget {
  /** The cursor's table (one row: `id = 1`, `position`). */
  readonly table: string;
  /** Log prefix, e.g. "federation". */
  readonly label: string;
  /** Longest delay between retries of a failing hand-over. */
  readonly maxRetryMs: number;
  /** Puts one round of events (in stream order) into the queues; throws if any queue did not store them.
   * May ask for the room's alarm at a time (`alarmAt`), set once the cursor moved past the round. */
  handOver(roomId: string, rows: HandOverRow[]): Promise<{ alarmAt?: number } | void>;
}

export class RoomHandOver {
  private chain: Promise<void> = Promise.resolve();
  private pending = 0;
  private failed = false;
  private retryMs = RETRY_MS;
  private cursorReady = false;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly engine: RoomEngine,
    private readonly target: HandOverTarget,
  ) {}

  /** Whether this instance created or found the cursor already. */
  get ready(): boolean {
    return this.cursorReady;
  }

  /** Whether the cursor exists (it is created at the first event that could be handed over). */
  hasCursor(): boolean {
    if (this.cursorReady) return true;
    this.cursorReady = this.engine.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", this.target.table).toArray().length > 0;
    return this.cursorReady;
  }

  /**
   * Creates the cursor on first use: just before the first new event of `results` (a new room: before its
   * create event), or at the latest event (the room's earlier history was never meant to be handed over).
   */
  ensureCursor(results: readonly PersistResult[]): void {
    if (this.cursorReady) return;
    this.engine.sql.exec(`CREATE TABLE IF NOT EXISTS ${this.target.table} (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      position INTEGER NOT NULL
    )`);
    const fresh = results.filter((r) => !r.duplicate).map((r) => r.streamOrdering);
    const start = fresh.length > 0 ? Math.min(...fresh) - 1 : this.engine.maxStreamOrdering();
    this.engine.sql.exec(`INSERT OR IGNORE INTO ${this.target.table} (id, position) VALUES (1, ?)`, start);
    this.cursorReady = true;
  }

  /**
   * Moves the cursor past `results` (a commit's new accepted events, in stream order) without a round, for
   * a target to whom they can go nowhere (issue 13: a round read every event's JSON and its recipients
   * after every send of a room without remote servers). Only when no hand-over is queued or running and
   * the cursor stands right before them, so that nothing still waiting is skipped; the update is part of
   * the commit's storage write (same turn). Returns whether it moved; if not, the caller kicks a round.
   */
  skipPast(results: readonly PersistResult[]): boolean {
    if (this.pending > 0 || !this.cursorReady || results.length === 0) return false;
    const first = results[0]!.streamOrdering;
    const last = results[results.length - 1]!.streamOrdering;
    if (last - first + 1 !== results.length) return false; // not one contiguous run: let a round decide
    this.engine.sql.exec(`UPDATE ${this.target.table} SET position = ? WHERE id = 1 AND position = ?`, last, first - 1);
    return this.position() === last;
  }

  /** Arms the room's alarm for a retry (before a hand-over starts: a crash from then on is retried). */
  armRetry(): Promise<void> {
    return this.armAlarm(Date.now() + this.retryMs);
  }

  /** From the room's alarm: hands over what is left (then runs `alsoDue`, other work of the target the
   * alarm is for); re-arms the alarm while a queue fails. */
  async retry(alsoDue?: () => Promise<void>): Promise<void> {
    await this.kick();
    await alsoDue?.();
    if (this.failed) {
      this.retryMs = Math.min(this.retryMs * 2, this.target.maxRetryMs);
      await this.armAlarm(Date.now() + this.retryMs);
    }
  }

  /** Something else the target hands over failed: the alarm retries with the back-off (`retry`). */
  markFailed(): void {
    this.failed = true;
  }

  /** Sets the room's alarm unless one is due earlier (room.ts sets it too; the earliest wins). */
  async armAlarm(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }

  /** Resolves when the hand-overs started so far have finished (tests, benchmarks). */
  async settled(): Promise<void> {
    while (this.pending > 0) await this.chain;
  }

  /** Serialised hand-overs: each reads from the cursor the one before left. */
  kick(): Promise<void> {
    this.pending++;
    const run = this.chain.then(() => this.handOver()).finally(() => this.pending--);
    this.chain = run;
    this.ctx.waitUntil(run);
    return run;
  }

  private async handOver(): Promise<void> {
    const room = this.engine.meta();
    if (!room) return;
    try {
      for (;;) {
        const position = this.position();
        const latest = this.engine.maxStreamOrdering();
        if (position >= latest) break;
        const rows = this.engine.sql
          .exec<HandOverRow>(
            `SELECT stream_ordering, event_id, type, state_key, sender, json, membership FROM events
             WHERE stream_ordering > ? AND stream_ordering <= ? AND rejected_reason IS NULL AND soft_failed = 0 AND outlier = 0
             ORDER BY stream_ordering LIMIT ${sqlLimit(ROUND_EVENTS)}`,
            position,
            latest,
          )
          .toArray();
        const upTo = rows.length === ROUND_EVENTS ? rows[rows.length - 1]!.stream_ordering : latest;
        const after = await this.target.handOver(room.roomId, rows);
        this.setPosition(upTo);
        if (after && after.alarmAt !== undefined) await this.armAlarm(after.alarmAt);
      }
      this.failed = false;
      this.retryMs = RETRY_MS;
    } catch (e) {
      this.failed = true;
      console.warn(`${this.target.label} hand-over failed; the alarm retries it`, room.roomId, e instanceof Error ? e.message : e);
    }
  }

  private position(): number {
    return this.engine.sql.exec<{ position: number }>(`SELECT position FROM ${this.target.table} WHERE id = 1`).one().position;
  }

  private setPosition(position: number): void {
    this.engine.sql.exec(`UPDATE ${this.target.table} SET position = ? WHERE id = 1 AND position < ?`, position, position);
  }
}

/** Puts each queue's items into it, all at once; throws if any failed (the others keep their rows). */
export async function enqueueInQueues<T>(label: string, byQueue: Map<string, T[]>, enqueue: (name: string, items: T[]) => Promise<unknown>): Promise<void> {
  const results = await Promise.allSettled([...byQueue].map(([name, items]) => enqueue(name, items)));
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed.length > 0) {
    const reason = failed[0]!.reason;
    throw new Error(`${failed.length} of ${results.length} ${label} queues failed: ${reason instanceof Error ? reason.message : String(reason)}`);
  }
}
