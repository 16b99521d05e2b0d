// Server-side key backups in the User DO (spec: Client-Server API, "Server-side key backups",
// data/api/client-server/key_backup.yaml).
//
// Tables (SQLite of the User DO, created here):
//   backup_versions  one row per backup version ever created. Versions are decimal strings of an
//                    AUTOINCREMENT key, so a deleted version's number is never handed out again; a
//                    deleted version keeps its row (deleted = 1) because deleting it again must succeed
//                    ("If the backup was previously deleted, the call should succeed"). The current
//                    version is the newest one not deleted. `etag` counts changes to its keys.
//   backup_keys      the session keys of each version.
import { MatrixError, notFound } from "../../protocol/errors.js";
import { shouldReplaceBackupKey, type BackupKeyData } from "../../protocol/e2e-keys.js";

/** A backup version as GET /room_keys/version answers it; `auth_data` is JSON text. */
export interface BackupVersionInfo {
  version: string;
  algorithm: string;
  auth_data: string;
  count: number;
  etag: string;
}

/** One session key to store. */
export interface BackupKeyUpload {
  roomId: string;
  sessionId: string;
  data: BackupKeyData;
}

/** A stored session key (`session_data` is JSON text). */
export interface StoredBackupKey extends BackupKeyData {
  roomId: string;
  sessionId: string;
}

/** The answer of PUT/DELETE on /room_keys/keys. */
export interface BackupKeysUpdate {
  etag: string;
  count: number;
}

type VersionRow = {
  version: number;
  algorithm: string;
  auth_data: string;
  etag: number;
  deleted: number;
};

const unknownVersion = (version: string) => notFound(`Unknown backup version ${version}`);

/** Backup versions are the decimal integers this module hands out; anything else names no backup. */
function parseVersion(version: string): number | undefined {
  return /^[1-9][0-9]{0,14}$/.test(version) ? Number(version) : undefined;
}

export class KeyBackupStore {
  constructor(private readonly storage: DurableObjectStorage) {
    storage.sql.exec(`
      CREATE TABLE IF NOT EXISTS backup_versions (
        version INTEGER PRIMARY KEY AUTOINCREMENT,
        algorithm TEXT NOT NULL,
        auth_data TEXT NOT NULL,
        etag INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0
      );
      CREATE TABLE IF NOT EXISTS backup_keys (
        version INTEGER NOT NULL,
        room_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        first_message_index INTEGER NOT NULL,
        forwarded_count INTEGER NOT NULL,
        is_verified INTEGER NOT NULL,
        session_data TEXT NOT NULL,
        PRIMARY KEY (version, room_id, session_id)
      );
    `);
  }

  private get sql(): SqlStorage {
    return this.storage.sql;
  }

  private currentRow(): VersionRow | undefined {
    return this.sql.exec<VersionRow>("SELECT * FROM backup_versions WHERE deleted = 0 ORDER BY version DESC LIMIT 1").toArray()[0];
  }

  private row(version: string): VersionRow | undefined {
    const n = parseVersion(version);
    if (n === undefined) return undefined;
    return this.sql.exec<VersionRow>("SELECT * FROM backup_versions WHERE version = ?", n).toArray()[0];
  }

  /** A version that exists and is not deleted, or 404 M_NOT_FOUND. */
  private liveRow(version: string): VersionRow {
    const row = this.row(version);
    if (!row || row.deleted) throw unknownVersion(version);
    return row;
  }

  private count(version: number): number {
    return this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM backup_keys WHERE version = ?", version).one().n;
  }

  private info(row: VersionRow): BackupVersionInfo {
    return {
      version: String(row.version),
      algorithm: row.algorithm,
      auth_data: row.auth_data,
      count: this.count(row.version),
      etag: String(row.etag),
    };
  }

  // -------------------------------------------------------------------------------------------
  // Versions

  /** POST /room_keys/version: the new version becomes the current one. */
  createVersion(algorithm: string, authData: string): string {
    const row = this.sql
      .exec<{ version: number }>("INSERT INTO backup_versions (algorithm, auth_data) VALUES (?, ?) RETURNING version", algorithm, authData)
      .one();
    return String(row.version);
  }

  /** GET /room_keys/version[/{version}]: the given version, or the current one; null if there is none
   * (or it was deleted). */
  getVersion(version?: string): BackupVersionInfo | null {
    const row = version === undefined ? this.currentRow() : this.row(version);
    return row && !row.deleted ? this.info(row) : null;
  }

  /** PUT /room_keys/version/{version}: only `auth_data` can change; the algorithm must stay the same
   * (400 M_INVALID_PARAM), the version must exist (404). */
  updateVersion(version: string, algorithm: string, authData: string): void {
    const row = this.liveRow(version);
    if (row.algorithm !== algorithm) throw new MatrixError(400, "M_INVALID_PARAM", "Algorithm does not match");
    this.sql.exec("UPDATE backup_versions SET auth_data = ? WHERE version = ?", authData, row.version);
  }

  /** DELETE /room_keys/version/{version}: deletes the version and its keys; deleting a deleted version
   * succeeds, an unknown one is 404. */
  deleteVersion(version: string): void {
    const row = this.row(version);
    if (!row) throw unknownVersion(version);
    if (row.deleted) return;
    this.storage.transactionSync(() => {
      this.sql.exec("DELETE FROM backup_keys WHERE version = ?", row.version);
      this.sql.exec("UPDATE backup_versions SET deleted = 1, auth_data = '{}' WHERE version = ?", row.version);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Keys

  /**
   * PUT /room_keys/keys[/{roomId}[/{sessionId}]]: keys can only be written to the current version
   * (403 M_WRONG_ROOM_KEYS_VERSION with `current_version` for an older live one, 404 for an unknown one,
   * as Synapse). An existing session key is replaced only by a better one (protocol/e2e-keys.ts
   * `shouldReplaceBackupKey`); the etag changes when any key was added or replaced.
   */
  putKeys(version: string, keys: BackupKeyUpload[]): BackupKeysUpdate {
    return this.storage.transactionSync(() => {
      const current = this.currentRow();
      if (!current) throw unknownVersion(version);
      if (String(current.version) !== version) {
        const row = this.row(version);
        if (!row || row.deleted) throw unknownVersion(version);
        throw new MatrixError(403, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version.", { current_version: String(current.version) });
      }
      let changed = false;
      for (const { roomId, sessionId, data } of keys) {
        const existing = this.sql
          .exec<{ first_message_index: number; forwarded_count: number; is_verified: number }>(
            "SELECT first_message_index, forwarded_count, is_verified FROM backup_keys WHERE version = ? AND room_id = ? AND session_id = ?",
            current.version,
            roomId,
            sessionId,
          )
          .toArray()[0];
        if (existing && !shouldReplaceBackupKey({ ...existing, is_verified: existing.is_verified !== 0 }, data)) continue;
        this.sql.exec(
          `INSERT INTO backup_keys (version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data)
           VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (version, room_id, session_id) DO UPDATE SET first_message_index = excluded.first_message_index,
             forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified, session_data = excluded.session_data`,
          current.version,
          roomId,
          sessionId,
          data.first_message_index,
          data.forwarded_count,
          data.is_verified ? 1 : 0,
          data.session_data,
        );
        changed = true;
      }
      const etag = changed ? this.bumpEtag(current.version) : current.etag;
      return { etag: String(etag), count: this.count(current.version) };
    });
  }

  private bumpEtag(version: number): number {
    return this.sql.exec<{ etag: number }>("UPDATE backup_versions SET etag = etag + 1 WHERE version = ? RETURNING etag", version).one().etag;
  }

  /** GET /room_keys/keys[/{roomId}[/{sessionId}]]: keys of any live version (404 if unknown). */
  getKeys(version: string, roomId?: string, sessionId?: string): StoredBackupKey[] {
    const row = this.liveRow(version);
    let query = "SELECT * FROM backup_keys WHERE version = ?";
    const params: (string | number)[] = [row.version];
    if (roomId !== undefined) {
      query += " AND room_id = ?";
      params.push(roomId);
    }
    if (sessionId !== undefined) {
      query += " AND session_id = ?";
      params.push(sessionId);
    }
    return this.sql
      .exec<{
        room_id: string;
        session_id: string;
        first_message_index: number;
        forwarded_count: number;
        is_verified: number;
        session_data: string;
      }>(query + " ORDER BY room_id, session_id", ...params)
      .toArray()
      .map((r) => ({
        roomId: r.room_id,
        sessionId: r.session_id,
        first_message_index: r.first_message_index,
        forwarded_count: r.forwarded_count,
        is_verified: r.is_verified !== 0,
        session_data: r.session_data,
      }));
  }

  /** DELETE /room_keys/keys[/{roomId}[/{sessionId}]]: from any live version (404 if unknown); the etag
   * changes when a key was deleted. */
  deleteKeys(version: string, roomId?: string, sessionId?: string): BackupKeysUpdate {
    return this.storage.transactionSync(() => {
      const row = this.liveRow(version);
      let query = "DELETE FROM backup_keys WHERE version = ?";
      const params: (string | number)[] = [row.version];
      if (roomId !== undefined) {
        query += " AND room_id = ?";
        params.push(roomId);
      }
      if (sessionId !== undefined) {
        query += " AND session_id = ?";
        params.push(sessionId);
      }
      const deleted = this.sql.exec(query, ...params).rowsWritten;
      const etag = deleted > 0 ? this.bumpEtag(row.version) : row.etag;
      return { etag: String(etag), count: this.count(row.version) };
    });
  }
}
