// Client-Server API: User directory (spec: "User directory", data/api/client-server/users.yaml).
//
// The spec requires at least the users who share a room with the requester or are in public rooms, and
// lets the server search more. By default this searches exactly those (Synapse's default): the joined
// members of the requester's joined rooms and of the rooms published in the room directory.
// `USER_DIRECTORY_SEARCH_ALL_USERS=true` searches every local, non-deactivated user instead (Synapse's
// `user_directory.search_all_users`). This server's users are searched in the D1 users table (global
// profiles, not room-specific names); other servers' users by their user ID and the display name of their
// member event. Rooms and their members come from D1's directory, which each Room DO keeps from its
// current state (durable-objects/room/directory-index.ts), so a search is two D1 queries whatever the
// number of rooms; the members a partial-state join learns when its resync completes are found from then
// on (as Synapse).
//
// Weaker than Synapse's index: the public rooms whose members anyone finds are the rooms published in the
// directory (Synapse counts every room whose join rule is public or whose history is world-readable; of the
// searcher's own rooms, those count too).
import { Hono } from "hono";
import { badJson, invalidParam, missingParam } from "../../protocol/errors.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";

export const DEFAULT_SEARCH_LIMIT = 10;
/** Synapse clamps the limit to 50 as well; a directory search is a type-ahead, not an export. */
export const MAX_SEARCH_LIMIT = 50;
/** Words of the search term that are matched; more are ignored (bounds the SQL). */
const MAX_SEARCH_WORDS = 8;

export interface DirectoryUser {
  user_id: string;
  display_name?: string;
  avatar_url?: string;
}

/**
 * The directory's matching and ranking, shared by the search of this server's users (D1 `users`) and of
 * other servers' (D1 `directory_members`), so that the two lists merge in one order. Every word must occur
 * in the user ID or the display name (instr(): no wildcard escaping, and D1 refuses LIKE patterns over 50
 * bytes; lower() folds ASCII only). Ranked: an exact display name or localpart first, then one that starts
 * with the term, then users with a display name (spec: "ordered by rank and then whether or not profile info
 * is available"), then by user ID.
 */
function directoryMatch(userIdColumn: string, displayNameColumn: string, words: readonly string[]): { sql: string; params: string[] } {
  const one = `(instr(lower(${userIdColumn}), ?) > 0 OR instr(lower(coalesce(${displayNameColumn}, '')), ?) > 0)`;
  return { sql: words.map(() => one).join(" AND "), params: words.flatMap((w) => [w, w]) };
}

/** ORDER BY of the directory's rank over columns `user_id` and `displayname`; its parameters come from
 * `directoryRankParams`. */
const DIRECTORY_RANK_ORDER = `
  CASE
    WHEN lower(displayname) = ? OR instr(lower(user_id), ?) = 1 THEN 0
    WHEN instr(lower(displayname), ?) = 1 OR instr(lower(user_id), ?) = 1 THEN 1
    ELSE 2
  END,
  displayname IS NULL,
  user_id`;

/** The parameters of DIRECTORY_RANK_ORDER for the search `words`: `@term:` starts the user ID exactly when
 * the localpart is the term, `@term` when it starts with it. */
function directoryRankParams(words: readonly string[]): string[] {
  const whole = words.join(" ");
  return [whole, `@${whole}:`, whole, `@${whole}`];
}

/** ASCII-only lower-casing, to match SQLite's lower(): a non-ASCII letter then matches in its typed
 * case only, instead of never. */
const asciiLower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

type DirectoryRow = { user_id: string; displayname: string | null; avatar_url: string | null };

const toUser = (row: DirectoryRow): DirectoryUser => {
  const user: DirectoryUser = { user_id: row.user_id };
  if (row.displayname !== null) user.display_name = row.displayname;
  if (row.avatar_url !== null) user.avatar_url = row.avatar_url;
  return user;
};

/** The rooms of the default search scope, as SQL over D1 with one parameter (the searcher): the rooms the
 * searcher is joined to, as their rooms wrote them (a join is answered once its row is written), and the
 * rooms published in the directory. */
const SCOPE_ROOMS = `SELECT room_id FROM directory_members WHERE user_id = ? AND local = 1 UNION SELECT room_id FROM room_directory WHERE visibility = 'public'`;

/**
 * Searches the directory for `searcher`: every word of `term` in the user ID or the display name,
 * case-insensitively for ASCII letters. This server's users by their global profile (D1 `users`): those
 * who share a room in scope with the searcher (the searcher themselves only through a public room:
 * published, or publicly joinable or world-readable, as Synapse: sharing a private room is with others), or
 * all of them with `searchAll`. Other servers' users by their member event, from the rooms in scope in both
 * modes. Both ranked by DIRECTORY_RANK_ORDER and merged; one D1 batch.
 */
export async function searchUserDirectory(
  env: Env,
  searcher: string,
  term: string,
  limit: number,
  searchAll: boolean,
): Promise<{ results: DirectoryUser[]; limited: boolean }> {
  const words = searchWords(term);
  if (words.length === 0 || limit === 0) return { results: [], limited: false };
  const match = directoryMatch("user_id", "displayname", words);
  const rank = directoryRankParams(words);
  const inScope = searchAll
    ? { sql: "", params: [] }
    : {
        sql: `AND user_id IN (
                SELECT m.user_id FROM directory_members m
                 WHERE m.local = 1 AND m.room_id IN (${SCOPE_ROOMS})
                   AND (m.user_id <> ? OR m.room_id IN (SELECT room_id FROM directory_rooms WHERE public = 1)
                        OR m.room_id IN (SELECT room_id FROM room_directory WHERE visibility = 'public')))`,
        params: [searcher, searcher],
      };
  const [local, others] = await env.DB.batch<DirectoryRow>([
    env.DB.prepare(
      `SELECT user_id, displayname, avatar_url FROM users
        WHERE deactivated = 0 AND ${match.sql} ${inScope.sql}
        ORDER BY ${DIRECTORY_RANK_ORDER}
        LIMIT ?`,
    ).bind(...match.params, ...inScope.params, ...rank, limit + 1),
    // A user of another server in several rooms: one row, with the profile of one of them.
    env.DB.prepare(
      `SELECT user_id, displayname, avatar_url FROM (
         SELECT m.user_id, max(m.displayname) AS displayname, max(m.avatar_url) AS avatar_url FROM directory_members m
          WHERE m.local = 0 AND m.room_id IN (${SCOPE_ROOMS}) GROUP BY m.user_id)
        WHERE ${match.sql}
        ORDER BY ${DIRECTORY_RANK_ORDER}
        LIMIT ?`,
    ).bind(searcher, ...match.params, ...rank, limit + 1),
  ]);
  return merged(words, local!.results.map(toUser), others!.results.map(toUser), limit);
}

/** The search words: ASCII-lower-cased, at most MAX_SEARCH_WORDS. */
function searchWords(term: string): string[] {
  return asciiLower(term).trim().split(/\s+/).filter((w) => w !== "").slice(0, MAX_SEARCH_WORDS);
}

/** Local results (ranked by D1) and other servers' users, ranked together by the same rules. */
function merged(words: string[], local: DirectoryUser[], others: DirectoryUser[], limit: number): { results: DirectoryUser[]; limited: boolean } {
  const whole = words.join(" ");
  const rank = (u: DirectoryUser) => {
    const name = u.display_name === undefined ? undefined : asciiLower(u.display_name);
    const id = asciiLower(u.user_id);
    if (name === whole || id.startsWith(`@${whole}:`)) return 0;
    if (name?.startsWith(whole) || id.startsWith(`@${whole}`)) return 1;
    return 2;
  };
  const seen = new Set(local.map((u) => u.user_id));
  const all = [...local];
  for (const u of others) {
    if (seen.has(u.user_id)) continue;
    seen.add(u.user_id);
    all.push(u);
  }
  if (all.length > local.length) {
    all.sort((a, b) => rank(a) - rank(b) || Number(a.display_name === undefined) - Number(b.display_name === undefined) || (a.user_id < b.user_id ? -1 : a.user_id > b.user_id ? 1 : 0));
  }
  return { results: all.slice(0, limit), limited: all.length > limit };
}

const searchAllUsers = (env: Env) => env.USER_DIRECTORY_SEARCH_ALL_USERS === "true";

export const userDirectoryRoutes = new Hono<AppEnv>();

// POST /_matrix/client/v3/user_directory/search
userDirectoryRoutes.post("/_matrix/client/:version{v3|r0}/user_directory/search", requireAuth, async (c) => {
  const body = await readJsonObject(c, { allowEmpty: false });
  const term = body.search_term;
  if (term === undefined) throw missingParam("Missing search_term");
  if (typeof term !== "string") throw badJson("search_term must be a string");
  let limit = DEFAULT_SEARCH_LIMIT;
  if (body.limit !== undefined) {
    if (typeof body.limit !== "number" || !Number.isSafeInteger(body.limit) || body.limit < 0) {
      throw invalidParam("limit must be a non-negative integer");
    }
    limit = Math.min(body.limit, MAX_SEARCH_LIMIT);
  }
  return c.json(await searchUserDirectory(c.env, requester(c).userId, term, limit, searchAllUsers(c.env)));
});
