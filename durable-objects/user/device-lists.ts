// The device list change log of one user's DO (spec: "Tracking the device list for a user", and the
// `device_lists` extension to /sync): which users' device lists or cross-signing keys changed, and with
// whom this user stopped sharing encrypted rooms, each at a position of this user's stream.
//
// The log holds one row per user with the latest change only. A reader asking "what changed after N"
// gets every user whose latest change is after N; a user who changed before and again after an upper
// bound is reported by the next read instead, which is what clients need (they re-query that user).
//
// Rows for this DO's own user are written by the key modules in the same transaction as the key change.
// Rows for other users are written by whoever propagates their changes (worker/device-lists.ts
// `onOwnDevicesChanged`, extended by sync to the users sharing a room).

import type { UserStream } from "./stream.js";

export type DeviceListChangeKind = "changed" | "left";

/** What /sync puts in `device_lists` and /keys/changes answers. */
export interface DeviceListChanges {
  changed: string[];
  left: string[];
  /** The stream position these changes are complete up to. */
  position: number;
}

export class DeviceListLog {
  constructor(
    private readonly sql: SqlStorage,
    private readonly stream: UserStream,
  ) {
    sql.exec(`
      CREATE TABLE IF NOT EXISTS device_list_changes (
        user_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        stream_position INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS device_list_changes_by_position ON device_list_changes (stream_position);
    `);
  }

  /** Records that `userId`'s devices or cross-signing keys changed (`changed`), or that this user no longer
   * shares an encrypted room with them (`left`). Call inside a transaction; returns the position. */
  record(userId: string, kind: DeviceListChangeKind = "changed"): number {
    const position = this.stream.next();
    this.sql.exec(
      `INSERT INTO device_list_changes (user_id, kind, stream_position) VALUES (?, ?, ?)
       ON CONFLICT (user_id) DO UPDATE SET kind = excluded.kind, stream_position = excluded.stream_position`,
      userId,
      kind,
      position,
    );
    return position;
  }

  /** Users whose latest change is after `since` (and at or before `upto`, if given). */
  since(since: number, upto?: number): DeviceListChanges {
    const position = this.stream.current();
    const rows = this.sql.exec<{ user_id: string; kind: string }>(
      "SELECT user_id, kind FROM device_list_changes WHERE stream_position > ? AND stream_position <= ? ORDER BY stream_position",
      since,
      upto ?? position,
    );
    const out: DeviceListChanges = { changed: [], left: [], position: upto ?? position };
    for (const row of rows) (row.kind === "left" ? out.left : out.changed).push(row.user_id);
    return out;
  }
}
