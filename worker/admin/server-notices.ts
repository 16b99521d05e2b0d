// Server notices (Synapse docs/server_notices.md and admin_api/server_notices.md): messages from the server
// to a user, posted by a system user in a per-user room tagged `m.server_notice` (spec: Client-Server API,
// "Server Notices"). Configured as Synapse's `server_notices` section, by environment variables:
// SERVER_NOTICES_LOCALPART (`system_mxid_localpart`, required to enable notices), SERVER_NOTICES_DISPLAY_NAME,
// SERVER_NOTICES_AVATAR_URL, SERVER_NOTICES_ROOM_NAME (default "Server Notices"), SERVER_NOTICES_ROOM_TOPIC,
// SERVER_NOTICES_ROOM_AVATAR_URL, SERVER_NOTICES_AUTO_JOIN ("true": the user is joined, not invited).
// The system user is a real account without a password (it cannot log in). D1 `server_notice_rooms` remembers
// each user's room; a user who left it is invited back (a new one is made when that is not possible).
import { Hono, type Context } from "hono";
import { unwrap } from "../../durable-objects/room/outcome.js";
import { MatrixError, badJson, missingParam, notFound } from "../../protocol/errors.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { createUser, getUser } from "../accounts.js";
import { isLocalUserId, localUserId, requester } from "../auth.js";
import { createRoom } from "../client/rooms.js";
import { localProfile } from "../client/profile.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { roomStub } from "../room-store.js";
import { userStore } from "../user-store.js";
import { requireAdmin } from "./auth.js";

export const adminServerNoticeRoutes = new Hono<AppEnv>();

/** The `server_notices` settings (undefined: notices are off, Synapse's default). */
export interface ServerNoticesConfig {
  systemUserId: string;
  displayName?: string;
  avatarUrl?: string;
  roomName: string;
  roomTopic?: string;
  roomAvatarUrl?: string;
  autoJoin: boolean;
}


export function serverNoticesConfig(env: Env): ServerNoticesConfig | undefined {
  const localpart = env.SERVER_NOTICES_LOCALPART?.trim();
  if (!localpart) return undefined;
  const opt = (v: string | undefined) => (v === undefined || v === "" ? undefined : v);
  return {
    systemUserId: localUserId(localpart, env),
    displayName: opt(env.SERVER_NOTICES_DISPLAY_NAME),
    avatarUrl: opt(env.SERVER_NOTICES_AVATAR_URL),
    roomName: opt(env.SERVER_NOTICES_ROOM_NAME) ?? "Server Notices",
    roomTopic: opt(env.SERVER_NOTICES_ROOM_TOPIC),
    roomAvatarUrl: opt(env.SERVER_NOTICES_ROOM_AVATAR_URL),
    autoJoin: env.SERVER_NOTICES_AUTO_JOIN === "true",
  };
}

/**
 * A user may not reject the invite to their server notices room (Synapse: 403
 * M_CANNOT_LEAVE_SERVER_NOTICE_ROOM, for an invite sent by the system user); once joined they may leave it,
 * and the next notice makes a new room.
 */
export async function refuseServerNoticeInviteRejection(env: Env, roomId: string, userId: string): Promise<void> {
  const config = serverNoticesConfig(env);
  if (!config || userId === config.systemUserId) return;
  const room = roomStub(env, roomId);
  const current = await room.membership(userId);
  if (current?.membership !== "invite") return;
  const invite = await room.getPdu(current.eventId);
  if (invite?.sender === config.systemUserId) {
    throw new MatrixError(403, "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM", "You cannot reject this invite");
  }
}

/** The room tag clients show server notice rooms by (spec: "Server Notices"). */
export const SERVER_NOTICE_TAG = "m.server_notice";

/** Makes the system user's account exist (no password: nobody logs in as it), with the configured profile. */
async function ensureSystemUser(env: Env, config: ServerNoticesConfig): Promise<void> {
  if (await getUser(env, config.systemUserId)) return;
  await createUser(env, config.systemUserId, null, { displayname: config.displayName });
  if (config.avatarUrl !== undefined) {
    await env.DB.prepare("UPDATE users SET avatar_url = ? WHERE user_id = ?").bind(config.avatarUrl, config.systemUserId).run();
  }
}

/** The user's notices room: the remembered one while the user is still invited to or joined in it, else a
 * new one (Synapse's `get_or_create_notice_room_for_user`). */
async function noticeRoomFor(env: Env, config: ServerNoticesConfig, userId: string): Promise<string> {
  const row = await env.DB.prepare("SELECT room_id FROM server_notice_rooms WHERE user_id = ?").bind(userId).first<{ room_id: string }>();
  if (row) {
    const room = roomStub(env, row.room_id);
    const [mine, theirs] = await Promise.all([room.membership(config.systemUserId), room.membership(userId)]);
    if (mine?.membership === "join") {
      if (theirs?.membership === "join" || theirs?.membership === "invite") return row.room_id;
      // A user who left their notices room is invited back into it, not given a new one (Synapse's
      // `maybe_invite_user_to_room`; Complement's TestServerNotices). A ban needs a new room.
      if (theirs === null || theirs.membership === "leave") {
        const profile = await localProfile(env, userId);
        const invited = await room.updateMembership({ sender: config.systemUserId, target: userId, action: "invite", profile });
        if ("ok" in invited) {
          if (config.autoJoin) unwrap(await room.updateMembership({ sender: userId, target: userId, action: "join", profile }));
          return row.room_id;
        }
      }
    }
  }
  await ensureSystemUser(env, config);
  const initialState: JsonObject[] = [];
  if (config.roomAvatarUrl !== undefined) initialState.push({ type: "m.room.avatar", state_key: "", content: { url: config.roomAvatarUrl } });
  const request: JsonObject = {
    preset: "private_chat",
    name: config.roomName,
    invite: [userId],
    // As Synapse: the room stays on this server and the user cannot post in it.
    creation_content: { "m.federate": false },
    power_level_content_override: { users_default: -10 },
    initial_state: initialState,
  };
  if (config.roomTopic !== undefined) request.topic = config.roomTopic;
  const roomId = await createRoom(env, config.systemUserId, request);
  if (config.autoJoin) {
    const profile = await localProfile(env, userId);
    unwrap(await roomStub(env, roomId).updateMembership({ sender: userId, target: userId, action: "join", profile }));
  }
  await userStore(env, userId).setAccountData(roomId, "m.tag", { tags: { [SERVER_NOTICE_TAG]: {} } });
  await env.DB.prepare("INSERT INTO server_notice_rooms (user_id, room_id) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id")
    .bind(userId, roomId)
    .run();
  return roomId;
}

async function sendServerNotice(c: Context<AppEnv>, txnId?: string): Promise<Response> {
  const env = c.env;
  const config = serverNoticesConfig(env);
  if (!config) throw new MatrixError(400, "M_UNKNOWN", "Server notices are not enabled on this server");
  const body = await readJsonObject(c, { allowEmpty: false });
  const { user_id: userId, content } = body;
  if (userId === undefined) throw missingParam("Missing params: ['user_id']");
  if (content === undefined) throw missingParam("Missing params: ['content']");
  if (typeof userId !== "string") throw badJson("'user_id' must be a string");
  if (!isJsonObject(content)) throw badJson("'content' must be an object");
  const type = body.type ?? "m.room.message";
  if (typeof type !== "string" || type === "") throw badJson("'type' must be a non-empty string");
  const stateKey = body.state_key;
  if (stateKey !== undefined && typeof stateKey !== "string") throw badJson("'state_key' must be a string");
  if (!isLocalUserId(userId, env)) throw new MatrixError(400, "M_UNKNOWN", "Server notices can only be sent to local users");
  const user = await getUser(env, userId);
  if (!user || user.deactivated) throw notFound("User not found");

  const roomId = await noticeRoomFor(env, config, userId);
  const admin = requester(c);
  const sent = unwrap(
    await roomStub(env, roomId).sendEvent({
      sender: config.systemUserId,
      type,
      stateKey,
      content,
      // A retried PUT returns the first event; the admin's device scopes the transaction ID.
      txn: txnId === undefined ? undefined : { deviceId: `${admin.userId}|${admin.deviceId}`, txnId },
    }),
  );
  return c.json({ event_id: sent.eventId });
}

// POST /_synapse/admin/v1/send_server_notice
adminServerNoticeRoutes.post("/_synapse/admin/v1/send_server_notice", requireAdmin, (c) => sendServerNotice(c));

// PUT /_synapse/admin/v1/send_server_notice/{txnId}
adminServerNoticeRoutes.put("/_synapse/admin/v1/send_server_notice/:txnId", requireAdmin, (c) => sendServerNotice(c, c.req.param("txnId")));
