// Reading and writing the `events` table (schema.ts) of one room, with a small cache of parsed PDUs
// (auth checks and state resolution read the same few events again and again: create, power levels,
// join rules, members).
import { SearchIndex } from "./search-index.js";
import type { JsonObject } from "../../protocol/json.js";
import { isJsonObject } from "../../protocol/json.js";
import type { IdentifiedPdu, Pdu } from "../../protocol/pdu.js";

/** The columns of one stored event, without its JSON. */
export interface EventMeta {
  streamOrdering: number;
  eventId: string;
  type: string;
  stateKey: string | null;
  sender: string;
  originServerTs: number;
  depth: number;
  rejectedReason: string | null;
  softFailed: boolean;
  outlier: boolean;
  stateGroupBefore: number | null;
  stateGroupAfter: number | null;
  replacesState: string | null;
  redacts: string | null;
  redactedBecause: string | null;
  membership: string | null;
}

type EventRow = {
  stream_ordering: number;
  event_id: string;
  type: string;
  state_key: string | null;
  sender: string;
  origin_server_ts: number;
  depth: number;
  rejected_reason: string | null;
  soft_failed: number;
  outlier: number;
  state_group_before: number | null;
  state_group_after: number | null;
  replaces_state: string | null;
  redacts: string | null;
  redacted_because: string | null;
  membership: string | null;
};

const META_COLUMNS = `stream_ordering, event_id, type, state_key, sender, origin_server_ts, depth, rejected_reason, soft_failed,
  outlier, state_group_before, state_group_after, replaces_state, redacts, redacted_because, membership`;

function toMeta(r: EventRow): EventMeta {
  return {
    streamOrdering: r.stream_ordering,
    eventId: r.event_id,
    type: r.type,
    stateKey: r.state_key,
    sender: r.sender,
    originServerTs: r.origin_server_ts,
    depth: r.depth,
    rejectedReason: r.rejected_reason,
    softFailed: r.soft_failed !== 0,
    outlier: r.outlier !== 0,
    stateGroupBefore: r.state_group_before,
    stateGroupAfter: r.state_group_after,
    replacesState: r.replaces_state,
    redacts: r.redacts,
    redactedBecause: r.redacted_because,
    membership: r.membership,
  };
}

/** What the relation columns hold (spec: Client-Server API, "Forming relationships between events"). */
export interface RelationColumns {
  relType: string | null;
  relatesTo: string | null;
  /** The thread root for events in a thread (`rel_type` `m.thread`), else null. */
  threadRoot: string | null;
}

export function relationColumnsOf(content: JsonObject): RelationColumns {
  const rel = content["m.relates_to"];
  if (!isJsonObject(rel)) return { relType: null, relatesTo: null, threadRoot: null };
  const relType = typeof rel.rel_type === "string" ? rel.rel_type : null;
  const relatesTo = typeof rel.event_id === "string" ? rel.event_id : null;
  return { relType, relatesTo, threadRoot: relType === "m.thread" ? relatesTo : null };
}

export interface NewEventRow {
  eventId: string;
  pdu: Pdu;
  rejectedReason: string | null;
  softFailed: boolean;
  outlier: boolean;
  stateGroupBefore: number | null;
  stateGroupAfter: number | null;
  replacesState: string | null;
  redacts: string | null;
  /** An explicit stream ordering (backfilled history goes below the room's first event); default: the
   * next after the highest. */
  streamOrdering?: number;
}

export class EventStore {
  private readonly cache = new Map<string, IdentifiedPdu>();

  /** The room's full-text index (search-index.ts), written with the events it indexes. */
  readonly search: SearchIndex;

  constructor(
    private readonly sql: SqlStorage,
    private readonly cacheSize = 256,
  ) {
    this.search = new SearchIndex(sql);
  }

  meta(eventId: string): EventMeta | undefined {
    const r = this.sql.exec<EventRow>(`SELECT ${META_COLUMNS} FROM events WHERE event_id = ?`, eventId).toArray()[0];
    return r ? toMeta(r) : undefined;
  }

  metaAt(streamOrdering: number): EventMeta | undefined {
    const r = this.sql.exec<EventRow>(`SELECT ${META_COLUMNS} FROM events WHERE stream_ordering = ?`, streamOrdering).toArray()[0];
    return r ? toMeta(r) : undefined;
  }

  has(eventId: string): boolean {
    return this.sql.exec("SELECT 1 FROM events WHERE event_id = ?", eventId).toArray().length > 0;
  }

  /** The stored PDU with its event ID (the redacted form once a redaction applied). Do not mutate. */
  pdu(eventId: string): IdentifiedPdu | undefined {
    const hit = this.cache.get(eventId);
    if (hit) {
      this.cache.delete(eventId);
      this.cache.set(eventId, hit);
      return hit;
    }
    const r = this.sql.exec<{ json: string }>("SELECT json FROM events WHERE event_id = ?", eventId).toArray()[0];
    if (!r) return undefined;
    const pdu = { ...(JSON.parse(r.json) as Pdu), event_id: eventId } as IdentifiedPdu;
    this.remember(eventId, pdu);
    return pdu;
  }

  /** Inserts an event row; returns its stream ordering. `pdu` is the wire form (`event_id` only in v1-v2). */
  insert(row: NewEventRow): number {
    const { pdu } = row;
    const relation = relationColumnsOf(pdu.content);
    const membership = pdu.type === "m.room.member" && typeof pdu.content.membership === "string" ? pdu.content.membership : null;
    const streamOrdering = this.sql
      .exec<{ stream_ordering: number }>(
        `INSERT INTO events (stream_ordering, event_id, type, state_key, sender, origin_server_ts, depth, json, rejected_reason, soft_failed, outlier,
           state_group_before, state_group_after, replaces_state, redacts, rel_type, relates_to, thread_root, membership)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING stream_ordering`,
        row.streamOrdering ?? null,
        row.eventId,
        pdu.type,
        typeof pdu.state_key === "string" ? pdu.state_key : null,
        pdu.sender,
        pdu.origin_server_ts,
        pdu.depth,
        JSON.stringify(pdu),
        row.rejectedReason,
        row.softFailed ? 1 : 0,
        row.outlier ? 1 : 0,
        row.stateGroupBefore,
        row.stateGroupAfter,
        row.replacesState,
        row.redacts,
        relation.relType,
        relation.relatesTo,
        relation.threadRoot,
        membership,
      )
      .one().stream_ordering;
    // Only events clients may be shown are searchable (soft-failed, rejected and outlier events never are).
    if (row.rejectedReason === null && !row.softFailed && !row.outlier) this.search.add(streamOrdering, pdu.type, pdu.content);
    return streamOrdering;
  }

  /** Replaces an event's stored JSON by its redacted form (wire form: `event_id` only in v1-v2) and
   * records the redaction. */
  applyRedaction(eventId: string, redacted: Pdu, redactionEventId: string): void {
    // The relation columns go too: a redacted event no longer relates to anything (its content is gone).
    this.sql.exec(
      `UPDATE events SET json = ?, redacted_because = ?, rel_type = NULL, relates_to = NULL, thread_root = NULL WHERE event_id = ?`,
      JSON.stringify(redacted),
      redactionEventId,
      eventId,
    );
    // A redacted event's text must not be found any more (Synapse blocks redacted events from results).
    const ordering = this.sql.exec<{ stream_ordering: number }>("SELECT stream_ordering FROM events WHERE event_id = ?", eventId).toArray()[0];
    if (ordering) this.search.remove(ordering.stream_ordering);
    this.cache.delete(eventId);
  }

  /** Drops cached PDUs (after a rolled-back transaction). */
  forget(eventId: string): void {
    this.cache.delete(eventId);
  }

  private remember(eventId: string, pdu: IdentifiedPdu): void {
    this.cache.set(eventId, pdu);
    while (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value as string);
  }
}
