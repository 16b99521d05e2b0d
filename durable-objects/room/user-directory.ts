// The room's part of a user directory search (spec: Client-Server API, "User directory";
// worker/client/user-directory.ts): its joined members of this server (whose global profiles the worker
// searches in D1) and those of other servers who match the search, with the display name and avatar of
// their member event (Synapse's directory keeps other servers' users with the profile their membership
// carries). Read from the current state at search time, so members a partial-state join learns when its
// resync completes (room/partial-state.ts) are found from then on, as Synapse's directory learns them from
// the current-state deltas of that completion.
import type { RoomEngine } from "./engine.js";

/** Words of a search matched (the worker sends at most this many). */
export const MAX_DIRECTORY_WORDS = 8;
/** Most matching members of other servers one room answers. */
export const MAX_DIRECTORY_MATCHES = 51;

export interface DirectoryMember {
  user_id: string;
  display_name?: string;
  avatar_url?: string;
}

/**
 * Joined members of other servers matching every word (already ASCII-lower-cased by the caller) in their
 * user ID or member-event display name, ASCII case-insensitively as the D1 search does; the best `limit`.
 */
export function searchRemoteMembers(engine: RoomEngine, words: string[], limit: number): DirectoryMember[] {
  const terms = words.filter((w) => typeof w === "string" && w !== "").slice(0, MAX_DIRECTORY_WORDS);
  const max = Math.max(0, Math.min(Math.floor(limit), MAX_DIRECTORY_MATCHES));
  if (!engine.meta() || terms.length === 0 || max === 0) return [];
  const name = "json_extract(e.json, '$.content.displayname')";
  const conditions = terms.map(() => `(instr(lower(c.state_key), ?) > 0 OR instr(lower(coalesce(${name}, '')), ?) > 0)`).join(" AND ");
  const whole = terms.join(" ");
  const out: DirectoryMember[] = [];
  // Ranked as the worker ranks its D1 results (an exact name or localpart first, then a prefix, then
  // members with a display name); this server's members are skipped here (the worker has their profiles).
  for (const row of engine.sql.exec<{ user_id: string; displayname: SqlStorageValue; avatar_url: SqlStorageValue }>(
    `SELECT user_id, displayname, avatar_url FROM (
       SELECT c.state_key AS user_id, ${name} AS displayname, json_extract(e.json, '$.content.avatar_url') AS avatar_url
         FROM current_state c JOIN events e ON e.event_id = c.event_id
        WHERE c.type = 'm.room.member' AND c.membership = 'join' AND ${conditions})
      ORDER BY
        CASE
          WHEN lower(displayname) = ? OR instr(lower(user_id), ?) = 1 THEN 0
          WHEN instr(lower(displayname), ?) = 1 OR instr(lower(user_id), ?) = 1 THEN 1
          ELSE 2
        END,
        displayname IS NULL,
        user_id`,
    ...terms.flatMap((w) => [w, w]),
    whole,
    `@${whole}:`,
    whole,
    `@${whole}`,
  )) {
    if (engine.isLocalUser(row.user_id)) continue;
    const member: DirectoryMember = { user_id: row.user_id };
    if (typeof row.displayname === "string") member.display_name = row.displayname;
    if (typeof row.avatar_url === "string") member.avatar_url = row.avatar_url;
    out.push(member);
    if (out.length >= max) break;
  }
  return out;
}

/**
 * Whether the room's members are "in a public room" for the user directory: its join rule is public or
 * its history is world-readable (Synapse's `is_room_world_readable_or_publicly_joinable`).
 */
export function isPublicForDirectory(engine: RoomEngine): boolean {
  if (!engine.meta()) return false;
  if (engine.currentStateEvent("m.room.join_rules", "")?.content.join_rule === "public") return true;
  return engine.currentStateEvent("m.room.history_visibility", "")?.content.history_visibility === "world_readable";
}
