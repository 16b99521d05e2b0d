// The checks of a received PDU that need no room state (spec: Server-Server API, "Checks performed on
// receipt of a PDU", steps 1-3: format, signatures, content hash), and its event ID. The Room DO runs them
// on every event it accepts (room/engine.ts), local or from federation; `bench/signatures.bench.ts` times
// them. Keys come from the caller (the room reads them through federation-client/server-keys.ts).
import { encodeBase64, encodeBase64Url } from "./base64.js";
import { checkContentHash } from "./event-hashes.js";
import { validatePduFormat } from "./event-validation.js";
import { redactPdu } from "./redaction.js";
import { signableBytes, verifyBytes } from "./signing.js";
import { isJsonObject, type JsonObject } from "./json.js";
import type { Pdu } from "./pdu.js";
import type { RoomVersionRules } from "./room-versions.js";

/** A public key a server signs events with (key server documents: `verify_keys`, `old_verify_keys`). */
export interface PduVerifyKey {
  keyId: string;
  /** Unpadded base64 Ed25519 public key. */
  publicKey: string;
  /** Null: no expiry known (own keys, MSC4345 server keys). */
  validUntilTs: number | null;
}

/** The event ID, and what the signature checks reuse of its computation. */
export interface IdentifiedPdu {
  eventId: string;
  /** Canonical JSON of the redacted event without `signatures` and `unsigned`: what every signature on the
   * event covers, and (v3+) what its reference hash covers, so both are computed from one serialisation. */
  signedBytes: Uint8Array;
}

/**
 * The event ID (as event-hashes.ts `eventIdFor`) and the signed bytes. The reference hash covers the
 * redacted event without `signatures`, `unsigned` and `age_ts` (spec: "Calculating the reference hash for an
 * event"); redaction keeps none of `unsigned` and `age_ts` (protocol/redaction.ts), so those are exactly the
 * bytes signatures cover (Appendices, "Signing JSON"). Throws CanonicalJsonError when the redacted event is
 * not canonical JSON, and for a v1-v2 event without an `event_id`.
 */
export async function identifyPdu(pdu: Pdu, rules: RoomVersionRules): Promise<IdentifiedPdu> {
  const signedBytes = signableBytes(redactPdu(pdu, rules) as unknown as JsonObject);
  switch (rules.eventIdFormat) {
    case "v1":
      if (typeof pdu.event_id !== "string") throw new Error(`room version ${rules.id} events must carry an event_id`);
      return { eventId: pdu.event_id, signedBytes };
    case "v3":
      return { eventId: "$" + encodeBase64(await sha256(signedBytes)), signedBytes };
    case "v4":
      return { eventId: "$" + encodeBase64Url(await sha256(signedBytes)), signedBytes };
  }
}

async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/**
 * Whether `server`'s signature on the event verifies with one of `keys`. In room versions that enforce key
 * validity (v5+) a key must have been valid when the event was sent (`origin_server_ts <= valid_until_ts`).
 */
export async function hasValidSignature(pdu: Pdu, identified: IdentifiedPdu, server: string, rules: RoomVersionRules, keys: readonly PduVerifyKey[]): Promise<boolean> {
  const byKey = pdu.signatures?.[server];
  if (!isJsonObject(byKey)) return false;
  for (const key of keys) {
    if (typeof byKey[key.keyId] !== "string") continue;
    if (rules.enforceKeyValidity && key.validUntilTs !== null && pdu.origin_server_ts > key.validUntilTs) continue;
    const signature = byKey[key.keyId] as string;
    try {
      if (await verifyBytes(key.publicKey, identified.signedBytes, signature)) return true;
    } catch {
      // WebCrypto refused the public key (malformed): this key cannot verify anything.
    }
  }
  return false;
}

export type SignatureCheck = { ok: true; contentHashOk: boolean } | { ok: false; server: string };

/**
 * Steps 2-3: every server in `signers` must have signed (with a key `keysFor` knows), then the content hash
 * is compared. A wrong content hash is not a failure here: the caller uses the redacted event (spec).
 */
export async function verifyReceivedPdu(
  pdu: Pdu,
  identified: IdentifiedPdu,
  rules: RoomVersionRules,
  signers: readonly string[],
  keysFor: (server: string) => Promise<readonly PduVerifyKey[]>,
): Promise<SignatureCheck> {
  for (const server of signers) {
    if (!(await hasValidSignature(pdu, identified, server, rules, await keysFor(server)))) return { ok: false, server };
  }
  return { ok: true, contentHashOk: await checkContentHash(pdu) };
}

export type ReceivedPduCheck = { ok: true; eventId: string; contentHashOk: boolean } | { ok: false; reason: string };

/** Steps 1-3 together, as the room runs them: format, event ID, signatures of the sender's server (and any
 * other `signers`), content hash. */
export async function checkReceivedPdu(
  pdu: Pdu,
  rules: RoomVersionRules,
  signers: readonly string[],
  keysFor: (server: string) => Promise<readonly PduVerifyKey[]>,
): Promise<ReceivedPduCheck> {
  const format = validatePduFormat(pdu, rules);
  if (!format.ok) return format;
  let identified: IdentifiedPdu;
  try {
    identified = await identifyPdu(pdu, rules);
  } catch {
    return { ok: false, reason: "no event ID: not canonical JSON" };
  }
  const checked = await verifyReceivedPdu(pdu, identified, rules, signers, keysFor);
  if (!checked.ok) return { ok: false, reason: `Event is not signed by ${checked.server}` };
  return { ok: true, eventId: identified.eventId, contentHashOk: checked.contentHashOk };
}
