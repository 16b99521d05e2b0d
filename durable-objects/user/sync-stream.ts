// The sync-specific tables of the User DO: what the user's stream holds besides account data, push rules,
// to-device messages and device list changes (those live in user.ts and the encryption modules). Every
// row that /sync reports is stamped with a position of the user's one stream (`UserStream.next()`, taken
// inside the write's transaction), so "what changed after the token" is a range query on each table.
//
// Tables:
//   room_events_inbox    (INBOX_SCHEMA, created here and by user.ts `onRoomEvent`, so reads work
//                        before the first notification) one row per room event notification; its
//                        `position` IS the stream position.
//   sync_memberships     the log of the user's own membership changes per room (from the inbox rows of
//                        m.room.member events whose state_key is the user): "membership at token P" is
//                        the row with the highest room stream ordering among rows at positions <= P.
//   sync_notifications   one row per event that notified the user (push rules said `notify`), until a
//                        read receipt of the user covers it: the unread counts are counts of these rows.
//   sync_typing          the latest typing list per room.
//   sync_receipts        the latest receipt per room, receipt type, user and thread that reached the user.
//   sync_presence        the latest presence of each user the user shares a room with (and their own).
//   sync_room_marks      rooms whose unread counts changed without any other row saying so (a receipt
//                        for an event already receipted cleared notifications that arrived later).
//   sync_lazy_members    per device and room, the member event of each user last sent to the device while
//                        lazy-loading members (spec: `include_redundant_members` false: not sent again).
//   sync_room_cursors    per joined room, the room stream ordering up to which the inbox has every event
//                        the user should see: the `from` of the next catch-up (room/fan-out.ts `listen`).
//   sync_room_gaps       rooms whose catch-up left out older events (more than its limit): a sync whose
//                        range covers the row's position reports the room's timeline as limited.
//   sync_forgotten       rooms the user forgot (POST /forget), with the membership event they forgot at:
//                        an initial or full-state sync leaves the room out while that is their membership.
//   sync_meta            the user's ID (learned from the first RPC that names it).
import type { ReceiptUpdate } from "../notifications.js";
import type { UserStream } from "./stream.js";

export const INBOX_SCHEMA = `
  CREATE TABLE IF NOT EXISTS room_events_inbox (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    membership TEXT,
    UNIQUE (room_id, stream_ordering)
  );
`;

const SYNC_SCHEMA = `
  CREATE INDEX IF NOT EXISTS room_events_inbox_by_room ON room_events_inbox (room_id, position);
  CREATE TABLE IF NOT EXISTS sync_memberships (
    room_id TEXT NOT NULL,
    stream_position INTEGER NOT NULL,
    stream_ordering INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    PRIMARY KEY (room_id, stream_position)
  );
  CREATE INDEX IF NOT EXISTS sync_memberships_by_position ON sync_memberships (stream_position);
  CREATE TABLE IF NOT EXISTS sync_notifications (
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    highlight INTEGER NOT NULL,
    PRIMARY KEY (room_id, stream_ordering)
  );
  CREATE TABLE IF NOT EXISTS sync_typing (
    room_id TEXT PRIMARY KEY,
    user_ids TEXT NOT NULL,
    stream_position INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS sync_receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    stream_position INTEGER NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
  );
  CREATE INDEX IF NOT EXISTS sync_receipts_by_position ON sync_receipts (stream_position);
  CREATE TABLE IF NOT EXISTS sync_presence (
    user_id TEXT PRIMARY KEY,
    presence TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts INTEGER NOT NULL,
    currently_active INTEGER NOT NULL,
    stream_position INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS sync_presence_by_position ON sync_presence (stream_position);
  CREATE TABLE IF NOT EXISTS sync_room_marks (
    room_id TEXT PRIMARY KEY,
    stream_position INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS sync_lazy_members (
    device_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (device_id, room_id, user_id)
  );
  CREATE TABLE IF NOT EXISTS sync_room_cursors (
    room_id TEXT PRIMARY KEY,
    stream_ordering INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS sync_room_gaps (
    room_id TEXT NOT NULL,
    stream_position INTEGER NOT NULL,
    PRIMARY KEY (room_id, stream_position)
  );
  CREATE TABLE IF NOT EXISTS sync_forgotten (
    room_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL
  );
  CREATE TABLE IF NOT EXISTS sync_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );
`;

/** Rooms whose current membership a SyncStore keeps in memory at most. */
const MEMBERSHIPS_KEPT = 4096;

/** One inbox row (a room event notification) as sync reads it. */
export interface InboxRow {
  position: number;
  roomId: string;
  streamOrdering: number;
  eventId: string;
  type: string;
  stateKey: string | null;
  sender: string;
  membership: string | null;
}

/** A user's membership of a room as the log holds it. */
export interface MembershipRow {
  roomId: string;
  position: number;
  streamOrdering: number;
  eventId: string;
  membership: string;
}

/** A presence state (spec: "Presence"). */
export interface PresenceState {
  presence: "online" | "offline" | "unavailable";
  statusMsg?: string;
  lastActiveTs: number;
  currentlyActive: boolean;
}

export interface PresenceRow extends PresenceState {
  userId: string;
  position: number;
}

export interface UnreadCounts {
  notification_count: number;
  highlight_count: number;
}

/** `thread_id` of the main timeline in sync_notifications and sync_receipts' unthreaded rows. */
export const MAIN_THREAD = "";

type InboxSqlRow = {
  position: number;
  room_id: string;
  stream_ordering: number;
  event_id: string;
  type: string;
  state_key: string | null;
  sender: string;
  membership: string | null;
};

const toInboxRow = (r: InboxSqlRow): InboxRow => ({
  position: r.position,
  roomId: r.room_id,
  streamOrdering: r.stream_ordering,
  eventId: r.event_id,
  type: r.type,
  stateKey: r.state_key,
  sender: r.sender,
  membership: r.membership,
});

export class SyncStore {
  constructor(
    private readonly sql: SqlStorage,
    private readonly stream: UserStream,
  ) {
    sql.exec(INBOX_SCHEMA);
    sql.exec(SYNC_SCHEMA);
  }

  // -------------------------------------------------------------------------------------------
  // Meta.

  getMeta(key: string): string | undefined {
    return this.sql.exec<{ value: string }>("SELECT value FROM sync_meta WHERE key = ?", key).toArray()[0]?.value;
  }

  setMeta(key: string, value: string): void {
    this.sql.exec("INSERT INTO sync_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value);
  }

  // -------------------------------------------------------------------------------------------
  // Room events inbox.

  /** Inbox rows with position in (after, upto], in position order. */
  inboxRange(after: number, upto: number): InboxRow[] {
    return this.sql
      .exec<InboxSqlRow>(
        "SELECT position, room_id, stream_ordering, event_id, type, state_key, sender, membership FROM room_events_inbox WHERE position > ? AND position <= ? ORDER BY position",
        after,
        upto,
      )
      .toArray()
      .map(toInboxRow);
  }

  /** The highest room stream ordering delivered for a room at positions <= `upto` (0 if none). */
  roomOrderingAt(roomId: string, upto: number): number {
    return (
      this.sql
        .exec<{ m: number | null }>("SELECT MAX(stream_ordering) AS m FROM room_events_inbox WHERE room_id = ? AND position <= ?", roomId, upto)
        .one().m ?? 0
    );
  }

  // -------------------------------------------------------------------------------------------
  // Positions in rooms (docs/fan-out.md).

  /** The room stream ordering up to which the inbox is complete for a room. Rooms joined before cursors
   * existed had every event pushed: their latest inbox row is the cursor. */
  roomCursor(roomId: string): number {
    const row = this.sql.exec<{ o: number }>("SELECT stream_ordering AS o FROM sync_room_cursors WHERE room_id = ?", roomId).toArray()[0];
    return row ? row.o : this.roomOrderingAt(roomId, Number.MAX_SAFE_INTEGER);
  }

  setRoomCursor(roomId: string, streamOrdering: number): void {
    this.sql.exec(
      "INSERT INTO sync_room_cursors (room_id, stream_ordering) VALUES (?, ?) ON CONFLICT (room_id) DO UPDATE SET stream_ordering = excluded.stream_ordering",
      roomId,
      streamOrdering,
    );
  }

  deleteRoomCursor(roomId: string): void {
    this.sql.exec("DELETE FROM sync_room_cursors WHERE room_id = ?", roomId);
  }

  recordGap(roomId: string, position: number): void {
    this.sql.exec("INSERT OR IGNORE INTO sync_room_gaps (room_id, stream_position) VALUES (?, ?)", roomId, position);
  }

  /** Whether a catch-up of the room left out events at a position in (after, upto]. */
  hasGap(roomId: string, after: number, upto: number): boolean {
    return (
      this.sql
        .exec("SELECT 1 FROM sync_room_gaps WHERE room_id = ? AND stream_position > ? AND stream_position <= ? LIMIT 1", roomId, after, upto)
        .toArray().length > 0
    );
  }

  // -------------------------------------------------------------------------------------------
  // Own memberships.

  recordMembership(row: Omit<MembershipRow, "position">, position: number): void {
    // The room's membership is read again from storage until this turn (and the transaction it is part
    // of, committed or rolled back) has ended: see membershipOf.
    this.latestMemberships.delete(row.roomId);
    if (this.membershipsWritten.size === 0) queueMicrotask(() => this.membershipsWritten.clear());
    this.membershipsWritten.add(row.roomId);
    this.sql.exec(
      "INSERT OR IGNORE INTO sync_memberships (room_id, stream_position, stream_ordering, event_id, membership) VALUES (?, ?, ?, ?, ?)",
      row.roomId,
      position,
      row.streamOrdering,
      row.eventId,
      row.membership,
    );
  }

  /** The membership of each room as of position `upto` (rooms with no membership row then are absent). */
  membershipsAt(upto: number): Map<string, MembershipRow> {
    const out = new Map<string, MembershipRow>();
    const rows = this.sql
      .exec<{ room_id: string; stream_position: number; stream_ordering: number; event_id: string; membership: string }>(
        "SELECT room_id, stream_position, stream_ordering, event_id, membership FROM sync_memberships WHERE stream_position <= ? ORDER BY room_id, stream_ordering",
        upto,
      )
      .toArray();
    // Ordered by room stream ordering: the last row of a room is its membership (a late, out-of-order
    // delivery of an older membership event does not override a newer one).
    for (const r of rows) {
      out.set(r.room_id, { roomId: r.room_id, position: r.stream_position, streamOrdering: r.stream_ordering, eventId: r.event_id, membership: r.membership });
    }
    return out;
  }

  /** The current membership of one room. Read for every pushed event: kept in memory (recordMembership,
   * the only writer, forgets a room, and its reads are not kept until the writing turn has ended). */
  membershipOf(roomId: string): MembershipRow | undefined {
    const known = this.latestMemberships.get(roomId);
    if (known !== undefined) return known ?? undefined;
    const row = this.readMembership(roomId);
    if (!this.membershipsWritten.has(roomId)) {
      if (this.latestMemberships.size >= MEMBERSHIPS_KEPT) this.latestMemberships.clear();
      this.latestMemberships.set(roomId, row ?? null);
    }
    return row;
  }
  private readonly latestMemberships = new Map<string, MembershipRow | null>();
  private readonly membershipsWritten = new Set<string>();

  private readMembership(roomId: string): MembershipRow | undefined {
    const r = this.sql
      .exec<{ stream_position: number; stream_ordering: number; event_id: string; membership: string }>(
        "SELECT stream_position, stream_ordering, event_id, membership FROM sync_memberships WHERE room_id = ? ORDER BY stream_ordering DESC LIMIT 1",
        roomId,
      )
      .toArray()[0];
    return r ? { roomId, position: r.stream_position, streamOrdering: r.stream_ordering, eventId: r.event_id, membership: r.membership } : undefined;
  }

  /** The sender of the inbox row at a room stream ordering (e.g. who sent an invite), if it is there. */
  senderAt(roomId: string, streamOrdering: number): string | undefined {
    return this.sql
      .exec<{ sender: string }>("SELECT sender FROM room_events_inbox WHERE room_id = ? AND stream_ordering = ?", roomId, streamOrdering)
      .toArray()[0]?.sender;
  }

  /** Records that the user forgot the room at their current membership (leave or ban); false if they
   * have none or are still in it. */
  forgetRoom(roomId: string): boolean {
    const m = this.membershipOf(roomId);
    if (!m || (m.membership !== "leave" && m.membership !== "ban")) return false;
    this.sql.exec("INSERT OR REPLACE INTO sync_forgotten (room_id, event_id) VALUES (?, ?)", roomId, m.eventId);
    return true;
  }

  /** The membership event at which the user forgot the room, if they did. */
  forgottenAt(roomId: string): string | undefined {
    return this.sql.exec<{ event_id: string }>("SELECT event_id FROM sync_forgotten WHERE room_id = ?", roomId).toArray()[0]?.event_id;
  }

  /** Membership rows with position in (after, upto]. */
  membershipChanges(after: number, upto: number): MembershipRow[] {
    return this.sql
      .exec<{ room_id: string; stream_position: number; stream_ordering: number; event_id: string; membership: string }>(
        "SELECT room_id, stream_position, stream_ordering, event_id, membership FROM sync_memberships WHERE stream_position > ? AND stream_position <= ? ORDER BY stream_position",
        after,
        upto,
      )
      .toArray()
      .map((r) => ({ roomId: r.room_id, position: r.stream_position, streamOrdering: r.stream_ordering, eventId: r.event_id, membership: r.membership }));
  }

  /** Rooms the user is joined to now. */
  joinedRooms(): string[] {
    const out: string[] = [];
    for (const [roomId, m] of this.membershipsAt(Number.MAX_SAFE_INTEGER)) if (m.membership === "join") out.push(roomId);
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Notifications and unread counts (spec: "Receiving notifications", "Threading").

  recordNotification(roomId: string, threadId: string | undefined, streamOrdering: number, highlight: boolean): void {
    this.sql.exec(
      "INSERT OR IGNORE INTO sync_notifications (room_id, thread_id, stream_ordering, highlight) VALUES (?, ?, ?, ?)",
      roomId,
      threadId ?? MAIN_THREAD,
      streamOrdering,
      highlight ? 1 : 0,
    );
  }

  /**
   * A read receipt (or the user's own event) at `streamOrdering` clears the notifications up to it:
   * unthreaded (`threadId` undefined) all of the room's, `main` the main timeline's, a thread root that
   * thread's (spec: "Threading", "Receipts").
   */
  clearNotifications(roomId: string, streamOrdering: number, threadId?: string): number {
    if (threadId === undefined) {
      return this.sql.exec("DELETE FROM sync_notifications WHERE room_id = ? AND stream_ordering <= ?", roomId, streamOrdering).rowsWritten;
    }
    const thread = threadId === "main" ? MAIN_THREAD : threadId;
    return this.sql.exec(
      "DELETE FROM sync_notifications WHERE room_id = ? AND thread_id = ? AND stream_ordering <= ?",
      roomId,
      thread,
      streamOrdering,
    ).rowsWritten;
  }

  /** Gives a room a new position: the next sync shows it (with its unread counts). */
  markRoom(roomId: string): number {
    const position = this.stream.next();
    this.sql.exec(
      "INSERT INTO sync_room_marks (room_id, stream_position) VALUES (?, ?) ON CONFLICT (room_id) DO UPDATE SET stream_position = excluded.stream_position",
      roomId,
      position,
    );
    return position;
  }

  /** Rooms marked in (after, upto]. */
  markedRooms(after: number, upto: number): Set<string> {
    return new Set(
      this.sql
        .exec<{ room_id: string }>("SELECT room_id FROM sync_room_marks WHERE stream_position > ? AND stream_position <= ?", after, upto)
        .toArray()
        .map((r) => r.room_id),
    );
  }

  /** Unread counts of a room by thread (MAIN_THREAD for the main timeline). */
  unreadCounts(roomId: string): Map<string, UnreadCounts> {
    const out = new Map<string, UnreadCounts>();
    for (const r of this.sql.exec<{ thread_id: string; n: number; h: number }>(
      "SELECT thread_id, COUNT(*) AS n, SUM(highlight) AS h FROM sync_notifications WHERE room_id = ? GROUP BY thread_id",
      roomId,
    )) {
      out.set(r.thread_id, { notification_count: r.n, highlight_count: r.h ?? 0 });
    }
    return out;
  }

  /** Unread notifications per room, threads included (push badge counts, user/sync.ts `badgeCount`). */
  notificationCountsByRoom(): Map<string, number> {
    const out = new Map<string, number>();
    for (const r of this.sql.exec<{ room_id: string; n: number }>("SELECT room_id, COUNT(*) AS n FROM sync_notifications GROUP BY room_id")) {
      out.set(r.room_id, r.n);
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Lazy-loaded members already sent to a device.

  /** The member events of `users` that `deviceId` already has for the room (user ID → event ID). */
  lazyMembersSent(deviceId: string, roomId: string, users: Iterable<string>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const user of users) {
      const row = this.sql
        .exec<{ event_id: string }>("SELECT event_id FROM sync_lazy_members WHERE device_id = ? AND room_id = ? AND user_id = ?", deviceId, roomId, user)
        .toArray()[0];
      if (row) out[user] = row.event_id;
    }
    return out;
  }

  /** Records member events sent to a device; `reset` first forgets what the device had for the room. */
  recordLazyMembers(deviceId: string, roomId: string, members: Record<string, string>, reset: boolean): void {
    if (reset) this.sql.exec("DELETE FROM sync_lazy_members WHERE device_id = ? AND room_id = ?", deviceId, roomId);
    for (const [user, eventId] of Object.entries(members)) {
      this.sql.exec(
        `INSERT INTO sync_lazy_members (device_id, room_id, user_id, event_id) VALUES (?, ?, ?, ?)
         ON CONFLICT (device_id, room_id, user_id) DO UPDATE SET event_id = excluded.event_id`,
        deviceId,
        roomId,
        user,
        eventId,
      );
    }
  }

  // -------------------------------------------------------------------------------------------
  // Typing and receipts.

  /** Records a room's typing list; returns the position, or null when it did not change. */
  setTyping(roomId: string, userIds: string[]): number | null {
    const json = JSON.stringify([...userIds].sort());
    const old = this.sql.exec<{ user_ids: string }>("SELECT user_ids FROM sync_typing WHERE room_id = ?", roomId).toArray()[0];
    if (old?.user_ids === json || (!old && json === "[]")) return null;
    const position = this.stream.next();
    this.sql.exec(
      "INSERT INTO sync_typing (room_id, user_ids, stream_position) VALUES (?, ?, ?) ON CONFLICT (room_id) DO UPDATE SET user_ids = excluded.user_ids, stream_position = excluded.stream_position",
      roomId,
      json,
      position,
    );
    return position;
  }

  /** Typing lists changed in (after, upto] (after null: every non-empty list), by room. */
  typingSince(after: number | null, upto: number): Map<string, string[]> {
    const out = new Map<string, string[]>();
    const rows =
      after === null
        ? this.sql.exec<{ room_id: string; user_ids: string }>("SELECT room_id, user_ids FROM sync_typing WHERE user_ids != '[]' AND stream_position <= ?", upto)
        : this.sql.exec<{ room_id: string; user_ids: string }>(
            "SELECT room_id, user_ids FROM sync_typing WHERE stream_position > ? AND stream_position <= ?",
            after,
            upto,
          );
    for (const r of rows) out.set(r.room_id, JSON.parse(r.user_ids) as string[]);
    return out;
  }

  /** Records receipts; returns the position, or null if none of them was new. */
  addReceipts(roomId: string, receipts: ReceiptUpdate[]): number | null {
    let position: number | null = null;
    for (const r of receipts) {
      const thread = r.threadId ?? MAIN_THREAD;
      const old = this.sql
        .exec<{ event_id: string }>(
          "SELECT event_id FROM sync_receipts WHERE room_id = ? AND receipt_type = ? AND user_id = ? AND thread_id = ?",
          roomId,
          r.receiptType,
          r.userId,
          thread,
        )
        .toArray()[0];
      if (old?.event_id === r.eventId) continue;
      position ??= this.stream.next();
      this.sql.exec(
        `INSERT INTO sync_receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_position) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts,
           stream_position = excluded.stream_position`,
        roomId,
        r.receiptType,
        r.userId,
        thread,
        r.eventId,
        r.ts,
        position,
      );
    }
    return position;
  }

  /** Receipts recorded in (after, upto] (after null: all), by room. `privateOf`: the only user whose
   * private receipts may be returned. */
  receiptsSince(after: number | null, upto: number, roomId?: string): Map<string, ReceiptUpdate[]> {
    const out = new Map<string, ReceiptUpdate[]>();
    const where = [after === null ? "1" : "stream_position > ?", "stream_position <= ?"];
    const params: (string | number)[] = after === null ? [upto] : [after, upto];
    if (roomId !== undefined) {
      where.push("room_id = ?");
      params.push(roomId);
    }
    for (const r of this.sql.exec<{ room_id: string; receipt_type: string; user_id: string; thread_id: string; event_id: string; ts: number }>(
      `SELECT room_id, receipt_type, user_id, thread_id, event_id, ts FROM sync_receipts WHERE ${where.join(" AND ")}`,
      ...params,
    )) {
      const u: ReceiptUpdate = { receiptType: r.receipt_type, userId: r.user_id, eventId: r.event_id, ts: r.ts };
      if (r.thread_id !== MAIN_THREAD) u.threadId = r.thread_id;
      let list = out.get(r.room_id);
      if (!list) out.set(r.room_id, (list = []));
      list.push(u);
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Presence.

  /** Records a user's presence; returns the position, or null when nothing a client sees changed. */
  setPresence(userId: string, state: PresenceState): number | null {
    const old = this.presenceOf(userId);
    // Only last_active moved: refresh the row without a new position (last_active_ago is shown relative to
    // the time of reading, so nobody needs waking for it).
    if (old && old.presence === state.presence && (old.statusMsg ?? null) === (state.statusMsg ?? null) && old.currentlyActive === state.currentlyActive) {
      this.sql.exec("UPDATE sync_presence SET last_active_ts = ? WHERE user_id = ?", state.lastActiveTs, userId);
      return null;
    }
    const position = this.stream.next();
    this.sql.exec(
      `INSERT INTO sync_presence (user_id, presence, status_msg, last_active_ts, currently_active, stream_position) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (user_id) DO UPDATE SET presence = excluded.presence, status_msg = excluded.status_msg,
         last_active_ts = excluded.last_active_ts, currently_active = excluded.currently_active, stream_position = excluded.stream_position`,
      userId,
      state.presence,
      state.statusMsg ?? null,
      state.lastActiveTs,
      state.currentlyActive ? 1 : 0,
      position,
    );
    return position;
  }

  /** Shows a user's unchanged presence again in the syncs whose range covers `position` (a newly joined
   * room-mate: spec "Presence", Synapse sends the presence of newly joined members). */
  stampPresence(userId: string, position: number): void {
    this.sql.exec("UPDATE sync_presence SET stream_position = ? WHERE user_id = ? AND stream_position < ?", position, userId, position);
  }

  presenceOf(userId: string): PresenceRow | undefined {
    return this.presenceRows("user_id = ?", [userId])[0];
  }

  /** Presence rows changed in (after, upto] (after null: all). */
  presenceSince(after: number | null, upto: number): PresenceRow[] {
    return after === null ? this.presenceRows("stream_position <= ?", [upto]) : this.presenceRows("stream_position > ? AND stream_position <= ?", [after, upto]);
  }

  private presenceRows(where: string, params: (string | number)[]): PresenceRow[] {
    return this.sql
      .exec<{ user_id: string; presence: string; status_msg: string | null; last_active_ts: number; currently_active: number; stream_position: number }>(
        `SELECT user_id, presence, status_msg, last_active_ts, currently_active, stream_position FROM sync_presence WHERE ${where} ORDER BY stream_position`,
        ...params,
      )
      .toArray()
      .map((r) => {
        const row: PresenceRow = {
          userId: r.user_id,
          presence: r.presence as PresenceState["presence"],
          lastActiveTs: r.last_active_ts,
          currentlyActive: r.currently_active !== 0,
          position: r.stream_position,
        };
        if (r.status_msg !== null) row.statusMsg = r.status_msg;
        return row;
      });
  }
}
