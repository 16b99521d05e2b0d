// Sticky events to servers that join later (MSC4354, "Federation behaviour": "When a new server joins the
// room, existing servers MUST attempt to push all of their own sticky events"). The room's federation
// hand-over (room/outbound.ts) reads every committed event in order; when one is the join of the first
// member of a server that had nobody joined in the room before it, the unexpired sticky events this server
// originated before that join are queued for the new server, right where the join is in the stream (so the
// events after the join follow them). Only our own events: a server sends only what it originated, because
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
       ORDER BY stream_ordering DESC LIMIT ?`,
      oldest,
      before,
      4 * MAX_STICKY_FOR_NEW_SERVER,
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
