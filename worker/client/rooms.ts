// Client-Server API: Room creation (spec: "Room creation", data/api/client-server/create_room.yaml).
// The worker validates the request and builds the signed m.room.create event, because that event defines
// the room ID (v12: its reference hash, MSC4291) and so which Room DO holds the room; the Room DO then
// checks and stores every initial event (durable-objects/room/create-room.ts has the list and its order).
import { KeyIdentity, ownServerKey } from "../../durable-objects/room/key-identity.js";
import { Hono } from "hono";
import { buildLocalEvent } from "../../durable-objects/room/build-event.js";
import { createEventContent, PRESETS, type CreateRoomConfig, type MemberProfile, type RoomPreset } from "../../durable-objects/room/create-room.js";
import { isValidUserId } from "../../protocol/auth-rules.js";
import { MatrixError, badJson, forbidden, fromRpcError, invalidParam } from "../../protocol/errors.js";
import { roomIdFromCreateEvent } from "../../protocol/event-hashes.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { roomVersionRules } from "../../protocol/room-versions.js";
import { defaultRoomVersion } from "../room-version-setting.js";
import { randomToken } from "../../protocol/signing.js";
import { requester, requireAuth, isLocalUserId } from "../auth.js";
import { aliasForCreateRoom, createAliasOnCreate, deleteAlias, publishRoomOnCreate } from "../directory-store.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { roomStub } from "../room-store.js";
import { unwrap } from "../../durable-objects/room/outcome.js";
import { signingKey } from "../server-identity.js";
import { accountKeyOf } from "../account-keys.js";
import { accountKeyUserId } from "../../protocol/accounts.js";
import type { SigningKey } from "../../protocol/signing.js";
import { localProfile } from "./profile.js";
import { copyPushRulesFromPredecessor } from "./push-rules.js";

export const roomsRoutes = new Hono<AppEnv>();

/** A v12 room ID collides only if the same user creates identical rooms in the same millisecond: retry
 * with another timestamp (as Synapse does), a few times. */
const CREATE_ATTEMPTS = 5;

const optionalString = (body: JsonObject, key: string): string | undefined => {
  const v = body[key];
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw badJson(`'${key}' must be a string`);
  return v;
};

const optionalObject = (body: JsonObject, key: string): JsonObject | undefined => {
  const v = body[key];
  if (v === undefined) return undefined;
  if (!isJsonObject(v)) throw badJson(`'${key}' must be an object`);
  return v;
};

async function profileOf(env: Env, userId: string): Promise<MemberProfile> {
  if (!isLocalUserId(userId, env)) return {};
  return (await localProfile(env, userId)) ?? {};
}

/** Parses and validates a createRoom body into the config the Room DO runs (everything except the alias,
 * which needs D1). */
export async function parseCreateRoomRequest(env: Env, creator: string, body: JsonObject): Promise<{ config: CreateRoomConfig; visibility?: string; aliasName?: string }> {
  const visibility = optionalString(body, "visibility");
  if (visibility !== undefined && visibility !== "public" && visibility !== "private") {
    throw badJson("'visibility' must be 'public' or 'private'");
  }
  // Spec: without a preset, the visibility decides (public -> public_chat, else private_chat).
  const presetName = optionalString(body, "preset") ?? (visibility === "public" ? "public_chat" : "private_chat");
  if (!Object.hasOwn(PRESETS, presetName)) throw badJson(`'${presetName}' is not a valid preset`);
  const preset = presetName as RoomPreset;

  const roomVersion = optionalString(body, "room_version") ?? defaultRoomVersion(env);
  const rules = roomVersionRules(roomVersion);
  if (!rules) throw new MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", "Your homeserver does not support this room version");

  const invite: string[] = [];
  if (body.invite !== undefined) {
    if (!Array.isArray(body.invite)) throw badJson("'invite' must be a list of user IDs");
    for (const user of body.invite) {
      if (typeof user !== "string" || !isValidUserId(user)) throw invalidParam(`Invalid user_id: ${String(user)}`);
      if (!invite.includes(user)) invite.push(user);
    }
  }
  if (body.invite_3pid !== undefined) {
    if (!Array.isArray(body.invite_3pid)) throw badJson("'invite_3pid' must be a list");
    if (body.invite_3pid.length > 0) throw forbidden("Third-party invites are not supported on this server");
  }

  const initialState: CreateRoomConfig["initialState"] = [];
  if (body.initial_state !== undefined) {
    if (!Array.isArray(body.initial_state)) throw badJson("'initial_state' must be a list");
    for (const e of body.initial_state) {
      if (!isJsonObject(e) || typeof e.type !== "string" || !isJsonObject(e.content)) {
        throw badJson("'initial_state' entries need a string 'type' and an object 'content'");
      }
      if (e.state_key !== undefined && typeof e.state_key !== "string") throw badJson("'state_key' must be a string");
      initialState.push({ type: e.type, stateKey: e.state_key ?? "", content: e.content });
    }
  }

  const powerLevelContentOverride = optionalObject(body, "power_level_content_override");
  // v1-v11 (Synapse's check): an override of `users` must keep the creator, or they lock themselves out.
  // In v12 the creator is never listed (creators have infinite power).
  if (
    powerLevelContentOverride &&
    !rules.authorization.explicitlyPrivilegeRoomCreators &&
    isJsonObject(powerLevelContentOverride.users) &&
    !Object.hasOwn(powerLevelContentOverride.users, creator)
  ) {
    throw badJson(`Not a valid power_level_content_override: 'users' did not contain ${creator}`);
  }

  const isDirect = body.is_direct;
  if (isDirect !== undefined && typeof isDirect !== "boolean") throw badJson("'is_direct' must be a boolean");

  const aliasName = optionalString(body, "room_alias_name");
  const inviteeProfiles: Record<string, MemberProfile> = {};
  for (const user of invite) inviteeProfiles[user] = await profileOf(env, user);

  const config: CreateRoomConfig = {
    creator,
    roomVersion: rules.id,
    preset,
    creationContent: optionalObject(body, "creation_content") ?? {},
    powerLevelContentOverride,
    initialState,
    name: optionalString(body, "name"),
    topic: optionalString(body, "topic"),
    invite,
    remoteInvitees: invite.filter((u) => !isLocalUserId(u, env)),
    isDirect: isDirect === true,
    creatorProfile: await profileOf(env, creator),
    inviteeProfiles,
  };
  return { config, visibility, aliasName };
}

/**
 * Creates a room for `creator`: builds the create event (which names the room), reserves the alias,
 * lets the Room DO store every initial event, publishes the room if asked. Returns the room ID.
 */
export async function createRoom(env: Env, creator: string, body: JsonObject): Promise<string> {
  const { config, visibility, aliasName } = await parseCreateRoomRequest(env, creator, body);
  const rules = roomVersionRules(config.roomVersion)!;
  if (aliasName !== undefined) config.canonicalAlias = await aliasForCreateRoom(env, aliasName);
  const key = await signingKey(env);
  if (rules.eventFormat.serverKeyIdentity) {
    // MSC4345 (decision 12): the room names this server's users by its server key, and the creator's
    // server advertises its name as the unverified domain of its participation.
    const ids = new KeyIdentity(env.SERVER_NAME, ownServerKey(key), rules);
    config.creator = ids.inRoom(creator);
    config.invite = config.invite.map((u) => ids.inRoom(u));
    config.inviteeProfiles = Object.fromEntries(Object.entries(config.inviteeProfiles).map(([u, p]) => [ids.inRoom(u), p]));
    config.participationDomain = env.SERVER_NAME;
  }
  let creatorAccountKey: SigningKey | undefined;
  if (rules.eventFormat.accountKeyIdentity) {
    // MSC4348: members are named by their account keys (durable-objects/account-keys.ts: the server holds
    // one per account, made on first use); the creator's server is named by its key in the participation.
    const account = await accountKeyOf(env, creator);
    creatorAccountKey = account.key;
    config.creator = accountKeyUserId(account.accountKey);
    if (config.remoteInvitees.length > 0) throw forbidden("Invites to users of other servers are not supported in this room version yet");
    const profiles: Record<string, MemberProfile> = {};
    const invitees: string[] = [];
    for (const user of config.invite) {
      const id = accountKeyUserId((await accountKeyOf(env, user)).accountKey);
      invitees.push(id);
      profiles[id] = config.inviteeProfiles[user] ?? {};
    }
    config.invite = invitees;
    config.inviteeProfiles = profiles;
    config.participationKey = ownServerKey(key);
  }

  for (let attempt = 0; ; attempt++) {
    const roomIdBefore = rules.roomIdFormat === "server-generated" ? `!${randomToken(12)}:${env.SERVER_NAME}` : undefined;
    const create = await buildLocalEvent(
      { type: "m.room.create", stateKey: "", sender: config.creator, content: createEventContent(config, rules) },
      {
        roomId: roomIdBefore,
        rules,
        serverName: env.SERVER_NAME,
        key,
        prevEvents: [],
        state: () => undefined,
        // A retry needs another create event hash (v12 room IDs): another timestamp.
        now: Date.now() - attempt * (1 + Math.floor(Math.random() * 10)),
        accountKey: creatorAccountKey,
      },
    );
    const roomId = await roomIdFromCreateEvent(create.pdu, rules);
    // The alias points at the room before its events exist, so no other request can take it meanwhile.
    if (config.canonicalAlias !== undefined) await createAliasOnCreate(env, roomId, config.canonicalAlias, creator);
    try {
      unwrap(await roomStub(env, roomId).createRoom({ roomId, createEvent: create.pdu, config }));
    } catch (e) {
      if (config.canonicalAlias !== undefined) await deleteAlias(env, config.canonicalAlias);
      const err = fromRpcError(e);
      if (err instanceof MatrixError && err.errcode === "M_ROOM_IN_USE" && attempt + 1 < CREATE_ATTEMPTS) continue;
      throw err;
    }
    await publishRoomOnCreate(env, roomId, visibility);
    await inviteRemoteInvitees(env, roomId, creator, config);
    return roomId;
  }
}

/**
 * Invites the users of other servers that createRoom named, once the room exists: each invite goes through
 * the invitee's server (PUT /_matrix/federation/v2/invite), as Synapse sends them after the room's initial
 * events. As in Synapse, an invite that fails fails the request (the room stays).
 */
async function inviteRemoteInvitees(env: Env, roomId: string, creator: string, config: CreateRoomConfig): Promise<void> {
  for (const target of config.remoteInvitees) {
    const content: JsonObject = config.isDirect ? { membership: "invite", is_direct: true } : { membership: "invite" };
    unwrap(await roomStub(env, roomId).updateMembership({ sender: creator, target, action: "invite", roomId, content }));
  }
}

// POST /_matrix/client/v3/createRoom
roomsRoutes.post("/_matrix/client/:version{v3|r0}/createRoom", requireAuth, async (c) => {
  const body = await readJsonObject(c, { allowEmpty: true });
  const roomId = await createRoom(c.env, requester(c).userId, body);
  // A room upgraded by hand (createRoom naming a `predecessor`, then a tombstone): the creator's push rules
  // for the old room are copied, as for an upgrade through /upgrade and as other users' are when they join.
  if (isJsonObject(body.creation_content) && isJsonObject(body.creation_content.predecessor)) {
    await copyPushRulesFromPredecessor(c.env, requester(c).userId, roomId);
  }
  return c.json({ room_id: roomId });
});
