// Authentication of inbound federation requests (spec: Server-Server API, "Request Authentication") and
// the room server ACL check ("Server Access Control Lists (ACLs)"). Every `/_matrix/federation/*` route
// runs behind `federationAuth` except the ones the spec leaves unauthenticated (`/version`, and
// `/openid/userinfo`, which an access token authenticates). A handler reads the verified origin with
// `requestOrigin(c)`. The room endpoints the spec lists are ACL-checked by `federationRoomAcl`; other code
// about a room (the PDUs and EDUs of /send) calls `assertServerAllowedInRoom` or `serverAllowedInRoom`.
// The middleware reads the body as text to check the signature: handlers read it with c.req.json() (Hono
// keeps the text), not from c.req.raw.
import type { Context, MiddlewareHandler } from "hono";
import { CanonicalJsonError, canonicalJsonBytes } from "../../protocol/canonical-json.js";
import { MatrixError, forbidden, notJson } from "../../protocol/errors.js";
import { isJsonObject, type JsonValue } from "../../protocol/json.js";
import { serverAllowedByAcl } from "../../protocol/server-acl.js";
import { parseServerName } from "../../protocol/server-name.js";
import { verifyBytes } from "../../protocol/signing.js";
import { parseXMatrixHeader, requestJsonToSign, type XMatrixAuth } from "../../protocol/x-matrix.js";
import { federationAllowed, federationEnabled } from "../../federation-client/config.js";
import { serverKeysFor } from "../../federation-client/server-keys.js";
import { notePeerContact } from "../../durable-objects/destination/peer-contact.js";
import type { AppEnv, Env } from "../env.js";
import { roomStub } from "../room-store.js";

const unauthorized = (message: string) => new MatrixError(401, "M_UNAUTHORIZED", message);

/** Federation paths that carry no X-Matrix signature (spec: version.yaml, openid.yaml). */
const UNAUTHENTICATED = new Set(["/_matrix/federation/v1/version", "/_matrix/federation/v1/openid/userinfo"]);

/** The Hono middleware: verifies the X-Matrix signature and sets `origin`. Answers 401 M_UNAUTHORIZED for
 * a missing, malformed or wrong signature, and 403 M_FORBIDDEN when federation is off or the origin is not
 * in `FEDERATION_DOMAIN_ALLOWLIST` (as Synapse's FederationDeniedError). */
export const federationAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (UNAUTHENTICATED.has(c.req.path)) return next();
  if (!federationEnabled(c.env)) throw forbidden("Federation is disabled on this server");
  const origin = await authenticateRequest(c);
  c.set("origin", origin);
  // The server is up: its outbound queue stops backing off (durable-objects/destination/peer-contact.ts).
  inBackground(c, notePeerContact(c.env, origin));
  return next();
};

function inBackground(c: Context<AppEnv>, work: Promise<unknown>): void {
  try {
    c.executionCtx.waitUntil(work);
  } catch {
    // No execution context (a request handed to the app directly): the promise still runs.
  }
}

/** The authenticated origin of the request (set by `federationAuth`); 401 if there is none. */
export function requestOrigin(c: Context<AppEnv>): string {
  const origin = c.get("origin");
  if (typeof origin !== "string" || origin === "") throw unauthorized("Missing or invalid X-Matrix authorization");
  return origin;
}

async function authenticateRequest(c: Context<AppEnv>): Promise<string> {
  const header = c.req.header("Authorization");
  const candidates = xMatrixCandidates(header);
  if (candidates.length === 0) throw unauthorized("Missing or invalid X-Matrix authorization header");

  // The signed content is the JSON-parsed body (Hono caches the text for the route's own c.req.json()).
  let content: JsonValue | undefined;
  const text = await c.req.text();
  if (text !== "") {
    try {
      content = JSON.parse(text) as JsonValue;
    } catch {
      throw notJson("Content not JSON.");
    }
  }
  const url = new URL(c.req.url);
  const uri = url.pathname + url.search;

  let lastError = unauthorized("Invalid X-Matrix signature");
  for (const auth of candidates) {
    try {
      await verifyRequest(c.env, auth, { method: c.req.method, uri, content });
      return auth.origin;
    } catch (e) {
      if (!(e instanceof MatrixError) || e.status !== 401) throw e;
      lastError = e;
    }
  }
  throw lastError;
}

/** A request may carry several X-Matrix authorizations (one per key, as Synapse accepts); the runtime joins
 * repeated headers with ", ". */
function xMatrixCandidates(header: string | undefined): XMatrixAuth[] {
  if (!header) return [];
  const whole = parseXMatrixHeader(header);
  if (whole) return [whole];
  const out: XMatrixAuth[] = [];
  for (const part of header.split(/,\s*(?=X-Matrix\s)/i)) {
    const auth = parseXMatrixHeader(part);
    if (auth) out.push(auth);
  }
  return out;
}

/** Checks one X-Matrix authorization of a request; throws 401 (or 403 for a denied origin). */
export async function verifyRequest(
  env: Env,
  auth: XMatrixAuth,
  request: { method: string; uri: string; content?: JsonValue },
): Promise<void> {
  if (!parseServerName(auth.origin)) throw unauthorized("Invalid origin in X-Matrix authorization");
  // "If this property is included, but the value does not match the receiving server's name, the receiving
  // server must deny the request with an HTTP status code 401 Unauthorized."
  if (auth.destination !== undefined && auth.destination !== env.SERVER_NAME) {
    throw unauthorized("The X-Matrix destination is not this server");
  }
  if (!federationAllowed(env, auth.origin)) throw forbidden(`Federation denied with ${auth.origin}`);
  let signed: Uint8Array;
  try {
    signed = canonicalJsonBytes(
      requestJsonToSign({ method: request.method, uri: request.uri, origin: auth.origin, destination: auth.destination ?? env.SERVER_NAME, content: request.content }),
    );
  } catch (e) {
    if (e instanceof CanonicalJsonError) throw new MatrixError(400, "M_BAD_JSON", `Body is not valid Matrix JSON: ${e.message}`);
    throw e;
  }
  const now = Date.now();
  const keys = await serverKeysFor(env, auth.origin, { keyIds: [auth.key], minimumValidUntilTs: now });
  // Only current keys sign requests (old_verify_keys are "only valid for signing events"), and only while valid.
  const key = keys.find((k) => k.keyId === auth.key && !k.old && (k.validUntilTs === null || k.validUntilTs >= now));
  if (!key) throw unauthorized(`Failed to find a valid key ${auth.key} of ${auth.origin}`);
  if (!(await verifyBytes(key.publicKey, signed, auth.sig))) throw unauthorized("Invalid X-Matrix signature");
}

/** The endpoints the spec says MUST be protected by the room's ACL (Server-Server API, "Server Access Control
 * Lists (ACLs)"), with the room ID as their first path parameter. /send is checked per PDU and EDU by its handler. */
const ACL_PROTECTED =
  /^\/_matrix\/federation\/(?:v[12]|unstable\/org\.matrix\.msc4345)\/(?:make_join|make_leave|send_join|send_leave|invite|make_knock|send_knock|state|state_ids|backfill|event_auth|get_missing_events|make_participation|send_participation)\/([^/]+)/;

/** Middleware (after `federationAuth`): 403 M_FORBIDDEN when the room's server ACL denies the origin on the
 * endpoints of ACL_PROTECTED, so that no handler can forget it. */
export const federationRoomAcl: MiddlewareHandler<AppEnv> = async (c, next) => {
  const m = ACL_PROTECTED.exec(new URL(c.req.url).pathname); // raw (still encoded) path
  const origin = c.get("origin");
  if (m && typeof origin === "string") {
    let roomId: string | undefined;
    try {
      roomId = decodeURIComponent(m[1]!);
    } catch {
      roomId = undefined; // malformed escape: the route answers it
    }
    // Only real room IDs address a Room DO; anything else is the route's 400.
    if (roomId !== undefined && roomId.startsWith("!") && roomId.length <= 255) await assertServerAllowedInRoom(c.env, roomId, origin);
  }
  return next();
};

/** Throws 403 M_FORBIDDEN when the room's current `m.room.server_acl` denies `serverName` (spec: Server-Server
 * API, "Server Access Control Lists (ACLs)"). A room this server does not know has no ACL here. */
export async function assertServerAllowedInRoom(env: Env, roomId: string, serverName: string): Promise<void> {
  const acl = await roomStub(env, roomId).serverAclContent();
  if (!serverAllowedByAcl(acl, serverName)) throw forbidden(`Server ${serverName} is banned from room ${roomId} by its server ACL`);
}

/** For code that has the ACL content already (e.g. per-PDU checks of /send). */
export function serverAllowedInRoom(aclContent: unknown, serverName: string): boolean {
  return serverAllowedByAcl(isJsonObject(aclContent) ? aclContent : null, serverName);
}
