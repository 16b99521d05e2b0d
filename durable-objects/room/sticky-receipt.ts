// MSC4354: a sticky event's stickiness starts at min(origin_server_ts, the time this server received it),
// "so that malicious origin timestamps cannot specify start times in the future". The events table keeps no
// receipt time; only an event whose origin_server_ts was in the future when it arrived needs one (for any
// other, origin_server_ts is the earlier of the two), so only those are recorded here, by the federation
// entry point (room/federation-inbound.ts). Readers look it up only for events whose origin_server_ts is
// after `now` minus the longest sticky duration and carry it into stickyUntil() (client-event.ts).
import { stickyDurationMs } from "./client-event.js";
import type { RoomEngine } from "./engine.js";

const SCHEMA = `CREATE TABLE IF NOT EXISTS sticky_received (
  event_id TEXT PRIMARY KEY,
  received_ts INTEGER NOT NULL
)`;
const ready = new WeakSet<RoomEngine>();
function ensureSchema(engine: RoomEngine): void {
  if (ready.has(engine)) return;
  engine.sql.exec(SCHEMA);
  ready.add(engine);
}

/** After a federation PDU was stored: remembers when a sticky event dated in the future arrived. */
export function recordStickyReceipt(engine: RoomEngine, eventId: string, pdu: { [key: string]: unknown; origin_server_ts: number }, now: number): void {
  if (typeof pdu.origin_server_ts !== "number" || pdu.origin_server_ts <= now || stickyDurationMs(pdu) === undefined) return;
  ensureSchema(engine);
  engine.sql.exec("INSERT OR IGNORE INTO sticky_received (event_id, received_ts) VALUES (?, ?)", eventId, now);
}

/** When this server received an event whose origin_server_ts was in the future then; undefined otherwise. */
export function stickyReceivedAt(engine: RoomEngine, eventId: string): number | undefined {
  ensureSchema(engine);
  return engine.sql.exec<{ received_ts: number }>("SELECT received_ts FROM sticky_received WHERE event_id = ?", eventId).toArray()[0]?.received_ts;
}
