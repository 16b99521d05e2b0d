// Whether this room keeps our copy of a remote user's device list current (worker/federation/remote-keys.ts;
// spec: Server-Server API, "Device Management": a server sends `m.device_list_update` EDUs to the servers
// that share a room with its user). While the remote user and at least one of our users are both joined,
// the user's server counts us among the room's servers and sends us every change; once either leaves,
// it may stop, and a copy fetched before then may miss changes.
//
// The proof uses the room's stream positions: a member's current membership row carries the stream ordering
// of the event that set it, so "joined, by an event at or before position P" means "joined without a
// break since P". A copy fetched when the room was at P (the anchor) stays current while the remote user
// and one of our users are both still joined by events at or before P. Any later membership event of
// theirs, even a join again or a new display name, fails the proof and costs one fetch: doubt means fetch.
// A room still receiving its state after a partial join (room/partial-state.ts) proves something only for a
// member whose join came after ours (their server had us in the room, so it sends us their updates: Complement
// msc3902 "Device list tracked for new members in partial state room", as Synapse tracks the members its
// partial state holds); for anyone else it proves nothing until the resync completes.
import type { RoomEngine } from "./engine.js";
import { partialStateJoinOrdering } from "./partial-state.js";

/** The room's position now if `remoteUserId` and one of our users are joined (an anchor); "partial" while
 * the room's state is partial and cannot tell (ask again later); null when they do not share it. */
export function sharingAnchor(engine: RoomEngine, remoteUserId: string): number | "partial" | null {
  const position = engine.maxStreamOrdering();
  if (engine.meta() && engine.inPartialState()) return sharedSince(engine, remoteUserId, position) ? position : "partial";
  return sharedSince(engine, remoteUserId, position) ? position : null;
}

/** Whether `remoteUserId` and one of our users have both been joined without a break since `position`. */
export function sharedSince(engine: RoomEngine, remoteUserId: string, position: number): boolean {
  if (!engine.meta() || engine.isLocalUser(remoteUserId)) return false;
  // While partial: only a remote member whose membership came after our join counts (see the header).
  const joinedAfter = engine.inPartialState() ? partialStateJoinOrdering(engine) : null;
  if (engine.inPartialState() && joinedAfter === null) return false;
  const remote = engine.sql
    .exec<{ stream_ordering: number; membership: string | null }>(
      "SELECT stream_ordering, membership FROM current_state WHERE type = 'm.room.member' AND state_key = ?",
      remoteUserId,
    )
    .toArray()[0];
  if (remote?.membership !== "join" || remote.stream_ordering > position) return false;
  if (joinedAfter !== null && remote.stream_ordering <= joinedAfter) return false;
  const joined = engine.sql.exec<{ state_key: string }>(
    "SELECT state_key FROM current_state WHERE type = 'm.room.member' AND membership = 'join' AND stream_ordering <= ?",
    position,
  );
  for (const row of joined) if (engine.isLocalUser(row.state_key)) return true;
  return false;
}
