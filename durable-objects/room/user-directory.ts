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

/**
 * The user directory's matching and ranking, shared by the worker's D1 search of local users
 * (worker/client/user-directory.ts) and the room's search of other servers' members (below), so that the
 * two lists merge in one order. Every word must occur in the user ID or the display name (instr(): no
 * wildcard escaping, and D1 refuses LIKE patterns over 50 bytes; lower() folds ASCII only). Ranked: an
 * exact display name or localpart first, then one that starts with the term, then users with a display
 * name (spec: "ordered by rank and then whether or not profile info is available"), then by user ID.
 */
export function directoryMatch(userIdColumn: string, displayNameColumn: string, words: readonly string[]): { sql: string; params: string[] } {
  const one = `(instr(lower(${userIdColumn}), ?) > 0 OR instr(lower(coalesce(${displayNameColumn}, '')), ?) > 0)`;
  return { sql: words.map(() => one).join(" AND "), params: words.flatMap((w) => [w, w]) };
}

/** ORDER BY of the directory's rank over columns `user_id` and `displayname`; its parameters come from
 * `directoryRankParams`. */
export const DIRECTORY_RANK_ORDER = `
  CASE
    WHEN lower(displayname) = ? OR instr(lower(user_id), ?) = 1 THEN 0
    WHEN instr(lower(displayname), ?) = 1 OR instr(lower(user_id), ?) = 1 THEN 1
    ELSE 2
  END,
  displayname IS NULL,
  user_id`;

/** The parameters of DIRECTORY_RANK_ORDER for the search `words`: `@term:` starts the user ID exactly when
 * the localpart is the term, `@term` when it starts with it. */
export function directoryRankParams(words: readonly string[]): string[] {
  const whole = words.join(" ");
  return [whole, `@${whole}:`, whole, `@${whole}`];
}

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
  const match = directoryMatch("c.state_key", name, terms);
  const out: DirectoryMember[] = [];
  // Ranked as the worker ranks its D1 results; this server's members are skipped here (the worker has
  // their profiles).
  for (const row of engine.sql.exec<{ user_id: string; displayname: SqlStorageValue; avatar_url: SqlStorageValue }>(
    `SELECT user_id, displayname, avatar_url FROM (
       SELECT c.state_key AS user_id, ${name} AS displayname, json_extract(e.json, '$.content.avatar_url') AS avatar_url
         FROM current_state c JOIN events e ON e.event_id = c.event_id
        WHERE c.type = 'm.room.member' AND c.membership = 'join' AND ${match.sql})
      ORDER BY ${DIRECTORY_RANK_ORDER}`,
    ...match.params,
    ...directoryRankParams(terms),
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
