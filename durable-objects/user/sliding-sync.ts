// Simplified sliding sync (MSC4186) in the User DO: connections, the sorted room list, which rooms a
// response carries and from which point, the extensions, and the long-poll. It reads the same stream as
// /sync (user/sync.ts, user/sync-stream.ts): the inbox of room events, the membership log, typing,
// receipts, account data, to-device and device lists all take positions of the user's one stream, and a
// waiting request is woken by the writer through the same SyncHub waiters.
//
// Connections (MSC4186 "Connections"): each response stores a connection position (a row of
// sliding_positions: the stream position it is complete up to and, per room, what was sent and with which
// config) and answers its id as `pos`. A request names the position it builds on; positions before it are
// dropped (the client has acknowledged it), later ones are kept for retries. An unknown (or dropped, or
// expired) position is M_UNKNOWN_POS, after which the client starts over without `pos`.
//
// Tables:
//   sliding_positions      one row per connection position (device, conn_id, stream position, room map).
//   sliding_room_activity  per room: the latest inbox position and room stream ordering, the time of the
//                          latest event of a type that bumps (BUMP_EVENT_TYPES) and of the user's own
//                          latest membership event, so the room list sorts without reading the inbox.
//                          Times, not stream positions: a catch-up (user/sync.ts ensureListening) records
//                          several rooms' events at once in no order across rooms. A time is the event's
//                          origin_server_ts, capped at its arrival here (a remote clock ahead of ours
//                          cannot pin a room to the top).
//                          last_ts: the time of the room's latest event (any type), so that the sticky
//                          events extension asks only rooms that can hold an unexpired sticky event.
//   sliding_room_facts     per room: create type and encryption, for list filters (both never change once
//                          set; an m.room.encryption event arriving updates the row).
import {
  BUMP_EVENT_TYPES,
  combineConfigs,
  effectiveRequiredState,
  extensionRooms,
  mustAwaitFullState,
  parsePos,
  requiredStateCovers,
  requiredStateKey,
  stickyToken,
  unknownPos,
  type RequiredState,
  type RoomConfig,
  type SlidingFilters,
  type SlidingRequest,
} from "../../protocol/sliding-sync.js";
import { MatrixError } from "../../protocol/errors.js";
import { serverNameOf } from "../../protocol/pdu.js";
import type { RoomDurableObject } from "../room.js";
import { MAX_STICKY_DURATION_MS } from "../room/client-event.js";
import type { DeliveredRoomEventNotification, ReceiptUpdate } from "../notifications.js";
import type { AccountDataContent, AccountDataDelta } from "../user.js";
import type { DeviceListChanges } from "./device-lists.js";
import type { Outcome } from "./outcome.js";
import type { UserStream } from "./stream.js";
import type { SyncHub } from "./sync.js";
import { MAIN_THREAD, type MembershipRow, type UnreadCounts } from "./sync-stream.js";
import type { RoomActivity } from "../room/event-index.js";
import type { ToDeviceBatch } from "./to-device.js";

/** A connection position unused for this long is forgotten (Synapse expires connections after a week). */
export const POSITION_TTL_MS = 7 * 24 * 3600_000;
/** Unacknowledged positions kept per connection (retries of the latest responses). */
const MAX_UNACKED_POSITIONS = 10;
/** Connections kept per device; a new one beyond this drops the least recently used. */
const MAX_CONNECTIONS_PER_DEVICE = 20;
/** Most to-device messages in one response unless the client asks for fewer. */
const TO_DEVICE_DEFAULT_LIMIT = 100;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS sliding_positions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    stream_position INTEGER NOT NULL,
    rooms TEXT NOT NULL,
    created_ts INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS sliding_positions_by_conn ON sliding_positions (device_id, conn_id, id);
  CREATE TABLE IF NOT EXISTS sliding_room_activity (
    room_id TEXT PRIMARY KEY,
    last_position INTEGER NOT NULL,
    last_ordering INTEGER NOT NULL,
    bump_ts INTEGER,
    member_ts INTEGER
  );
  CREATE TABLE IF NOT EXISTS sliding_room_facts (
    room_id TEXT PRIMARY KEY,
    room_type TEXT,
    encrypted INTEGER NOT NULL
  );
`;

/** The bindings this module uses (the Room DOs, for list filters). */
export interface SlidingEnv {
  ROOMS: DurableObjectNamespace<RoomDurableObject>;
}

/** What the module needs from the rest of the User DO. */
export interface SlidingSources {
  accountDataSince(since: number, userId: string): AccountDataDelta;
  /** Global account data of one type (content), or null. */
  globalAccountData(type: string): AccountDataContent | null;
  /** Room account data of one type, by room. */
  roomAccountDataOfType(type: string): Map<string, AccountDataContent>;
  toDeviceSince(deviceId: string, since: number, limit: number): ToDeviceBatch;
  ackToDevice(deviceId: string, upto: number): void;
  deviceListsSince(since: number, upto: number): DeviceListChanges;
  oneTimeKeyCounts(deviceId: string): Record<string, number>;
  unusedFallbackKeyTypes(deviceId: string): string[];
}

export interface SlidingSyncRequest {
  userId: string;
  deviceId: string;
  pos: string | null;
  timeoutMs: number;
  /** `set_presence` (absent: online), as for /sync. */
  setPresence: "online" | "offline" | "unavailable";
  body: SlidingRequest;
}

/** One room of a response: what the worker asks the Room DO for and the fields the User DO knows. */
export interface SlidingRoomPlan {
  roomId: string;
  membership: string;
  initial: boolean;
  /** Lists (in range) the room is in. */
  lists: string[];
  bumpStamp: number;
  isDm: boolean;
  notificationCount: number;
  highlightCount: number;
  timelineLimit: number;
  requiredState: RequiredState;
  /** Joined and previously joined rooms: the Room DO request (absent for invites and knocks). */
  upto: number;
  sinceOrdering?: number;
  expandTimeline?: boolean;
  previousRequiredState?: RequiredState;
  liveFrom: number;
  /** Initial room with the receipts extension: the worker adds the room's receipts. */
  roomReceipts?: boolean;
  /** `$LAZY`: members this connection was already sent for the room. */
  lazySent?: string[];
  /** Unread notifications in threads, by thread root (absent when none). */
  unreadThreads?: Record<string, UnreadCounts>;
}

export interface SlidingListResult {
  count: number;
  ops: { op: "SYNC"; range: [number, number]; room_ids: string[] }[];
}

export interface SlidingExtensionsPlan {
  toDevice?: { nextBatch: string; events: string[] };
  e2ee?: { deviceLists?: { changed: string[]; left: string[] }; oneTimeKeyCounts: Record<string, number>; unusedFallbackKeyTypes: string[] };
  accountData?: { global: { type: string; content: string }[]; rooms: Record<string, { type: string; content: string }[]> };
  receipts?: { rooms: Record<string, ReceiptUpdate[]> };
  typing?: { rooms: Record<string, string[]> };
  /** MSC4354: the rooms to ask for unexpired sticky events with stream ordering in (after, upto]. */
  stickyEvents?: { nextBatch: string; rooms: { roomId: string; after: number; upto: number }[] };
}

export interface SlidingPlan {
  pos: string;
  lists: Record<string, SlidingListResult>;
  rooms: SlidingRoomPlan[];
  extensions: SlidingExtensionsPlan;
}

/** What a connection position remembers of a room: the stream position it was last sent at, its
 * timeline limit and required_state then (an index into `configs`), the membership sent, and with
 * `$LAZY` the members whose membership the connection was sent (filled in after the rooms answered,
 * recordLazyMembers). */
type SentRoom = [at: number, timelineLimit: number, config: number, membership: string, lazy?: string[]];

interface ConnectionRooms {
  configs: string[];
  rooms: Record<string, SentRoom>;
}

interface PositionRow {
  id: number;
  streamPosition: number;
  rooms: ConnectionRooms;
}

interface Activity {
  lastPosition: number;
  lastOrdering: number;
  bumpTs: number | null;
  memberTs: number | null;
  lastTs: number | null;
}

interface Candidate {
  roomId: string;
  m: MembershipRow;
  sortKey: number;
  /** The room's latest inbox position (ties of sortKey). */
  arrival: number;
}

export class SlidingSync {
  private readonly sql: SqlStorage;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly env: SlidingEnv,
    private readonly stream: UserStream,
    private readonly hub: SyncHub,
    private readonly sources: SlidingSources,
  ) {
    this.sql = ctx.storage.sql;
    this.sql.exec(SCHEMA);
    if (this.hub.store.getMeta("sliding_activity") !== "1") {
      // Rooms whose events arrived before this table existed (their times are unknown: they sort last
      // until their next event).
      this.sql.exec(
        `INSERT OR REPLACE INTO sliding_room_activity (room_id, last_position, last_ordering)
         SELECT room_id, MAX(position), MAX(stream_ordering) FROM room_events_inbox GROUP BY room_id`,
      );
      this.hub.store.setMeta("sliding_activity", "1");
    }
    if (this.hub.store.getMeta("sliding_activity_last_ts") !== "1") {
      this.sql.exec("ALTER TABLE sliding_room_activity ADD COLUMN last_ts INTEGER");
      this.hub.store.setMeta("sliding_activity_last_ts", "1");
    }
  }

  // -------------------------------------------------------------------------------------------
  // Writes (inside the inbox write's transaction).

  /** A room event reached the inbox at `position`. */
  onRoomEvent(n: DeliveredRoomEventNotification, position: number, now = Date.now()): void {
    const ts = Math.min(n.ts ?? now, now);
    const me = n.recipient ?? this.hub.userId();
    const bump = BUMP_EVENT_TYPES.has(n.type) ? ts : null;
    const own = n.type === "m.room.member" && n.stateKey !== undefined && n.stateKey === me ? ts : null;
    this.sql.exec(
      `INSERT INTO sliding_room_activity (room_id, last_position, last_ordering, bump_ts, member_ts, last_ts) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (room_id) DO UPDATE SET last_position = MAX(last_position, excluded.last_position),
         last_ts = MAX(COALESCE(last_ts, 0), excluded.last_ts),
         bump_ts = CASE WHEN excluded.last_ordering > last_ordering THEN COALESCE(excluded.bump_ts, bump_ts) ELSE COALESCE(bump_ts, excluded.bump_ts) END,
         member_ts = CASE WHEN excluded.last_ordering > last_ordering THEN COALESCE(excluded.member_ts, member_ts) ELSE COALESCE(member_ts, excluded.member_ts) END,
         last_ordering = MAX(last_ordering, excluded.last_ordering)`,
      n.roomId,
      position,
      n.streamOrdering,
      bump,
      own,
      ts,
    );
    if (n.type === "m.room.encryption" && n.stateKey === "") this.sql.exec("UPDATE sliding_room_facts SET encrypted = 1 WHERE room_id = ?", n.roomId);
    if (own !== null && me !== undefined && (n.membership === "join" || n.membership === "invite" || n.membership === "knock")) {
      // A room new to the user: learn its facts now, in the background, so that the first filtered list
      // does not wait for them.
      const known = this.sql.exec("SELECT 1 FROM sliding_room_facts WHERE room_id = ?", n.roomId).toArray().length > 0;
      if (!known && !this.fetching.has(n.roomId)) this.ctx.waitUntil(this.fetchFacts([n.roomId], me));
    }
  }

  private readonly fetching = new Set<string>();

  /** Asks rooms for their facts (create type, encryption) and records them; unreachable rooms are left
   * for the next request that needs them. */
  private async fetchFacts(rooms: string[], userId: string): Promise<void> {
    for (const r of rooms) this.fetching.add(r);
    try {
      const facts = await Promise.all(
        rooms.map(async (roomId) => {
          try {
            return { roomId, facts: await this.env.ROOMS.get(this.env.ROOMS.idFromName(roomId)).roomFacts(userId) };
          } catch {
            return null;
          }
        }),
      );
      this.ctx.storage.transactionSync(() => {
        for (const f of facts) {
          if (!f) continue;
          this.sql.exec(
            `INSERT INTO sliding_room_facts (room_id, room_type, encrypted) VALUES (?, ?, ?)
             ON CONFLICT (room_id) DO UPDATE SET room_type = excluded.room_type, encrypted = MAX(encrypted, excluded.encrypted)`,
            f.roomId,
            f.facts.roomType,
            f.facts.encrypted ? 1 : 0,
          );
        }
      });
    } finally {
      for (const r of rooms) this.fetching.delete(r);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Connections.

  private loadPosition(deviceId: string, connId: string, pos: string): PositionRow {
    const id = parsePos(pos);
    if (id === null) throw unknownPos();
    const row = this.sql
      .exec<{ id: number; stream_position: number; rooms: string; created_ts: number }>(
        "SELECT id, stream_position, rooms, created_ts FROM sliding_positions WHERE id = ? AND device_id = ? AND conn_id = ?",
        id,
        deviceId,
        connId,
      )
      .toArray()[0];
    if (!row || row.created_ts < Date.now() - POSITION_TTL_MS) throw unknownPos();
    return { id: row.id, streamPosition: row.stream_position, rooms: JSON.parse(row.rooms) as ConnectionRooms };
  }

  private savePosition(deviceId: string, connId: string, acked: number | null, streamPosition: number, rooms: ConnectionRooms): number {
    return this.ctx.storage.transactionSync(() => {
      if (acked === null) {
        // A new connection replaces any old one of the same conn_id; the device's oldest go beyond the cap.
        this.sql.exec("DELETE FROM sliding_positions WHERE device_id = ? AND conn_id = ?", deviceId, connId);
        const conns = this.sql
          .exec<{ conn_id: string }>("SELECT conn_id FROM sliding_positions WHERE device_id = ? GROUP BY conn_id ORDER BY MAX(id) DESC", deviceId)
          .toArray();
        for (const c of conns.slice(MAX_CONNECTIONS_PER_DEVICE - 1)) this.sql.exec("DELETE FROM sliding_positions WHERE device_id = ? AND conn_id = ?", deviceId, c.conn_id);
      }
      const id = this.sql
        .exec<{ id: number }>(
          "INSERT INTO sliding_positions (device_id, conn_id, stream_position, rooms, created_ts) VALUES (?, ?, ?, ?, ?) RETURNING id",
          deviceId,
          connId,
          streamPosition,
          JSON.stringify(rooms),
          Date.now(),
        )
        .one().id;
      const extra = this.sql
        .exec<{ id: number }>("SELECT id FROM sliding_positions WHERE device_id = ? AND conn_id = ? ORDER BY id DESC LIMIT -1 OFFSET ?", deviceId, connId, MAX_UNACKED_POSITIONS)
        .toArray();
      for (const e of extra) this.sql.exec("DELETE FROM sliding_positions WHERE id = ?", e.id);
      return id;
    });
  }

  /**
   * `$LAZY`: after the rooms of the response at position `pos` answered, the members each room has now
   * sent on the connection (Synapse: sliding_sync_connection_lazy_members), so that the next request
   * built on `pos` does not send them again. A position that is gone (superseded meanwhile) is ignored.
   */
  recordLazyMembers(deviceId: string, connId: string, pos: string, members: Record<string, string[]>): void {
    const id = parsePos(pos);
    if (id === null) return;
    this.ctx.storage.transactionSync(() => {
      const row = this.sql
        .exec<{ rooms: string }>("SELECT rooms FROM sliding_positions WHERE id = ? AND device_id = ? AND conn_id = ?", id, deviceId, connId)
        .toArray()[0];
      if (!row) return;
      const rooms = JSON.parse(row.rooms) as ConnectionRooms;
      for (const [roomId, list] of Object.entries(members)) {
        const sent = rooms.rooms[roomId];
        if (!sent) continue;
        if (list.length > 0) sent[4] = list;
        else sent.length = 4;
      }
      this.sql.exec("UPDATE sliding_positions SET rooms = ? WHERE id = ?", JSON.stringify(rooms), id);
    });
  }

  /** Connection positions stored for a device (tests). */
  positionCount(deviceId: string): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM sliding_positions WHERE device_id = ?", deviceId).one().n;
  }

  // -------------------------------------------------------------------------------------------
  // The request.

  async sync(request: SlidingSyncRequest): Promise<Outcome<SlidingPlan>> {
    try {
      return { ok: await this.hub.syncing(request.userId, request.setPresence, () => this.run(request)) };
    } catch (e) {
      if (e instanceof MatrixError) return { error: { status: e.status, errcode: e.errcode, error: e.message } };
      throw e;
    }
  }

  private async run(request: SlidingSyncRequest): Promise<SlidingPlan> {
    const { deviceId, body } = request;
    const previous = request.pos === null ? null : this.loadPosition(deviceId, body.connId, request.pos);
    if (previous) {
      // The client has the response of `previous`: older positions are not needed any more.
      this.sql.exec("DELETE FROM sliding_positions WHERE device_id = ? AND conn_id = ? AND id < ?", deviceId, body.connId, previous.id);
    }
    const toDevice = body.extensions.toDevice;
    if (toDevice?.since !== undefined) {
      // The client has the messages up to its `since` (MSC3885): they are delivered, drop them.
      this.sources.ackToDevice(deviceId, Math.min(Number(toDevice.since), this.stream.current()));
    }
    await this.prefetchFacts(request);
    const waitMs = previous ? Math.max(0, request.timeoutMs) : 0;
    const deadline = Date.now() + waitMs;
    for (;;) {
      const recheckAt = await this.hub.ensureListening(request.userId, Date.now(), {
        urgent: (_due, hints) => this.roomsShown(request, previous, hints),
        deferBackground: true,
      });
      let planned: ReturnType<SlidingSync["plan"]>;
      try {
        planned = this.plan(request, previous);
      } finally {
        this.hub.startBackgroundCatchUps(request.userId);
      }
      const { plan, rooms, streamPosition, hasNews } = planned;
      const left = deadline - Date.now();
      if (hasNews || left <= 0) {
        const id = this.savePosition(deviceId, body.connId, previous?.id ?? null, streamPosition, rooms);
        plan.pos = String(id);
        return plan;
      }
      await this.hub.waitForChange(Math.min(left, Math.max(0, recheckAt - Date.now())));
    }
  }

  /**
   * The rooms a response would show (in the lists' ranges, or subscribed), ordered with D1's activity hints
   * for rooms this DO has not caught up with yet: a sync waits for these rooms only, and the others catch up
   * in the background (SyncHub.ensureListening). A user in 1,000 rooms asking for 20 waits for about 20.
   */
  private roomsShown(request: SlidingSyncRequest, previous: PositionRow | null, hints: Map<string, RoomActivity>): Set<string> {
    for (const [roomId, hint] of hints) {
      if (hint.bumpTs !== null && hint.bumpTs > (this.bumpHints.get(roomId) ?? 0)) this.bumpHints.set(roomId, hint.bumpTs);
    }
    const { plan } = this.plan(request, previous, true);
    const shown = new Set<string>(Object.keys(request.body.roomSubscriptions));
    for (const list of Object.values(plan.lists)) for (const op of list.ops) for (const id of op.room_ids) shown.add(id);
    return shown;
  }

  /** Bump times of rooms learnt from D1's activity hint before their events reached this DO (a room's
   * position in the lists must not wait for its catch-up). */
  private readonly bumpHints = new Map<string, number>();

  /** Loads room facts (create type, encryption) and space children when a list filter needs them. */
  private spaceChildren = new Map<string, Set<string>>();

  private async prefetchFacts(request: SlidingSyncRequest): Promise<void> {
    const filters = Object.values(request.body.lists).map((l) => l.filters);
    const needsFacts = filters.some((f) => f.isEncrypted !== undefined || f.roomTypes !== undefined || f.notRoomTypes !== undefined);
    const spaces = new Set(filters.flatMap((f) => f.spaces ?? []));
    const memberships = this.hub.store.membershipsAt(Number.MAX_SAFE_INTEGER);
    if (needsFacts) {
      const known = new Set(this.sql.exec<{ room_id: string }>("SELECT room_id FROM sliding_room_facts").toArray().map((r) => r.room_id));
      const missing = [...memberships.keys()].filter((id) => !known.has(id));
      if (missing.length > 0) await this.fetchFacts(missing, request.userId);
    }
    this.spaceChildren = new Map();
    await Promise.all(
      [...spaces].map(async (spaceId) => {
        // MSC4186: only spaces the user is joined to count; unknown spaces are ignored.
        if (memberships.get(spaceId)?.membership !== "join") return;
        try {
          this.spaceChildren.set(spaceId, new Set(await this.env.ROOMS.get(this.env.ROOMS.idFromName(spaceId)).spaceChildren()));
        } catch {
          /* ignored like an unknown space */
        }
      }),
    );
  }

  private facts(): Map<string, { roomType: string | null; encrypted: boolean }> {
    const out = new Map<string, { roomType: string | null; encrypted: boolean }>();
    for (const r of this.sql.exec<{ room_id: string; room_type: string | null; encrypted: number }>("SELECT room_id, room_type, encrypted FROM sliding_room_facts")) {
      out.set(r.room_id, { roomType: r.room_type, encrypted: r.encrypted !== 0 });
    }
    return out;
  }

  private activity(): Map<string, Activity> {
    const out = new Map<string, Activity>();
    for (const r of this.sql.exec<{ room_id: string; last_position: number; last_ordering: number; bump_ts: number | null; member_ts: number | null; last_ts: number | null }>(
      "SELECT room_id, last_position, last_ordering, bump_ts, member_ts, last_ts FROM sliding_room_activity",
    )) {
      out.set(r.room_id, { lastPosition: r.last_position, lastOrdering: r.last_ordering, bumpTs: r.bump_ts, memberTs: r.member_ts, lastTs: r.last_ts });
    }
    return out;
  }

  /** Whether a state event of (type, state_key) reached the room's inbox in (from, upto] (read once per
   * room, on first use). */
  private stateChangedSince(roomId: string, from: number, upto: number): (type: string, stateKey: string) => boolean {
    let keys: Set<string> | undefined;
    return (type, stateKey) => {
      keys ??= new Set(
        this.sql
          .exec<{ type: string; state_key: string }>(
            "SELECT type, state_key FROM room_events_inbox WHERE room_id = ? AND position > ? AND position <= ? AND state_key IS NOT NULL",
            roomId,
            from,
            upto,
          )
          .toArray()
          .map((r) => `${r.type}\u0000${r.state_key}`),
      );
      return keys.has(`${type}\u0000${stateKey}`);
    };
  }

  /** The sender of the user's membership event (to tell a kick or ban from leaving). */
  private membershipSender(m: MembershipRow): string | undefined {
    return this.sql
      .exec<{ sender: string }>("SELECT sender FROM room_events_inbox WHERE room_id = ? AND stream_ordering = ?", m.roomId, m.streamOrdering)
      .toArray()[0]?.sender;
  }

  private everJoined(roomId: string): boolean {
    return this.sql.exec("SELECT 1 FROM sync_memberships WHERE room_id = ? AND membership = 'join' LIMIT 1", roomId).toArray().length > 0;
  }

  /** The directly messaged rooms (`m.direct`: user ID → room IDs; spec: "Direct Messaging"). */
  private directRooms(): Set<string> {
    const out = new Set<string>();
    const content = this.sources.globalAccountData("m.direct");
    if (!content) return out;
    for (const rooms of Object.values(content)) if (Array.isArray(rooms)) for (const r of rooms) if (typeof r === "string") out.add(r);
    return out;
  }

  /**
   * Everything a response carries, at one stream position. Synchronous: it sees one consistent state.
   * `hasNews`: whether the response is worth sending before the timeout (rooms, or extension content).
   */
  private plan(
    request: SlidingSyncRequest,
    previous: PositionRow | null,
    listsOnly = false,
  ): { plan: SlidingPlan; rooms: ConnectionRooms; streamPosition: number; hasNews: boolean } {
    const { userId: me, body } = request;
    const Q = this.stream.current();
    const from = previous?.streamPosition ?? null;
    const sent = previous?.rooms ?? { configs: [], rooms: {} };
    const memberships = this.hub.store.membershipsAt(Q);
    const activity = this.activity();
    const direct = this.directRooms();

    // The server's room list (MSC4186 "Lists"): rooms joined, invited, knocked; kicked from or banned
    // from after having joined; left by the user only in the response that tells the client so.
    const candidates: Candidate[] = [];
    for (const [roomId, m] of memberships) {
      let include = m.membership === "join" || m.membership === "invite" || m.membership === "knock";
      if (!include) {
        const newlyLeft = from !== null && m.position > from && sent.rooms[roomId] !== undefined;
        const removed = this.membershipSender(m) !== me && this.everJoined(roomId);
        include = newlyLeft || removed;
      }
      if (!include) continue;
      const a = activity.get(roomId);
      // bump_stamp (MSC4186): the time of the latest event of a bumping type (none since the user joined:
      // the join); rooms not joined: the time of the membership change.
      const own = (m.membership === "join" ? (a?.bumpTs ?? a?.memberTs) : a?.memberTs) ?? 0;
      // A hint counts only for a joined room, and only once it is newer than what this DO holds.
      const sortKey = m.membership === "join" ? Math.max(own, this.bumpHints.get(roomId) ?? 0) : own;
      candidates.push({ roomId, m, sortKey, arrival: a?.lastPosition ?? m.position });
    }
    // Most recent activity first; equal times by arrival here, then room ID for a stable order.
    candidates.sort((a, b) => b.sortKey - a.sortKey || b.arrival - a.arrival || (a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0));

    // Lists.
    const needsFacts = Object.values(body.lists).some((l) => l.filters.isEncrypted !== undefined || l.filters.roomTypes !== undefined || l.filters.notRoomTypes !== undefined);
    const facts = needsFacts ? this.facts() : new Map<string, { roomType: string | null; encrypted: boolean }>();
    const needsTags = Object.values(body.lists).some((l) => l.filters.tags !== undefined || l.filters.notTags !== undefined);
    const tags = needsTags ? this.sources.roomAccountDataOfType("m.tag") : new Map<string, AccountDataContent>();
    const lists: Record<string, SlidingListResult> = {};
    const listRooms: Record<string, string[]> = {};
    const configs = new Map<string, { config: RoomConfig; lists: string[] }>();
    const addConfig = (roomId: string, config: RoomConfig, list?: string) => {
      const old = configs.get(roomId);
      if (!old) configs.set(roomId, { config, lists: list === undefined ? [] : [list] });
      else {
        old.config = combineConfigs(old.config, config);
        if (list !== undefined && !old.lists.includes(list)) old.lists.push(list);
      }
    };
    // Rooms joined with partial state (a remote join with omit_members; user/partial-state-rooms.ts) are
    // left out of lists and subscriptions whose required_state needs other servers' members until the
    // resync completes (Synapse's `must_await_full_state`, protocol/sliding-sync.ts); the completion takes
    // a stream position, which wakes a waiting request, and the room then comes as new to the connection.
    const partial = this.hub.partialStateRooms.partialNow();
    const isMine = (userId: string) => serverNameOf(userId) === serverNameOf(me);
    // (Joined rooms only, as /sync: a room left meanwhile is shown with its leave.)
    const hidden = (m: MembershipRow, config: RoomConfig) => m.membership === "join" && partial.has(m.roomId) && mustAwaitFullState(config.requiredState, isMine);
    // Every room a list matches, in range or not (Synapse's all_interested_room_ids, for sticky events).
    const interested = new Set<string>();
    for (const [key, list] of Object.entries(body.lists)) {
      const matching = candidates.filter((c) => this.passes(list.filters, c, direct, facts, tags) && !hidden(c.m, list));
      for (const c of matching) interested.add(c.roomId);
      const ranges = list.ranges ?? [[0, Math.max(0, matching.length - 1)] as [number, number]];
      const result: SlidingListResult = { count: matching.length, ops: [] };
      const inRange: string[] = [];
      for (const [start, end] of ranges) {
        const ids = matching.slice(start, Math.min(end, matching.length - 1) + 1).map((c) => c.roomId);
        result.ops.push({ op: "SYNC", range: [start, end], room_ids: ids });
        for (const id of ids) {
          if (!inRange.includes(id)) inRange.push(id);
          addConfig(id, list, key);
        }
      }
      lists[key] = result;
      listRooms[key] = inRange;
    }

    // Room subscriptions (MSC4186 "Subscriptions"): rooms the user is or was in, or is invited to.
    const subscribed: string[] = [];
    const byRoom = new Map(candidates.map((c) => [c.roomId, c]));
    for (const [roomId, config] of Object.entries(body.roomSubscriptions)) {
      const m = memberships.get(roomId);
      if (!m) continue;
      if (m.membership === "ban" && !this.everJoined(roomId)) continue;
      if (hidden(m, config)) continue;
      if (!byRoom.has(roomId)) byRoom.set(roomId, { roomId, m, sortKey: activity.get(roomId)?.memberTs ?? 0, arrival: m.position });
      subscribed.push(roomId);
      addConfig(roomId, config);
    }

    // Only the lists' rooms were asked for (roomsShown): the rooms' plans and the extensions are not needed.
    if (listsOnly) return { plan: { pos: "", lists, rooms: [], extensions: {} }, rooms: sent, streamPosition: Q, hasNews: false };

    // Rooms with something to send, and what each one was last sent with.
    const nextRooms: ConnectionRooms = { configs: [...sent.configs], rooms: { ...sent.rooms } };
    const configIndex = new Map(nextRooms.configs.map((c, i) => [c, i]));
    const rooms: SlidingRoomPlan[] = [];
    for (const [roomId, { config, lists: inLists }] of configs) {
      const c = byRoom.get(roomId)!;
      const m = c.m;
      const before = sent.rooms[roomId];
      const beforeConfig = before ? (JSON.parse(sent.configs[before[2]] ?? "null") as RequiredState | null) : null;
      const a = activity.get(roomId);
      const joined = m.membership === "join";
      const stillRelevant = joined || m.membership === "invite" || m.membership === "knock";
      let changed = true;
      let expandTimeline = false;
      let previousRequiredState: RequiredState | undefined;
      if (before) {
        const [at, limit] = before;
        const news = (joined && (a?.lastPosition ?? 0) > at) || m.position > at || before[3] !== m.membership;
        expandTimeline = stillRelevant && m.membership !== "invite" && m.membership !== "knock" && config.timelineLimit > limit;
        // The new required_state asks for something the old one did not.
        const widened = beforeConfig !== null && !requiredStateCovers(beforeConfig, config.requiredState);
        if (widened && m.membership !== "invite" && m.membership !== "knock") previousRequiredState = beforeConfig;
        changed = news || expandTimeline || previousRequiredState !== undefined;
      }
      if (!changed) continue;
      // Invited or knocking before and now joined (or the reverse): the room starts over for the client.
      const initial = !before || (before[3] !== m.membership && [m.membership, before[3]].some((x) => x === "invite" || x === "knock"));
      const upto = joined ? Math.max(a?.lastOrdering ?? 0, m.streamOrdering) : m.streamOrdering;
      const plan: SlidingRoomPlan = {
        roomId,
        membership: m.membership,
        initial,
        lists: inLists,
        bumpStamp: c.sortKey,
        isDm: direct.has(roomId),
        notificationCount: 0,
        highlightCount: 0,
        timelineLimit: config.timelineLimit,
        requiredState: config.requiredState,
        upto,
        liveFrom: from === null ? upto : Math.min(upto, this.hub.store.roomOrderingAt(roomId, from)),
      };
      if (!initial && before) {
        plan.sinceOrdering = Math.min(upto, this.hub.store.roomOrderingAt(roomId, before[0]));
        if (config.requiredState.lazyMembers && before[4] !== undefined && before[4].length > 0) plan.lazySent = before[4];
        if (expandTimeline) plan.expandTimeline = true;
        if (previousRequiredState) plan.previousRequiredState = previousRequiredState;
      }
      if (joined) {
        // MSC4186: notification_count and highlight_count leave threaded notifications out; those go by
        // thread in unread_thread_notifications, as /sync gives them with unread_thread_notifications on.
        for (const [thread, counts] of this.hub.store.unreadCounts(roomId)) {
          if (thread === MAIN_THREAD) {
            plan.notificationCount = counts.notification_count;
            plan.highlightCount = counts.highlight_count;
          } else (plan.unreadThreads ??= {})[thread] = counts;
        }
      }
      rooms.push(plan);
      // What the connection remembers the room was sent with: the request's required_state, plus what the
      // client still has from before (removed from the request but unchanged since; Synapse).
      const remembered =
        initial || beforeConfig === null || requiredStateCovers(config.requiredState, beforeConfig)
          ? config.requiredState
          : effectiveRequiredState(beforeConfig, config.requiredState, this.stateChangedSince(roomId, before![0], Q));
      const key = requiredStateKey(remembered);
      let index = configIndex.get(key);
      if (index === undefined) {
        index = nextRooms.configs.push(key) - 1;
        configIndex.set(key, index);
      }
      // The lazy members sent stay until the room's answer replaces them (recordLazyMembers).
      const lazy = !initial && config.requiredState.lazyMembers ? before?.[4] : undefined;
      nextRooms.rooms[roomId] = lazy ? [Q, config.timelineLimit, index, m.membership, lazy] : [Q, config.timelineLimit, index, m.membership];
    }
    // Rooms the user has no membership of any more are forgotten.
    for (const roomId of Object.keys(nextRooms.rooms)) if (!memberships.has(roomId)) delete nextRooms.rooms[roomId];
    compactConfigs(nextRooms);

    if (body.extensions.receipts) {
      const relevant = extensionRooms(body.extensions.receipts, listRooms, subscribed);
      for (const plan of rooms) if (plan.initial && plan.membership === "join" && relevant.has(plan.roomId)) plan.roomReceipts = true;
    }
    const extensions = this.extensions(request, from, Q, sent, listRooms, subscribed);
    if (body.extensions.stickyEvents) {
      for (const r of subscribed) interested.add(r);
      extensions.stickyEvents = this.stickyEventsPlan(body.extensions.stickyEvents.since, Q, interested, memberships, activity);
    }
    const hasNews =
      rooms.length > 0 ||
      (extensions.toDevice?.events.length ?? 0) > 0 ||
      (extensions.e2ee?.deviceLists !== undefined && extensions.e2ee.deviceLists.changed.length + extensions.e2ee.deviceLists.left.length > 0) ||
      (extensions.accountData !== undefined && (extensions.accountData.global.length > 0 || Object.keys(extensions.accountData.rooms).length > 0)) ||
      (extensions.receipts !== undefined && Object.keys(extensions.receipts.rooms).length > 0) ||
      (extensions.typing !== undefined && Object.keys(extensions.typing.rooms).length > 0) ||
      // Sticky events: rooms with events after the extension's `since` (without a `since` the rooms are
      // only those with recent events, which is no news: a client that never sends one must not spin).
      (extensions.stickyEvents !== undefined && body.extensions.stickyEvents?.since !== undefined && extensions.stickyEvents.rooms.length > 0);
    return { plan: { pos: "", lists, rooms, extensions }, rooms: nextRooms, streamPosition: Q, hasNews };
  }

  /**
   * The sticky events extension (MSC4354; Synapse's `org.matrix.msc4354.sticky_events`): which joined rooms
   * of interest to ask, and from where. Without `since`: every such room with an event in the last hour
   * (an older one cannot hold an unexpired sticky event), from its start. With `since`: the rooms with
   * events after it, from that point, and rooms joined since from their start (MSC4354: "When the user
   * joins a room, the server MUST include all unexpired sticky events for that room").
   */
  private stickyEventsPlan(
    since: number | undefined,
    Q: number,
    interested: Set<string>,
    memberships: Map<string, MembershipRow>,
    activity: Map<string, Activity>,
    now = Date.now(),
  ): NonNullable<SlidingExtensionsPlan["stickyEvents"]> {
    const rooms: { roomId: string; after: number; upto: number }[] = [];
    for (const roomId of interested) {
      const m = memberships.get(roomId);
      if (m?.membership !== "join") continue;
      const a = activity.get(roomId);
      const upto = Math.max(a?.lastOrdering ?? 0, m.streamOrdering);
      if (since === undefined) {
        if ((a?.lastTs ?? 0) <= now - MAX_STICKY_DURATION_MS) continue;
        rooms.push({ roomId, after: 0, upto });
        continue;
      }
      const s = Math.min(since, Q);
      if ((a?.lastPosition ?? 0) <= s && m.position <= s) continue;
      rooms.push({ roomId, upto, after: m.position > s ? 0 : Math.min(upto, this.hub.store.roomOrderingAt(roomId, s)) });
    }
    return { nextBatch: stickyToken(Q), rooms };
  }

  /** Whether a room passes a list's filters (MSC4186 `SlidingRoomFilter`; Synapse `filter_rooms`). */
  private passes(
    f: SlidingFilters,
    c: Candidate,
    direct: Set<string>,
    facts: Map<string, { roomType: string | null; encrypted: boolean }>,
    tags: Map<string, AccountDataContent>,
  ): boolean {
    if (f.isDm !== undefined && direct.has(c.roomId) !== f.isDm) return false;
    if (f.isInvite !== undefined && (c.m.membership === "invite") !== f.isInvite) return false;
    if (f.isEncrypted !== undefined || f.roomTypes !== undefined || f.notRoomTypes !== undefined) {
      const fact = facts.get(c.roomId);
      // A room whose facts could not be read is left out of filtered lists until they can be (Synapse
      // leaves out rooms it cannot tell about as well).
      if (!fact) return false;
      if (f.isEncrypted !== undefined && fact.encrypted !== f.isEncrypted) return false;
      if (f.notRoomTypes?.includes(fact.roomType)) return false;
      if (f.roomTypes !== undefined && !f.roomTypes.includes(fact.roomType)) return false;
    }
    if (f.spaces !== undefined && !f.spaces.some((s) => this.spaceChildren.get(s)?.has(c.roomId))) return false;
    if (f.tags !== undefined || f.notTags !== undefined) {
      const content = tags.get(c.roomId);
      const roomTags = content && typeof content.tags === "object" && content.tags !== null ? Object.keys(content.tags) : [];
      if (f.notTags?.some((t) => roomTags.includes(t))) return false;
      if (f.tags !== undefined && !f.tags.some((t) => roomTags.includes(t))) return false;
    }
    return true;
  }

  /** The extensions of a response (MSC3885 to-device, MSC3884 e2ee, MSC3959 account data, MSC3960
   * receipts, MSC3961 typing), for the rooms each one covers. */
  private extensions(
    request: SlidingSyncRequest,
    from: number | null,
    Q: number,
    sent: ConnectionRooms,
    listRooms: Record<string, string[]>,
    subscribed: string[],
  ): SlidingExtensionsPlan {
    const { userId: me, deviceId, body } = request;
    const ext = body.extensions;
    const out: SlidingExtensionsPlan = {};
    if (ext.toDevice) {
      const since = ext.toDevice.since === undefined ? 0 : Math.min(Number(ext.toDevice.since), Q);
      const batch = this.sources.toDeviceSince(deviceId, since, ext.toDevice.limit || TO_DEVICE_DEFAULT_LIMIT);
      out.toDevice = { nextBatch: String(batch.limited ? batch.position : Math.max(batch.position, since)), events: batch.events };
    }
    if (ext.e2ee) {
      out.e2ee = { oneTimeKeyCounts: this.sources.oneTimeKeyCounts(deviceId), unusedFallbackKeyTypes: this.sources.unusedFallbackKeyTypes(deviceId) };
      if (from !== null) {
        const d = this.sources.deviceListsSince(from, Q);
        out.e2ee.deviceLists = { changed: d.changed, left: d.left };
      }
    }
    if (ext.accountData) {
      const relevant = extensionRooms(ext.accountData, listRooms, subscribed);
      const delta = this.sources.accountDataSince(from ?? 0, me);
      // Rooms new to the connection get all their account data (Synapse: initial rooms).
      const fresh = [...relevant].filter((r) => sent.rooms[r] === undefined);
      const all = from !== null && fresh.length > 0 ? this.sources.accountDataSince(0, me) : delta;
      const rooms: Record<string, { type: string; content: string }[]> = {};
      for (const roomId of relevant) {
        const data = sent.rooms[roomId] === undefined ? all.rooms[roomId] : delta.rooms[roomId];
        if (data && Object.keys(data).length > 0) rooms[roomId] = Object.entries(data).map(([type, content]) => ({ type, content: JSON.stringify(content) }));
      }
      out.accountData = { global: Object.entries(delta.global).map(([type, content]) => ({ type, content: JSON.stringify(content) })), rooms };
    }
    if (ext.receipts) {
      const relevant = extensionRooms(ext.receipts, listRooms, subscribed);
      const rooms: Record<string, ReceiptUpdate[]> = {};
      const changed = this.hub.store.receiptsSince(from, Q);
      for (const roomId of relevant) {
        // Rooms new to the connection get the room's receipts from the Room DO (the worker adds them).
        const list = (sent.rooms[roomId] === undefined ? this.hub.store.receiptsSince(null, Q, roomId).get(roomId) : changed.get(roomId)) ?? [];
        const visible = list.filter((r) => r.receiptType !== "m.read.private" || r.userId === me);
        if (visible.length > 0) rooms[roomId] = visible;
      }
      out.receipts = { rooms };
    }
    if (ext.typing) {
      const relevant = extensionRooms(ext.typing, listRooms, subscribed);
      const rooms: Record<string, string[]> = {};
      const changed = this.hub.store.typingSince(from, Q);
      const current = from === null ? changed : this.hub.store.typingSince(null, Q);
      for (const roomId of relevant) {
        const list = sent.rooms[roomId] === undefined ? current.get(roomId) : changed.get(roomId);
        if (list !== undefined) rooms[roomId] = list;
      }
      out.typing = { rooms };
    }
    return out;
  }
}

/** Drops configs no room refers to any more (renumbering the rooms' references). */
function compactConfigs(c: ConnectionRooms): void {
  const used = new Set(Object.values(c.rooms).map((r) => r[2]));
  if (used.size === c.configs.length) return;
  const renumber = new Map<number, number>();
  const configs: string[] = [];
  for (const i of [...used].sort((a, b) => a - b)) renumber.set(i, configs.push(c.configs[i]!) - 1);
  for (const r of Object.values(c.rooms)) r[2] = renumber.get(r[2])!;
  c.configs = configs;
}
