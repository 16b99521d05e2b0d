// The D1 index from event ID to room (schema/d1.ts `event_rooms`) that GET /_matrix/federation/v1/event/
// {eventId} needs: its path names no room. The Room DO adds its committed events here after the commit,
// batched and off the client's path (the send is answered first). A crash before a flush leaves those
// events unindexed; /event answers 404 for them, like for an event we do not have, and the asking server
// fetches them another way (get_missing_events, /state).
//
// The same background write keeps the room's row of `room_activity` (schema/d1.ts) up to date: its newest
// stream ordering and bump time, which a User DO that was not listening reads to tell which of its rooms
// have news without asking each Room DO (docs/fan-out.md, "Many rooms").
//
// One D1 write per commit cost as much as the rest of a send (issue 13: locally a D1 batch is a round trip
// to another isolate and a transaction there; on Cloudflare a billed write to the primary). So a room writes
// at most once per FLUSH_INTERVAL_MS: commits within the interval after a write wait for its end and go
// together. A commit after a quiet interval waits FIRST_WRITE_DELAY_MS: locally D1 is a Durable Object on
// the same thread as the rooms and User DOs, and a write (its transaction and fsync) started in the commit's
// own turn ran ahead of the push that wakes the room's waiting /syncs. Events that go to other servers are
// written without that delay (`soon`), as before: a server that receives one may ask for it by ID. The index and the hint lag a commit
// by at most FLUSH_INTERVAL_MS (plus the write itself); `settled()` writes what is waiting at once.

/** A room's newest activity after a commit: the latest stream ordering and, if the commit had one, the
 * time of its newest event of a type that bumps the room in sliding sync's lists. */
export interface RoomActivity {
  streamOrdering: number;
  bumpTs: number | null;
}

/** D1 allows 100 bound parameters per statement: 2 per row. */
const ROWS_PER_STATEMENT = 40;
/** The least time between the starts of two writes of one room (see above). */
export const FLUSH_INTERVAL_MS = 50;
/** How long the first commit after a quiet interval waits (see above): longer than a wake takes locally. */
export const FIRST_WRITE_DELAY_MS = 30;

/** The writer's clock: real time, or a test's. `sleep` can be cut short (`settled()`). */
export interface IndexClock {
  now(): number;
  sleep(ms: number): { done: Promise<void>; wake(): void };
}

const realClock: IndexClock = {
  now: () => Date.now(),
  sleep(ms) {
    let wake = () => {};
    const done = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => (clearTimeout(timer), resolve());
    });
    return { done, wake };
  },
};

export class EventIndexWriter {
  private pending: string[] = [];
  private activity: RoomActivity | undefined;
  private flushing: Promise<void> | undefined;
  /** When the last write started (ms), and the wake-up of a flush waiting for its interval to end. */
  private lastWriteAt = -Infinity;
  private wakeEarly: (() => void) | undefined;
  /** Set while `settled()` waits: writes go out without waiting for the interval. */
  private urgent = false;

  constructor(
    private readonly db: D1Database,
    private readonly waitUntil: (p: Promise<unknown>) => void,
    private readonly clock: IndexClock = realClock,
  ) {}

  /** Queues event IDs of `roomId` for the index; the write happens soon after, in the background.
   * `soon`: without FIRST_WRITE_DELAY_MS (events other servers receive now and may ask for by ID). */
  add(roomId: string, eventIds: readonly string[], activity?: RoomActivity, soon = false): void {
    if (eventIds.length === 0 && activity === undefined) return;
    for (const id of eventIds) this.pending.push(id);
    if (activity) {
      const old = this.activity;
      this.activity = {
        streamOrdering: Math.max(activity.streamOrdering, old?.streamOrdering ?? 0),
        bumpTs: activity.bumpTs === null ? (old?.bumpTs ?? null) : Math.max(activity.bumpTs, old?.bumpTs ?? 0),
      };
    }
    this.room = roomId;
    if (soon && !this.soon) {
      this.soon = true;
      this.wakeEarly?.();
    }
    if (!this.flushing) {
      this.flushing = this.flush().finally(() => (this.flushing = undefined));
      this.waitUntil(this.flushing);
    }
  }

  private room = "";

  /** Writes what is waiting now (no interval) and resolves when every write started so far is done: before
   * the room's rows are deleted (purge), so that no late write brings them back. */
  async settled(): Promise<void> {
    this.urgent = true;
    try {
      this.wakeEarly?.();
      while (this.flushing) await this.flushing;
    } finally {
      this.urgent = false;
    }
  }

  /** Set by a commit whose events leave this server: the next write skips the first delay. */
  private soon = false;

  private async flush(): Promise<void> {
    const firstAt = this.clock.now();
    while (this.pending.length > 0 || this.activity !== undefined) {
      // Waited again after an early wake-up: a `soon` commit ends the first delay, not the interval.
      for (;;) {
        const wait = Math.max(this.lastWriteAt + FLUSH_INTERVAL_MS, this.soon ? -Infinity : firstAt + FIRST_WRITE_DELAY_MS) - this.clock.now();
        if (wait <= 0 || this.urgent) break;
        const sleep = this.clock.sleep(wait);
        this.wakeEarly = sleep.wake;
        await sleep.done;
        this.wakeEarly = undefined;
      }
      this.lastWriteAt = this.clock.now();
      this.soon = false;
      const batch = this.pending.splice(0, this.pending.length);
      const activity = this.activity;
      this.activity = undefined;
      const statements: D1PreparedStatement[] = [];
      if (activity) {
        // Never backwards: two flushes of one room may land out of order after a restart.
        statements.push(
          this.db
            .prepare(
              `INSERT INTO room_activity (room_id, stream_ordering, bump_ts) VALUES (?, ?, ?)
               ON CONFLICT (room_id) DO UPDATE SET stream_ordering = MAX(stream_ordering, excluded.stream_ordering),
                 bump_ts = CASE WHEN excluded.bump_ts IS NULL THEN bump_ts ELSE MAX(COALESCE(bump_ts, 0), excluded.bump_ts) END`,
            )
            .bind(this.room, activity.streamOrdering, activity.bumpTs),
        );
      }
      for (let i = 0; i < batch.length; i += ROWS_PER_STATEMENT) {
        const rows = batch.slice(i, i + ROWS_PER_STATEMENT);
        statements.push(
          this.db.prepare(`INSERT OR IGNORE INTO event_rooms (event_id, room_id) VALUES ${rows.map(() => "(?, ?)").join(", ")}`).bind(...rows.flatMap((id) => [id, this.room])),
        );
      }
      try {
        await this.db.batch(statements);
      } catch (e) {
        console.warn("event index write failed", e instanceof Error ? e.message : e);
      }
    }
  }
}

/** The rooms' activity rows (a hint: see above), for up to a few thousand rooms in one query. */
export async function roomActivityOf(db: D1Database, roomIds: readonly string[]): Promise<Map<string, RoomActivity>> {
  const out = new Map<string, RoomActivity>();
  if (roomIds.length === 0) return out;
  const { results } = await db
    .prepare("SELECT room_id, stream_ordering, bump_ts FROM room_activity WHERE room_id IN (SELECT value FROM json_each(?))")
    .bind(JSON.stringify(roomIds))
    .all<{ room_id: string; stream_ordering: number; bump_ts: number | null }>();
  for (const r of results) out.set(r.room_id, { streamOrdering: r.stream_ordering, bumpTs: r.bump_ts });
  return out;
}

/** The room of an event, from the index (null: unknown here). */
export async function roomOfEvent(db: D1Database, eventId: string): Promise<string | null> {
  const row = await db.prepare("SELECT room_id FROM event_rooms WHERE event_id = ?").bind(eventId).first<{ room_id: string }>();
  return row?.room_id ?? null;
}
