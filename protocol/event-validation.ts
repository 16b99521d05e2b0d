// Format checks on a PDU before anything else looks at it (spec: Server-Server API, "Checks performed
// on receipt of a PDU", step 1; room versions, "Event format" and the PDU schemas pdu_v1..pdu_v12;
// Client-Server API, "Size limits"; Appendices, "Canonical JSON" and "Identifier Grammar").
// Only the shape is checked here: hashes, signatures and auth rules come later.
import { CanonicalJsonError, MAX_SAFE, canonicalJson } from "./canonical-json.js";
import { accountKeyOfUser } from "./accounts.js";
import { isJsonObject } from "./json.js";
import type { RoomVersionRules } from "./room-versions.js";

export type PduFormatResult = { ok: true } | { ok: false; reason: string };

/** Client-Server API, "Size limits": the whole event as canonical JSON, signatures included. */
export const MAX_PDU_BYTES = 65536;
/** Limit for `sender`, `room_id`, `event_id`, `type` and `state_key`, in UTF-8 bytes. */
export const MAX_ID_BYTES = 255;
/** PDU schemas: "Must contain less than or equal to 20 events" / "... 10 events". */
export const MAX_PREV_EVENTS = 20;
export const MAX_AUTH_EVENTS = 10;
/** Room versions 1-5 allow depth up to 2^63 - 1; every double below 2^63 is at most that. */
const INT64_LIMIT = 2 ** 63;

const encoder = new TextEncoder();
const byteLength = (s: string): number => encoder.encode(s).length;
/** Whether an ID is over MAX_ID_BYTES in UTF-8. A UTF-16 unit takes at most 3 bytes (a surrogate pair, two
 * units, takes 4), so a string of up to 85 units is within the limit without encoding it (every event
 * checked has several IDs). */
const tooLong = (s: string): boolean => s.length * 3 > MAX_ID_BYTES && byteLength(s) > MAX_ID_BYTES;

/** `&localpart:domain` with a non-empty domain. Localparts are not checked: historical user IDs
 * (Appendices, "Historical User IDs") may hold almost anything, even be empty, and must be accepted. */
function hasSigilAndDomain(id: string, sigil: string): boolean {
  if (!id.startsWith(sigil)) return false;
  const colon = id.indexOf(":");
  return colon > 0 && colon < id.length - 1;
}

function isEventId(id: unknown, rules: RoomVersionRules): id is string {
  if (typeof id !== "string" || tooLong(id)) return false;
  // v1-v2: `$opaque_id:domain`; v3+: `$` + base64 reference hash (no domain).
  return rules.eventFormat.eventIdInPdu ? hasSigilAndDomain(id, "$") : id.startsWith("$") && id.length > 1;
}

const fail = (reason: string): PduFormatResult => ({ ok: false, reason });

/** Checks `prev_events` / `auth_events`: event IDs (v3+) or `[event_id, {sha256}]` pairs (v1-v2). */
function checkReferences(value: unknown, key: string, max: number, rules: RoomVersionRules): string | undefined {
  if (!Array.isArray(value)) return `${key} must be an array`;
  if (value.length > max) return `${key} has ${value.length} entries (at most ${max})`;
  for (const ref of value) {
    if (rules.eventFormat.eventIdInPdu) {
      if (!Array.isArray(ref) || ref.length !== 2) return `${key} entries must be [event_id, hashes] pairs`;
      if (!isEventId(ref[0], rules)) return `${key} contains an invalid event ID`;
      if (!isJsonObject(ref[1])) return `${key} entries must carry a hashes object`;
      const sha = ref[1]["sha256"];
      if (sha !== undefined && typeof sha !== "string") return `${key} hashes.sha256 must be a string`;
    } else if (!isEventId(ref, rules)) {
      return `${key} must be a list of event IDs`;
    }
  }
  return undefined;
}

/** The size in bytes of a PDU as canonical JSON, or the reason it is not canonical JSON. Callers that
 * serialise the event anyway pass it to validatePduFormat (protocol/received-pdu.ts). */
export type CanonicalSize = { bytes: number } | { error: CanonicalJsonError };

function canonicalSize(pdu: unknown): CanonicalSize {
  try {
    return { bytes: byteLength(canonicalJson(pdu)) };
  } catch (e) {
    if (!(e instanceof CanonicalJsonError)) throw e;
    return { error: e };
  }
}

/**
 * Checks that `pdu` has the format its room version requires. Returns the first problem found. `canonical`:
 * the event's canonical size when the caller has it (else it is measured here).
 *
 * Room versions 1-5 do not enforce canonical JSON (spec: v1 "Canonical JSON": servers MUST NOT
 * strictly enforce it), so a float or an integer beyond 2^53 in them passes this check (integers
 * the schema requires, such as `depth`, must still be integers up to 2^63 - 1). Such an event
 * cannot be hashed exactly by this server: its content hash check then fails and it is used in
 * redacted form, and if even the redacted form is not canonical its signature check fails.
 */
export function validatePduFormat(pdu: unknown, rules: RoomVersionRules, canonical?: CanonicalSize): PduFormatResult {
  if (!isJsonObject(pdu)) return fail("PDU is not a JSON object");

  // Size and strict canonical JSON (v6+: floats, out-of-range integers and lone surrogates are errors).
  const measured = canonical ?? canonicalSize(pdu);
  let size: number;
  if ("error" in measured) {
    if (rules.strictCanonicalJson) return fail(`not canonical JSON: ${measured.error.message}`);
    size = byteLength(JSON.stringify(pdu)); // v1-v5: measure the size as best we can
  } else size = measured.bytes;
  if (size > MAX_PDU_BYTES) return fail(`PDU is larger than ${MAX_PDU_BYTES} bytes`);

  const { type, sender, room_id: roomId, state_key: stateKey, content, depth } = pdu;
  if (typeof type !== "string") return fail("type must be a string");
  if (tooLong(type)) return fail("type is longer than 255 bytes");

  // MSC4348 rooms (`accountKeyIdentity`): the sender may be `@<account key>`, with no server part.
  const accountSender = rules.eventFormat.accountKeyIdentity && typeof sender === "string" && accountKeyOfUser(sender) !== undefined;
  if (typeof sender !== "string" || !(accountSender || hasSigilAndDomain(sender, "@"))) return fail("sender must be a user ID (@localpart:domain)");
  if (tooLong(sender)) return fail("sender is longer than 255 bytes");

  // v12 (MSC4291): the create event has no room_id; its event ID defines the room ID.
  const isV12Create = rules.roomIdFormat === "create-event-hash" && type === "m.room.create";
  if (isV12Create) {
    if (roomId !== undefined) return fail("m.room.create must not have a room_id in this room version");
  } else {
    if (typeof roomId !== "string") return fail("room_id must be a string");
    const wellFormed = rules.roomIdFormat === "server-generated" ? hasSigilAndDomain(roomId, "!") : roomId.startsWith("!") && roomId.length > 1;
    if (!wellFormed) return fail("room_id is not a room ID");
    if (tooLong(roomId)) return fail("room_id is longer than 255 bytes");
  }

  if (rules.eventFormat.eventIdInPdu) {
    if (typeof pdu.event_id !== "string") return fail("event_id is required in this room version");
    if (!isEventId(pdu.event_id, rules)) return fail("event_id is not a valid event ID (at most 255 bytes)");
  }

  if (stateKey !== undefined) {
    if (typeof stateKey !== "string") return fail("state_key must be a string");
    if (tooLong(stateKey)) return fail("state_key is longer than 255 bytes");
  }

  if (!isJsonObject(content)) return fail("content must be an object");

  if (typeof pdu.origin_server_ts !== "number" || !Number.isInteger(pdu.origin_server_ts)) {
    return fail("origin_server_ts must be an integer");
  }
  if (Math.abs(pdu.origin_server_ts) >= INT64_LIMIT) return fail("origin_server_ts is out of range");

  if (typeof depth !== "number" || !Number.isInteger(depth)) return fail("depth must be an integer");
  // v1-v5 schema: below 2^63 - 1; v6+ (depth_v6): below 2^53 - 1, the canonical JSON range.
  const tooDeep = rules.strictCanonicalJson ? depth > MAX_SAFE : depth >= INT64_LIMIT;
  if (depth < 0 || tooDeep) return fail("depth is out of range");

  const prevProblem = checkReferences(pdu.prev_events, "prev_events", MAX_PREV_EVENTS, rules);
  if (prevProblem) return fail(prevProblem);
  const authProblem = checkReferences(pdu.auth_events, "auth_events", MAX_AUTH_EVENTS, rules);
  if (authProblem) return fail(authProblem);

  if (!isJsonObject(pdu.hashes) || typeof pdu.hashes["sha256"] !== "string") return fail("hashes.sha256 must be a string");

  const signatures = pdu.signatures;
  if (!isJsonObject(signatures)) return fail("signatures must be an object");
  for (const byServer of Object.values(signatures)) {
    if (!isJsonObject(byServer) || !Object.values(byServer).every((s) => typeof s === "string")) {
      return fail("signatures must map server names to {key ID: signature string}");
    }
  }

  if (pdu.unsigned !== undefined && !isJsonObject(pdu.unsigned)) return fail("unsigned must be an object");

  return { ok: true };
}
