// The merged order of POST /search results across rooms (worker/client/search.ts) and where each room's
// page starts from a merged position. Pure, so that the tie-breaks are tested directly (test/unit).
//   rank:   rank desc, origin_server_ts desc, room ID asc, stream ordering desc;
//   recent: origin_server_ts desc, room ID asc, stream ordering desc.
// Within one room this is the Room DO's own order (durable-objects/room/search.ts); the room ID only
// decides between rooms, where stream orderings are not comparable.
import type { SearchPosition } from "../durable-objects/room/search.js";

export type Order = "rank" | "recent";

/** The sort key of a result as it travels in a batch token. */
export interface BatchKey {
  rank: number | null;
  ts: number;
  roomId: string;
  ordering: number;
}

/** Negative when `a` comes before `b` in the merged order (see the top of this file). */
export function compareKeys(order: Order, a: BatchKey, b: BatchKey): number {
  if (order === "rank" && a.rank !== b.rank) return (b.rank ?? 0) - (a.rank ?? 0);
  if (a.ts !== b.ts) return b.ts - a.ts;
  if (a.roomId !== b.roomId) return a.roomId < b.roomId ? -1 : 1;
  return b.ordering - a.ordering;
}

/** Where a room's page starts, given the merged position (see `SearchPosition`). */
export function positionInRoom(key: BatchKey, roomId: string): SearchPosition {
  const ordering = roomId === key.roomId ? key.ordering : roomId > key.roomId ? Number.MAX_SAFE_INTEGER : Number.MIN_SAFE_INTEGER;
  const position: SearchPosition = { ts: key.ts, ordering };
  if (key.rank !== null) position.rank = key.rank;
  return position;
}

