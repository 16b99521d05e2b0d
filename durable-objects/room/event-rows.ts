// The columns of the `events` table (schema.ts) that the client read paths need without parsing the PDU:
// ordering, identity, the state groups that give the state around the event, and the membership copy of
// member events. The history-visibility check (history-visibility.ts) works on these rows alone.
import type { RoomEngine } from "./engine.js";

// A type alias (not an interface) so that it satisfies SqlStorage's row constraint.
export type EventRow = {
  stream_ordering: number;
  event_id: string;
  type: string;
  state_key: string | null;
  sender: string;
  origin_server_ts: number;
  state_group_before: number | null;
  state_group_after: number | null;
  /** State events: the event this one replaced at its key (the state before it). */
  replaces_state: string | null;
  /** Member events: `content.membership`. */
  membership: string | null;
};

export const EVENT_ROW_COLUMNS =
  "stream_ordering, event_id, type, state_key, sender, origin_server_ts, state_group_before, state_group_after, replaces_state, membership";

/** Events clients may be shown at all: accepted (not rejected, not soft-failed) and placed in the DAG with
 * their state (not outliers). Spec: Server-Server API, "Soft failure": soft-failed events are not served. */
export const ACCEPTED = "outlier = 0 AND rejected_reason IS NULL AND soft_failed = 0";

/** SQLite's bound-parameter limit is low in Durable Objects; IN lists are chunked below it. */
export const MAX_PARAMS = 90;

/** One accepted event's row, or undefined. */
export function acceptedRow(engine: RoomEngine, eventId: string): EventRow | undefined {
  return engine.sql.exec<EventRow>(`SELECT ${EVENT_ROW_COLUMNS} FROM events WHERE event_id = ? AND ${ACCEPTED}`, eventId).toArray()[0];
}

/** The latest accepted event with stream ordering <= `ordering`, or undefined before the first event. */
export function latestRowAtOrBefore(engine: RoomEngine, ordering: number): EventRow | undefined {
  return engine.sql
    .exec<EventRow>(`SELECT ${EVENT_ROW_COLUMNS} FROM events WHERE stream_ordering <= ? AND ${ACCEPTED} ORDER BY stream_ordering DESC LIMIT 1`, ordering)
    .toArray()[0];
}

/** Accepted rows of the given event IDs (unknown IDs are skipped), in no particular order. */
export function acceptedRows(engine: RoomEngine, eventIds: readonly string[]): EventRow[] {
  const out: EventRow[] = [];
  for (let i = 0; i < eventIds.length; i += MAX_PARAMS) {
    const chunk = eventIds.slice(i, i + MAX_PARAMS);
    out.push(
      ...engine.sql
        .exec<EventRow>(`SELECT ${EVENT_ROW_COLUMNS} FROM events WHERE event_id IN (${chunk.map(() => "?").join(",")}) AND ${ACCEPTED}`, ...chunk)
        .toArray(),
    );
  }
  return out;
}
