// Bindings and configuration of the Worker (wrangler.toml [vars], secrets, `npm start` --var flags).
import type { RoomDurableObject } from "../durable-objects/room.js";
import type { UserDurableObject } from "../durable-objects/user.js";
import type { DestinationDurableObject } from "../durable-objects/destination.js";

export interface Env {
  DB: D1Database;
  ROOMS: DurableObjectNamespace<RoomDurableObject>;
  USERS: DurableObjectNamespace<UserDurableObject>;
  DESTINATIONS: DurableObjectNamespace<DestinationDurableObject>;
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
  /** "false" turns federation off: no outbound requests, inbound federation answers 403 (default on). */
  FEDERATION_ENABLED?: string;
  /** Comma-separated server names; when set, only these servers are federated with (closed deployments). */
  FEDERATION_DOMAIN_ALLOWLIST?: string;
  /** DNS-over-HTTPS resolver (JSON API) for SRV look-ups; default https://cloudflare-dns.com/dns-query. */
  FEDERATION_DOH_URL?: string;
  /** Comma-separated notary servers asked for keys a server does not serve itself (default none). */
  FEDERATION_TRUSTED_KEY_SERVERS?: string;
  /**
   * Tests only: when bound, every outbound federation fetch (.well-known, DNS over HTTPS, requests to
   * servers) goes to this service instead of the internet (federation-client/outbound-fetch.ts).
   * Never set in production.
   */
  FEDERATION_TEST_FETCHER?: Fetcher;
}

export type AppEnv = { Bindings: Env; Variables: { [key: string]: unknown } };
