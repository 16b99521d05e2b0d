// Bindings and configuration of the Worker (wrangler.toml [vars], secrets, `npm start` --var flags).
import type { RoomDurableObject } from "../durable-objects/room.js";
import type { UserDurableObject } from "../durable-objects/user.js";
import type { DestinationDurableObject } from "../durable-objects/destination.js";
import type { DelayedEventsDurableObject } from "../durable-objects/delayed-events.js";
import type { AppserviceDurableObject } from "../durable-objects/appservice.js";

export interface Env {
  DB: D1Database;
  ROOMS: DurableObjectNamespace<RoomDurableObject>;
  USERS: DurableObjectNamespace<UserDurableObject>;
  DESTINATIONS: DurableObjectNamespace<DestinationDurableObject>;
  /** One user's delayed events (MSC4140), sent by the DO's alarm (durable-objects/delayed-events.ts). */
  DELAYED_EVENTS: DurableObjectNamespace<DelayedEventsDurableObject>;
  APPSERVICES: DurableObjectNamespace<AppserviceDurableObject>;
  /** The media repository's content (worker/media/store.ts). */
  MEDIA: R2Bucket;
  /** The server name users and rooms belong to, e.g. `example.com` or `localhost:8008`. */
  SERVER_NAME: string;
  /** Optional Synapse signing.key line: `ed25519 <version> <unpadded base64 seed>`. */
  SIGNING_KEY?: string;
  /** "true" enables open registration. */
  ENABLE_REGISTRATION?: string;
  /** Synapse-compatible shared secret for /_synapse/admin/v1/register. */
  REGISTRATION_SHARED_SECRET?: string;
  /** `m.server` answered at /.well-known/matrix/server (e.g. `matrix.example.com:443`). */
  WELL_KNOWN_SERVER?: string;
  /** `m.homeserver.base_url` answered at /.well-known/matrix/client. */
  WELL_KNOWN_CLIENT?: string;
  /** Rate limits, "<per_second>,<burst>" or "off" (defaults and meaning in worker/ratelimit.ts). */
  RC_LOGIN_ADDRESS?: string;
  RC_LOGIN_ACCOUNT?: string;
  RC_LOGIN_FAILED_ATTEMPTS?: string;
  RC_REGISTRATION?: string;
  RC_REGISTRATION_TOKEN_VALIDITY?: string;
  RC_MEDIA_CREATE?: string;
  /** "true": the user directory searches every local user, not only those sharing a room with the searcher
   * or in a published room (Synapse's `user_directory.search_all_users`). */
  USER_DIRECTORY_SEARCH_ALL_USERS?: string;
  /** "false" turns federation off: no outbound requests, inbound federation answers 403 (default on). */
  FEDERATION_ENABLED?: string;
  /** Comma-separated server names; when set, only these servers are federated with (closed deployments). */
  FEDERATION_DOMAIN_ALLOWLIST?: string;
  /** DNS-over-HTTPS resolver (JSON API) for SRV look-ups; default https://cloudflare-dns.com/dns-query. */
  FEDERATION_DOH_URL?: string;
  /** Comma-separated notary servers asked for keys a server does not serve itself (default none). */
  FEDERATION_TRUSTED_KEY_SERVERS?: string;
  /** Largest upload in bytes, or with a K/M/G suffix as Synapse's `max_upload_size` (default 50M). */
  MAX_UPLOAD_SIZE?: string;
  /**
   * Synapse's `enable_authenticated_media`: the legacy unauthenticated /_matrix/media/v3 download and thumbnail
   * endpoints serve only media stored before this time (ISO 8601 or milliseconds since the epoch). Unset: they
   * serve nothing (Synapse's default since 1.120), "off": they serve everything.
   */
  MEDIA_LEGACY_FREEZE_TIME?: string;
  /** Asynchronous uploads (POST /_matrix/media/v1/create) a user may have pending at once (default 5). */
  MEDIA_MAX_PENDING_UPLOADS?: string;
  /** How long a created media ID stays usable without an upload, in ms (default 86400000, 24 h). */
  MEDIA_UNUSED_EXPIRATION_MS?: string;
  /** Bytes a user may upload per day, across files (Synapse's `media_upload_limits`; default no limit). */
  MEDIA_UPLOAD_LIMIT_PER_DAY?: string;
  /** Largest image thumbnailed, in pixels (default 50000000). JPEGs are decoded at a reduced scale; PNG, GIF and
   * WebP are decoded whole by Photon and are also limited to 6000000 pixels (worker/media/thumbnail.ts). */
  MEDIA_MAX_THUMBNAIL_PIXELS?: string;
  /** "false" turns off /_matrix/client/v1/media/preview_url (default on). */
  URL_PREVIEW_ENABLED?: string;
  /** Comma-separated CIDR ranges previews never fetch (Synapse's `url_preview_ip_range_blacklist`); the
   * default blocks private, loopback, link-local and other special ranges (worker/media/preview.ts). */
  URL_PREVIEW_IP_RANGE_BLACKLIST?: string;
  /** Comma-separated TURN URIs handed to clients (e.g. `turn:turn.example.com:3478?transport=udp`). */
  TURN_URIS?: string;
  /** coturn's `static-auth-secret`: credentials in the TURN REST scheme (worker/client/voip.ts). */
  TURN_SHARED_SECRET?: string;
  /** Fixed TURN credentials, used when no shared secret is set. */
  TURN_USERNAME?: string;
  TURN_PASSWORD?: string;
  /** How long TURN credentials stay valid: ms, or with a unit as "1h" (default 1h). */
  TURN_USER_LIFETIME?: string;
  /** Cloudflare managed TURN: the TURN key's ID and its API token (a secret); both set enables it. */
  TURN_CLOUDFLARE_KEY_ID?: string;
  TURN_CLOUDFLARE_API_TOKEN?: string;
  /** Cloudflare's Realtime API root (default https://rtc.live.cloudflare.com/v1; tests point it elsewhere). */
  TURN_CLOUDFLARE_API_URL?: string;
  /** Server notices (Synapse's `server_notices` section; worker/admin/server-notices.ts): the system
   * user's localpart turns them on; the others are its profile and the notice room's name, topic and avatar,
   * and "true" to join users to the room instead of inviting them. */
  SERVER_NOTICES_LOCALPART?: string;
  SERVER_NOTICES_DISPLAY_NAME?: string;
  SERVER_NOTICES_AVATAR_URL?: string;
  SERVER_NOTICES_ROOM_NAME?: string;
  SERVER_NOTICES_ROOM_TOPIC?: string;
  SERVER_NOTICES_ROOM_AVATAR_URL?: string;
  SERVER_NOTICES_AUTO_JOIN?: string;
  /** MatrixRTC (MSC4143): the LiveKit JWT service's URL offered to group calls as their transport. */
  MATRIX_RTC_LIVEKIT_URL?: string;
  /** The room version of rooms created without one, and advertised as the default (Synapse's
   * `default_room_version`; default protocol/room-versions.ts DEFAULT_ROOM_VERSION). */
  DEFAULT_ROOM_VERSION?: string;
  /** Longest delay of a delayed event (MSC4140): ms, or with a unit as "24h" (default 24h). */
  MAX_EVENT_DELAY?: string;
  /** Delayed events a user may have scheduled at once (default 100, Synapse's). */
  MAX_DELAYED_EVENTS_PER_USER?: string;
  /** "false": a push's `counts.unread` counts notifications, not rooms with notifications (Synapse's
   * `push.group_unread_count_by_room`, default true). */
  PUSH_GROUP_UNREAD_COUNT_BY_ROOM?: string;
  /**
   * Tests only: when bound, every outbound federation fetch (.well-known, DNS over HTTPS, requests to
   * servers) goes to this service instead of the internet (federation-client/outbound-fetch.ts).
   * Never set in production.
   */
  FEDERATION_TEST_FETCHER?: Fetcher;
}

export type AppEnv = { Bindings: Env; Variables: { [key: string]: unknown } };
