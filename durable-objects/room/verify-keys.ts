// Which servers must have signed an event, and the keys to check their signatures with (spec: Server-Server
// API, "Validating hashes and signatures on received events"; room v5+ "Signing key validity period").
// The keys come from federation-client/server-keys.ts: ours without a network round trip, other servers'
// from the D1 cache, fetched (directly or through a notary) when a needed key is missing or expired.
import { serverNameOf, type Pdu } from "../../protocol/pdu.js";
import { encodeBase64 } from "../../protocol/base64.js";
import { PARTICIPATION_EVENT_TYPE, isServerKey, serverKeyBytes } from "../../protocol/participation.js";
import type { RoomVersionRules } from "../../protocol/room-versions.js";
import { accountKeyOfUser } from "../../protocol/accounts.js";
import { isJsonObject } from "../../protocol/json.js";
import { verifyKeysFor as serverVerifyKeys, type KeyQuery, type VerifyKey } from "../../federation-client/server-keys.js";
import type { Env } from "../../worker/env.js";

export type { VerifyKey } from "../../federation-client/server-keys.js";

/**
 * The servers whose signature an event needs: the sender's server; in v1-v2 also the server of the event
 * ID; for a restricted join (v8+) the server of `join_authorised_via_users_server`.
 */
export function requiredSigningServers(pdu: Pdu, rules: RoomVersionRules): string[] {
  // MSC4348 rooms: the account key signs (its entity is the key itself), and every key-form signature
  // the event carries is verified: the auth rules look for the co-signing server's signature by its
  // presence (auth-rules.ts "Portable accounts"), so none may be present unverified.
  if (rules.eventFormat.accountKeyIdentity) {
    const accountKey = accountKeyOfUser(pdu.sender);
    const signers = new Set<string>(accountKey === undefined ? [] : [accountKey]);
    for (const entity of Object.keys(isJsonObject(pdu.signatures) ? pdu.signatures : {})) if (isServerKey(entity)) signers.add(entity);
    if (signers.size === 0) signers.add(serverNameOf(pdu.sender));
    return [...signers];
  }
  const servers = new Set<string>([serverNameOf(pdu.sender)]);
  if (rules.eventFormat.eventIdInPdu && typeof pdu.event_id === "string") servers.add(serverNameOf(pdu.event_id));
  if (rules.authorization.restrictedJoinRule && pdu.type === "m.room.member" && pdu.content.membership === "join") {
    const via = pdu.content.join_authorised_via_users_server;
    if (typeof via === "string") servers.add(serverNameOf(via));
  }
  // MSC4345 (decision 10): a request to take part is co-signed by the accepted server it names.
  if (rules.authorization.serverParticipation && pdu.type === PARTICIPATION_EVENT_TYPE && pdu.content.participation === "requested") {
    const via = pdu.content.request_authorised_via_server;
    if (isServerKey(via)) servers.add(via);
  }
  return [...servers];
}

/**
 * The verify keys of `serverName` this server knows or can fetch. Pass the key IDs the event is signed with
 * (`keyIds`) so that a key the server rotated in since the last fetch is fetched, and for v5+ rooms the
 * event's `origin_server_ts` as `minimumValidUntilTs` (default: now).
 */
export async function verifyKeysFor(env: Env, serverName: string, opts?: KeyQuery): Promise<VerifyKey[]> {
  return serverVerifyKeys(env, serverName, opts);
}

/**
 * The keys to check `server`'s signature on `pdu` with: the key IDs the event is signed with must be known
 * (a key rotated in since the last fetch is fetched), and in rooms that enforce key validity (v5+) they must be
 * valid at the event's `origin_server_ts`; in v1-v4 `valid_until_ts` is ignored, so an expired key is not
 * fetched again.
 */
export function verifyKeysForEvent(env: Env, pdu: Pdu, server: string, rules: RoomVersionRules): Promise<VerifyKey[]> {
  const signed = pdu.signatures?.[server];
  const keyIds = signed && typeof signed === "object" ? Object.keys(signed) : [];
  // MSC4345 rooms (decision 11): the entity is the server key itself; it verifies its signatures
  // under any ed25519 key ID, with no look-up and no validity period (keys are revoked in the room).
  if (rules.eventFormat.serverKeyIdentity) {
    if (!isServerKey(server)) return Promise.resolve([]);
    const publicKey = encodeBase64(serverKeyBytes(server));
    return Promise.resolve(keyIds.filter((k) => k.startsWith("ed25519:")).map((keyId) => ({ keyId, publicKey, validUntilTs: null })));
  }
  const minimumValidUntilTs = rules.enforceKeyValidity && typeof pdu.origin_server_ts === "number" ? pdu.origin_server_ts : 0;
  return serverVerifyKeys(env, server, { keyIds, minimumValidUntilTs });
}
