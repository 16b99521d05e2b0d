// The D1 index from event ID to room (schema/d1.ts `event_rooms`) that GET /_matrix/federation/v1/event/
// {eventId} needs: its path names no room. The Room DO adds its committed events here after the commit,
// batched and off the client's path (the send is answered first). A crash before a flush leaves those
// events unindexed; /event answers 404 for them, like for an event we do not have, and the asking server
// fetches them another way (get_missing_events, /state).

/** D1 allows 100 bound parameters per statement: 2 per row. */
const ROWS_PER_STATEMENT = 40;

export class EventIndexWriter {
  private pending: string[] = [];
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly db: D1Database,
    private readonly waitUntil: (p: Promise<unknown>) => void,
  ) {}

  /** Queues event IDs of `roomId` for the index; the write happens soon after, in the background. */
  add(roomId: string, eventIds: readonly string[]): void {
    if (eventIds.length === 0) return;
    for (const id of eventIds) this.pending.push(id);
    this.room = roomId;
    if (!this.flushing) {
      this.flushing = this.flush().finally(() => (this.flushing = undefined));
      this.waitUntil(this.flushing);
    }
  }

  private room = "";

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, this.pending.length);
      const statements: D1PreparedStatement[] = [];
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

/** The room of an event, from the index (null: unknown here). */
export async function roomOfEvent(db: D1Database, eventId: string): Promise<string | null> {
  const row = await db.prepare("SELECT room_id FROM event_rooms WHERE event_id = ?").bind(eventId).first<{ room_id: string }>();
  return row?.room_id ?? null;
}
