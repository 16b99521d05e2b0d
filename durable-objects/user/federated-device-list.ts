// Device lists over federation (spec: Server-Server API, "Device Management"), in the User DO.
//
// For a LOCAL user (`OwnDeviceListFeed`): what other servers were last told about this user's devices.
// Every change is diffed against that snapshot and becomes one `m.device_list_update` EDU per changed
// device, with consecutive `stream_id`s and each naming the previous one in `prev_id`, so a peer can tell
// whether it missed one; a change of the master or self-signing key becomes an `m.signing_key_update`.
// GET /user/devices answers the snapshot's `stream_id`. Diffing (instead of the caller naming the device)
// keeps concurrent changes correct: the DO runs one diff at a time against the latest state.
//
// For a REMOTE user (the DO named by the remote user's ID; `RemoteDeviceList`): the last `stream_id` we
// applied, the devices and cross-signing keys as far as we know them (from a resync through GET
// /user/devices and the updates after it), and the local users who asked for this user's keys (the
// "watchers": their /sync must list the user in `device_lists.changed` when the list changes; spec:
// Client-Server API, "Tracking the device list for a user"). Updates apply in `prev_id` order; one whose
// `prev_id` we have not seen means we missed one, and the list must be fetched again (Synapse's
// DeviceListUpdater `_need_to_do_resync`).
//
// Tables (this DO's SQLite, created on first use):
//   own_device_list_feed      one row: the last stream_id sent.
//   own_device_list_sent      per device: the JSON (keys, display name) last sent.
//   own_cross_signing_sent    per key type (master, self_signing): the key JSON last sent.
//   remote_device_list        one row: the remote user, the last stream_id applied (null: never synced).
//   remote_devices            the remote user's devices: keys JSON (null: none) and display name.
//   remote_cross_signing      the remote user's master and self-signing keys.
//   remote_device_watchers    local users who asked for this remote user's keys or share a room with them.
//   remote_device_seen        stream_ids applied since the last resync (and the resync's): valid prev_ids.
//   remote_device_highest     the highest stream_id seen in an update or resync.
//   remote_device_anchor      the room (and its stream position) whose unbroken sharing keeps the copy current.
//   remote_shared_rooms       rooms where the user was seen joined with a local user (anchor candidates).
//   remote_device_updated     when the user's server last sent an update, tracked or not (a room held with
//                             partial state learns its members late: room/partial-state-device-lists.ts).
import { sqlLimit } from "../sql-limit.js";

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS own_device_list_feed (id INTEGER PRIMARY KEY CHECK (id = 1), stream_id INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS own_device_list_sent (device_id TEXT PRIMARY KEY, json TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS own_cross_signing_sent (key_type TEXT PRIMARY KEY, json TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS remote_device_list (id INTEGER PRIMARY KEY CHECK (id = 1), user_id TEXT NOT NULL, stream_id INTEGER);
  CREATE TABLE IF NOT EXISTS remote_devices (device_id TEXT PRIMARY KEY, keys TEXT, display_name TEXT);
  CREATE TABLE IF NOT EXISTS remote_cross_signing (key_type TEXT PRIMARY KEY, json TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS remote_device_watchers (user_id TEXT PRIMARY KEY, since_ts INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS remote_device_seen (stream_id INTEGER PRIMARY KEY);
  CREATE TABLE IF NOT EXISTS remote_device_highest (id INTEGER PRIMARY KEY CHECK (id = 1), stream_id INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS remote_device_anchor (id INTEGER PRIMARY KEY CHECK (id = 1), room_id TEXT NOT NULL, position INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS remote_shared_rooms (room_id TEXT PRIMARY KEY, since_ts INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS remote_device_updated (id INTEGER PRIMARY KEY CHECK (id = 1), ts INTEGER NOT NULL);
`;

/** One device as the federation sees it: keys (JSON text, or null when it has none) and display name. */
export interface FederatedDevice {
  deviceId: string;
  keys: string | null;
  displayName: string | null;
}

/** An `m.device_list_update` EDU's content (spec: "Device Management"), keys as JSON text. */
export interface DeviceListUpdate {
  userId: string;
  deviceId: string;
  streamId: number;
  prevIds: number[];
  deleted: boolean;
  keys: string | null;
  displayName: string | null;
}

/** Cross-signing keys (JSON text) by type: `master`, `self_signing`. */
export type FederatedCrossSigning = Partial<Record<"master" | "self_signing", string>>;

/** What a local user's change produces: the device updates and, if they changed, the cross-signing keys. */
export interface OwnDeviceListChanges {
  updates: DeviceListUpdate[];
  signingKeys: FederatedCrossSigning | null;
}

export type RemoteUpdateVerdict = "applied" | "duplicate" | "untracked" | "resync";

export class FederatedDeviceLists {
  private ready = false;

  constructor(private readonly storage: DurableObjectStorage) {}

  private get sql(): SqlStorage {
    if (!this.ready) {
      this.storage.sql.exec(SCHEMA);
      this.ready = true;
    }
    return this.storage.sql;
  }

  // -------------------------------------------------------------------------------------------
  // A local user's feed.

  /** The stream_id of the last update sent (0: none yet). */
  ownStreamId(): number {
    return this.sql.exec<{ stream_id: number }>("SELECT stream_id FROM own_device_list_feed WHERE id = 1").toArray()[0]?.stream_id ?? 0;
  }

  /**
   * Diffs `current` (every device of the user now) and the cross-signing keys against what was last sent,
   * records the new state, and returns the updates to send, in order.
   */
  diffOwn(userId: string, current: FederatedDevice[], crossSigning: FederatedCrossSigning): OwnDeviceListChanges {
    return this.storage.transactionSync(() => {
      const sent = new Map(
        this.sql
          .exec<{ device_id: string; json: string }>("SELECT device_id, json FROM own_device_list_sent")
          .toArray()
          .map((r) => [r.device_id, r.json]),
      );
      let streamId = this.ownStreamId();
      const updates: DeviceListUpdate[] = [];
      const push = (deviceId: string, deleted: boolean, keys: string | null, displayName: string | null) => {
        const prev = streamId;
        streamId++;
        updates.push({ userId, deviceId, streamId, prevIds: prev > 0 ? [prev] : [], deleted, keys, displayName });
      };
      const seen = new Set<string>();
      for (const d of current) {
        seen.add(d.deviceId);
        const json = JSON.stringify([d.keys, d.displayName]);
        if (sent.get(d.deviceId) === json) continue;
        this.sql.exec("INSERT INTO own_device_list_sent (device_id, json) VALUES (?, ?) ON CONFLICT (device_id) DO UPDATE SET json = excluded.json", d.deviceId, json);
        push(d.deviceId, false, d.keys, d.displayName);
      }
      for (const deviceId of sent.keys()) {
        if (seen.has(deviceId)) continue;
        this.sql.exec("DELETE FROM own_device_list_sent WHERE device_id = ?", deviceId);
        push(deviceId, true, null, null);
      }
      if (updates.length > 0) {
        this.sql.exec("INSERT INTO own_device_list_feed (id, stream_id) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET stream_id = excluded.stream_id", streamId);
      }
      let signingKeys: FederatedCrossSigning | null = null;
      for (const type of ["master", "self_signing"] as const) {
        const now = crossSigning[type];
        const before = this.sql.exec<{ json: string }>("SELECT json FROM own_cross_signing_sent WHERE key_type = ?", type).toArray()[0]?.json;
        if (now === undefined || now === before) continue;
        this.sql.exec("INSERT INTO own_cross_signing_sent (key_type, json) VALUES (?, ?) ON CONFLICT (key_type) DO UPDATE SET json = excluded.json", type, now);
        (signingKeys ??= {})[type] = now;
      }
      return { updates, signingKeys };
    });
  }

  // -------------------------------------------------------------------------------------------
  // A remote user's list.
  //
  // The copy answers a local /keys/query only while it is current (worker/federation/remote-keys.ts):
  // synced (`stream_id` not null) and anchored in a room that has been shared with the user, without a
  // break, since the copy was fetched (`remote_device_anchor`): only then has the user's server been
  // sending us every update. Whatever casts doubt sets `stream_id` to null first, in the same transaction
  // (Synapse marks the cache stale up front): a gap in the `prev_id` chain, an update we could not use,
  // a signing key update we could not check.

  private remoteStreamId(): number | null {
    return this.sql.exec<{ stream_id: number | null }>("SELECT stream_id FROM remote_device_list WHERE id = 1").toArray()[0]?.stream_id ?? null;
  }

  /** The highest stream_id any update or resync has named (a resync older than it is not kept). */
  private remoteHighestStreamId(): number {
    return this.sql.exec<{ s: number }>("SELECT stream_id AS s FROM remote_device_highest WHERE id = 1").toArray()[0]?.s ?? -1;
  }

  private noteHighest(streamId: number): void {
    this.sql.exec(
      "INSERT INTO remote_device_highest (id, stream_id) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET stream_id = MAX(stream_id, excluded.stream_id)",
      streamId,
    );
  }

  /** Marks the copy as not current: it answers nothing and accepts no update until a resync replaces it. */
  private markStale(): void {
    this.sql.exec("UPDATE remote_device_list SET stream_id = NULL WHERE id = 1");
    this.sql.exec("DELETE FROM remote_device_seen");
    this.sql.exec("DELETE FROM remote_device_anchor");
  }

  /** Registers a local user who wants to hear about this remote user's device changes; `roomId`: a room
   * where the two were seen joined together (a candidate anchor for the copy). */
  watch(localUserId: string, roomId?: string, now = Date.now()): void {
    this.sql.exec("INSERT OR IGNORE INTO remote_device_watchers (user_id, since_ts) VALUES (?, ?)", localUserId, now);
    if (roomId !== undefined) this.sql.exec("INSERT OR IGNORE INTO remote_shared_rooms (room_id, since_ts) VALUES (?, ?)", roomId, now);
  }

  /** Whether the user's server sent an update (applied or not) at or after `ts`. */
  updatedSince(ts: number): boolean {
    const last = this.sql.exec<{ ts: number }>("SELECT ts FROM remote_device_updated WHERE id = 1").toArray()[0]?.ts;
    return last !== undefined && last >= ts;
  }

  watchers(): string[] {
    return this.sql.exec<{ user_id: string }>("SELECT user_id FROM remote_device_watchers ORDER BY user_id").toArray().map((r) => r.user_id);
  }

  /** Rooms where this remote user was seen joined with a local user, newest first (anchor candidates). */
  sharedRooms(limit = 20): string[] {
    return this.sql
      .exec<{ room_id: string }>(`SELECT room_id FROM remote_shared_rooms ORDER BY since_ts DESC, room_id LIMIT ${sqlLimit(limit)}`)
      .toArray()
      .map((r) => r.room_id);
  }

  /** A candidate room turned out not to be shared any more. */
  forgetSharedRoom(roomId: string): void {
    this.sql.exec("DELETE FROM remote_shared_rooms WHERE room_id = ?", roomId);
  }

  /**
   * Applies updates of this remote user, in order (spec: "Device Management": a `prev_id` we have not
   * seen means an update was missed). As Synapse's DeviceListUpdater `_need_to_do_resync`, an update
   * applies only if each of its `prev_id`s is the stream_id our copy is at, one applied since the last
   * resync, or one earlier in the same batch; otherwise (or without any `prev_id`) the copy is marked
   * stale and must be fetched again. Where we differ from Synapse: an update whose stream_id is not above
   * the copy's, or one already applied, is ignored (stream_ids grow, so the copy already holds it; Synapse
   * would apply it again and move its copy back). Updates of a user no local user watches are not tracked.
   */
  applyRemote(updates: DeviceListUpdate[], now = Date.now()): RemoteUpdateVerdict[] {
    return this.storage.transactionSync(() => {
      const verdicts: RemoteUpdateVerdict[] = [];
      // Noted even when nobody watches yet: a room whose partial state hid the user learns it later.
      if (updates.length > 0) this.sql.exec("INSERT INTO remote_device_updated (id, ts) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET ts = MAX(ts, excluded.ts)", now);
      const tracked = this.watchers().length > 0;
      let known = this.remoteStreamId();
      const seen = new Set(this.sql.exec<{ stream_id: number }>("SELECT stream_id FROM remote_device_seen").toArray().map((r) => r.stream_id));
      if (known !== null) seen.add(known);
      let resync = false;
      for (const u of updates) {
        if (!tracked) {
          verdicts.push("untracked");
          continue;
        }
        this.noteHighest(u.streamId);
        if (resync || known === null) {
          resync = true;
          verdicts.push("resync");
          continue;
        }
        if (u.streamId <= known || seen.has(u.streamId)) {
          verdicts.push("duplicate");
          continue;
        }
        if (u.prevIds.length === 0 || !u.prevIds.every((p) => seen.has(p))) {
          resync = true;
          verdicts.push("resync");
          continue;
        }
        if (u.deleted) this.sql.exec("DELETE FROM remote_devices WHERE device_id = ?", u.deviceId);
        else {
          this.sql.exec(
            `INSERT INTO remote_devices (device_id, keys, display_name) VALUES (?, ?, ?)
             ON CONFLICT (device_id) DO UPDATE SET keys = excluded.keys, display_name = excluded.display_name`,
            u.deviceId,
            u.keys,
            u.displayName,
          );
        }
        known = u.streamId;
        seen.add(u.streamId);
        this.sql.exec("INSERT OR IGNORE INTO remote_device_seen (stream_id) VALUES (?)", u.streamId);
        this.sql.exec("UPDATE remote_device_list SET stream_id = ? WHERE id = 1", known);
        verdicts.push("applied");
      }
      if (resync) this.markStale();
      return verdicts;
    });
  }

  /** The copy is in doubt (an update we could not use): it must be fetched again before it answers. */
  invalidateRemote(): void {
    this.storage.transactionSync(() => this.markStale());
  }

  /**
   * Replaces the remote user's list with the answer of GET /user/devices (a resync), anchored in `anchor`
   * (a room shared with the user when the fetch started, and its stream position then; null: none found,
   * the copy then follows updates but answers no query). An answer older than an update we have seen is
   * not kept (a slower, earlier resync). Returns whether it was kept and whether the devices or
   * cross-signing keys differ from the copy before (Synapse tells room-mates only then).
   */
  replaceRemote(
    userId: string,
    streamId: number,
    devices: FederatedDevice[],
    crossSigning: FederatedCrossSigning,
    anchor: { roomId: string; position: number } | null = null,
  ): { kept: boolean; changed: boolean } {
    return this.storage.transactionSync(() => {
      if (streamId < this.remoteHighestStreamId()) return { kept: false, changed: false };
      const before = this.snapshot();
      this.noteHighest(streamId);
      this.sql.exec(
        "INSERT INTO remote_device_list (id, user_id, stream_id) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET stream_id = excluded.stream_id",
        userId,
        streamId,
      );
      this.sql.exec("DELETE FROM remote_device_seen");
      this.sql.exec("INSERT INTO remote_device_seen (stream_id) VALUES (?)", streamId);
      this.sql.exec("DELETE FROM remote_device_anchor");
      if (anchor) this.sql.exec("INSERT INTO remote_device_anchor (id, room_id, position) VALUES (1, ?, ?)", anchor.roomId, anchor.position);
      this.sql.exec("DELETE FROM remote_devices");
      for (const d of devices) this.sql.exec("INSERT INTO remote_devices (device_id, keys, display_name) VALUES (?, ?, ?)", d.deviceId, d.keys, d.displayName);
      this.sql.exec("DELETE FROM remote_cross_signing");
      for (const [type, json] of Object.entries(crossSigning)) this.sql.exec("INSERT INTO remote_cross_signing (key_type, json) VALUES (?, ?)", type, json);
      return { kept: true, changed: this.snapshot() !== before };
    });
  }

  /** The stored devices and cross-signing keys as one comparable text (stale or not). */
  private snapshot(): string {
    const devices = this.sql.exec("SELECT device_id, keys, display_name FROM remote_devices ORDER BY device_id").toArray();
    const cross = this.sql.exec("SELECT key_type, json FROM remote_cross_signing ORDER BY key_type").toArray();
    return JSON.stringify([devices, cross]);
  }

  /** A signing key update: replaces the given cross-signing keys (if the user is tracked). */
  applyRemoteSigningKeys(crossSigning: FederatedCrossSigning): boolean {
    return this.storage.transactionSync(() => {
      if (this.remoteStreamId() === null) return false;
      for (const [type, json] of Object.entries(crossSigning)) {
        this.sql.exec("INSERT INTO remote_cross_signing (key_type, json) VALUES (?, ?) ON CONFLICT (key_type) DO UPDATE SET json = excluded.json", type, json);
      }
      return true;
    });
  }

  /** The cached list (null: never synced, or stale), with its anchor (null: none). */
  remoteList(): { streamId: number; devices: FederatedDevice[]; crossSigning: FederatedCrossSigning; anchor: { roomId: string; position: number } | null } | null {
    const streamId = this.remoteStreamId();
    if (streamId === null) return null;
    const devices = this.sql
      .exec<{ device_id: string; keys: string | null; display_name: string | null }>("SELECT device_id, keys, display_name FROM remote_devices ORDER BY device_id")
      .toArray()
      .map((r) => ({ deviceId: r.device_id, keys: r.keys, displayName: r.display_name }));
    const crossSigning: FederatedCrossSigning = {};
    for (const r of this.sql.exec<{ key_type: "master" | "self_signing"; json: string }>("SELECT key_type, json FROM remote_cross_signing")) crossSigning[r.key_type] = r.json;
    const a = this.sql.exec<{ room_id: string; position: number }>("SELECT room_id, position FROM remote_device_anchor WHERE id = 1").toArray()[0];
    return { streamId, devices, crossSigning, anchor: a ? { roomId: a.room_id, position: a.position } : null };
  }
}
