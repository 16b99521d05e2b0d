// Gaps in a room's timeline (as Synapse's `timeline_gaps`): an event received over federation whose prev
// events this server could not fetch is stored after a hole in the DAG. The stream ordering of such an
// event is recorded, and an incremental /sync whose range holds one shows only the events from the gap on,
// with `limited: true`, so that a client paginates (and the server backfills) instead of showing the events
// on both sides of the hole as one continuous timeline (Complement's TestSyncTimelineGap).
import type { RoomEngine } from "./engine.js";

/** The table (room/schema.ts runs it with the room's other DDL). */
export const TIMELINE_GAPS_SCHEMA = `
  CREATE TABLE IF NOT EXISTS timeline_gaps (
    stream_ordering INTEGER PRIMARY KEY
  );
`;

/** Records that the event at `streamOrdering` follows a gap (inside the event's commit). */
export function recordTimelineGap(sql: SqlStorage, streamOrdering: number): void {
  sql.exec("INSERT OR IGNORE INTO timeline_gaps (stream_ordering) VALUES (?)", streamOrdering);
}

/** The newest gap with stream ordering in (after, upto], if any. */
export function newestTimelineGap(engine: RoomEngine, after: number, upto: number): number | undefined {
  const row = engine.sql.exec<{ o: number | null }>("SELECT MAX(stream_ordering) AS o FROM timeline_gaps WHERE stream_ordering > ? AND stream_ordering <= ?", after, upto).one();
  return row.o ?? undefined;
}
