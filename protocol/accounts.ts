// MSC4348 "Portable and serverless accounts in rooms" (adapting MSC4243 "User ID localparts as account
// keys"): the account key, an ed25519 key per account that names the user in `org.matrix.msc4348` rooms
// (`@<account key>`, no server part) and signs the account's events. Pure helpers shared by the worker
// (account keys, the accounts query) and, later, the room version's rules.
import { decodeBase64, encodeBase64Url } from "./base64.js";
import { isJsonObject, type JsonObject } from "./json.js";
import { isServerKey, serverKeyBytes } from "./participation.js";
import { signJson, signingKeyFromSeed, verifyJsonSignature, type SigningKey } from "./signing.js";
import { encodeBase64 } from "./base64.js";

/** MSC4243: the signing key identifier of an account key is the constant `ed25519:1`. */
export const ACCOUNT_KEY_ID = "ed25519:1";

/** The unstable name of `/_matrix/federation/v1/query/accounts` (../shared/proposals/README.md). */
export const ACCOUNTS_QUERY_PATH = "/_matrix/federation/v1/query/org.matrix.msc4348.accounts";

/** An account key as written in IDs: the 32-byte public key, unpadded URL-safe base64 (43 characters),
 * the same form as a server key (MSC4243: "unpadded urlsafe base64"). */
export function isAccountKey(value: unknown): value is string {
  return isServerKey(value);
}

/** MSC4348: the user ID of an account in these rooms, `@<account key>` (no server part). */
export function accountKeyUserId(accountKey: string): string {
  return `@${accountKey}`;
}

/**
 * The `m.room.member` content field naming the server (by its server key) that speaks for the account
 * in `org.matrix.msc4348` rooms. Myelin's reading (decision 13): the proposal says that the account's
 * events are "cosigned by a participating server" but not which one, and an account has no server part;
 * the account's own membership names it, so that a new membership naming another server is a move. It is
 * protected from redaction (the rules read it).
 */
export const MEMBER_SERVER_KEY = "org.matrix.msc4348.server_key";

/** The account key of an account-key user ID (`@<key>`), or undefined for any other form. */
export function accountKeyOfUser(userId: string): string | undefined {
  const key = userId.startsWith("@") ? userId.slice(1) : "";
  return isAccountKey(key) ? key : undefined;
}

/** The signing key of an account from its 32-byte seed (given as unpadded standard base64). Throws when
 * the seed is not 32 bytes of base64. */
export async function accountSigningKey(seedBase64: string): Promise<{ key: SigningKey; accountKey: string }> {
  if (!/^[A-Za-z0-9+/]{43}=?$/.test(seedBase64)) throw new Error("an account key seed is 32 bytes of base64");
  const key = await signingKeyFromSeed(decodeBase64(seedBase64.replace(/=$/, "")), "1");
  return { key, accountKey: encodeBase64Url(decodeBase64(key.publicKey)) };
}

/**
 * One entry of the accounts query answer (MSC4243 "/accounts"): the account name and the domain it is
 * on, signed by the account key (entity: the key itself, key ID `ed25519:1`), so that a change of either
 * is detectable and the answer cannot be forged by another server.
 */
export function signAccountRecord(accountKey: string, key: SigningKey, accountName: string, domain: string): Promise<JsonObject> {
  return signJson({ account_name: accountName, domain }, accountKey, key);
}

/** Whether an accounts-query entry for `accountKey` is signed by that key (and so was made by its holder). */
export async function accountRecordIsSigned(record: unknown, accountKey: string): Promise<boolean> {
  if (!isJsonObject(record) || typeof record.account_name !== "string" || typeof record.domain !== "string" || !isAccountKey(accountKey)) return false;
  return verifyJsonSignature(record, accountKey, ACCOUNT_KEY_ID, encodeBase64(serverKeyBytes(accountKey))).catch(() => false);
}
