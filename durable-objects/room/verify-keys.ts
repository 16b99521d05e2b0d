// Which servers must have signed an event, and the keys to check their signatures with (spec: Server-Server
// API, "Validating hashes and signatures on received events"; room v5+ "Signing key validity period").
// Only this server's keys are known yet; the remote key cache (D1 remote_server_keys, filled by the
// federation key client) is the one place to add when federation arrives.
import { serverNameOf, type Pdu } from "../../protocol/pdu.js";
import type { RoomVersionRules } from "../../protocol/room-versions.js";
import { serverKeys } from "../../worker/server-identity.js";
import type { Env } from "../../worker/env.js";

/** A verify key usable for an event sent at some time. */
export interface VerifyKey {
  keyId: string;
  publicKey: string;
  /** Signatures by this key are valid for events sent before this time (ms); null: no limit. */
  validUntilTs: number | null;
}

/**
 * The servers whose signature an event needs: the sender's server; in v1-v2 also the server of the event
 * ID; for a restricted join (v8+) the server of `join_authorised_via_users_server`.
 */
export function requiredSigningServers(pdu: Pdu, rules: RoomVersionRules): string[] {
  const servers = new Set<string>([serverNameOf(pdu.sender)]);
  if (rules.eventFormat.eventIdInPdu && typeof pdu.event_id === "string") servers.add(serverNameOf(pdu.event_id));
  if (rules.authorization.restrictedJoinRule && pdu.type === "m.room.member" && pdu.content.membership === "join") {
    const via = pdu.content.join_authorised_via_users_server;
    if (typeof via === "string") servers.add(serverNameOf(via));
  }
  return [...servers];
}

/** The verify keys of `serverName` that this server knows. Empty for servers it has no keys of. */
export async function verifyKeysFor(env: Env, serverName: string): Promise<VerifyKey[]> {
  if (serverName !== env.SERVER_NAME) return [];
  const keys = await serverKeys(env);
  return [
    { keyId: keys.current.keyId, publicKey: keys.current.publicKey, validUntilTs: null },
    ...keys.old.map((k) => ({ keyId: k.keyId, publicKey: k.publicKey, validUntilTs: k.expiredTs })),
  ];
}
