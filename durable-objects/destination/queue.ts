// The storage of one Destination DO (DESIGN.md, "Who owns what": the outbound federation queue of one remote
// server): the PDUs and EDUs waiting for that server in arrival order, the one transaction in flight, and
// the back-off state. All of it lives in the DO's SQLite storage, so a restart loses nothing that was
// enqueued (an enqueue returns after its insert committed).
//
// Tables:
//   destination_meta  one row: the server name, the transaction counter, back-off state, counters.
//   queued_pdus       PDUs in arrival order (`seq`), one row per event (a repeated enqueue of the same event
//                     is ignored). `txn_id` is set while the PDU is part of the transaction in flight.
//   queued_edus       EDUs in arrival order; `dedupe_key` (optional) replaces a waiting EDU with the same key
//                     (typing, receipts, presence: only the latest matters). `txn_id` as for PDUs.
//   transaction_in_flight  at most one row: the transaction being sent, reused with the same ID and the same
//                     content on every retry until the peer answers 200 (spec: Server-Server API,
//                     "Transactions": the transaction ID lets the receiver deduplicate a retry).
import { sqlLimit } from "../sql-limit.js";
/** Spec: "Transactions are limited in size; they can have at most 50 PDUs and 100 EDUs". */
export const MAX_PDUS_PER_TRANSACTION = 50;
export const MAX_EDUS_PER_TRANSACTION = 100;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS destination_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    destination TEXT NOT NULL,
    txn_base INTEGER NOT NULL,
    txn_counter INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    retry_at INTEGER,
    last_success_ts INTEGER,
    last_failure_ts INTEGER,
    last_error TEXT,
    transactions_sent INTEGER NOT NULL DEFAULT 0,
    pdus_dropped_by_catch_up INTEGER NOT NULL DEFAULT 0
  );

  CREATE TABLE IF NOT EXISTS queued_pdus (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    json TEXT NOT NULL,
    enqueued_ts INTEGER NOT NULL,
    txn_id TEXT
  );
  CREATE INDEX IF NOT EXISTS queued_pdus_by_txn ON queued_pdus (txn_id) WHERE txn_id IS NOT NULL;
  CREATE INDEX IF NOT EXISTS queued_pdus_by_room ON queued_pdus (room_id);

  CREATE TABLE IF NOT EXISTS queued_edus (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    edu_type TEXT NOT NULL,
    content TEXT NOT NULL,
    dedupe_key TEXT,
    enqueued_ts INTEGER NOT NULL,
    txn_id TEXT
  );
  CREATE INDEX IF NOT EXISTS queued_edus_by_txn ON queued_edus (txn_id) WHERE txn_id IS NOT NULL;
  CREATE INDEX IF NOT EXISTS queued_edus_by_key ON queued_edus (dedupe_key) WHERE dedupe_key IS NOT NULL;

  CREATE TABLE IF NOT EXISTS transaction_in_flight (
    txn_id TEXT PRIMARY KEY,
    origin_server_ts INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
  );
`;

/** A PDU handed to the queue: its room, its event ID and its wire form as JSON text (the Room DO's stored
 * `events.json`, which is the wire form: `event_id` only in room v1-v2). */
export interface QueuedPdu {
  roomId: string;
  eventId: string;
  json: string;
}

/** An EDU handed to the queue; `content` is JSON text. */
export interface QueuedEdu {
  eduType: string;
  content: string;
  /** A waiting (not yet in-flight) EDU with the same key is replaced by this one. */
  dedupeKey?: string;
}

/** The transaction to send now. */
export interface OutgoingTransaction {
  txnId: string;
  originServerTs: number;
  /** Attempts made before this one. */
  attempts: number;
  pdus: { eventId: string; json: string }[];
  edus: { eduType: string; content: string }[];
}

export interface BackoffState {
  failures: number;
  /** When the next attempt is due after a failure (ms); null when not backing off. */
  retryAt: number | null;
}

/** What `queueState()` reports (tests, diagnostics). */
export interface QueueState {
  destination: string | null;
  pdus: { roomId: string; eventId: string; inFlight: boolean }[];
  edus: { eduType: string; dedupeKey: string | null; inFlight: boolean }[];
  transactionInFlight: { txnId: string; attempts: number } | null;
  failures: number;
  retryAt: number | null;
  lastSuccessTs: number | null;
  lastFailureTs: number | null;
  lastError: string | null;
  transactionsSent: number;
  pdusDroppedByCatchUp: number;
}

type MetaRow = {
  destination: string;
  txn_base: number;
  txn_counter: number;
  failures: number;
  retry_at: number | null;
  last_success_ts: number | null;
  last_failure_ts: number | null;
  last_error: string | null;
  transactions_sent: number;
  pdus_dropped_by_catch_up: number;
};

export class DestinationQueue {
  private schemaReady: boolean;

  constructor(
    private readonly storage: DurableObjectStorage,
  ) {
    this.schemaReady = storage.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'destination_meta'").toArray().length > 0;
    // Idempotent: brings an existing queue's schema up to date.
    if (this.schemaReady) storage.sql.exec(SCHEMA);
  }

  private get sql(): SqlStorage {
    return this.storage.sql;
  }

  /** The destination's server name; null until the first enqueue (a DO only addressed by peerIsUp or a
   * diagnostic read creates no storage). */
  destination(): string | null {
    return this.meta()?.destination ?? null;
  }

  private meta(): MetaRow | null {
    if (!this.schemaReady) return null;
    return this.sql.exec<MetaRow>("SELECT * FROM destination_meta WHERE id = 1").toArray()[0] ?? null;
  }

  /** Creates the schema and the meta row on the first enqueue. The transaction IDs start from the time
   * of creation, so a queue whose storage was lost never reuses an ID the peer has seen. */
  private ensure(destination: string, now: number): void {
    if (!this.schemaReady) {
      this.sql.exec(SCHEMA);
      this.schemaReady = true;
    }
    this.sql.exec("INSERT OR IGNORE INTO destination_meta (id, destination, txn_base) VALUES (1, ?, ?)", destination, now);
  }

  /**
   * Appends PDUs and EDUs in the given order, in one storage transaction. A PDU already queued (same event
   * ID) is not queued twice. Returns the number of rows added.
   */
  enqueue(destination: string, pdus: readonly QueuedPdu[], edus: readonly QueuedEdu[], now: number): number {
    return this.storage.transactionSync(() => {
      this.ensure(destination, now);
      let added = 0;
      for (const p of pdus) {
        const inserted = this.sql.exec(
          "INSERT INTO queued_pdus (room_id, event_id, json, enqueued_ts) VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING RETURNING seq",
          p.roomId,
          p.eventId,
          p.json,
          now,
        );
        added += inserted.toArray().length;
      }
      for (const e of edus) {
        // An EDU in flight keeps its place: a retry must carry the same content under the same txn ID.
        if (e.dedupeKey !== undefined) this.sql.exec("DELETE FROM queued_edus WHERE dedupe_key = ? AND txn_id IS NULL", e.dedupeKey);
        this.sql.exec(
          "INSERT INTO queued_edus (edu_type, content, dedupe_key, enqueued_ts) VALUES (?, ?, ?, ?)",
          e.eduType,
          e.content,
          e.dedupeKey ?? null,
          now,
        );
        added++;
      }
      return added;
    });
  }

  pendingCount(): { pdus: number; edus: number } {
    if (!this.schemaReady) return { pdus: 0, edus: 0 };
    const pdus = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM queued_pdus").one().n;
    const edus = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM queued_edus").one().n;
    return { pdus, edus };
  }

  /** Enqueue time of the oldest waiting PDU, or null. */
  oldestPduTs(): number | null {
    if (!this.schemaReady) return null;
    return this.sql.exec<{ t: number | null }>("SELECT MIN(enqueued_ts) AS t FROM queued_pdus").one().t;
  }

  /**
   * The transaction to send: the one in flight if there is one (same ID, same content), else a new one
   * made of the oldest ≤50 PDUs and ≤100 EDUs. Null when nothing is queued.
   */
  nextTransaction(now: number): OutgoingTransaction | null {
    if (!this.schemaReady) return null;
    const inFlight = this.sql.exec<{ txn_id: string; origin_server_ts: number; attempts: number }>("SELECT * FROM transaction_in_flight").toArray()[0];
    if (inFlight) return this.transactionOf(inFlight.txn_id, inFlight.origin_server_ts, inFlight.attempts);

    const { pdus, edus } = this.pendingCount();
    if (pdus === 0 && edus === 0) return null;
    return this.storage.transactionSync(() => {
      const meta = this.meta()!;
      const counter = meta.txn_counter + 1;
      const txnId = `${meta.txn_base}.${counter}`;
      this.sql.exec("UPDATE destination_meta SET txn_counter = ? WHERE id = 1", counter);
      this.sql.exec("INSERT INTO transaction_in_flight (txn_id, origin_server_ts) VALUES (?, ?)", txnId, now);
      this.sql.exec(
        `UPDATE queued_pdus SET txn_id = ? WHERE seq IN (SELECT seq FROM queued_pdus ORDER BY seq LIMIT ${sqlLimit(MAX_PDUS_PER_TRANSACTION)})`,
        txnId,
      );
      this.sql.exec(
        `UPDATE queued_edus SET txn_id = ? WHERE seq IN (SELECT seq FROM queued_edus ORDER BY seq LIMIT ${sqlLimit(MAX_EDUS_PER_TRANSACTION)})`,
        txnId,
      );
      return this.transactionOf(txnId, now, 0);
    });
  }

  private transactionOf(txnId: string, originServerTs: number, attempts: number): OutgoingTransaction {
    const pdus = this.sql
      .exec<{ event_id: string; json: string }>("SELECT event_id, json FROM queued_pdus WHERE txn_id = ? ORDER BY seq", txnId)
      .toArray()
      .map((r) => ({ eventId: r.event_id, json: r.json }));
    const edus = this.sql
      .exec<{ edu_type: string; content: string }>("SELECT edu_type, content FROM queued_edus WHERE txn_id = ? ORDER BY seq", txnId)
      .toArray()
      .map((r) => ({ eduType: r.edu_type, content: r.content }));
    return { txnId, originServerTs, attempts, pdus, edus };
  }

  /** The peer answered 200: the transaction's PDUs and EDUs leave the queue; the back-off ends. */
  transactionAccepted(txnId: string, now: number): void {
    this.storage.transactionSync(() => {
      this.sql.exec("DELETE FROM queued_pdus WHERE txn_id = ?", txnId);
      this.sql.exec("DELETE FROM queued_edus WHERE txn_id = ?", txnId);
      this.sql.exec("DELETE FROM transaction_in_flight WHERE txn_id = ?", txnId);
      this.sql.exec(
        "UPDATE destination_meta SET failures = 0, retry_at = NULL, last_success_ts = ?, last_error = NULL, transactions_sent = transactions_sent + 1 WHERE id = 1",
        now,
      );
    });
  }

  /** The attempt failed: the transaction stays in flight (same ID and content next time). */
  transactionFailed(txnId: string, now: number, retryAt: number, error: string): void {
    this.storage.transactionSync(() => {
      this.sql.exec("UPDATE transaction_in_flight SET attempts = attempts + 1 WHERE txn_id = ?", txnId);
      this.sql.exec(
        "UPDATE destination_meta SET failures = failures + 1, retry_at = ?, last_failure_ts = ?, last_error = ? WHERE id = 1",
        retryAt,
        now,
        error.slice(0, 500),
      );
    });
  }

  backoff(): BackoffState {
    const meta = this.meta();
    return meta ? { failures: meta.failures, retryAt: meta.retry_at } : { failures: 0, retryAt: null };
  }

  /** The peer is reachable again (it contacted us): the next attempt is due now, and the back-off starts
   * from its minimum. Returns whether the destination was backing off. */
  resetBackoff(): boolean {
    const meta = this.meta();
    if (!meta || (meta.failures === 0 && meta.retry_at === null)) return false;
    this.sql.exec("UPDATE destination_meta SET failures = 0, retry_at = NULL WHERE id = 1");
    return true;
  }

  /** An alarm or a contact makes the next attempt due now, keeping the failure count for the doubling. */
  clearRetryAt(): void {
    if (this.schemaReady) this.sql.exec("UPDATE destination_meta SET retry_at = NULL WHERE id = 1");
  }

  /**
   * Catch-up after a long outage (Synapse's "catch-up mode", per_destination_queue.py): instead of
   * replaying everything it missed, the peer gets each room's latest events and fetches the gap itself
   * (spec: Server-Server API, "Retrieving missing events", POST /get_missing_events). Kept per room are the
   * queued PDUs that no other queued PDU of the room names in `prev_events`, i.e. the room's forward
   * extremities among what the peer has not seen; every dropped PDU is an ancestor of a kept one, so the
   * peer can reach it, except unexpired sticky events (MSC4354), which stay. The transaction in flight is given up (its ID is never reused: the next
   * transaction takes a new one). EDUs stay. Returns the number of PDUs dropped.
   */
  collapseForCatchUp(): number {
    if (!this.schemaReady) return 0;
    return this.storage.transactionSync(() => {
      this.sql.exec("UPDATE queued_pdus SET txn_id = NULL WHERE txn_id IS NOT NULL");
      this.sql.exec("UPDATE queued_edus SET txn_id = NULL WHERE txn_id IS NOT NULL");
      this.sql.exec("DELETE FROM transaction_in_flight");
      // prev_events are event IDs (room v3+) or [event ID, hashes] pairs (v1-v2). Event IDs are unique
      // across rooms, so the room needs no condition.
      const referenced = `event_id IN (
           SELECT CASE WHEN prev.type = 'array' THEN json_extract(prev.value, '$[0]') ELSE prev.value END
           FROM queued_pdus q, json_each(q.json, '$.prev_events') AS prev)`;
      // MSC4354: an unexpired sticky event stays (large volumes "MUST NOT cause the sticky event to be dropped
      // from the send queue"): the peer would not fetch it, as later events need not name it. Our own events:
      // sticky from origin_server_ts for duration_ms, at most an hour (room/client-event.ts).
      const now = Date.now();
      const stillSticky = `(json_type(json, '$.msc4354_sticky.duration_ms') = 'integer'
           AND MIN(json_extract(json, '$.origin_server_ts'), ${now}) + MIN(json_extract(json, '$.msc4354_sticky.duration_ms'), 3600000) > ${now})`;
      const droppable = `${referenced} AND NOT COALESCE(${stillSticky}, 0)`; // NULL (not sticky) must not spare a row
      const dropped = this.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM queued_pdus WHERE ${droppable}`).one().n;
      this.sql.exec(`DELETE FROM queued_pdus WHERE ${droppable}`);
      if (dropped > 0) this.sql.exec("UPDATE destination_meta SET pdus_dropped_by_catch_up = pdus_dropped_by_catch_up + ? WHERE id = 1", dropped);
      return dropped;
    });
  }

  state(): QueueState {
    const meta = this.meta();
    if (!meta) {
      return {
        destination: null,
        pdus: [],
        edus: [],
        transactionInFlight: null,
        failures: 0,
        retryAt: null,
        lastSuccessTs: null,
        lastFailureTs: null,
        lastError: null,
        transactionsSent: 0,
        pdusDroppedByCatchUp: 0,
      };
    }
    const inFlight = this.sql.exec<{ txn_id: string; attempts: number }>("SELECT txn_id, attempts FROM transaction_in_flight").toArray()[0];
    return {
      destination: meta.destination,
      pdus: this.sql
        .exec<{ room_id: string; event_id: string; txn_id: string | null }>("SELECT room_id, event_id, txn_id FROM queued_pdus ORDER BY seq")
        .toArray()
        .map((r) => ({ roomId: r.room_id, eventId: r.event_id, inFlight: r.txn_id !== null })),
      edus: this.sql
        .exec<{ edu_type: string; dedupe_key: string | null; txn_id: string | null }>("SELECT edu_type, dedupe_key, txn_id FROM queued_edus ORDER BY seq")
        .toArray()
        .map((r) => ({ eduType: r.edu_type, dedupeKey: r.dedupe_key, inFlight: r.txn_id !== null })),
      transactionInFlight: inFlight ? { txnId: inFlight.txn_id, attempts: inFlight.attempts } : null,
      failures: meta.failures,
      retryAt: meta.retry_at,
      lastSuccessTs: meta.last_success_ts,
      lastFailureTs: meta.last_failure_ts,
      lastError: meta.last_error,
      transactionsSent: meta.transactions_sent,
      pdusDroppedByCatchUp: meta.pdus_dropped_by_catch_up,
    };
  }
}
