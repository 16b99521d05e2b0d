// End-to-end encryption key objects (spec: Client-Server API, "End-to-End Encryption": "Key Distribution",
// "Cross-signing", "Server-side key backups"): shape checks for what clients upload, and the backup
// key replacement rule. Pure: the worker validates with these, the User DO stores what they return.
import { CanonicalJsonError, canonicalJson } from "./canonical-json.js";
import { decodeBase64 } from "./base64.js";
import { MatrixError, badJson, invalidParam } from "./errors.js";
import { isJsonObject, type JsonObject, type JsonValue } from "./json.js";

export type CrossSigningKeyType = "master" | "self_signing" | "user_signing";

/** Canonical JSON of a client-supplied value, or 400 M_BAD_JSON (floats, huge integers) naming `what`. */
export function canonicalOrBadJson(value: JsonValue, what: string): string {
  try {
    return canonicalJson(value);
  } catch (e) {
    if (e instanceof CanonicalJsonError) throw badJson(`${what}: ${e.message}`);
    throw e;
  }
}

/** A copy of a signed object without `signatures` and `unsigned`: the part a signature covers
 * (spec: Appendices, "Signing JSON"). */
export function signedPart(obj: JsonObject): JsonObject {
  const { signatures: _s, unsigned: _u, ...rest } = obj;
  return rest;
}

/** True if `value` is `{userId: {keyId: signature}}` with string signatures. */
function isSignatureMap(value: JsonValue | undefined): boolean {
  if (!isJsonObject(value)) return false;
  return Object.values(value).every((byKey) => isJsonObject(byKey) && Object.values(byKey).every((s) => typeof s === "string"));
}

/** The `signatures[userId]` map of an object (empty if absent). */
export function signaturesBy(obj: JsonObject, userId: string): Record<string, string> {
  const sigs = obj.signatures;
  if (!isJsonObject(sigs)) return {};
  const mine = sigs[userId];
  if (!isJsonObject(mine)) return {};
  const out: Record<string, string> = {};
  for (const [keyId, sig] of Object.entries(mine)) if (typeof sig === "string") out[keyId] = sig;
  return out;
}

/** An unpadded-base64 Ed25519 public key (32 bytes). */
export function isEd25519PublicKey(value: string): boolean {
  try {
    return decodeBase64(value).length === 32;
  } catch {
    return false;
  }
}

/**
 * Checks `device_keys` of POST /keys/upload (spec: "DeviceKeys"): it must belong to the requesting user
 * and device (Synapse answers 400 M_BAD_JSON otherwise), list its algorithms, and map key IDs to string
 * keys. Returns the object without `unsigned`, which is the server's to fill in.
 */
export function validateDeviceKeys(value: JsonValue, userId: string, deviceId: string): JsonObject {
  if (!isJsonObject(value)) throw badJson("device_keys must be an object");
  if (value.user_id !== userId) throw badJson("Provided `user_id` in `device_keys` does not match that of the authenticated user");
  if (value.device_id !== deviceId) {
    throw badJson("Provided `device_id` in `device_keys` does not match that of the authenticated user device");
  }
  const algorithms = value.algorithms;
  if (!Array.isArray(algorithms) || !algorithms.every((a) => typeof a === "string")) {
    throw badJson("device_keys.algorithms must be a list of strings");
  }
  const keys = value.keys;
  if (!isJsonObject(keys) || !Object.values(keys).every((k) => typeof k === "string")) {
    throw badJson("device_keys.keys must map key IDs to strings");
  }
  if (!isSignatureMap(value.signatures)) throw badJson("device_keys.signatures must map user IDs to key IDs to signatures");
  const { unsigned: _u, ...rest } = value;
  return rest;
}

/** `<algorithm>:<key_id>` (spec: "One-time and fallback keys"; key IDs of uploaded keys). */
export function splitKeyId(id: string): { algorithm: string; keyId: string } | undefined {
  const colon = id.indexOf(":");
  if (colon <= 0 || colon === id.length - 1) return undefined;
  return { algorithm: id.slice(0, colon), keyId: id.slice(colon + 1) };
}

/** One uploaded one-time or fallback key. */
export interface UploadedKey {
  /** `<algorithm>:<key_id>` as uploaded. */
  id: string;
  algorithm: string;
  /** Canonical JSON of the key: a JSON string for plain keys (`curve25519`), an object for signed ones. */
  json: string;
}

/**
 * Checks a map of one-time keys or fallback keys (`one_time_keys` / `fallback_keys` of /keys/upload): names
 * `<algorithm>:<key_id>`, values either a string or a signed key object with a string `key`.
 */
export function validateKeyMap(value: JsonValue, field: string): UploadedKey[] {
  if (!isJsonObject(value)) throw badJson(`${field} must be an object`);
  const out: UploadedKey[] = [];
  for (const [id, key] of Object.entries(value)) {
    const parts = splitKeyId(id);
    if (!parts) throw badJson(`${field}: key ID ${JSON.stringify(id)} is not <algorithm>:<key_id>`);
    if (typeof key !== "string") {
      if (!isJsonObject(key) || typeof key.key !== "string") {
        throw badJson(`${field}: ${id} must be a string or an object with a string key`);
      }
      if (key.signatures !== undefined && !isSignatureMap(key.signatures)) throw badJson(`${field}: ${id} has malformed signatures`);
    }
    out.push({ id, algorithm: parts.algorithm, json: canonicalOrBadJson(key, field) });
  }
  return out;
}

/**
 * Whether a re-uploaded one-time key is the key already stored under its ID. Signatures may legitimately
 * differ between upload attempts, so they are ignored (as Synapse does); anything else differing is a
 * conflict (400).
 */
export function sameOneTimeKey(storedJson: string, uploadedJson: string): boolean {
  if (storedJson === uploadedJson) return true;
  const a = JSON.parse(storedJson) as JsonValue;
  const b = JSON.parse(uploadedJson) as JsonValue;
  if (!isJsonObject(a) || !isJsonObject(b)) return false;
  const { signatures: _a, ...restA } = a;
  const { signatures: _b, ...restB } = b;
  return canonicalJson(restA) === canonicalJson(restB);
}

/** A validated cross-signing key (spec: "CrossSigningKey"). */
export interface CrossSigningKey {
  /** The key object as uploaded (canonical JSON is what gets stored). */
  json: JsonObject;
  /** `ed25519:<public key>` */
  keyId: string;
  /** Unpadded base64 public key. */
  publicKey: string;
}

/**
 * Checks an uploaded cross-signing key: it belongs to `userId`, its `usage` names `type`, and `keys` has
 * exactly one property `ed25519:<pk>` whose value is `<pk>`, an Ed25519 public key. 400 M_INVALID_PARAM
 * otherwise (Synapse: "Invalid <type> key").
 */
export function parseCrossSigningKey(value: JsonValue, userId: string, type: CrossSigningKeyType): CrossSigningKey {
  const invalid = () => invalidParam(`Invalid ${type} key`);
  if (!isJsonObject(value)) throw invalid();
  if (value.user_id !== userId) throw invalid();
  const usage = value.usage;
  if (!Array.isArray(usage) || !usage.every((u) => typeof u === "string") || !usage.includes(type)) throw invalid();
  const keys = value.keys;
  if (!isJsonObject(keys)) throw invalid();
  const entries = Object.entries(keys);
  if (entries.length !== 1) throw invalid();
  const [keyId, publicKey] = entries[0]!;
  if (typeof publicKey !== "string" || keyId !== `ed25519:${publicKey}` || !isEd25519PublicKey(publicKey)) throw invalid();
  if (value.signatures !== undefined && !isSignatureMap(value.signatures)) throw invalid();
  const { unsigned: _u, ...json } = value;
  return { json, keyId, publicKey };
}

/** The public key of a stored cross-signing key object (its single `keys` entry). */
export function crossSigningPublicKey(key: JsonObject): string | undefined {
  const keys = key.keys;
  if (!isJsonObject(keys)) return undefined;
  const first = Object.values(keys)[0];
  return typeof first === "string" ? first : undefined;
}

// ---------------------------------------------------------------------------------------------
// Server-side key backups.

/** Spec: "KeyBackupData". `session_data` is kept as JSON text (the server never reads it). */
export interface BackupKeyData {
  first_message_index: number;
  forwarded_count: number;
  is_verified: boolean;
  session_data: string;
}

function nonNegativeInteger(value: JsonValue | undefined): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** Checks one KeyBackupData object; 400 M_BAD_JSON (M_INVALID_PARAM for `is_verified`, as Synapse). */
export function validateBackupKeyData(value: JsonValue, where: string): BackupKeyData {
  if (!isJsonObject(value)) throw badJson(`${where}: key data must be an object`);
  if (!nonNegativeInteger(value.first_message_index)) throw badJson(`${where}: first_message_index must be a non-negative integer`);
  if (!nonNegativeInteger(value.forwarded_count)) throw badJson(`${where}: forwarded_count must be a non-negative integer`);
  if (typeof value.is_verified !== "boolean") throw new MatrixError(400, "M_INVALID_PARAM", `${where}: is_verified must be a boolean`);
  if (!isJsonObject(value.session_data)) throw badJson(`${where}: session_data must be an object`);
  return {
    first_message_index: value.first_message_index,
    forwarded_count: value.forwarded_count,
    is_verified: value.is_verified,
    session_data: JSON.stringify(value.session_data),
  };
}

/**
 * Spec: "Server-side key backups": when a key for a session is already stored, keep the one with
 * `is_verified` true; with equal `is_verified`, the lower `first_message_index`; with both equal, the
 * lower `forwarded_count`. True if `candidate` replaces `existing` (a full tie keeps the existing key).
 */
export function shouldReplaceBackupKey(
  existing: Pick<BackupKeyData, "first_message_index" | "forwarded_count" | "is_verified">,
  candidate: Pick<BackupKeyData, "first_message_index" | "forwarded_count" | "is_verified">,
): boolean {
  if (existing.is_verified !== candidate.is_verified) return candidate.is_verified;
  if (existing.first_message_index !== candidate.first_message_index) {
    return candidate.first_message_index < existing.first_message_index;
  }
  return candidate.forwarded_count < existing.forwarded_count;
}
