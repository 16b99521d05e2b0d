// D1 schema (drizzle-orm). D1 holds what is looked up across users and rooms: accounts, tokens,
// server keys, aliases and directories. Per-room and per-user data lives in Durable Objects.
// After editing, run `npm run db:generate` to write a migration into schema/migrations.
import { index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

/** This server's ed25519 signing keys. Exactly one row has `expired_ts` null: the current key. */
export const serverSigningKeys = sqliteTable("server_signing_keys", {
  keyId: text("key_id").primaryKey(),
  /** Synapse signing.key line: `ed25519 <version> <seed>`. */
  keyFile: text("key_file").notNull(),
  publicKey: text("public_key").notNull(),
  createdTs: integer("created_ts").notNull(),
  /** When the key stopped being used; it is then listed in `old_verify_keys`. */
  expiredTs: integer("expired_ts"),
});

/** Cache of other servers' verify keys (filled by federation). */
export const remoteServerKeys = sqliteTable(
  "remote_server_keys",
  {
    serverName: text("server_name").notNull(),
    keyId: text("key_id").notNull(),
    publicKey: text("public_key").notNull(),
    validUntilTs: integer("valid_until_ts").notNull(),
    expiredTs: integer("expired_ts"),
    fetchedTs: integer("fetched_ts").notNull(),
  },
  (t) => [primaryKey({ columns: [t.serverName, t.keyId] })],
);

/** Other servers' key documents as received (the origin's signatures included), kept to answer notary
 * queries (spec: "Querying Keys Through Another Server") and to know when a server was last asked. */
export const remoteServerKeyDocuments = sqliteTable("remote_server_key_documents", {
  serverName: text("server_name").primaryKey(),
  /** The latest verified document (JSON text); null while none was ever fetched. */
  keyJson: text("key_json"),
  validUntilTs: integer("valid_until_ts"),
  fetchedTs: integer("fetched_ts"),
  /** The last fetch attempt, successful or not: a server is not asked again within a minimum interval. */
  lastAttemptTs: integer("last_attempt_ts").notNull(),
});

/** Cached `/.well-known/matrix/server` answers (spec: "Resolving server names", step 3). */
export const federationWellKnown = sqliteTable("federation_well_known", {
  serverName: text("server_name").primaryKey(),
  /** The valid `m.server`; null: no usable delegation (error or invalid answer), discovery goes on to SRV. */
  delegatedServer: text("delegated_server"),
  expiresTs: integer("expires_ts").notNull(),
  /** Consecutive failures (network errors, 5xx), for exponential back-off. */
  failures: integer("failures").notNull().default(0),
});

// ---------------------------------------------------------------------------------------------
// Accounts (Client-Server API: "Account registration and management", "Login", "Device management").

/** Local user accounts. `user_id` is the full Matrix user ID (`@localpart:server`). */
export const users = sqliteTable("users", {
  userId: text("user_id").primaryKey(),
  /** `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>` (see worker/password.ts); null: no password login. */
  passwordHash: text("password_hash"),
  createdTs: integer("created_ts").notNull(),
  /** Deactivated accounts keep their row (the user ID can never be registered again) but cannot log in. */
  deactivated: integer("deactivated", { mode: "boolean" }).notNull().default(false),
  /** Server administrator (Synapse's `admin` flag, set by shared-secret registration). */
  admin: integer("admin", { mode: "boolean" }).notNull().default(false),
  /** Profile (Client-Server API "Profiles"); owned by worker/client/profile.ts. */
  displayname: text("displayname"),
  avatarUrl: text("avatar_url"),
  /** Synapse's `user_type` (`bot`, `support` or null), set through the admin API. */
  userType: text("user_type"),
  /** Deactivated with `erase` (Synapse's "GDPR-erased"): profile removed. */
  erased: integer("erased", { mode: "boolean" }).notNull().default(false),
});

/** A user's devices. A device exists as long as it has (or may get) an access token. */
export const devices = sqliteTable(
  "devices",
  {
    userId: text("user_id").notNull(),
    deviceId: text("device_id").notNull(),
    displayName: text("display_name"),
    createdTs: integer("created_ts").notNull(),
    lastSeenTs: integer("last_seen_ts"),
    lastSeenIp: text("last_seen_ip"),
  },
  (t) => [primaryKey({ columns: [t.userId, t.deviceId] })],
);

/** Access tokens, stored as the SHA-256 of the token (hex); the token itself is never stored. */
export const accessTokens = sqliteTable(
  "access_tokens",
  {
    tokenHash: text("token_hash").primaryKey(),
    userId: text("user_id").notNull(),
    deviceId: text("device_id").notNull(),
    createdTs: integer("created_ts").notNull(),
    /** Null: never expires (sessions without refresh tokens). */
    expiresTs: integer("expires_ts"),
    /** The refresh token issued together with this access token (refresh-token sessions). */
    refreshTokenHash: text("refresh_token_hash"),
    /** False until first used; the first use of a refreshed access token revokes the previous refresh token. */
    used: integer("used", { mode: "boolean" }).notNull().default(true),
  },
  (t) => [index("access_tokens_device").on(t.userId, t.deviceId), index("access_tokens_refresh").on(t.refreshTokenHash)],
);

/** Refresh tokens (hashed). `next_token_hash` chains a token to the one issued when it was used. */
export const refreshTokens = sqliteTable(
  "refresh_tokens",
  {
    tokenHash: text("token_hash").primaryKey(),
    userId: text("user_id").notNull(),
    deviceId: text("device_id").notNull(),
    createdTs: integer("created_ts").notNull(),
    nextTokenHash: text("next_token_hash"),
  },
  (t) => [index("refresh_tokens_device").on(t.userId, t.deviceId), index("refresh_tokens_next").on(t.nextTokenHash)],
);

/** Registration tokens (spec: "Token-authenticated registration"; administered as in Synapse's admin API). */
export const registrationTokens = sqliteTable("registration_tokens", {
  token: text("token").primaryKey(),
  /** Null: unlimited. */
  usesAllowed: integer("uses_allowed"),
  /** UIA sessions that completed the token stage but not yet the registration. */
  pending: integer("pending").notNull().default(0),
  /** Registrations completed with this token. */
  completed: integer("completed").notNull().default(0),
  /** Milliseconds since the epoch; null: never expires. */
  expiryTime: integer("expiry_time"),
});

/** User-interactive authentication sessions (spec: "User-Interactive Authentication API"). */
export const uiaSessions = sqliteTable("uia_sessions", {
  sessionId: text("session_id").primaryKey(),
  /** The request the session protects: HTTP method and an operation name (`register`,
   * `delete_device:<id>`...) standing for the path; a session cannot be reused for another request. */
  method: text("method").notNull(),
  path: text("path").notNull(),
  /** The authenticated user for UIA on an authenticated endpoint; null for registration. */
  userId: text("user_id"),
  /** JSON array of completed stage types. */
  completed: text("completed").notNull().default("[]"),
  /** The registration token this session validated (counted in `pending` until used or expired). */
  registrationToken: text("registration_token"),
  createdTs: integer("created_ts").notNull(),
});

/** Token buckets for rate limiting (see worker/ratelimit.ts); key is e.g. `login:ip:192.0.2.1`. */
export const rateLimits = sqliteTable("rate_limits", {
  key: text("key").primaryKey(),
  /** Bucket level: actions counted and not yet drained. */
  level: real("level").notNull(),
  updatedTs: integer("updated_ts").notNull(),
});

/** Nonces for Synapse-compatible shared-secret registration (single use, short-lived). */
export const registrationNonces = sqliteTable("registration_nonces", {
  nonce: text("nonce").primaryKey(),
  createdTs: integer("created_ts").notNull(),
});

/** Room aliases of this server (spec: Client-Server API, "Room aliases"; `PUT /directory/room/{roomAlias}`).
 * Only aliases whose server part is this server's name are stored here. */
export const roomAliases = sqliteTable(
  "room_aliases",
  {
    /** `#localpart:server`, as the client wrote it (aliases are case-sensitive). */
    alias: text("alias").primaryKey(),
    roomId: text("room_id").notNull(),
    /** The user who created the mapping; may delete it (spec: DELETE /directory/room/{roomAlias}). */
    creator: text("creator").notNull(),
    createdTs: integer("created_ts").notNull(),
  },
  (t) => [index("room_aliases_room").on(t.roomId)],
);

/** Visibility of rooms in this server's published room directory (spec: "Published room directory").
 * A room without a row is `private`. */
export const roomDirectory = sqliteTable(
  "room_directory",
  {
    roomId: text("room_id").primaryKey(),
    /** `public` or `private`. */
    visibility: text("visibility").notNull(),
    updatedTs: integer("updated_ts").notNull(),
  },
  (t) => [index("room_directory_visibility").on(t.visibility)],
);

/** Content reports (spec: Client-Server API, "Reporting content": POST /rooms/{roomId}/report/{eventId},
 * POST /rooms/{roomId}/report). Kept for the server's administrators; `event_id` is null for a report of
 * a whole room. */
export const reports = sqliteTable(
  "reports",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    /** The user who reported. */
    reporter: text("reporter").notNull(),
    roomId: text("room_id").notNull(),
    eventId: text("event_id"),
    reason: text("reason"),
    receivedTs: integer("received_ts").notNull(),
  },
  (t) => [index("reports_room").on(t.roomId)],
);

/** User reports (spec: Client-Server API, "Reporting content", POST /users/{userId}/report; MSC4260),
 * kept apart from content reports as Synapse keeps them (`user_reports`): they name no room. */
export const userReports = sqliteTable(
  "user_reports",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    /** The user who reported. */
    reporter: text("reporter").notNull(),
    /** The reported user (always one of ours: reports of others are not kept). */
    targetUserId: text("target_user_id").notNull(),
    reason: text("reason").notNull(),
    receivedTs: integer("received_ts").notNull(),
  },
  (t) => [index("user_reports_target").on(t.targetUserId)],
);

/** Which room an event belongs to, for GET /_matrix/federation/v1/event/{eventId} (the one federation read
 * whose path names no room). Written by the Room DO after commit, off the send path; an event asked for
 * before its row lands gets 404, which the spec allows the asker to retry. */
export const eventRooms = sqliteTable(
  "event_rooms",
  {
    eventId: text("event_id").primaryKey(),
    roomId: text("room_id").notNull(),
  },
  // The admin API lists the rooms this server holds from it, and a room's purge deletes its rows.
  (t) => [index("event_rooms_room").on(t.roomId)],
);

/** Each room's latest activity, as the Room DO last reported it after a commit (room/event-index.ts): its
 * newest stream ordering and the time of its newest event of a type that bumps a room in sliding sync's
 * lists (MSC4186 `bump_stamp`). A User DO that has not been listening to its rooms reads it to tell which
 * rooms have news without asking each Room DO (docs/fan-out.md, "Many rooms"). A hint, never the truth:
 * written in the background after the commit, so it may lag; the room itself stays the source of truth. */
export const roomActivity = sqliteTable("room_activity", {
  roomId: text("room_id").primaryKey(),
  streamOrdering: integer("stream_ordering").notNull(),
  bumpTs: integer("bump_ts"),
});

/** The media repository's metadata (spec: Client-Server API, "Content repository"); the bytes are in R2
 * (worker/media/store.ts names the keys). One row per `mxc://<server_name>/<media_id>`: local uploads
 * (`user_id` set) and remote media cached on first request (`user_id` null). A row created by
 * POST /_matrix/media/v1/create has `uploaded_ts` null until its PUT, and `unused_expires_ts` set. */
export const media = sqliteTable(
  "media",
  {
    serverName: text("server_name").notNull(),
    mediaId: text("media_id").notNull(),
    /** The uploader (local media only). */
    userId: text("user_id"),
    /** The uploader's Content-Type (or the origin server's for remote media). */
    contentType: text("content_type"),
    /** The uploader's `filename`. */
    uploadName: text("upload_name"),
    size: integer("size"),
    /** When the ID was created (local) or the copy fetched (remote); the legacy endpoints' freeze compares it. */
    createdTs: integer("created_ts").notNull(),
    /** When the content arrived; null while an asynchronous upload is pending. */
    uploadedTs: integer("uploaded_ts"),
    /** A pending ID not uploaded to by then is gone (spec: `unused_expires_at`). */
    unusedExpiresTs: integer("unused_expires_ts"),
    /** The admin who quarantined the file (Synapse admin API "Quarantine media"): it is no longer served. */
    quarantinedBy: text("quarantined_by"),
    /** Protected from quarantine by room or user (Synapse's `safe_from_quarantine`). */
    safeFromQuarantine: integer("safe_from_quarantine", { mode: "boolean" }).notNull().default(false),
  },
  (t) => [primaryKey({ columns: [t.serverName, t.mediaId] }), index("media_user").on(t.userId, t.uploadedTs)],
);

/** URL previews already made (spec: GET /_matrix/client/v1/media/preview_url), kept for an hour as Synapse
 * keeps its url_cache. */
export const mediaUrlPreviews = sqliteTable(
  "media_url_previews",
  {
    url: text("url").notNull(),
    /** The preview's OpenGraph JSON. */
    og: text("og").notNull(),
    fetchedTs: integer("fetched_ts").notNull(),
    expiresTs: integer("expires_ts").notNull(),
  },
  (t) => [primaryKey({ columns: [t.url, t.fetchedTs] })],
);

// ---------------------------------------------------------------------------------------------
// Server administration (Synapse's admin API, worker/admin/).

/** Rooms an admin blocked (Synapse admin API "Block Room API"): local users cannot join, be invited or knock. */
export const blockedRooms = sqliteTable("blocked_rooms", {
  roomId: text("room_id").primaryKey(),
  /** The admin who blocked it. */
  userId: text("user_id").notNull(),
  createdTs: integer("created_ts").notNull(),
});

/** Room deletions requested through DELETE /_synapse/admin/v2/rooms/{roomId}, with their outcome, for the
 * delete-status endpoints. */
export const roomDeletions = sqliteTable(
  "room_deletions",
  {
    deleteId: text("delete_id").primaryKey(),
    roomId: text("room_id").notNull(),
    /** `shutting_down`, `purging`, `complete` or `failed` (Synapse's statuses). */
    status: text("status").notNull(),
    error: text("error"),
    /** JSON: `{kicked_users, failed_to_kick_users, local_aliases, new_room_id}`. */
    shutdownRoom: text("shutdown_room"),
    createdTs: integer("created_ts").notNull(),
  },
  (t) => [index("room_deletions_room").on(t.roomId)],
);

/** Each user's server notices room (Synapse's `server_notices` config): the room the notices user created
 * for them, reused while they are still in it. */
export const serverNoticeRooms = sqliteTable("server_notice_rooms", {
  userId: text("user_id").primaryKey(),
  roomId: text("room_id").notNull(),
});

/**
 * Pushers (spec: Client-Server API, "Push Notifications"; POST /pushers/set), one row per (user, app_id,
 * pushkey) as in Synapse's `pushers` table. D1 because `append: false` removes the same app_id and pushkey
 * of other users (a look-up across users). Delivery state (queue, progress, back-off) lives in the user's
 * Durable Object (durable-objects/user/push-delivery.ts).
 */
export const pushers = sqliteTable(
  "pushers",
  {
    userId: text("user_id").notNull(),
    appId: text("app_id").notNull(),
    pushkey: text("pushkey").notNull(),
    /** "http", "email" (recorded, not delivered) or another kind a client named (Synapse records those too). */
    kind: text("kind").notNull(),
    appDisplayName: text("app_display_name").notNull(),
    deviceDisplayName: text("device_display_name").notNull(),
    profileTag: text("profile_tag").notNull().default(""),
    /** Null allowed: Synapse only requires the key to be present. */
    lang: text("lang"),
    /** The `data` object as JSON text (for http pushers: `url` and what the gateway gets, e.g. `format`). */
    data: text("data").notNull(),
    /** When the pushkey was last set (ms); the gateway gets it in seconds as `pushkey_ts`. */
    pushkeyTs: integer("pushkey_ts").notNull(),
    /** The device that created the pusher: logging it out or deleting it removes the pusher (Synapse). */
    deviceId: text("device_id"),
  },
  (t) => [
    primaryKey({ columns: [t.userId, t.appId, t.pushkey] }),
    index("pushers_app_pushkey").on(t.appId, t.pushkey),
    index("pushers_device").on(t.userId, t.deviceId),
  ],
);

/** Application service registrations (spec: Application Service API, "Registration"), written by
 * `npm run appservice` and by `npm start` from APPSERVICE_CONFIG_FILES. `registration` is the validated
 * registration as JSON without the as_token (protocol/appservice-registration.ts `StoredRegistration`); the
 * as_token is kept as its SHA-256 only, like access tokens. `source` is `config:<path>` or `cli`. */
export const appservices = sqliteTable(
  "appservices",
  {
    id: text("id").primaryKey(),
    asTokenHash: text("as_token_hash").notNull(),
    registration: text("registration").notNull(),
    source: text("source").notNull(),
    updatedTs: integer("updated_ts").notNull(),
  },
  (t) => [uniqueIndex("appservices_as_token_hash").on(t.asTokenHash)],
);

/** Rooms an application service published in its network's room list (spec: Application Service API,
 * "Room directories": PUT /directory/list/appservice/{networkId}/{roomId}). */
export const appserviceRoomList = sqliteTable(
  "appservice_room_list",
  {
    appserviceId: text("appservice_id").notNull(),
    networkId: text("network_id").notNull(),
    roomId: text("room_id").notNull(),
    /** `public` or `private`. */
    visibility: text("visibility").notNull(),
  },
  (t) => [primaryKey({ columns: [t.appserviceId, t.networkId, t.roomId] }), index("appservice_room_list_room").on(t.roomId)],
);
