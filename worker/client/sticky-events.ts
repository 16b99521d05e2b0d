// Sticky events (MSC4354, unstable prefix `org.matrix.msc4354`): `?org.matrix.msc4354.sticky_duration_ms=`
// on PUT /rooms/{roomId}/send/... makes the event sticky for that long (capped at one hour): the PDU
// carries `msc4354_sticky: { duration_ms }`, and /sync delivers a room's unexpired sticky events to
// members even when the timeline limit leaves them out (`msc4354_sticky` in the joined room;
// durable-objects/room/sync-reads.ts). MatrixRTC memberships use them in place of state events.
import type { Context } from "hono";
import { invalidParam } from "../../protocol/errors.js";
import { MAX_STICKY_DURATION_MS } from "../../durable-objects/room/client-event.js";
import type { AppEnv } from "../env.js";

export const STICKY_PARAM = "org.matrix.msc4354.sticky_duration_ms";

/** The requested sticky duration in ms (capped at one hour), or undefined for an ordinary event. */
export function requestedStickyDuration(c: Context<AppEnv>): number | undefined {
  const raw = c.req.query(STICKY_PARAM);
  if (raw === undefined) return undefined;
  if (!/^\d{1,16}$/.test(raw)) throw invalidParam(`${STICKY_PARAM} must be a non-negative integer of milliseconds`);
  return Math.min(Number(raw), MAX_STICKY_DURATION_MS);
}
