// The checks of a received PDU that need no room state (spec: Server-Server API, "Checks performed on
// receipt of a PDU", steps 1-3: format, signatures, content hash), and its event ID. The Room DO runs them
// on every event it accepts (room/engine.ts), local or from federation; `bench/signatures.bench.ts` times
// them. Keys come from the caller (the room reads them through federation-client/server-keys.ts).
import { encodeBase64, encodeBase64Url } from "./base64.js";
import { CanonicalJsonError, canonicalJson, utf8ByteLength } from "./canonical-json.js";
import { checkContentHash } from "./event-hashes.js";
import { validatePduFormat, type CanonicalSize } from "./event-validation.js";
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
  /** The bytes the content hash covers, when serialisePdu made them (else the hash check makes them). */
  contentHashBytes?: Uint8Array;
}

/** One serialisation of a received event serves the format check's size and the content hash. */
export interface PduSerialisation {
  /** Canonical JSON of the event without `unsigned`, `signatures` and `hashes`; absent when it is not
   * canonical JSON (the hash check then fails as event-hashes.ts `checkContentHash` does). */
  contentHashBytes?: Uint8Array;
  /** The whole event's canonical size, for validatePduFormat. */
  size: CanonicalSize;
}

const encoder = new TextEncoder();
/** Keys left out of the content hash (spec: "Calculating the content hash for an event"). */
const NOT_HASHED = ["unsigned", "signatures", "hashes"] as const;

/**
 * Serialises the event once for the content hash and derives the size of the whole event's canonical
 * JSON from it: the keys left out are added back as `,"key":value` (canonical JSON has no whitespace, so
 * each adds its own bytes and one comma; the order of keys does not change the length).
 */
export function serialisePdu(pdu: Pdu): PduSerialisation {
  // Not an object: validatePduFormat says so before it looks at the size.
  if (!isJsonObject(pdu)) return { size: { error: new CanonicalJsonError("not a JSON object") } };
  const source = pdu as unknown as Record<string, unknown>;
  const rest: Record<string, unknown> = {};
  let extra = 0;
  let extraKeys = 0;
  try {
    for (const key of Object.keys(source)) {
      const value = source[key];
      if (value === undefined) continue;
      if ((NOT_HASHED as readonly string[]).includes(key)) {
        // Only its length counts (these keys are not hashed): no bytes made for it.
        extra += utf8ByteLength(canonicalJson(key) + ":" + canonicalJson(value));
        extraKeys += 1;
      } else rest[key] = value;
    }
    const contentHashBytes = encoder.encode(canonicalJson(rest));
    const restKeys = Object.keys(rest).length;
    // "{}" plus entries joined by commas: restKeys - 1 commas in the content JSON, one more per key added.
    const commas = restKeys > 0 ? extraKeys : Math.max(0, extraKeys - 1);
    return { contentHashBytes, size: { bytes: contentHashBytes.length + extra + commas } };
  } catch (e) {
    if (!(e instanceof CanonicalJsonError)) throw e;
    return { size: { error: e } };
  }
}

/**
 * The event ID (as event-hashes.ts `eventIdFor`) and the signed bytes. The reference hash covers the
 * redacted event without `signatures`, `unsigned` and `age_ts` (spec: "Calculating the reference hash for an
 * event"); redaction keeps none of `unsigned` and `age_ts` (protocol/redaction.ts), so those are exactly the
 * bytes signatures cover (Appendices, "Signing JSON"). Throws CanonicalJsonError when the redacted event is
 * not canonical JSON, and for a v1-v2 event without an `event_id`.
 */
export async function identifyPdu(pdu: Pdu, rules: RoomVersionRules, serialised?: PduSerialisation): Promise<IdentifiedPdu> {
  // Read once and dropped: the redacted form shares the event's values instead of copying them.
  const signedBytes = signableBytes(redactPdu(pdu, rules, { share: true }) as unknown as JsonObject);
  const contentHashBytes = serialised?.contentHashBytes;
  let eventId: string;
  switch (rules.eventIdFormat) {
    case "v1":
      if (typeof pdu.event_id !== "string") throw new Error(`room version ${rules.id} events must carry an event_id`);
      eventId = pdu.event_id;
      break;
    case "v3":
      eventId = "$" + encodeBase64(await sha256(signedBytes));
      break;
    case "v4":
      eventId = "$" + encodeBase64Url(await sha256(signedBytes));
      break;
  }
  return contentHashBytes === undefined ? { eventId, signedBytes } : { eventId, signedBytes, contentHashBytes };
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
  return { ok: true, contentHashOk: await checkContentHash(pdu, identified.contentHashBytes) };
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
  const serialised = serialisePdu(pdu);
  const format = validatePduFormat(pdu, rules, serialised.size);
  if (!format.ok) return format;
  let identified: IdentifiedPdu;
  try {
    identified = await identifyPdu(pdu, rules, serialised);
  } catch {
    return { ok: false, reason: "no event ID: not canonical JSON" };
  }
  const checked = await verifyReceivedPdu(pdu, identified, rules, signers, keysFor);
  if (!checked.ok) return { ok: false, reason: `Event is not signed by ${checked.server}` };
  return { ok: true, eventId: identified.eventId, contentHashOk: checked.contentHashOk };
}
