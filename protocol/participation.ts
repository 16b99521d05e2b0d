// MSC4345 "Server key identity and room membership": the names and small readers the rules, the
// Room DO and the federation layer share. The rules themselves are in auth-rules.ts ("Server
// participation"). Decision numbers refer to ../shared/proposals/README.md.
import { decodeBase64, encodeBase64, encodeBase64Url } from "./base64.js";
import { isJsonObject } from "./json.js";
import type { Pdu } from "./pdu.js";
import { verifyJsonSignature } from "./signing.js";

/** The unstable name of `m.server.participation` (proposal, "Unstable prefix"). */
export const PARTICIPATION_EVENT_TYPE = "org.matrix.msc4345.participation";

/** The `participation` values of the proposal's content section. */
export type Participation = "requested" | "accepted" | "revoked";
export const PARTICIPATION_STATES: readonly Participation[] = ["requested", "accepted", "revoked"];

/** The `accept` power level's default (proposal: "Defaults to `100`"). */
export const DEFAULT_ACCEPT_LEVEL = 100;

/**
 * A server key as it is written in these rooms: the 32-byte ed25519 public key as unpadded URL-safe
 * base64 (43 characters). Myelin's reading: decision 10 says "unpadded base64"; the key appears in
 * user IDs (decision 12), state keys and URL paths, so it takes the URL-safe alphabet that MSC4243
 * gives keys in IDs (its footnote "urlsafe"): `+` and `/` would need escaping in every client path.
 */
const SERVER_KEY = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

export function isServerKey(value: unknown): value is string {
  return typeof value === "string" && SERVER_KEY.test(value);
}

/** The server key form of an ed25519 public key given in standard unpadded base64 (key documents). */
export function serverKeyFromPublicKey(publicKeyBase64: string): string {
  return encodeBase64Url(decodeBase64(publicKeyBase64));
}

/** The raw 32 bytes of a server key (throws on a malformed one: check `isServerKey` first). */
export function serverKeyBytes(serverKey: string): Uint8Array {
  return decodeBase64(serverKey.replaceAll("-", "+").replaceAll("_", "/"));
}

/**
 * The server key of a user ID in these rooms (decision 12: the server part is the key), or
 * `undefined` when the server part is not a key (a domain-form ID, which can take no part).
 */
export function serverKeyOfUser(userId: string): string | undefined {
  const colon = userId.indexOf(":");
  if (!userId.startsWith("@") || colon < 0) return undefined;
  const key = userId.slice(colon + 1);
  return isServerKey(key) ? key : undefined;
}

/** The `participation` of a participation event, or `undefined` when it is not one of the states. */
export function participationOf(event: Pdu | undefined): Participation | undefined {
  const p = event?.content.participation;
  return typeof p === "string" && (PARTICIPATION_STATES as readonly string[]).includes(p) ? (p as Participation) : undefined;
}

/** Whether `event` carries a signature (any key ID) from the entity `serverKey` (decision 11). The
 * signature's validity is the signature check that precedes auth. */
export function isSignedByServerKey(event: Pdu, serverKey: string): boolean {
  const sigs = event.signatures?.[serverKey];
  return isJsonObject(sigs) && Object.values(sigs).some((s) => typeof s === "string");
}

/**
 * The errcode a resident answers `make_join`/`make_knock` with in these rooms when the user ID's server
 * part is a domain, not a server key. Not in the proposal (it names no way for a joining server to learn
 * that a room names users by key before it has a template): Myelin's reading. A joining server that
 * knows these room versions asks again with the key-form ID (`@alice:<its server key>`); `room_version`
 * is given beside it. The name is namespaced as the spec asks of custom errcodes.
 */
export const KEY_USER_ID_REQUIRED = "ORG.MATRIX.MSC4345_KEY_USER_ID_REQUIRED";

/** `@alice:example.org` as a user of `serverKey` (`@alice:<key>`): the ID a room of these versions gives
 * an account of the server holding that key (decision 12). */
export function keyFormUserId(userId: string, serverKey: string): string {
  const colon = userId.indexOf(":");
  return `${colon < 0 ? userId : userId.slice(0, colon)}:${serverKey}`;
}

/**
 * Whether a `/_matrix/key/v3/org.matrix.msc4345/query` document fetched from `domain` proves that
 * `domain` holds `serverKey` (proposal, "Introducing /_matrix/key/v3/query": the domain advertises the
 * same public key): it names `domain`, lists the key and is signed by it. Never throws.
 */
export async function keyDocumentListsKey(doc: unknown, serverKey: string, domain: string): Promise<boolean> {
  if (!isServerKey(serverKey) || !isJsonObject(doc) || doc.server_name !== domain || !isJsonObject(doc.verify_keys)) return false;
  for (const [keyId, entry] of Object.entries(doc.verify_keys)) {
    if (!isJsonObject(entry) || entry.key !== serverKey) continue;
    if (await verifyJsonSignature(doc, serverKey, keyId, encodeBase64(serverKeyBytes(serverKey))).catch(() => false)) return true;
  }
  return false;
}
