// Sticky events to servers that join later (MSC4354, "Federation behaviour": "When a new server joins the
// room, existing servers MUST attempt to push all of their own sticky events"). The room's federation
// hand-over (room/outbound.ts) reads every committed event in order; when one is the join of the first
// member of a server that had nobody joined in the room before it, the unexpired sticky events this server
// originated before that join are pushed to the new server. Not at once: a server that joins through us
// learns of the room only when it has processed our send_join answer, and Synapse drops PDUs of a room it
// does not know yet ("Ignoring PDU for unknown room_id", answering 200), so the push is scheduled a little
// later, and again later still (PUSH_DELAYS_MS; a peer ignores an event it already has), in the room's
// `sticky_pushes` table, done by the room's alarm (room/outbound.ts `retry`). Only our own events: a server sends only what it originated, because
// only it is sure to be able to serve their prev events when the receiver asks (MSC4354 footnote
// "newjoiner"). History visibility is not applied: "any joined user or server is authorised to see sticky
// events for the duration they remain sticky".
//
// Synapse 1.163.2 (msc4354_enabled) pushes sticky events only when catching a destination up after an outage
// (per_destination_queue.py StickyEventBacklogTracker), not on a new server's join; we follow the MSC here.
import { serverNameOf, stateKey } from "../../protocol/pdu.js";
import { MAX_STICKY_DURATION_MS, stickyDurationMs, stickyUntil } from "./client-event.js";
import type { RoomEngine } from "./engine.js";
import { ACCEPTED } from "./event-rows.js";
import { sqlLimit } from "../sql-limit.js";

/** When a newly joined server is pushed our sticky events, after its join was handed over. */
export const PUSH_DELAYS_MS = [2_000, 20_000];
/** At most this many sticky events go to one newly joined server (the newest win). */
export const MAX_STICKY_FOR_NEW_SERVER = 500;

export interface JoinRow {
  stream_ordering: number;
  event_id: string;
  type: string;
  state_key: string | null;
  membership: string | null;
}

/**
 * The server that `row` brings into the room: the server of a joining member (not this one) when no other
 * member of that server was joined in the state before the event; null otherwise.
 */
export function newlyJoinedServer(engine: RoomEngine, ownServer: string, row: JoinRow): string | null {
  if (row.type !== "m.room.member" || row.membership !== "join" || row.state_key === null || !row.state_key.startsWith("@")) return null;
  if (engine.isLocalUser(row.state_key)) return null;
  const server = engine.routingServerOf(row.state_key);
  if (server === "" || server === ownServer) return null;
  const state = engine.stateAtEvent(row.event_id);
  if (!state) return null;
  // A member already joined before (a profile change) brings nobody new.
  const previous = state.before.get(stateKey("m.room.member", row.state_key));
  if (previous !== undefined && engine.events.meta(previous)?.membership === "join") return null;
  const prefix = stateKey("m.room.member", "");
  for (const [key, eventId] of state.before) {
    if (!key.startsWith(prefix)) continue;
    const userId = key.slice(prefix.length);
    if (userId === row.state_key) continue;
    // Cheap test first: the server part (MSC4345 key-form IDs go through the routing look-up).
    if (serverNameOf(userId) !== server && engine.routingServerOf(userId) !== server) continue;
    if (engine.events.meta(eventId)?.membership === "join") return null;
  }
  return server;
}

/**
 * This server's own sticky events that are still sticky at `now`, stored before stream ordering `before`
 * (accepted, not soft-failed, not outliers, not redacted: a redaction removes `msc4354_sticky`), oldest
 * first, at most MAX_STICKY_FOR_NEW_SERVER (the newest).
 */
export function localStickyEvents(engine: RoomEngine, before: number, now: number): { eventId: string; json: string }[] {
  // Still sticky implies origin_server_ts > now - one hour (the start is at most origin_server_ts).
  const oldest = now - MAX_STICKY_DURATION_MS;
  const rows = engine.sql
    .exec<{ event_id: string; sender: string; json: string }>(
      `SELECT event_id, sender, json FROM events
       WHERE instr(json, '"msc4354_sticky"') > 0 AND origin_server_ts > ? AND stream_ordering < ? AND ${ACCEPTED}
       ORDER BY stream_ordering DESC LIMIT ${sqlLimit(4 * MAX_STICKY_FOR_NEW_SERVER)}`,
      oldest,
      before,
    )
    .toArray();
  const out: { eventId: string; json: string }[] = [];
  for (const row of rows) {
    if (!engine.isLocalUser(row.sender)) continue;
    const pdu = JSON.parse(row.json) as { [key: string]: unknown; origin_server_ts: number };
    const duration = stickyDurationMs(pdu);
    // Our own events: the receipt time is the origin_server_ts (stickyUntil bounds it by now).
    if (duration === undefined || stickyUntil(pdu, duration, now) <= now) continue;
    out.push({ eventId: row.event_id, json: row.json });
    if (out.length >= MAX_STICKY_FOR_NEW_SERVER) break;
  }
  return out.reverse();
}

const SCHEMA = `CREATE TABLE IF NOT EXISTS sticky_pushes (
  server TEXT NOT NULL,
  before_ordering INTEGER NOT NULL,
  due_at INTEGER NOT NULL,
  PRIMARY KEY (server, due_at)
)`;
const ready = new WeakSet<RoomEngine>();
function ensureSchema(engine: RoomEngine): void {
  if (ready.has(engine)) return;
  engine.sql.exec(SCHEMA);
  ready.add(engine);
}

/** Schedules the pushes of our sticky events from before stream ordering `beforeOrdering` to a server that
 * just joined; returns when the first is due. */
export function scheduleStickyPushes(engine: RoomEngine, server: string, beforeOrdering: number, now: number): number {
  ensureSchema(engine);
  for (const delay of PUSH_DELAYS_MS) {
    engine.sql.exec("INSERT OR REPLACE INTO sticky_pushes (server, before_ordering, due_at) VALUES (?, ?, ?)", server, beforeOrdering, now + delay);
  }
  return now + Math.min(...PUSH_DELAYS_MS);
}

/** The pushes due at `now`: per server, the events to send, and the rows to delete once they are queued. */
export function dueStickyPushes(engine: RoomEngine, now: number): { server: string; events: { eventId: string; json: string }[]; dueAts: number[] }[] {
  ensureSchema(engine);
  const rows = engine.sql
    .exec<{ server: string; before_ordering: number; due_at: number }>("SELECT server, before_ordering, due_at FROM sticky_pushes WHERE due_at <= ? ORDER BY server", now)
    .toArray();
  const byServer = new Map<string, { before: number; dueAts: number[] }>();
  for (const row of rows) {
    const entry = byServer.get(row.server) ?? { before: 0, dueAts: [] };
    entry.before = Math.max(entry.before, row.before_ordering);
    entry.dueAts.push(row.due_at);
    byServer.set(row.server, entry);
  }
  return [...byServer].map(([server, { before, dueAts }]) => ({ server, events: localStickyEvents(engine, before, now), dueAts }));
}

export function deleteStickyPushes(engine: RoomEngine, server: string, dueAts: number[]): void {
  for (const dueAt of dueAts) engine.sql.exec("DELETE FROM sticky_pushes WHERE server = ? AND due_at = ?", server, dueAt);
}

/** When the next push is due, or null when none is scheduled. */
export function nextStickyPush(engine: RoomEngine): number | null {
  ensureSchema(engine);
  return engine.sql.exec<{ at: number | null }>("SELECT MIN(due_at) AS at FROM sticky_pushes").one().at;
}
