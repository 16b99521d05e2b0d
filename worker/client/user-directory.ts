// Client-Server API: User directory (spec: "User directory", data/api/client-server/users.yaml).
//
// The spec requires at least the users who share a room with the requester or are in public rooms, and
// lets the server search more. By default this searches exactly those (Synapse's default): the joined
// members of the requester's joined rooms and of the rooms published in the room directory, asked of their
// Room DOs at search time. `USER_DIRECTORY_SEARCH_ALL_USERS=true` searches every local, non-deactivated
// user instead (Synapse's `user_directory.search_all_users`). This server's users are searched in the D1
// users table (global profiles, not room-specific names); other servers' users are searched by the rooms
// in scope, by their user ID and the display name of their member event (room/user-directory.ts), so the
// members a partial-state join learns when its resync completes are found from then on (as Synapse).
//
// Weaker than Synapse's index: the public rooms whose members anyone finds are the rooms published in the
// directory (Synapse counts every room whose join rule is public or whose history is world-readable; of the
// searcher's own rooms, those count too), at most MAX_SCOPE_PUBLIC_ROOMS of them, and each search costs one
// Room DO call per room in scope.
import { Hono } from "hono";
import { badJson, invalidParam, missingParam } from "../../protocol/errors.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { userStore } from "../user-store.js";
import { DIRECTORY_RANK_ORDER, directoryMatch, directoryRankParams } from "../../durable-objects/room/user-directory.js";

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

/** ASCII-only lower-casing, to match SQLite's lower(): a non-ASCII letter then matches in its typed
 * case only, instead of never. */
const asciiLower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

/**
 * Searches local users: every word of `term` in the user ID or the display name, case-insensitively for
 * ASCII letters, ranked as the rooms rank other servers' members (durable-objects/room/user-directory.ts
 * `directoryMatch`, DIRECTORY_RANK_ORDER), and merged with those.
 */
export async function searchUserDirectory(
  env: Pick<Env, "DB">,
  term: string,
  limit: number,
  /** Only these users (undefined: all local users). */
  scope?: string[],
  /** Matching users of other servers (from the rooms in scope). */
  others: DirectoryUser[] = [],
): Promise<{ results: DirectoryUser[]; limited: boolean }> {
  const words = searchWords(term);
  if (words.length === 0 || limit === 0) return { results: [], limited: false };
  if (scope?.length === 0) return merged(words, [], others, limit);
  const match = directoryMatch("user_id", "displayname", words);
  const params: (string | number)[] = [...match.params];
  if (scope) params.push(JSON.stringify(scope));
  const sql = `
    SELECT user_id, displayname, avatar_url FROM users
     WHERE deactivated = 0 AND ${match.sql}${scope ? " AND user_id IN (SELECT value FROM json_each(?))" : ""}
     ORDER BY ${DIRECTORY_RANK_ORDER}
     LIMIT ?`;
  params.push(...directoryRankParams(words), limit + 1);
  const { results } = await env.DB.prepare(sql)
    .bind(...params)
    .all<{ user_id: string; displayname: string | null; avatar_url: string | null }>();
  const users = results.map((row) => {
    const user: DirectoryUser = { user_id: row.user_id };
    if (row.displayname !== null) user.display_name = row.displayname;
    if (row.avatar_url !== null) user.avatar_url = row.avatar_url;
    return user;
  });
  return merged(words, users, others, limit);
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

/** At most this many published rooms make up the "public rooms" of the default search scope. */
export const MAX_SCOPE_PUBLIC_ROOMS = 500;

/** The users `searcher` may find by default: the joined members of their joined rooms and of the rooms
 * published in the directory. `local`: this server's (searched in D1); `others`: other servers' users
 * who match the search words, as the rooms found them (at most `limit` per room). */
export async function directoryScope(env: Env, searcher: string, words: string[], limit: number): Promise<{ local: string[]; others: DirectoryUser[] }> {
  const [joined, published] = await Promise.all([
    userStore(env, searcher).joinedRooms(),
    env.DB.prepare("SELECT room_id FROM room_directory WHERE visibility = 'public' LIMIT ?").bind(MAX_SCOPE_PUBLIC_ROOMS).all<{ room_id: string }>(),
  ]);
  const publicRooms = new Set(published.results.map((r) => r.room_id));
  const rooms = [...new Set([...joined, ...publicRooms])];
  const empty = { local: [] as string[], remote: [] as DirectoryUser[], public: false };
  const answers = await Promise.all(rooms.map((roomId) => env.ROOMS.get(env.ROOMS.idFromName(roomId)).directoryMembers(words, limit).catch(() => empty)));
  const local = new Set<string>();
  const others: DirectoryUser[] = [];
  // The searcher finds themselves only through a public room: published, or publicly joinable or
  // world-readable (as Synapse: sharing a private room is with others).
  answers.forEach((answer, i) => {
    for (const m of answer.local) if (m !== searcher || answer.public || publicRooms.has(rooms[i]!)) local.add(m);
    others.push(...answer.remote);
  });
  return { local: [...local], others };
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
  const words = searchWords(term);
  if (words.length === 0 || limit === 0) return c.json({ results: [], limited: false });
  // Other servers' users come from the rooms in scope in both modes (search-all widens this server's only).
  const { local, others } = await directoryScope(c.env, requester(c).userId, words, limit + 1);
  return c.json(await searchUserDirectory(c.env, term, limit, searchAllUsers(c.env) ? undefined : local, others));
});
