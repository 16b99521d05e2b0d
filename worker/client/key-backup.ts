// Client-Server API: Server-side key backups (spec: "End-to-End Encryption" > "Server-side key backups";
// data/api/client-server/key_backup.yaml). Stored in the user's Durable Object
// (durable-objects/user/key-backup.ts), which applies the version and key replacement rules.
import { Hono, type Context } from "hono";
import { badJson, invalidParam, missingParam, notFound } from "../../protocol/errors.js";
import { validateBackupKeyData } from "../../protocol/e2e-keys.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import type { BackupKeyUpload, BackupVersionInfo, StoredBackupKey } from "../../durable-objects/user/key-backup.js";
import { unwrap } from "../../durable-objects/user/outcome.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { userStore } from "../user-store.js";

export const keyBackupRoutes = new Hono<AppEnv>();

const CLIENT = "/_matrix/client/:version{v3|r0}";

/** The backup algorithms clients use; the spec defines one, Synapse accepts any string. We accept any
 * non-empty string too: the server never interprets the backup. */
function algorithmOf(body: JsonObject): string {
  const algorithm = body.algorithm;
  if (typeof algorithm !== "string" || algorithm === "") throw badJson("algorithm must be a string");
  return algorithm;
}

function authDataOf(body: JsonObject): string {
  const authData = body.auth_data;
  if (!isJsonObject(authData)) throw badJson("auth_data must be an object");
  return JSON.stringify(authData);
}

function versionJson(info: BackupVersionInfo): JsonObject {
  return {
    algorithm: info.algorithm,
    auth_data: JSON.parse(info.auth_data) as JsonObject,
    count: info.count,
    etag: info.etag,
    version: info.version,
  };
}

/** The required `version` query parameter of the /room_keys/keys endpoints. */
function versionParam(c: Context<AppEnv>): string {
  const version = c.req.query("version");
  if (version === undefined || version === "") throw missingParam("Missing version parameter");
  return version;
}

function keyJson(key: StoredBackupKey): JsonObject {
  return {
    first_message_index: key.first_message_index,
    forwarded_count: key.forwarded_count,
    is_verified: key.is_verified,
    session_data: JSON.parse(key.session_data) as JsonObject,
  };
}

/** Reads `{sessions: {sessionId: KeyBackupData}}` of one room into uploads. */
function sessionsOf(roomId: string, room: unknown, into: BackupKeyUpload[]): void {
  if (!isJsonObject(room) || !isJsonObject(room.sessions)) throw badJson(`${roomId}: sessions must be an object`);
  for (const [sessionId, data] of Object.entries(room.sessions)) {
    into.push({ roomId, sessionId, data: validateBackupKeyData(data, `${roomId} ${sessionId}`) });
  }
}

// POST /_matrix/client/v3/room_keys/version
keyBackupRoutes.post(`${CLIENT}/room_keys/version`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const body = await readJsonObject(c, { allowEmpty: false });
  const version = await userStore(c.env, userId).createKeyBackupVersion(algorithmOf(body), authDataOf(body));
  return c.json({ version });
});

// GET /_matrix/client/v3/room_keys/version
keyBackupRoutes.get(`${CLIENT}/room_keys/version`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const info = await userStore(c.env, userId).getKeyBackupVersion();
  if (!info) throw notFound("No current backup version");
  return c.json(versionJson(info));
});

// GET /_matrix/client/v3/room_keys/version/{version}
keyBackupRoutes.get(`${CLIENT}/room_keys/version/:backupVersion`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const info = await userStore(c.env, userId).getKeyBackupVersion(c.req.param("backupVersion"));
  if (!info) throw notFound("Unknown backup version");
  return c.json(versionJson(info));
});

// PUT /_matrix/client/v3/room_keys/version/{version}
keyBackupRoutes.put(`${CLIENT}/room_keys/version/:backupVersion`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const version = c.req.param("backupVersion");
  const body = await readJsonObject(c, { allowEmpty: false });
  // Spec: "If present, must be the same as the version in the path parameter."
  if (body.version !== undefined && body.version !== version) {
    throw invalidParam("Version in body does not match the version in the path");
  }
  unwrap(await userStore(c.env, userId).updateKeyBackupVersion(version, algorithmOf(body), authDataOf(body)));
  return c.json({});
});

// DELETE /_matrix/client/v3/room_keys/version/{version}
keyBackupRoutes.delete(`${CLIENT}/room_keys/version/:backupVersion`, requireAuth, async (c) => {
  const { userId } = requester(c);
  unwrap(await userStore(c.env, userId).deleteKeyBackupVersion(c.req.param("backupVersion")));
  return c.json({});
});

// PUT /_matrix/client/v3/room_keys/keys
keyBackupRoutes.put(`${CLIENT}/room_keys/keys`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const version = versionParam(c);
  const body = await readJsonObject(c, { allowEmpty: false });
  if (!isJsonObject(body.rooms)) throw badJson("rooms must be an object");
  const keys: BackupKeyUpload[] = [];
  for (const [roomId, room] of Object.entries(body.rooms)) sessionsOf(roomId, room, keys);
  return c.json(unwrap(await userStore(c.env, userId).putBackupKeys(version, keys)));
});

// PUT /_matrix/client/v3/room_keys/keys/{roomId}
keyBackupRoutes.put(`${CLIENT}/room_keys/keys/:roomId`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const version = versionParam(c);
  const body = await readJsonObject(c, { allowEmpty: false });
  const keys: BackupKeyUpload[] = [];
  sessionsOf(c.req.param("roomId"), body, keys);
  return c.json(unwrap(await userStore(c.env, userId).putBackupKeys(version, keys)));
});

// PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}
keyBackupRoutes.put(`${CLIENT}/room_keys/keys/:roomId/:sessionId`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const version = versionParam(c);
  const body = await readJsonObject(c, { allowEmpty: false });
  const roomId = c.req.param("roomId");
  const sessionId = c.req.param("sessionId");
  const keys = [{ roomId, sessionId, data: validateBackupKeyData(body, `${roomId} ${sessionId}`) }];
  return c.json(unwrap(await userStore(c.env, userId).putBackupKeys(version, keys)));
});

// GET /_matrix/client/v3/room_keys/keys
keyBackupRoutes.get(`${CLIENT}/room_keys/keys`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const keys = unwrap(await userStore(c.env, userId).getBackupKeys(versionParam(c)));
  const rooms: Record<string, { sessions: JsonObject }> = {};
  for (const key of keys) (rooms[key.roomId] ??= { sessions: {} }).sessions[key.sessionId] = keyJson(key);
  return c.json({ rooms });
});

// GET /_matrix/client/v3/room_keys/keys/{roomId}
keyBackupRoutes.get(`${CLIENT}/room_keys/keys/:roomId`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const keys = unwrap(await userStore(c.env, userId).getBackupKeys(versionParam(c), c.req.param("roomId")));
  // Spec: "If no keys are found, then an object with an empty `sessions` property will be returned".
  const sessions: JsonObject = {};
  for (const key of keys) sessions[key.sessionId] = keyJson(key);
  return c.json({ sessions });
});

// GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}
keyBackupRoutes.get(`${CLIENT}/room_keys/keys/:roomId/:sessionId`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const keys = unwrap(
    await userStore(c.env, userId).getBackupKeys(versionParam(c), c.req.param("roomId"), c.req.param("sessionId")),
  );
  if (keys.length === 0) throw notFound("Key not found.");
  return c.json(keyJson(keys[0]!));
});

// DELETE /_matrix/client/v3/room_keys/keys
keyBackupRoutes.delete(`${CLIENT}/room_keys/keys`, requireAuth, async (c) => {
  const { userId } = requester(c);
  return c.json(unwrap(await userStore(c.env, userId).deleteBackupKeys(versionParam(c))));
});

// DELETE /_matrix/client/v3/room_keys/keys/{roomId}
keyBackupRoutes.delete(`${CLIENT}/room_keys/keys/:roomId`, requireAuth, async (c) => {
  const { userId } = requester(c);
  return c.json(unwrap(await userStore(c.env, userId).deleteBackupKeys(versionParam(c), c.req.param("roomId"))));
});

// DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}
keyBackupRoutes.delete(`${CLIENT}/room_keys/keys/:roomId/:sessionId`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const update = await userStore(c.env, userId).deleteBackupKeys(versionParam(c), c.req.param("roomId"), c.req.param("sessionId"));
  return c.json(unwrap(update));
});
