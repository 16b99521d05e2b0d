// Send-to-device messaging in the User DO (spec: Client-Server API, "Send-to-Device messaging"): the
// inbox of each of this user's devices, and the transaction IDs this user's devices sent with.
//
// Tables (SQLite of the User DO, created here):
//   to_device_inbox  messages waiting for a device, each at a position of the user's stream. A message
//                    stays until the device acknowledges it by syncing with a later token (`ack`), so it
//                    is delivered until received and dropped once received (spec, "Server behaviour":
//                    when the client syncs again with the `next_batch` of the response that listed
//                    them, "the server should infer that any send-to-device messages in that response
//                    have been delivered successfully, and delete them from the store").
//                    `message_id` (sender, sender device, txnId) is unique per device, so a retried send
//                    that reaches the inbox again is stored once.
//   to_device_txns   (sending device, txnId) of completed sends, to answer a retried PUT without sending
//                    again (spec: "Transaction identifiers"). Kept for a day.
//   to_device_federation_seen  (origin, message_id) of `m.direct_to_device` EDUs delivered here (spec:
//                    Server-Server API, "Send-to-device messaging": message_id is "unique ID for the
//                    message, used for idempotence"). A peer that retries a transaction after we
//                    accepted it (its answer was lost) delivers nothing twice, even after the device
//                    received and acknowledged the first copy. Kept for a week.
import type { UserStream } from "./stream.js";
import { sqlLimit } from "../sql-limit.js";

/** A to-device event as /sync delivers it (`to_device.events`). `content` is JSON text. */
export interface ToDeviceMessage {
  sender: string;
  type: string;
  content: string;
}

/** Messages for one device after a position (what /sync puts in `to_device`). */
export interface ToDeviceBatch {
  /** JSON text of each event: `{"sender","type","content"}`, in stream order. */
  events: string[];
  /** The position this batch is complete up to: the next `since` for this device's messages. When
   * `limited`, the position of the last message returned; otherwise the user's current position. */
  position: number;
  /** More messages wait after `position`. */
  limited: boolean;
}

/** How long a completed send's transaction ID is remembered. */
export const TO_DEVICE_TXN_LIFETIME_MS = 24 * 60 * 60 * 1000;

/** How long the message IDs of to-device EDUs received are remembered. */
export const FEDERATION_SEEN_LIFETIME_MS = 7 * 24 * 60 * 60 * 1000;

export class ToDeviceInbox {
  /** The newest stream position of any stored message (all devices), once read; insert keeps it. */
  private newestPosition: number | undefined;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly stream: UserStream,
  ) {
    storage.sql.exec(`
      CREATE TABLE IF NOT EXISTS to_device_inbox (
        device_id TEXT NOT NULL,
        stream_position INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        type TEXT NOT NULL,
        content TEXT NOT NULL,
        PRIMARY KEY (device_id, stream_position),
        UNIQUE (device_id, message_id)
      );
      CREATE TABLE IF NOT EXISTS to_device_txns (
        device_id TEXT NOT NULL,
        txn_id TEXT NOT NULL,
        created_ts INTEGER NOT NULL,
        PRIMARY KEY (device_id, txn_id)
      );
      CREATE INDEX IF NOT EXISTS to_device_txns_by_age ON to_device_txns (created_ts);
      CREATE TABLE IF NOT EXISTS to_device_federation_seen (
        origin TEXT NOT NULL,
        message_id TEXT NOT NULL,
        received_ts INTEGER NOT NULL,
        PRIMARY KEY (origin, message_id)
      );
      CREATE INDEX IF NOT EXISTS to_device_federation_seen_by_age ON to_device_federation_seen (received_ts);
    `);
  }

  private get sql(): SqlStorage {
    return this.storage.sql;
  }

  /**
   * Puts one message (`messageId` unique per sender, sender device and txnId) into the inbox of each of
   * `deviceIds` (`contents[i]` for `deviceIds[i]`, JSON text). Devices that already hold this message are
   * skipped. Returns the stream position of the delivery, or null if every device already had it.
   */
  deliver(messageId: string, sender: string, type: string, deviceIds: string[], contents: string[]): number | null {
    return this.storage.transactionSync(() => this.insert(messageId, sender, type, deviceIds, contents));
  }

  private insert(messageId: string, sender: string, type: string, deviceIds: string[], contents: string[]): number | null {
    const fresh: number[] = [];
    deviceIds.forEach((deviceId, i) => {
      const seen = this.sql
        .exec("SELECT 1 FROM to_device_inbox WHERE device_id = ? AND message_id = ?", deviceId, messageId)
        .toArray().length;
      if (!seen) fresh.push(i);
    });
    if (fresh.length === 0) return null;
    const position = this.stream.next();
    // Before the rows: a rolled-back transaction leaves the mark ahead, which only costs a query.
    this.newestPosition = Math.max(this.newestPosition ?? 0, position);
    for (const i of fresh) {
      this.sql.exec(
        "INSERT INTO to_device_inbox (device_id, stream_position, message_id, sender, type, content) VALUES (?, ?, ?, ?, ?, ?)",
        deviceIds[i]!,
        position,
        messageId,
        sender,
        type,
        contents[i]!,
      );
    }
    return position;
  }

  /**
   * `deliver` for a message that came over federation from `origin`: delivered at most once per
   * (origin, message_id), whatever happened to earlier copies. Returns null for a repeat.
   */
  deliverFromFederation(origin: string, messageId: string, sender: string, type: string, deviceIds: string[], contents: string[], now = Date.now()): number | null {
    return this.storage.transactionSync(() => {
      const seen = this.sql.exec("SELECT 1 FROM to_device_federation_seen WHERE origin = ? AND message_id = ?", origin, messageId).toArray().length > 0;
      if (seen) return null;
      this.sql.exec("DELETE FROM to_device_federation_seen WHERE received_ts < ?", now - FEDERATION_SEEN_LIFETIME_MS);
      this.sql.exec("INSERT INTO to_device_federation_seen (origin, message_id, received_ts) VALUES (?, ?, ?)", origin, messageId, now);
      return this.insert(JSON.stringify(["federation", origin, messageId]), sender, type, deviceIds, contents);
    });
  }

  /** Messages for `deviceId` after stream position `since`, oldest first, at most `limit`. */
  since(deviceId: string, since: number, limit: number): ToDeviceBatch {
    const current = this.stream.current();
    // Most syncs have no message waiting (a woken long-poll of a big room, for one): no query when no
    // message of any device was stored after `since`.
    this.newestPosition ??= this.sql.exec<{ p: number | null }>("SELECT MAX(stream_position) AS p FROM to_device_inbox").one().p ?? 0;
    if (since >= this.newestPosition) return { events: [], position: Math.max(current, since), limited: false };
    const rows = this.sql
      .exec<{ stream_position: number; sender: string; type: string; content: string }>(
        `SELECT stream_position, sender, type, content FROM to_device_inbox
          WHERE device_id = ? AND stream_position > ? ORDER BY stream_position LIMIT ${sqlLimit(limit + 1)}`,
        deviceId,
        since,
      )
      .toArray();
    const limited = rows.length > limit;
    const batch = limited ? rows.slice(0, limit) : rows;
    return {
      // The content is already JSON text; splicing it avoids a parse and re-serialisation per message.
      events: batch.map((r) => `{"sender":${JSON.stringify(r.sender)},"type":${JSON.stringify(r.type)},"content":${r.content}}`),
      position: limited ? batch[batch.length - 1]!.stream_position : Math.max(current, since),
      limited,
    };
  }

  /** Drops the messages of `deviceId` up to and including `upto`: the device has received them. Returns
   * how many were dropped. */
  ack(deviceId: string, upto: number): number {
    return this.sql.exec("DELETE FROM to_device_inbox WHERE device_id = ? AND stream_position <= ?", deviceId, upto).rowsWritten;
  }

  /** Whether `deviceId` of this user already completed a send with `txnId`. */
  hasTxn(deviceId: string, txnId: string): boolean {
    return this.sql.exec("SELECT 1 FROM to_device_txns WHERE device_id = ? AND txn_id = ?", deviceId, txnId).toArray().length > 0;
  }

  /** Remembers a completed send (and forgets those older than TO_DEVICE_TXN_LIFETIME_MS). */
  recordTxn(deviceId: string, txnId: string, now = Date.now()): void {
    this.sql.exec("DELETE FROM to_device_txns WHERE created_ts < ?", now - TO_DEVICE_TXN_LIFETIME_MS);
    this.sql.exec("INSERT OR IGNORE INTO to_device_txns (device_id, txn_id, created_ts) VALUES (?, ?, ?)", deviceId, txnId, now);
  }

  /** Drops the inbox and transaction IDs of deleted devices. Call inside a transaction. */
  deleteDevices(deviceIds: string[]): void {
    for (const deviceId of deviceIds) {
      this.sql.exec("DELETE FROM to_device_inbox WHERE device_id = ?", deviceId);
      this.sql.exec("DELETE FROM to_device_txns WHERE device_id = ?", deviceId);
    }
  }

  /** Every device ID with an inbox or transaction IDs here. */
  deviceIds(): string[] {
    return this.sql
      .exec<{ device_id: string }>("SELECT device_id FROM to_device_inbox UNION SELECT device_id FROM to_device_txns")
      .toArray()
      .map((r) => r.device_id);
  }
}
