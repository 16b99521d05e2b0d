// Client-Server API: Profiles (spec: "Profiles", data/api/client-server/profile.yaml). The profile of a
// local user is the `displayname` and `avatar_url` columns of the D1 users table (the user directory
// searches the same columns). Other servers' users are asked of their server with the federation profile
// query (spec: Server-Server API, GET /_matrix/federation/v1/query/profile).
import { queryAppservicesForUser } from "../appservice/queries.js";
import { Hono, type Context } from "hono";
import { MatrixError, forbidden, invalidParam, missingParam, notFound } from "../../protocol/errors.js";
import { federationRequest } from "../../federation-client/request.js";
import { isValidUserId } from "../../protocol/auth-rules.js";
import { isJsonObject } from "../../protocol/json.js";
import { serverNameOf } from "../../protocol/pdu.js";
import { isLocalUserId, requester, requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { roomStub } from "../room-store.js";
import { userStore } from "../user-store.js";

/** Synapse's limits (MAX_DISPLAYNAME_LEN, MAX_AVATAR_URL_LEN), counted in characters. The spec only
 * caps the whole profile at 64 KiB, which these keep far below. */
export const MAX_DISPLAYNAME_LENGTH = 256;
export const MAX_AVATAR_URL_LENGTH = 1000;

export interface Profile {
  displayname?: string;
  avatar_url?: string;
}

type ProfileField = keyof Profile;
const COLUMN: Record<ProfileField, "displayname" | "avatar_url"> = { displayname: "displayname", avatar_url: "avatar_url" };
const MAX_LENGTH: Record<ProfileField, number> = { displayname: MAX_DISPLAYNAME_LENGTH, avatar_url: MAX_AVATAR_URL_LENGTH };

/** The profile of a local user, or undefined if there is no such user. Deactivated users keep their
 * row; their profile is whatever deactivation left (erasure clears it). */
export async function localProfile(env: Pick<Env, "DB">, userId: string): Promise<Profile | undefined> {
  const row = await env.DB.prepare("SELECT displayname, avatar_url FROM users WHERE user_id = ?")
    .bind(userId)
    .first<{ displayname: string | null; avatar_url: string | null }>();
  if (!row) return undefined;
  const profile: Profile = {};
  if (row.displayname !== null) profile.displayname = row.displayname;
  if (row.avatar_url !== null) profile.avatar_url = row.avatar_url;
  return profile;
}

/** Rooms updated at the same time when a profile change is propagated. */
const PROFILE_PROPAGATION_CONCURRENCY = 8;

/**
 * Called after a user's profile changed and was committed. The spec ("Events on Change of Profile
 * Information") has the server send a new `m.room.member` event with the new `displayname` /
 * `avatar_url` into every room the user is joined to: a join with the same membership and the new
 * profile (a per-room name set through the state API is replaced, as Synapse does). The joined rooms are
 * the ones the user's DO knows (durable-objects/user/sync-stream.ts `joinedRooms`). A room that refuses
 * (the user was removed meanwhile) is skipped; the profile change itself stands.
 */
export async function onProfileChanged(env: Env, userId: string, profile: Profile): Promise<void> {
  const queue = [...(await userStore(env, userId).joinedRooms())];
  const worker = async () => {
    for (let roomId = queue.shift(); roomId !== undefined; roomId = queue.shift()) {
      try {
        const result = await roomStub(env, roomId).updateMembership({ sender: userId, target: userId, action: "join", profile });
        if ("error" in result) console.warn("profile change not sent to room", roomId, result.error.errcode, result.error.error);
      } catch (e) {
        console.warn("profile change not sent to room", roomId, e instanceof Error ? e.message : e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PROFILE_PROPAGATION_CONCURRENCY, queue.length) }, worker));
}

/** A remote profile query waits this long (Synapse's federation client waits 60 s; a client waits here). */
const REMOTE_PROFILE_TIMEOUT_MS = 10_000;

/**
 * The profile of another server's user, asked of that server (only `field` when given, as Synapse asks).
 * Its refusal (404 M_NOT_FOUND for an unknown user, 403) is passed on as Synapse does; no answer is a 502.
 * Only string `displayname` and `avatar_url` are kept.
 */
async function remoteProfile(env: Env, userId: string, field?: ProfileField): Promise<Profile> {
  const params = new URLSearchParams({ user_id: userId });
  if (field) params.set("field", field);
  const answer = await federationRequest(env, {
    destination: serverNameOf(userId),
    method: "GET",
    path: `/_matrix/federation/v1/query/profile?${params.toString()}`,
    timeoutMs: REMOTE_PROFILE_TIMEOUT_MS,
  });
  if (!answer.ok) {
    if (answer.status !== null && answer.status >= 400 && answer.status < 500 && answer.errcode) throw new MatrixError(answer.status, answer.errcode, answer.error);
    throw new MatrixError(502, "M_UNKNOWN", `Failed to fetch the profile of ${userId}: ${answer.error}`);
  }
  if (!isJsonObject(answer.body)) throw new MatrixError(502, "M_UNKNOWN", `${serverNameOf(userId)} answered the profile query badly`);
  const profile: Profile = {};
  for (const key of ["displayname", "avatar_url"] as const) {
    const value = answer.body[key];
    if (typeof value === "string" && (!field || field === key)) profile[key] = value;
  }
  return profile;
}

async function profileOrNotFound(env: Env, userId: string, field?: ProfileField): Promise<Profile> {
  if (!isValidUserId(userId)) throw invalidParam("Invalid user ID");
  if (!isLocalUserId(userId, env)) return remoteProfile(env, userId, field);
  let profile = await localProfile(env, userId);
  // Spec: Application Service API, "Querying": a service may register a user of its namespace when asked.
  if (!profile && (await queryAppservicesForUser(env, userId))) profile = await localProfile(env, userId);
  if (!profile) throw notFound("Profile was not found");
  return profile;
}

function getField(field: ProfileField) {
  return async (c: Context<AppEnv>) => {
    const profile = await profileOrNotFound(c.env, c.req.param("userId")!, field);
    // A user without the field answers {} (as Synapse and Conduit do); 404 is kept for unknown users.
    const value = profile[field];
    return c.json(value === undefined ? {} : { [field]: value });
  };
}

function putField(field: ProfileField) {
  return async (c: Context<AppEnv>) => {
    const userId = c.req.param("userId")!;
    // Only one's own profile (Synapse also lets server admins edit others'; not needed yet).
    if (requester(c).userId !== userId) throw forbidden("Cannot set another user's profile");
    const body = await readJsonObject(c, { allowEmpty: false });
    if (!(field in body)) throw missingParam(`Missing key '${field}'`);
    const value = body[field];
    if (typeof value !== "string") throw invalidParam(`'${field}' must be a string`);
    if ([...value].length > MAX_LENGTH[field]) throw invalidParam(`'${field}' is too long (max ${MAX_LENGTH[field]})`);
    // An empty string removes the field (as Synapse does): clients clear their avatar that way.
    const stored = value === "" ? null : value;
    const result = await c.env.DB.prepare(`UPDATE users SET ${COLUMN[field]} = ? WHERE user_id = ?`).bind(stored, userId).run();
    if (!result.meta.changes) throw new MatrixError(404, "M_NOT_FOUND", "Profile was not found");
    await onProfileChanged(c.env, userId, await profileOrNotFound(c.env, userId));
    return c.json({});
  };
}

export const profileRoutes = new Hono<AppEnv>();
const P = "/_matrix/client/:version{v3|r0}/profile/:userId";

// GET /_matrix/client/v3/profile/{userId}
profileRoutes.get(P, async (c) => c.json(await profileOrNotFound(c.env, c.req.param("userId"))));

// GET /_matrix/client/v3/profile/{userId}/displayname
profileRoutes.get(`${P}/displayname`, getField("displayname"));

// PUT /_matrix/client/v3/profile/{userId}/displayname
profileRoutes.put(`${P}/displayname`, requireAuth, putField("displayname"));

// GET /_matrix/client/v3/profile/{userId}/avatar_url
profileRoutes.get(`${P}/avatar_url`, getField("avatar_url"));

// PUT /_matrix/client/v3/profile/{userId}/avatar_url
profileRoutes.put(`${P}/avatar_url`, requireAuth, putField("avatar_url"));
