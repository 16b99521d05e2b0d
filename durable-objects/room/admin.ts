// What the server administration API (worker/admin/rooms.ts, Synapse's "List Room API" and "Room Details
// API") reads of one room: a summary computed from the current state inside the DO, so that listing many
// rooms moves a few hundred bytes per room instead of each room's whole state.
import type { RoomEngine } from "./engine.js";

export interface AdminRoomSummary {
  room_id: string;
  name: string | null;
  canonical_alias: string | null;
  topic: string | null;
  avatar: string | null;
  joined_members: number;
  joined_local_members: number;
  /** Local users currently joined (the worker counts their devices for `joined_local_devices`). */
  local_members: string[];
  version: string;
  creator: string | null;
  encryption: string | null;
  federatable: boolean;
  join_rules: string | null;
  guest_access: string | null;
  history_visibility: string | null;
  state_events: number;
  room_type: string | null;
}

/** The summary, or null for a room this DO does not hold. */
export function adminRoomSummary(engine: RoomEngine): AdminRoomSummary | null {
  const meta = engine.meta();
  if (!meta) return null;
  const contentString = (type: string, key: string): string | null => {
    const value = engine.currentStateEvent(type, "")?.content[key];
    return typeof value === "string" ? value : null;
  };
  const create = engine.currentStateEvent("m.room.create", "");
  const joined = engine.membersWith("join");
  const localMembers = joined.filter((u) => engine.isLocalUser(u));
  const roomType = create?.content.type;
  return {
    room_id: meta.roomId,
    name: contentString("m.room.name", "name"),
    canonical_alias: contentString("m.room.canonical_alias", "alias"),
    topic: contentString("m.room.topic", "topic"),
    avatar: contentString("m.room.avatar", "url"),
    joined_members: joined.length,
    joined_local_members: localMembers.length,
    local_members: localMembers,
    version: meta.roomVersion,
    creator: create?.sender ?? null,
    encryption: contentString("m.room.encryption", "algorithm"),
    // Spec: m.room.create `m.federate`, true when absent.
    federatable: create?.content["m.federate"] !== false,
    join_rules: contentString("m.room.join_rules", "join_rule"),
    guest_access: contentString("m.room.guest_access", "guest_access"),
    history_visibility: contentString("m.room.history_visibility", "history_visibility"),
    state_events: engine.currentState().size,
    room_type: typeof roomType === "string" ? roomType : null,
  };
}

/**
 * The `mxc://` URIs the room's events name (Synapse's `get_media_mxcs_in_room`: `content.url` and
 * `content.info.thumbnail_url` of every accepted event, state included), for the admin API's room media
 * list and quarantine. One indexed-free scan of the events table, in SQLite's JSON functions.
 */
export function mediaInRoom(engine: RoomEngine): string[] {
  if (!engine.meta()) return [];
  const rows = engine.sql
    .exec<{ uri: string }>(
      `SELECT DISTINCT uri FROM (
         SELECT json_extract(json, '$.content.url') AS uri FROM events WHERE rejected_reason IS NULL AND json_valid(json)
         UNION ALL
         SELECT json_extract(json, '$.content.info.thumbnail_url') AS uri FROM events WHERE rejected_reason IS NULL AND json_valid(json)
       ) WHERE typeof(uri) = 'text' AND uri LIKE 'mxc://%'`,
    )
    .toArray();
  return rows.map((r) => r.uri);
}
