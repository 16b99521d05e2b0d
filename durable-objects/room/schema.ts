// The Room DO's SQLite schema (DESIGN.md, "Who owns what": a room's PDUs, DAG edges, forward
// extremities, state snapshots, rejected/soft-failed flags, per-room stream order, local txn IDs).
//
// Tables:
//   room_meta            one row: room ID, room version, create event ID, current state group.
//   events               every PDU the room knows, in per-room stream order (`stream_ordering`).
//                        `json` is the full PDU as stored (the redacted form once a redaction applies).
//                        `state_group_before` / `state_group_after` name the state before and after the
//                        event (equal for non-state and rejected events). Relation columns are filled from
//                        `content["m.relates_to"]` for /relations and /threads.
//   event_edges          prev_events edges (event -> prev event).
//   auth_edges           auth_events edges (event -> auth event).
//   forward_extremities  events with no accepted successor: the prev_events of the next local event.
//   txn_ids              (user, device, txn ID) -> event ID: a retried PUT returns the first event.
//   current_state        (type, state_key) -> event ID of the room's current state; `membership` is
//                        copied for m.room.member rows so member lists are one indexed query.
//   state_deltas         the log of current-state changes, keyed by the stream ordering of the event
//                        that caused them: "state change between two stream positions" is one range query.
//   state_groups         state snapshots as a skip list of deltas (see state-groups.ts).
//   state_group_entries  the delta of each state group against its base group; NULL event_id removes a key.
//   fan_out              one row: `delivered_upto`, the stream ordering up to which every event has been
//                        handed to its recipients (pushed, or put into the outbox). Events after it are
//                        delivered after the commit or, after a crash, from alarm() (fan-out.ts).
//   listeners            local members whose User DOs asked to be pushed every event (their user syncs):
//                        `since` is the ordering after which every event is pushed to them, `expires_at`
//                        the end of the lease (ms). Everyone else reads the room's events when their user
//                        syncs (docs/fan-out.md).
//   outbox               deliveries to one user's User DO that failed (or wait behind one that failed),
//                        retried from alarm() and deleted once delivered.
//   forgotten            users who forgot the room (POST /forget); cleared when they join again.
//   out_of_band_members  invites (and their local rejections) of local users to rooms this server is not in:
//                        the membership event (stored as an outlier) and the stripped state the inviting
//                        server sent, which is all /sync can show of such a room.
//   event_search         the FTS5 full-text index of POST /search (search-index.ts): rowid = stream ordering.
//   search_backlog       the range of events stored before the index existed, indexed on the first search.
//   timeline_gaps        stream orderings of events stored after a hole in the DAG (timeline-gaps.ts): an
//                        incremental /sync over one is limited to the events after it.
//   receipts_changed     when each receipt last changed (the room's head then), for catch-ups (ephemeral.ts).
//   receipts             the latest receipt per (type, user, thread) (ephemeral.ts): public ones are shown to
//                        members, m.read.private only to its user. Part of the schema so that a read (every room
//                        of an initial /sync) runs no DDL.
//   verified_server_domains  MSC4345: server key -> the domain whose key/v3 document lists it, and when
//                        that was checked (server-domains.ts); `unsigned.server_domain` comes from here.
import { createSearchSchema, SEARCH_SCHEMA } from "./search-index.js";
import { recordSchemaFingerprint, schemaFingerprint, storedSchemaFingerprint } from "../schema-fingerprint.js";
import { SERVER_DOMAINS_SCHEMA } from "./server-domains.js";
import { TIMELINE_GAPS_SCHEMA } from "./timeline-gaps.js";

export const ROOM_SCHEMA = `
  CREATE TABLE IF NOT EXISTS room_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    room_id TEXT NOT NULL,
    room_version TEXT NOT NULL,
    create_event_id TEXT,
    current_state_group INTEGER
  );

  CREATE TABLE IF NOT EXISTS events (
    stream_ordering INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    depth INTEGER NOT NULL,
    json TEXT NOT NULL,
    rejected_reason TEXT,
    soft_failed INTEGER NOT NULL DEFAULT 0,
    outlier INTEGER NOT NULL DEFAULT 0,
    state_group_before INTEGER,
    state_group_after INTEGER,
    replaces_state TEXT,
    redacts TEXT,
    redacted_because TEXT,
    rel_type TEXT,
    relates_to TEXT,
    thread_root TEXT,
    membership TEXT
  );
  CREATE INDEX IF NOT EXISTS events_by_type ON events (type, state_key);
  CREATE INDEX IF NOT EXISTS events_by_sender ON events (sender);
  CREATE INDEX IF NOT EXISTS events_by_relates_to ON events (relates_to, rel_type);
  CREATE INDEX IF NOT EXISTS events_by_thread_root ON events (thread_root);
  CREATE INDEX IF NOT EXISTS events_by_redacts ON events (redacts);
  CREATE INDEX IF NOT EXISTS events_by_depth ON events (depth);
  CREATE INDEX IF NOT EXISTS events_by_ts ON events (origin_server_ts);
  -- MSC4354 sticky events (sync-reads.ts, sticky-outbound.ts): queries repeat this WHERE term to use it.
  CREATE INDEX IF NOT EXISTS events_sticky ON events (stream_ordering) WHERE instr(json, '"msc4354_sticky"') > 0;

  CREATE TABLE IF NOT EXISTS event_edges (
    event_id TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
  );
  CREATE INDEX IF NOT EXISTS event_edges_by_prev ON event_edges (prev_event_id);

  CREATE TABLE IF NOT EXISTS auth_edges (
    event_id TEXT NOT NULL,
    auth_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_event_id)
  );

  CREATE TABLE IF NOT EXISTS forward_extremities (
    event_id TEXT PRIMARY KEY
  );

  CREATE TABLE IF NOT EXISTS txn_ids (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
  );
  CREATE INDEX IF NOT EXISTS txn_ids_by_event ON txn_ids (event_id);

  CREATE TABLE IF NOT EXISTS current_state (
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    membership TEXT,
    PRIMARY KEY (type, state_key)
  );
  -- By membership, in stream order: member lists and counts, and a nameless room's heroes (the first few
  -- members by stream ordering) read a few rows instead of every member (room/sync-reads.ts roomSummary).
  DROP INDEX IF EXISTS current_state_by_membership;
  CREATE INDEX IF NOT EXISTS current_state_by_membership_order ON current_state (membership, stream_ordering, state_key) WHERE membership IS NOT NULL;

  CREATE TABLE IF NOT EXISTS state_deltas (
    stream_ordering INTEGER NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT,
    prev_event_id TEXT,
    PRIMARY KEY (stream_ordering, type, state_key)
  );

  CREATE TABLE IF NOT EXISTS state_groups (
    id INTEGER PRIMARY KEY,
    parent INTEGER,
    base INTEGER,
    depth INTEGER NOT NULL
  );

  CREATE TABLE IF NOT EXISTS state_group_entries (
    state_group INTEGER NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT,
    PRIMARY KEY (state_group, type, state_key)
  );

  CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
  );

  CREATE TABLE IF NOT EXISTS fan_out (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    delivered_upto INTEGER NOT NULL
  );
  -- A room stored before the fan-out cursor existed had written its notifications as outbox rows.
  INSERT OR IGNORE INTO fan_out (id, delivered_upto) VALUES (1, (SELECT COALESCE(MAX(stream_ordering), 0) FROM events));

  CREATE TABLE IF NOT EXISTS listeners (
    user_id TEXT PRIMARY KEY,
    since INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  );

  CREATE TABLE IF NOT EXISTS forgotten (
    user_id TEXT PRIMARY KEY
  );

  CREATE TABLE IF NOT EXISTS receipts (
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (receipt_type, user_id, thread_id)
  );

  -- When each receipt last changed, as the room's newest stream ordering then: a catch-up of a room that
  -- pushes receipts to its listeners only (ephemeral.ts) carries those that changed since the member's
  -- position. A table of its own, so that rooms from before it need no column upgrade.
  CREATE TABLE IF NOT EXISTS receipts_changed (
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (receipt_type, user_id, thread_id)
  );
  CREATE INDEX IF NOT EXISTS receipts_changed_at ON receipts_changed (at);

  CREATE TABLE IF NOT EXISTS out_of_band_members (
    user_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    stripped_state TEXT NOT NULL
  );
`;

/** The fingerprint of all the DDL createRoomSchema runs (durable-objects/schema-fingerprint.ts). */
const ROOM_SCHEMA_FINGERPRINT = schemaFingerprint(ROOM_SCHEMA + SERVER_DOMAINS_SCHEMA + TIMELINE_GAPS_SCHEMA + SEARCH_SCHEMA);

/** Creates the tables (idempotent) and records the schema's fingerprint. A later change to an existing
 * table needs an upgrade step here. */
export function createRoomSchema(sql: SqlStorage): void {
  sql.exec(ROOM_SCHEMA);
  // MSC4345: verified server domains (server-domains.ts).
  sql.exec(SERVER_DOMAINS_SCHEMA);
  sql.exec(TIMELINE_GAPS_SCHEMA);
  // The full-text index of POST /search (search-index.ts): its own module, as it may be unavailable.
  createSearchSchema(sql);
  recordSchemaFingerprint(sql, "room", ROOM_SCHEMA_FINGERPRINT);
}

/**
 * At a DO's start: whether it holds a room's schema, brought up to date if its DDL changed since it last
 * ran. One read when nothing changed (schema-fingerprint.ts); a DO that never held a room gets no storage.
 */
export function openRoomSchema(sql: SqlStorage): boolean {
  if (storedSchemaFingerprint(sql, "room") === ROOM_SCHEMA_FINGERPRINT) return true;
  if (!roomSchemaExists(sql)) return false;
  createRoomSchema(sql);
  return true;
}

/** True once the schema exists, i.e. this DO has held a room. Reads on a DO that was only addressed by
 * an unknown room ID must not create storage for it. */
export function roomSchemaExists(sql: SqlStorage): boolean {
  return sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'room_meta'").toArray().length > 0;
}
