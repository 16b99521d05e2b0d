// The columns of the `events` table (schema.ts) that the client read paths need: ordering, identity, the
// state groups that give the state around the event, the membership copy of member events, and the stored
// JSON. The history-visibility check (history-visibility.ts) works on these rows alone, and `formatRows`
// turns them into client events without looking each event up again by ID: a page of 50 is one range
// query on the primary key plus one query for transaction IDs (the 100,000-event benchmark showed the
// per-event look-ups by event ID to dominate a page once the table no longer stays in memory).
import type { IdentifiedPdu, Pdu } from "../../protocol/pdu.js";
import { toClientEvent, type ClientEvent, type RedactionClientEvent } from "./client-event.js";
import type { RoomEngine } from "./engine.js";
import type { VisibilityChecker } from "./history-visibility.js";
import { clientEvents, type Reader } from "./reads.js";

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
  /** The redaction that redacted this event, if any (then `json` is the redacted form). */
  redacted_because: string | null;
  /** The stored PDU (wire form). */
  json: string;
};

export const EVENT_ROW_COLUMNS =
  "stream_ordering, event_id, type, state_key, sender, origin_server_ts, state_group_before, state_group_after, replaces_state, membership, redacted_because, json";

/** EVENT_ROW_COLUMNS qualified by a table alias (for joins). */
export const eventRowColumns = (alias: string): string =>
  EVENT_ROW_COLUMNS.split(", ")
    .map((c) => `${alias}.${c}`)
    .join(", ");

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

/** Rows of the given event IDs whatever their status (state maps may hold outliers), keyed by event ID. */
export function rowsByEventId(engine: RoomEngine, eventIds: readonly string[]): Map<string, EventRow> {
  const out = new Map<string, EventRow>();
  for (let i = 0; i < eventIds.length; i += MAX_PARAMS) {
    const chunk = eventIds.slice(i, i + MAX_PARAMS);
    for (const r of engine.sql.exec<EventRow>(`SELECT ${EVENT_ROW_COLUMNS} FROM events WHERE event_id IN (${chunk.map(() => "?").join(",")})`, ...chunk)) {
      out.set(r.event_id, r);
    }
  }
  return out;
}

/** State events by ID in the client format, in the given order (one query per 90 events). */
export function formatStateEvents(engine: RoomEngine, eventIds: readonly string[], reader: Reader, now = Date.now()): ClientEvent[] {
  const rows = rowsByEventId(engine, eventIds);
  const ordered: EventRow[] = [];
  for (const id of eventIds) {
    const row = rows.get(id);
    if (row) ordered.push(row);
  }
  return formatRows(engine, ordered, reader, now);
}

/** The row's PDU with its event ID (the stored, possibly redacted, form). */
export function pduOf(row: EventRow): IdentifiedPdu {
  return { ...(JSON.parse(row.json) as Pdu), event_id: row.event_id } as IdentifiedPdu;
}

/**
 * Rows in the client format for `reader` (reads.ts `clientEvents` does the same per event ID): with
 * `unsigned.transaction_id` for the reader's own device, `redacted_because` and the replaced state.
 */
export function formatRows(
  engine: RoomEngine,
  rows: readonly EventRow[],
  reader: Reader,
  now = Date.now(),
  /** Timeline reads: annotates each event with the reader's membership at it (MSC4115). */
  membership?: Pick<VisibilityChecker, "membershipAt">,
): ClientEvent[] {
  const meta = engine.meta();
  if (!meta || rows.length === 0) return [];
  const txnIds = new Map<string, string>();
  if (reader.deviceId !== undefined) {
    const own = rows.filter((r) => r.sender === reader.userId).map((r) => r.event_id);
    for (let i = 0; i < own.length; i += MAX_PARAMS) {
      const chunk = own.slice(i, i + MAX_PARAMS);
      for (const t of engine.sql.exec<{ event_id: string; txn_id: string }>(
        `SELECT event_id, txn_id FROM txn_ids WHERE user_id = ? AND device_id = ? AND event_id IN (${chunk.map(() => "?").join(",")})`,
        reader.userId,
        reader.deviceId,
        ...chunk,
      )) {
        txnIds.set(t.event_id, t.txn_id);
      }
    }
  }
  const { serverDomainOf, accountNameOf } = engine.keyIdentity();
  return rows.map((row) => {
    let redactedBecause: RedactionClientEvent | undefined;
    if (row.redacted_because !== null) {
      const redaction = clientEvents(engine, [row.redacted_because], reader, now)[0];
      if (redaction) {
        // No nesting: a redaction inside `redacted_because` carries no `redacted_because` of its own.
        const { redacted_because: _nested, ...unsigned } = redaction.unsigned ?? {};
        redactedBecause = { ...redaction, unsigned };
      }
    }
    const replacedState = row.replaces_state === null ? undefined : engine.events.pdu(row.replaces_state);
    return toClientEvent(pduOf(row), { roomId: meta.roomId, rules: meta.rules, now, transactionId: txnIds.get(row.event_id), redactedBecause, replacedState, serverDomainOf, accountNameOf, membership: membership?.membershipAt(row) });
  });
}
