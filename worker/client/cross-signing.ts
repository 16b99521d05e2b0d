// Client-Server API: Cross-signing (spec: "End-to-End Encryption" > "Cross-signing";
// data/api/client-server/cross_signing.yaml). Signatures are verified here, in the worker, with
// protocol/signing.ts; the user's DO stores keys and signatures (durable-objects/user/e2e-keys.ts).
import { Hono } from "hono";
import { MatrixError, invalidParam } from "../../protocol/errors.js";
import { canonicalJson } from "../../protocol/canonical-json.js";
import {
  canonicalOrBadJson,
  crossSigningPublicKey,
  parseCrossSigningKey,
  signaturesBy,
  signedPart,
  type CrossSigningKey,
  type CrossSigningKeyType,
} from "../../protocol/e2e-keys.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { verifyJsonSignature } from "../../protocol/signing.js";
import type { CrossSigningKeys, StoredSignature } from "../../durable-objects/user/e2e-keys.js";
import { unwrap } from "../../durable-objects/user/outcome.js";
import { isLocalUserId, requester, requireAuth } from "../auth.js";
import { onOwnDevicesChanged } from "../device-lists.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { finishUiaSession, userInteractiveAuth, type UiaResult } from "../uia.js";
import { userStore } from "../user-store.js";

export const crossSigningRoutes = new Hono<AppEnv>();

const CLIENT = "/_matrix/client/:version{v3|r0}";

const FIELDS: [string, CrossSigningKeyType][] = [
  ["master_key", "master"],
  ["self_signing_key", "self_signing"],
  ["user_signing_key", "user_signing"],
];

// POST /_matrix/client/v3/keys/device_signing/upload
crossSigningRoutes.post(`${CLIENT}/keys/device_signing/upload`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const body = await readJsonObject(c);

  const uploaded: Partial<Record<CrossSigningKeyType, CrossSigningKey>> = {};
  const upload: CrossSigningKeys = {};
  for (const [field, type] of FIELDS) {
    const value = body[field];
    if (value === undefined || value === null) continue;
    const key = parseCrossSigningKey(value, userId, type);
    uploaded[type] = key;
    upload[type] = canonicalOrBadJson(key.json, field);
  }

  const store = userStore(c.env, userId);
  const existing = await store.crossSigningKeys();
  // Spec (v1.11): uploading exactly the keys already stored needs no UIA and changes nothing, so a retry
  // after a lost response succeeds.
  const types = Object.keys(upload) as CrossSigningKeyType[];
  if (types.every((type) => upload[type] === existing[type])) return c.json({});

  // Spec: UIA "MUST be performed ... except when there is no existing master signing key". The same
  // flow as deleting a device (worker/client/devices.ts): the user's password.
  let uia: UiaResult | undefined;
  if (existing.master !== undefined) {
    uia = await userInteractiveAuth(c.env, body, {
      method: "POST",
      operation: "keys/device_signing/upload",
      flows: [["m.login.password"]],
      userId,
    });
  }

  const existingMaster = existing.master === undefined ? undefined : (JSON.parse(existing.master) as JsonObject);
  const masterPublicKey = uploaded.master?.publicKey ?? (existingMaster && crossSigningPublicKey(existingMaster));
  if (masterPublicKey === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "No master key available");

  // The self-signing and user-signing keys "Must be signed by the accompanying master signing key, or by
  // the user's most recently uploaded master signing key if no master signing key is included".
  for (const type of ["self_signing", "user_signing"] as const) {
    const key = uploaded[type];
    if (key && !(await verifyJsonSignature(key.json, userId, `ed25519:${masterPublicKey}`, masterPublicKey))) {
      throw new MatrixError(400, "M_INVALID_SIGNATURE", `Invalid signature on ${type} key`);
    }
  }

  // Spec: 403 when "The public key of one of the keys is the same as one of the user's device IDs"
  // (verification treats a master public key as a device ID).
  const publicKeys = Object.values(uploaded).map((k) => k.publicKey);
  const clash = await c.env.DB.prepare(
    `SELECT device_id FROM devices WHERE user_id = ? AND device_id IN (${publicKeys.map(() => "?").join(",")}) LIMIT 1`,
  )
    .bind(userId, ...publicKeys)
    .first();
  if (clash) throw new MatrixError(403, "M_FORBIDDEN", "Key ID in use");

  const expectedMaster = existingMaster ? (crossSigningPublicKey(existingMaster) ?? null) : null;
  const changed = unwrap(await store.setCrossSigningKeys(userId, upload, expectedMaster));
  if (uia) await finishUiaSession(c.env, uia);
  if (changed) await onOwnDevicesChanged(c.env, userId);
  return c.json({});
});

/** A failure entry of /keys/signatures/upload (spec: "If a signature was invalid, the errcode will be
 * set to M_INVALID_SIGNATURE"). */
interface Failure {
  errcode: string;
  error: string;
}
const invalidSignature = (): Failure => ({ errcode: "M_INVALID_SIGNATURE", error: "Invalid signature" });
const keyMismatch = (): Failure => ({ errcode: "M_INVALID_SIGNATURE", error: "Key does not match the stored key" });
const unknownKey = (what: string): Failure => ({ errcode: "M_NOT_FOUND", error: what });

/** Whether a signed object is the stored key, apart from `signatures` and `unsigned` (spec: "The signed
 * JSON object must match the key previously uploaded"). */
function sameKey(signed: JsonObject, storedJson: string): boolean {
  try {
    return canonicalJson(signedPart(signed)) === canonicalJson(signedPart(JSON.parse(storedJson) as JsonObject));
  } catch {
    return false; // not canonical-JSON-able (e.g. a float): cannot be the stored key
  }
}

function publicKeyOf(json: string | undefined): string | undefined {
  return json === undefined ? undefined : crossSigningPublicKey(JSON.parse(json) as JsonObject);
}

// POST /_matrix/client/v3/keys/signatures/upload
crossSigningRoutes.post(`${CLIENT}/keys/signatures/upload`, requireAuth, async (c) => {
  const { userId } = requester(c);
  const body = await readJsonObject(c);
  for (const [target, keys] of Object.entries(body)) {
    if (!isJsonObject(keys) || !Object.values(keys).every(isJsonObject)) {
      throw invalidParam(`${target} must map key IDs to signed objects`);
    }
  }

  const failures: Record<string, Record<string, Failure>> = {};
  const fail = (target: string, keyId: string, failure: Failure) => ((failures[target] ??= {})[keyId] = failure);
  const own = userStore(c.env, userId);
  const state = await own.keySigningState();
  const masterPublicKey = publicKeyOf(state.master);
  const selfSigningPublicKey = publicKeyOf(state.self_signing);
  const userSigningPublicKey = publicKeyOf(state.user_signing);

  // Signatures on the user's own keys: devices signed by the self-signing key, and the master key signed
  // by the user's devices.
  const ownSignatures: StoredSignature[] = [];
  for (const [keyId, value] of Object.entries((body[userId] ?? {}) as JsonObject)) {
    const signed = value as JsonObject;
    const signatures = signaturesBy(signed, userId);
    if (masterPublicKey !== undefined && keyId === masterPublicKey) {
      if (!sameKey(signed, state.master!)) {
        fail(userId, keyId, keyMismatch());
        continue;
      }
      const found: StoredSignature[] = [];
      let ok = true;
      for (const [signerKeyId, signature] of Object.entries(signatures)) {
        if (signerKeyId === `ed25519:${masterPublicKey}`) continue; // the master key's own signature
        const deviceJson = signerKeyId.startsWith("ed25519:") ? state.devices[signerKeyId.slice("ed25519:".length)] : undefined;
        const deviceKey = deviceJson === undefined ? undefined : (JSON.parse(deviceJson) as JsonObject).keys;
        const publicKey = isJsonObject(deviceKey) ? deviceKey[signerKeyId] : undefined;
        if (typeof publicKey !== "string" || !(await verifyJsonSignature(signed, userId, signerKeyId, publicKey))) {
          ok = false;
          break;
        }
        found.push({ targetId: keyId, signerUserId: userId, signerKeyId, signature });
      }
      if (!ok || found.length === 0) fail(userId, keyId, invalidSignature());
      else ownSignatures.push(...found);
      continue;
    }
    // A device, signed by the self-signing key.
    if (selfSigningPublicKey === undefined) {
      fail(userId, keyId, unknownKey("No self-signing key found"));
      continue;
    }
    const stored = state.devices[keyId];
    if (stored === undefined) {
      fail(userId, keyId, unknownKey("Unknown device"));
      continue;
    }
    const signerKeyId = `ed25519:${selfSigningPublicKey}`;
    const signature = signatures[signerKeyId];
    if (signature === undefined) {
      fail(userId, keyId, invalidSignature());
      continue;
    }
    if (!sameKey(signed, stored)) {
      fail(userId, keyId, keyMismatch());
      continue;
    }
    if (!(await verifyJsonSignature(signed, userId, signerKeyId, selfSigningPublicKey))) {
      fail(userId, keyId, invalidSignature());
      continue;
    }
    ownSignatures.push({ targetId: keyId, signerUserId: userId, signerKeyId, signature });
  }
  if (ownSignatures.length > 0) {
    await own.addKeySignatures(userId, ownSignatures);
    await onOwnDevicesChanged(c.env, userId);
  }

  // Other users' master keys, signed by the user-signing key. Such a signature is visible to the signer
  // only, so it is the signer's device list view that changes (their own DO records the target user).
  for (const [target, keys] of Object.entries(body)) {
    if (target === userId) continue;
    const keyIds = Object.keys(keys as JsonObject);
    const failAll = (failure: Failure) => keyIds.forEach((k) => fail(target, k, failure));
    if (userSigningPublicKey === undefined) {
      failAll(unknownKey("No user-signing key found"));
      continue;
    }
    if (!isLocalUserId(target, c.env)) {
      failAll(unknownKey(`No master key found for ${target}`)); // no federation to fetch it from yet
      continue;
    }
    const targetStore = userStore(c.env, target);
    const targetKeys = await targetStore.crossSigningKeys();
    const targetMaster = publicKeyOf(targetKeys.master);
    if (targetMaster === undefined) {
      failAll(unknownKey(`No master key found for ${target}`));
      continue;
    }
    const signerKeyId = `ed25519:${userSigningPublicKey}`;
    for (const [keyId, value] of Object.entries(keys as JsonObject)) {
      const signed = value as JsonObject;
      if (keyId !== targetMaster) {
        fail(target, keyId, unknownKey("Unknown device"));
        continue;
      }
      const signature = signaturesBy(signed, userId)[signerKeyId];
      if (signature === undefined) {
        fail(target, keyId, invalidSignature());
        continue;
      }
      if (!sameKey(signed, targetKeys.master!)) {
        fail(target, keyId, keyMismatch());
        continue;
      }
      if (!(await verifyJsonSignature(signed, userId, signerKeyId, userSigningPublicKey))) {
        fail(target, keyId, invalidSignature());
        continue;
      }
      await targetStore.addKeySignatures(target, [{ targetId: keyId, signerUserId: userId, signerKeyId, signature }]);
      await own.recordDeviceListChange(target);
    }
  }

  return c.json({ failures });
});
