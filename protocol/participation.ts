// MSC4345 "Server key identity and room membership": the names and small readers the rules, the
// Room DO and the federation layer share. The rules themselves are in auth-rules.ts ("Server
// participation"). Decision numbers refer to ../shared/proposals/README.md.
import { decodeBase64, encodeBase64Url } from "./base64.js";
import { isJsonObject } from "./json.js";
import type { Pdu } from "./pdu.js";

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
