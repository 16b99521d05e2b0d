// One user's end-to-end encryption keys in their User DO (spec: Client-Server API, "End-to-End Encryption":
// "Key Distribution", "Cross-signing"): device identity keys, one-time keys, fallback keys, cross-signing
// keys, and the signatures uploaded through /keys/signatures/upload.
//
// Tables (SQLite of the User DO, created here):
//   e2e_device_keys         device_id → the DeviceKeys object as uploaded (canonical JSON)
//   e2e_one_time_keys       unclaimed one-time keys; `seq` is the upload order, which is the claim order
//                           (spec: "One-time keys are given out in the order that they were uploaded")
//   e2e_fallback_keys       one fallback key per (device, algorithm) with its "used" flag
//   e2e_cross_signing_keys  master / self_signing / user_signing key objects as uploaded
//   e2e_signatures          signatures added later: on a device (target = device ID) by the self-signing
//                           key, on the master key (target = its public key) by the user's devices or by
//                           another user's user-signing key. Merged into the key objects when read; a
//                           signature by another user is shown to that user only (spec: the user-signing
//                           key's signatures are "only visible to the user that created them").
//
// A claim runs as one synchronous SQLite transaction inside this single-threaded object, so each one-time
// key is handed out at most once however many claims arrive together.
import { canonicalJson } from "../../protocol/canonical-json.js";
import { MatrixError } from "../../protocol/errors.js";
import { crossSigningPublicKey, sameOneTimeKey, signedPart, type CrossSigningKeyType, type UploadedKey } from "../../protocol/e2e-keys.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import type { DeviceListLog } from "./device-lists.js";

/** What POST /keys/upload stores, already validated by the worker (protocol/e2e-keys.ts). Objects travel
 * as canonical JSON text: RPC cannot type a deep JSON value, and the text is what is stored. */
export interface KeyUpload {
  deviceKeys?: string;
  oneTimeKeys: UploadedKey[];
  fallbackKeys: UploadedKey[];
}

export interface KeyUploadResult {
  oneTimeKeyCounts: Record<string, number>;
  /** The device keys were new or different (the device list changed). */
  deviceKeysChanged: boolean;
}

/** A user's keys as another user (or the user) sees them in /keys/query: JSON text with the visible
 * signatures merged in. */
export interface UserKeys {
  devices: Record<string, string>;
  master?: string;
  self_signing?: string;
  /** Only when the requester is the user. */
  user_signing?: string;
}

/** Cross-signing keys as uploaded (canonical JSON text), by type. */
export type CrossSigningKeys = Partial<Record<CrossSigningKeyType, string>>;

/** A signature to add to a device or master key (POST /keys/signatures/upload). */
export interface StoredSignature {
  /** A device ID, or the public key of the master key. */
  targetId: string;
  signerUserId: string;
  /** `ed25519:<device ID or public key>` */
  signerKeyId: string;
  signature: string;
}

/** What /keys/signatures/upload needs to check the signatures on a user's own keys. */
export interface SigningState extends CrossSigningKeys {
  /** Device keys as uploaded (without merged signatures), by device ID. */
  devices: Record<string, string>;
}

const CROSS_SIGNING_TYPES: CrossSigningKeyType[] = ["master", "self_signing", "user_signing"];

export class E2eKeyStore {
  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly deviceLists: DeviceListLog,
  ) {
    storage.sql.exec(`
      CREATE TABLE IF NOT EXISTS e2e_device_keys (
        device_id TEXT PRIMARY KEY,
        key_json TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS e2e_one_time_keys (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id TEXT NOT NULL,
        algorithm TEXT NOT NULL,
        key_id TEXT NOT NULL,
        key_json TEXT NOT NULL,
        UNIQUE (device_id, algorithm, key_id)
      );
      CREATE INDEX IF NOT EXISTS e2e_one_time_keys_claim ON e2e_one_time_keys (device_id, algorithm, seq);
      CREATE TABLE IF NOT EXISTS e2e_fallback_keys (
        device_id TEXT NOT NULL,
        algorithm TEXT NOT NULL,
        key_id TEXT NOT NULL,
        key_json TEXT NOT NULL,
        used INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (device_id, algorithm)
      );
      CREATE TABLE IF NOT EXISTS e2e_cross_signing_keys (
        key_type TEXT PRIMARY KEY,
        public_key TEXT NOT NULL,
        key_json TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS e2e_signatures (
        target_id TEXT NOT NULL,
        signer_user_id TEXT NOT NULL,
        signer_key_id TEXT NOT NULL,
        signature TEXT NOT NULL,
        PRIMARY KEY (target_id, signer_user_id, signer_key_id)
      );
    `);
  }

  private get sql(): SqlStorage {
    return this.storage.sql;
  }

  // -------------------------------------------------------------------------------------------
  // POST /keys/upload

  /**
   * Stores device keys, one-time keys and fallback keys of one device in one transaction. A one-time key
   * ID uploaded again with different content fails the whole upload with 400 (as Synapse), and nothing is
   * stored. A fallback key replaces the device's previous fallback key of that algorithm and is unused
   * again, unless it is the very same key (re-uploading the current key must not reset "used").
   */
  upload(userId: string, deviceId: string, upload: KeyUpload): KeyUploadResult {
    return this.storage.transactionSync(() => {
      for (const key of upload.oneTimeKeys) {
        const keyId = key.id.slice(key.algorithm.length + 1);
        const existing = this.sql
          .exec<{ key_json: string }>(
            "SELECT key_json FROM e2e_one_time_keys WHERE device_id = ? AND algorithm = ? AND key_id = ?",
            deviceId,
            key.algorithm,
            keyId,
          )
          .toArray()[0];
        if (existing && !sameOneTimeKey(existing.key_json, key.json)) {
          throw new MatrixError(400, "M_UNKNOWN", `One time key ${key.id} already exists with different content`);
        }
      }

      let deviceKeysChanged = false;
      if (upload.deviceKeys !== undefined) {
        const old = this.sql
          .exec<{ key_json: string }>("SELECT key_json FROM e2e_device_keys WHERE device_id = ?", deviceId)
          .toArray()[0];
        if (!old || old.key_json !== upload.deviceKeys) {
          deviceKeysChanged = true;
          if (old && signedPartText(old.key_json) !== signedPartText(upload.deviceKeys)) {
            // New identity keys: signatures made over the old ones no longer apply.
            this.sql.exec("DELETE FROM e2e_signatures WHERE target_id = ?", deviceId);
          }
          this.sql.exec(
            `INSERT INTO e2e_device_keys (device_id, key_json) VALUES (?, ?)
             ON CONFLICT (device_id) DO UPDATE SET key_json = excluded.key_json`,
            deviceId,
            upload.deviceKeys,
          );
        }
      }

      for (const key of upload.oneTimeKeys) {
        this.sql.exec(
          "INSERT OR IGNORE INTO e2e_one_time_keys (device_id, algorithm, key_id, key_json) VALUES (?, ?, ?, ?)",
          deviceId,
          key.algorithm,
          key.id.slice(key.algorithm.length + 1),
          key.json,
        );
      }

      for (const key of upload.fallbackKeys) {
        const keyId = key.id.slice(key.algorithm.length + 1);
        const old = this.sql
          .exec<{ key_id: string; key_json: string }>(
            "SELECT key_id, key_json FROM e2e_fallback_keys WHERE device_id = ? AND algorithm = ?",
            deviceId,
            key.algorithm,
          )
          .toArray()[0];
        if (old && old.key_id === keyId && old.key_json === key.json) continue;
        this.sql.exec(
          `INSERT INTO e2e_fallback_keys (device_id, algorithm, key_id, key_json, used) VALUES (?, ?, ?, ?, 0)
           ON CONFLICT (device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, used = 0`,
          deviceId,
          key.algorithm,
          keyId,
          key.json,
        );
      }

      if (deviceKeysChanged) this.deviceLists.record(userId);
      return { oneTimeKeyCounts: this.oneTimeKeyCounts(deviceId), deviceKeysChanged };
    });
  }

  /**
   * Unclaimed one-time keys of a device by algorithm (/keys/upload `one_time_key_counts`, /sync
   * `device_one_time_keys_count`). `signed_curve25519` is always present, as Synapse reports it: clients
   * read a missing count as "unknown" rather than zero.
   */
  oneTimeKeyCounts(deviceId: string): Record<string, number> {
    const counts: Record<string, number> = { signed_curve25519: 0 };
    const rows = this.sql.exec<{ algorithm: string; n: number }>(
      "SELECT algorithm, count(*) AS n FROM e2e_one_time_keys WHERE device_id = ? GROUP BY algorithm",
      deviceId,
    );
    for (const row of rows) counts[row.algorithm] = row.n;
    return counts;
  }

  /** Algorithms for which the device has a fallback key that no claim has returned yet (/sync
   * `device_unused_fallback_key_types`). */
  unusedFallbackKeyTypes(deviceId: string): string[] {
    return this.sql
      .exec<{ algorithm: string }>("SELECT algorithm FROM e2e_fallback_keys WHERE device_id = ? AND used = 0 ORDER BY algorithm", deviceId)
      .toArray()
      .map((r) => r.algorithm);
  }

  // -------------------------------------------------------------------------------------------
  // POST /keys/claim

  /**
   * Claims one key per requested device (`deviceId → algorithm`): the oldest one-time key of that
   * algorithm, deleted in the same transaction, or else the device's fallback key, marked used. Devices
   * with neither are missing from the result. Result: `deviceId → {"<algorithm>:<key_id>": key JSON text}`.
   */
  claim(request: Record<string, string>): Record<string, Record<string, string>> {
    return this.storage.transactionSync(() => {
      const out: Record<string, Record<string, string>> = {};
      for (const [deviceId, algorithm] of Object.entries(request)) {
        const otk = this.sql
          .exec<{ seq: number; key_id: string; key_json: string }>(
            "SELECT seq, key_id, key_json FROM e2e_one_time_keys WHERE device_id = ? AND algorithm = ? ORDER BY seq LIMIT 1",
            deviceId,
            algorithm,
          )
          .toArray()[0];
        if (otk) {
          this.sql.exec("DELETE FROM e2e_one_time_keys WHERE seq = ?", otk.seq);
          out[deviceId] = { [`${algorithm}:${otk.key_id}`]: otk.key_json };
          continue;
        }
        const fallback = this.sql
          .exec<{ key_id: string; key_json: string }>(
            "SELECT key_id, key_json FROM e2e_fallback_keys WHERE device_id = ? AND algorithm = ?",
            deviceId,
            algorithm,
          )
          .toArray()[0];
        if (fallback) {
          this.sql.exec("UPDATE e2e_fallback_keys SET used = 1 WHERE device_id = ? AND algorithm = ?", deviceId, algorithm);
          out[deviceId] = { [`${algorithm}:${fallback.key_id}`]: fallback.key_json };
        }
      }
      return out;
    });
  }

  // -------------------------------------------------------------------------------------------
  // POST /keys/query

  /**
   * The keys of this DO's user (`userId`) as `requesterUserId` sees them: the requested devices (all when
   * `deviceIds` is null) and the master and self-signing keys, plus the user-signing key when the
   * requester is the user. Signatures merged in: the user's own, and the requester's.
   */
  query(userId: string, deviceIds: string[] | null, requesterUserId: string): UserKeys {
    const result: UserKeys = { devices: {} };
    const rows =
      deviceIds === null
        ? this.sql.exec<{ device_id: string; key_json: string }>("SELECT device_id, key_json FROM e2e_device_keys").toArray()
        : deviceIds.flatMap((id) =>
            this.sql
              .exec<{ device_id: string; key_json: string }>("SELECT device_id, key_json FROM e2e_device_keys WHERE device_id = ?", id)
              .toArray(),
          );
    for (const row of rows) {
      result.devices[row.device_id] = this.withSignatures(row.key_json, row.device_id, userId, requesterUserId);
    }
    for (const type of CROSS_SIGNING_TYPES) {
      if (type === "user_signing" && requesterUserId !== userId) continue;
      const row = this.crossSigningRow(type);
      if (row) result[type] = this.withSignatures(row.key_json, row.public_key, userId, requesterUserId);
    }
    return result;
  }

  /** Adds the stored signatures on `targetId` made by `userId` or `requesterUserId` to a key object. */
  private withSignatures(keyJson: string, targetId: string, userId: string, requesterUserId: string): string {
    const sigs = this.sql
      .exec<{ signer_user_id: string; signer_key_id: string; signature: string }>(
        "SELECT signer_user_id, signer_key_id, signature FROM e2e_signatures WHERE target_id = ? AND signer_user_id IN (?, ?)",
        targetId,
        userId,
        requesterUserId,
      )
      .toArray();
    if (sigs.length === 0) return keyJson;
    const key = JSON.parse(keyJson) as JsonObject;
    const signatures: JsonObject = isJsonObject(key.signatures) ? { ...key.signatures } : {};
    for (const s of sigs) {
      const by = signatures[s.signer_user_id];
      signatures[s.signer_user_id] = { ...(isJsonObject(by) ? by : {}), [s.signer_key_id]: s.signature };
    }
    key.signatures = signatures;
    return JSON.stringify(key);
  }

  private crossSigningRow(type: CrossSigningKeyType): { public_key: string; key_json: string } | undefined {
    return this.sql
      .exec<{ public_key: string; key_json: string }>("SELECT public_key, key_json FROM e2e_cross_signing_keys WHERE key_type = ?", type)
      .toArray()[0];
  }

  // -------------------------------------------------------------------------------------------
  // Cross-signing (POST /keys/device_signing/upload, POST /keys/signatures/upload)

  /** The cross-signing keys as uploaded (no merged signatures). */
  crossSigningKeys(): CrossSigningKeys {
    const out: CrossSigningKeys = {};
    for (const type of CROSS_SIGNING_TYPES) {
      const row = this.crossSigningRow(type);
      if (row) out[type] = row.key_json;
    }
    return out;
  }

  /** Cross-signing keys and device keys as uploaded, to check new signatures against. */
  signingState(): SigningState {
    const state: SigningState = { ...this.crossSigningKeys(), devices: {} };
    for (const row of this.sql.exec<{ device_id: string; key_json: string }>("SELECT device_id, key_json FROM e2e_device_keys")) {
      state.devices[row.device_id] = row.key_json;
    }
    return state;
  }

  /**
   * Stores new cross-signing keys (canonical JSON, checked by the worker against `expectedMaster`, the
   * master public key it saw: null for none). If the master key changed in between, fails with 409
   * M_UNKNOWN and stores nothing, so a signature checked against a stale master key is never stored.
   * Returns whether anything changed (then the user's device list changed).
   */
  setCrossSigningKeys(userId: string, keys: CrossSigningKeys, expectedMaster: string | null): boolean {
    return this.storage.transactionSync(() => {
      const current = this.crossSigningRow("master")?.public_key ?? null;
      if (current !== expectedMaster) {
        throw new MatrixError(409, "M_UNKNOWN", "The master cross-signing key changed concurrently; retry the upload");
      }
      let changed = false;
      for (const type of CROSS_SIGNING_TYPES) {
        const json = keys[type];
        if (json === undefined) continue;
        const old = this.crossSigningRow(type);
        if (old?.key_json === json) continue;
        const publicKey = crossSigningPublicKey(JSON.parse(json) as JsonObject);
        if (publicKey === undefined) throw new Error("setCrossSigningKeys: key without a public key");
        if (old && old.public_key !== publicKey) {
          // Signatures made on the old master key, or by the old self-signing key, are void.
          if (type === "master") this.sql.exec("DELETE FROM e2e_signatures WHERE target_id = ?", old.public_key);
          if (type === "self_signing") {
            this.sql.exec("DELETE FROM e2e_signatures WHERE signer_user_id = ? AND signer_key_id = ?", userId, `ed25519:${old.public_key}`);
          }
        }
        this.sql.exec(
          `INSERT INTO e2e_cross_signing_keys (key_type, public_key, key_json) VALUES (?, ?, ?)
           ON CONFLICT (key_type) DO UPDATE SET public_key = excluded.public_key, key_json = excluded.key_json`,
          type,
          publicKey,
          json,
        );
        changed = true;
      }
      if (changed) this.deviceLists.record(userId);
      return changed;
    });
  }

  /**
   * Adds verified signatures to this user's keys. A signature by the user themselves (self-signing key on
   * a device, a device on the master key) changes what everyone sees, so it is a device list change of
   * the user; another user's signature is visible only to its signer, whose own DO the worker tells.
   */
  addSignatures(userId: string, signatures: StoredSignature[]): void {
    if (signatures.length === 0) return;
    this.storage.transactionSync(() => {
      for (const s of signatures) {
        this.sql.exec(
          `INSERT INTO e2e_signatures (target_id, signer_user_id, signer_key_id, signature) VALUES (?, ?, ?, ?)
           ON CONFLICT (target_id, signer_user_id, signer_key_id) DO UPDATE SET signature = excluded.signature`,
          s.targetId,
          s.signerUserId,
          s.signerKeyId,
          s.signature,
        );
      }
      if (signatures.some((s) => s.signerUserId === userId)) this.deviceLists.record(userId);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Device deletion

  /** Deletes the keys of deleted devices (and signatures on or by them). Returns whether any of them had
   * device keys (then the user's device list changed). Call inside a transaction. */
  deleteDevices(userId: string, deviceIds: string[]): boolean {
    let hadKeys = false;
    for (const deviceId of deviceIds) {
      const res = this.sql.exec("DELETE FROM e2e_device_keys WHERE device_id = ?", deviceId);
      if (res.rowsWritten > 0) hadKeys = true;
      this.sql.exec("DELETE FROM e2e_one_time_keys WHERE device_id = ?", deviceId);
      this.sql.exec("DELETE FROM e2e_fallback_keys WHERE device_id = ?", deviceId);
      this.sql.exec("DELETE FROM e2e_signatures WHERE target_id = ?", deviceId);
      this.sql.exec("DELETE FROM e2e_signatures WHERE signer_user_id = ? AND signer_key_id = ?", userId, `ed25519:${deviceId}`);
    }
    if (hadKeys) this.deviceLists.record(userId);
    return hadKeys;
  }

  /** Every device ID that has any keys here (for "delete all devices except one"). */
  deviceIdsWithKeys(): string[] {
    return this.sql
      .exec<{ device_id: string }>(
        `SELECT device_id FROM e2e_device_keys UNION SELECT device_id FROM e2e_one_time_keys
         UNION SELECT device_id FROM e2e_fallback_keys`,
      )
      .toArray()
      .map((r) => r.device_id);
  }
}

function signedPartText(keyJson: string): string {
  return canonicalJson(signedPart(JSON.parse(keyJson) as JsonObject));
}
