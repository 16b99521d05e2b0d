// The room's full-text index for POST /search (spec: Client-Server API, "Server Side Search"): an SQLite
// FTS5 table in the Room DO's own storage, so that a search of one room never leaves its DO.
//
// What is indexed is what Synapse indexes (`_store_room_message_txn` and friends): `content.body` of
// m.room.message, `content.name` of m.room.name and `content.topic` of m.room.topic, when a string. The
// key is not stored: the event's type names it (KEY_TYPES).
//
// The table is contentless (`content=''`): it holds the index, not a second copy of the text, which stays
// in `events.json`. `contentless_delete=1` lets a redaction remove an event's entry with a plain DELETE.
// The rowid is the event's stream ordering, so matches join the `events` table on its primary key.
//
// When: an event is indexed as it is stored (EventStore.insert, in the same transaction), accepted events
// only; that costs one FTS5 insert of a few words per message on the send path. Events stored before this
// index existed (rooms older than the feature) are indexed lazily, on the room's first search: creating
// the schema records the range of stream orderings present then (`search_backlog`), and `catchUp` indexes
// that range in bounded steps before a search reads the index.
//
// FTS5 is part of the SQLite that workerd ships (checked in test/workers/search.test.ts). Should a runtime
// lack it, creating the table fails: the room keeps working, nothing is indexed, and a search of the room
// answers as one with no matches (searchAvailable is false; the worker logs it).
import type { JsonObject } from "../../protocol/json.js";

/** The search keys of POST /search (spec: `keys`) and the event type each one indexes. */
export const KEY_TYPES = {
  "content.body": "m.room.message",
  "content.name": "m.room.name",
  "content.topic": "m.room.topic",
} as const;

export type SearchKey = keyof typeof KEY_TYPES;

const FIELD_OF_TYPE: Record<string, string> = { "m.room.message": "body", "m.room.name": "name", "m.room.topic": "topic" };

export const SEARCH_SCHEMA = `
  CREATE VIRTUAL TABLE IF NOT EXISTS event_search USING fts5(value, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2');
  CREATE TABLE IF NOT EXISTS search_backlog (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    low INTEGER,
    high INTEGER
  );
  INSERT OR IGNORE INTO search_backlog (id, low, high) SELECT 1, MIN(stream_ordering), MAX(stream_ordering) FROM events;
`;

/** Creates the index (idempotent; run with the room schema, after the `events` table exists). */
export function createSearchSchema(sql: SqlStorage): void {
  try {
    sql.exec(SEARCH_SCHEMA);
  } catch (e) {
    // Without FTS5 the room must still work (see the top of this file).
    console.warn("room search index unavailable", e instanceof Error ? e.message : e);
  }
}

/** The indexed text of an event, or undefined if its type or content has none. NUL is not kept (Synapse's
 * `_clean_value_for_search`). */
export function searchableText(type: string, content: JsonObject): string | undefined {
  const field = FIELD_OF_TYPE[type];
  if (field === undefined) return undefined;
  const value = content[field];
  return typeof value === "string" ? value.replaceAll("\u0000", " ") : undefined;
}

/** Events one catch-up step indexes at most (by stream ordering range). */
const BACKLOG_STEP = 5000;

/** Writes and maintains one room's search index. */
export class SearchIndex {
  /** Only a positive answer is kept: a DO addressed before its room existed gets the index later. */
  private available = false;

  constructor(private readonly sql: SqlStorage) {}

  /** Whether the index exists (FTS5 is available and the room schema was created). */
  searchAvailable(): boolean {
    if (!this.available) {
      this.available = this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'event_search'").toArray().length > 0;
    }
    return this.available;
  }

  /** Indexes one stored, accepted event (a no-op for events without searchable text). */
  add(streamOrdering: number, type: string, content: JsonObject): void {
    const text = searchableText(type, content);
    if (text === undefined || !this.searchAvailable()) return;
    this.sql.exec("INSERT INTO event_search (rowid, value) VALUES (?, ?)", streamOrdering, text);
  }

  /** Removes an event from the index (its redaction). */
  remove(streamOrdering: number): void {
    if (!this.searchAvailable()) return;
    this.sql.exec("DELETE FROM event_search WHERE rowid = ?", streamOrdering);
  }

  /**
   * Indexes the events stored before the index existed (see the top of this file), newest first, in
   * steps of BACKLOG_STEP orderings; each step is one INSERT ... SELECT that SQLite runs without a round
   * trip per event. Reads `events.json` as stored now: events redacted meanwhile have no text left.
   */
  catchUp(): void {
    if (!this.searchAvailable()) return;
    for (;;) {
      const backlog = this.sql.exec<{ low: number | null; high: number | null }>("SELECT low, high FROM search_backlog WHERE id = 1").toArray()[0];
      if (!backlog || backlog.low === null || backlog.high === null || backlog.high < backlog.low) return;
      const from = Math.max(backlog.low, backlog.high - BACKLOG_STEP + 1);
      this.sql.exec(
        `INSERT INTO event_search (rowid, value)
         SELECT stream_ordering, replace(value, char(0), ' ') FROM (
           SELECT stream_ordering,
                  CASE type WHEN 'm.room.message' THEN json_extract(json, '$.content.body')
                            WHEN 'm.room.name' THEN json_extract(json, '$.content.name')
                            ELSE json_extract(json, '$.content.topic') END AS value
           FROM events
           WHERE stream_ordering >= ? AND stream_ordering <= ? AND type IN ('m.room.message', 'm.room.name', 'm.room.topic')
             AND outlier = 0 AND rejected_reason IS NULL AND soft_failed = 0 AND redacted_because IS NULL
         ) WHERE typeof(value) = 'text'`,
        from,
        backlog.high,
      );
      if (from <= backlog.low) this.sql.exec("UPDATE search_backlog SET low = NULL, high = NULL WHERE id = 1");
      else this.sql.exec("UPDATE search_backlog SET high = ? WHERE id = 1", from - 1);
    }
  }
}
