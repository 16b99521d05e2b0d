// Hashes, signatures and IDs of events (spec: Server-Server API, "Signing Events", "Calculating the
// reference hash for an event", "Calculating the content hash for an event"; room versions,
// "Event IDs"; room version 12 / MSC4291, room IDs from the create event).
// SHA-256 and Ed25519 run on WebCrypto (see DESIGN.md, "Rules that keep it fast").
import { decodeBase64, encodeBase64, encodeBase64Url } from "./base64.js";
import { canonicalJsonBytes } from "./canonical-json.js";
import type { JsonObject } from "./json.js";
import type { Pdu } from "./pdu.js";
import { redactPdu } from "./redaction.js";
import type { RoomVersionRules } from "./room-versions.js";
import { signBytes, signableBytes, verifyJsonSignature, type SigningKey } from "./signing.js";

async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** The bytes the content hash covers: the full event without `unsigned`, `signatures`, `hashes`. */
export function contentHashBytes(pdu: Pdu): Uint8Array {
  const { unsigned: _u, signatures: _s, hashes: _h, ...rest } = pdu;
  return canonicalJsonBytes(rest);
}

/** Unpadded standard base64 of the SHA-256 content hash (what goes into `hashes.sha256`).
 * Throws CanonicalJsonError if the event is not canonical JSON (floats, huge integers). */
export async function contentHash(pdu: Pdu): Promise<string> {
  return encodeBase64(await sha256(contentHashBytes(pdu)));
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/**
 * Checks `hashes.sha256` against the event (spec: "Validating hashes and signatures on received
 * events": the hash is base64-decoded and compared). False when it is missing, not base64, or does
 * not match, and also when the event cannot be encoded as canonical JSON (a v1-v5 event with a
 * float): a caller then uses the redacted copy, as the spec says for a failed hash check.
 */
export async function checkContentHash(pdu: Pdu, covered?: Uint8Array): Promise<boolean> {
  const claimed = (pdu.hashes as { sha256?: unknown } | undefined)?.sha256;
  if (typeof claimed !== "string") return false;
  let expected: Uint8Array;
  let actual: Uint8Array;
  try {
    expected = decodeBase64(claimed);
    // `covered`: contentHashBytes(pdu), when the caller has them already (protocol/received-pdu.ts).
    actual = await sha256(covered ?? contentHashBytes(pdu));
  } catch {
    return false; // not base64, or not canonical JSON
  }
  return bytesEqual(expected, actual);
}

/** The object the reference hash covers: the redacted event without `signatures`, `unsigned`
 * and `age_ts` (redaction already drops the last two; removed explicitly as the spec lists them). */
function referenceHashObject(pdu: Pdu, rules: RoomVersionRules): Record<string, unknown> {
  const { signatures: _s, unsigned: _u, age_ts: _a, ...rest } = redactPdu(pdu, rules);
  return rest;
}

/** SHA-256 reference hash of an event (spec: "Calculating the reference hash for an event").
 * Throws CanonicalJsonError if the redacted event is not canonical JSON. */
export async function referenceHash(pdu: Pdu, rules: RoomVersionRules): Promise<Uint8Array> {
  return sha256(canonicalJsonBytes(referenceHashObject(pdu, rules)));
}

/**
 * The event ID of a PDU. v1-v2: the `event_id` the PDU carries (throws if it has none); v3: `$` +
 * unpadded standard base64 of the reference hash; v4+: `$` + URL-safe unpadded base64.
 */
export async function eventIdFor(pdu: Pdu, rules: RoomVersionRules): Promise<string> {
  switch (rules.eventIdFormat) {
    case "v1":
      if (typeof pdu.event_id !== "string") throw new Error(`room version ${rules.id} events must carry an event_id`);
      return pdu.event_id;
    case "v3":
      return "$" + encodeBase64(await referenceHash(pdu, rules));
    case "v4":
      return "$" + encodeBase64Url(await referenceHash(pdu, rules));
  }
}

/**
 * The room ID a create event defines. v12+ (MSC4291, `roomIdFormat: "create-event-hash"`): `!` +
 * the URL-safe reference hash of the create event (its event ID with `!` for `$`, no server name).
 * Earlier versions: the server-generated `room_id` the create event carries (throws if absent).
 */
export async function roomIdFromCreateEvent(createPdu: Pdu, rules: RoomVersionRules): Promise<string> {
  if (createPdu.type !== "m.room.create") throw new Error("not an m.room.create event");
  if (rules.roomIdFormat === "create-event-hash") {
    return "!" + encodeBase64Url(await referenceHash(createPdu, rules));
  }
  if (typeof createPdu.room_id !== "string") throw new Error("create event has no room_id");
  return createPdu.room_id;
}

export interface SignedPdu {
  pdu: Pdu;
  eventId: string;
}

/**
 * Hashes and signs an outgoing event (spec: "Adding hashes and signatures to outgoing events"):
 * sets `hashes.sha256` to the content hash (other hash algorithms are kept), signs the redacted
 * form for the room version with `key` as `serverName`, and adds the signature to the full event's
 * `signatures` (other signatures are kept). Returns a new PDU and its event ID; the input is not
 * modified. For v3+ the PDU should not carry `event_id` (it would be covered by the hashes); for
 * v1-v2 it must.
 */
export async function hashAndSignEvent(
  pdu: Pdu,
  serverName: string,
  key: SigningKey,
  rules: RoomVersionRules,
): Promise<SignedPdu> {
  const hashes = { ...(pdu.hashes as Record<string, string> | undefined), sha256: await contentHash(pdu) };
  const hashed: Pdu = { ...pdu, hashes: hashes as Pdu["hashes"] };
  const redacted = redactPdu(hashed, rules) as unknown as JsonObject;
  const signature = await signBytes(key, signableBytes(redacted));
  const existing = (pdu.signatures ?? {}) as Record<string, Record<string, string>>;
  const signed: Pdu = {
    ...hashed,
    signatures: { ...existing, [serverName]: { ...existing[serverName], [key.keyId]: signature } },
  };
  return { pdu: signed, eventId: await eventIdFor(signed, rules) };
}

/**
 * Verifies `signatures[serverName][keyId]` of an event against a base64 Ed25519 public key,
 * over the redacted form for the room version (spec: "Validating hashes and signatures on received
 * events"), so it holds for the full event and for a redacted copy alike. False for a missing or
 * malformed signature, an unusable public key, or an event that is not canonical JSON.
 */
export async function verifyEventSignature(
  pdu: Pdu,
  serverName: string,
  keyId: string,
  publicKeyBase64: string,
  rules: RoomVersionRules,
): Promise<boolean> {
  try {
    const redacted = redactPdu(pdu, rules) as unknown as JsonObject;
    return await verifyJsonSignature(redacted, serverName, keyId, publicKeyBase64);
  } catch {
    // CanonicalJsonError, or WebCrypto rejecting a malformed public key.
    return false;
  }
}

/**
 * Adds this server's signature to someone else's event without touching its hashes (spec: a resident
 * server co-signs a restricted join that names its user in `join_authorised_via_users_server`; an invited
 * server signs the invite it receives). The signature covers the redacted form, like every event signature.
 */
export async function signEventAsServer(pdu: Pdu, serverName: string, key: SigningKey, rules: RoomVersionRules): Promise<Pdu> {
  const redacted = redactPdu(pdu, rules) as unknown as JsonObject;
  const signature = await signBytes(key, signableBytes(redacted));
  const existing = (pdu.signatures ?? {}) as Record<string, Record<string, string>>;
  return { ...pdu, signatures: { ...existing, [serverName]: { ...existing[serverName], [key.keyId]: signature } } };
}
