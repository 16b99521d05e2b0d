// Who in this server learns of a room event, and when (docs/fan-out.md; DESIGN.md: "Long-polls are woken by
// the writer"; "A DO acknowledges a write only after its storage has committed it").
//
// A commit writes nothing per member. After it, the Room DO pushes the new events to
//  - the listeners: local members whose User DOs hold a lease because their user syncs (`listen`), and
//  - the local user a membership event is about (the invitee, the kicked or banned user, the joiner),
//    whether or not they listen: their User DO keeps the user's room list from these.
// Every other local member reads the room's events when their user next syncs: their User DO calls
// `listen`, which answers the events after the User DO's position in the room (a catch-up) and starts a
// lease. So the cost of a send grows with the members who are syncing, not with the room's size.
//
// Durability: the `fan_out` cursor says up to which stream ordering every event has been handed out
// (pushed, or written to the outbox after a failed push). It moves after the pushes of a round, so a crash
// in between repeats the round from alarm() (User DOs ignore repeats). The outbox holds only failed
// deliveries, and any later event for the same user waits behind them, so a user's events arrive in order.
import type { DeliveredRoomEventNotification, ReceiptUpdate, RoomEventNotification } from "../notifications.js";
import type { OutboxEntry, RoomEngine } from "./engine.js";
import { ACCEPTED } from "./event-rows.js";
import { pushInputsBuilder } from "./push-inputs.js";
import { sqlLimit } from "../sql-limit.js";

/** How long a listener lease lasts. A User DO renews it while its user syncs (user/sync.ts). */
export const LISTEN_LEASE_MS = 10 * 60_000;
/** Events one fan-out round hands out at most. */
const ROUND_EVENTS = 200;

/** One round of the fan-out: the events after the cursor, by recipient, in commit order. */
export interface FanOutRound {
  /** The cursor after this round (the last event's stream ordering). */
  upto: number;
  byUser: Map<string, RoomEventNotification[]>;
  /** Users whose membership ended in this round (leave, ban), with the ordering of that event: leases
   * older than it end. */
  left: { userId: string; ordering: number }[];
}

/** The answer to `listen`. */
export type ListenResult =
  | { joined: false }
  | {
      joined: true;
      /** The room's latest stream ordering: the caller's position in the room after this answer. */
      upto: number;
      /** End of the lease (ms since the epoch, the room's clock). */
      expiresAt: number;
      /** The room has pushed (or will push) every event after the caller's position: no catch-up. */
      continuous: boolean;
      /** Catch-up: the newest events in (from, upto], oldest first, with the push inputs for the caller. */
      events: DeliveredRoomEventNotification[];
      /** The catch-up left out older events (more than the limit). */
      gap: boolean;
      /** A room that pushes receipts to its listeners only (room/ephemeral.ts): the public receipts that
       * changed since the caller's position, which it may not have been pushed. */
      receipts?: ReceiptUpdate[];
    };

type FanOutRow = {
  stream_ordering: number;
  event_id: string;
  type: string;
  state_key: string | null;
  sender: string;
  membership: string | null;
  origin_server_ts: number;
  accepted: number;
};

function notification(roomId: string, r: Omit<FanOutRow, "accepted">): RoomEventNotification {
  const n: RoomEventNotification = { roomId, streamOrdering: r.stream_ordering, eventId: r.event_id, type: r.type, sender: r.sender, ts: r.origin_server_ts };
  if (r.state_key !== null) n.stateKey = r.state_key;
  if (r.membership !== null) n.membership = r.membership;
  return n;
}

export class RoomFanOut {
  constructor(
    private readonly engine: RoomEngine,
    private readonly storage: DurableObjectStorage,
  ) {}

  private get sql(): SqlStorage {
    return this.engine.sql;
  }

  /** The cursor as moved by rounds that wrote nothing else; stored by `storeCursor` (see finishRound). */
  private movedTo = 0;

  /** The stream ordering up to which every event has been handed out. */
  cursor(): number {
    const stored = this.sql.exec<{ d: number }>("SELECT delivered_upto AS d FROM fan_out WHERE id = 1").toArray()[0]?.d ?? 0;
    return Math.max(stored, this.movedTo);
  }

  /** Stores a cursor that rounds moved in memory only (no-op when it is stored already). */
  storeCursor(): void {
    if (this.movedTo === 0) return;
    this.sql.exec("UPDATE fan_out SET delivered_upto = MAX(delivered_upto, ?) WHERE id = 1", this.movedTo);
    this.movedTo = 0;
  }

  /** Whether anything is left to deliver (events after the cursor, or failed deliveries). */
  hasWork(): boolean {
    if (!this.engine.meta()) return false;
    return this.cursor() < this.engine.maxStreamOrdering() || this.engine.outboxSize() > 0;
  }

  /** Users with listener rows (tests, diagnostics). */
  listeners(): string[] {
    if (!this.engine.meta()) return [];
    return this.sql.exec<{ user_id: string }>("SELECT user_id FROM listeners ORDER BY user_id").toArray().map((r) => r.user_id);
  }

  /**
   * The next round: up to ROUND_EVENTS events after the cursor, each for the listeners and the local
   * user it is about. Rejected and soft-failed events move the cursor and reach no one. Null when the
   * cursor is at the room's head.
   */
  nextRound(): FanOutRound | null {
    const meta = this.engine.meta();
    if (!meta) return null;
    const rows = this.sql
      .exec<FanOutRow>(
        `SELECT stream_ordering, event_id, type, state_key, sender, membership, origin_server_ts, (${ACCEPTED}) AS accepted FROM events
         WHERE stream_ordering > ? ORDER BY stream_ordering LIMIT ${sqlLimit(ROUND_EVENTS)}`,
        this.cursor(),
      )
      .toArray();
    if (rows.length === 0) return null;
    const listeners = new Set(this.listeners());
    const byUser = new Map<string, RoomEventNotification[]>();
    const add = (userId: string, n: RoomEventNotification) => {
      let list = byUser.get(userId);
      if (!list) byUser.set(userId, (list = []));
      list.push(n);
    };
    const left: { userId: string; ordering: number }[] = [];
    for (const r of rows) {
      if (!r.accepted) continue;
      const n = notification(meta.roomId, r);
      const target = r.type === "m.room.member" && r.state_key !== null && this.engine.isLocalUser(r.state_key) ? r.state_key : null;
      for (const userId of listeners) if (userId !== target) add(userId, n);
      if (target !== null) {
        add(target, n);
        if (r.membership !== "join" && listeners.delete(target)) left.push({ userId: target, ordering: r.stream_ordering });
      }
    }
    return { upto: rows[rows.length - 1]!.stream_ordering, byUser, left };
  }

  /** Users with failed deliveries waiting in the outbox: their new events queue behind them. */
  usersWithRetries(): Set<string> {
    return new Set(this.sql.exec<{ user_id: string }>("SELECT DISTINCT user_id FROM outbox").toArray().map((r) => r.user_id));
  }

  /**
   * Ends a round in one transaction: the notifications that were not delivered go to the outbox, the
   * leases of users who left end, the cursor moves. Once the cursor is at the head, expired leases are
   * dropped: every event committed while they were valid has been handed out.
   */
  finishRound(round: FanOutRound, undelivered: Map<string, RoomEventNotification[]>, now = Date.now()): void {
    // A round that handed everything out and ended no lease moves the cursor in memory only: one SQLite
    // commit less per round, and locally a commit is an fsync on the thread every DO shares, right when
    // the woken /sync needs it. The stored cursor catches up with the room's next commit or its alarm
    // (armed by every commit), so a crash repeats at most the rounds since then, which User DOs ignore.
    if (undelivered.size === 0 && round.left.length === 0 && !(round.upto >= this.engine.maxStreamOrdering() && this.hasExpiredLeases(now))) {
      this.movedTo = Math.max(this.movedTo, round.upto);
      return;
    }
    this.storage.transactionSync(() => {
      for (const [userId, list] of undelivered) {
        for (const n of list) this.sql.exec("INSERT INTO outbox (user_id, stream_ordering) VALUES (?, ?)", userId, n.streamOrdering);
      }
      for (const { userId, ordering } of round.left) {
        // A lease taken after the leave (the user joined again and listened) stays.
        this.sql.exec("DELETE FROM listeners WHERE user_id = ? AND since < ?", userId, ordering);
      }
      this.sql.exec("UPDATE fan_out SET delivered_upto = ? WHERE id = 1", round.upto);
      this.movedTo = 0;
      if (round.upto >= this.engine.maxStreamOrdering()) this.sql.exec("DELETE FROM listeners WHERE expires_at < ?", now);
    });
  }

  private hasExpiredLeases(now: number): boolean {
    return this.sql.exec("SELECT 1 FROM listeners WHERE expires_at < ? LIMIT 1", now).toArray().length > 0;
  }

  /**
   * A local member's User DO asks to be pushed every new event (its user syncs). `from` is its position in
   * the room: it has every event up to there. If the room has been pushing to it since then, the lease is
   * renewed (continuous); otherwise the answer carries the events after `from` (the newest `limit`, with
   * push inputs) and the lease starts now. Users who are not joined get `joined: false`.
   */
  listen(userId: string, from: number, limit: number, now = Date.now()): ListenResult {
    const meta = this.engine.meta();
    if (!meta || !this.engine.isLocalUser(userId)) return { joined: false };
    const member = this.sql
      .exec<{ stream_ordering: number; membership: string | null }>(
        "SELECT stream_ordering, membership FROM current_state WHERE type = 'm.room.member' AND state_key = ?",
        userId,
      )
      .toArray()[0];
    if (member?.membership !== "join") return { joined: false };
    const upto = this.engine.maxStreamOrdering();
    const expiresAt = now + LISTEN_LEASE_MS;
    const row = this.sql.exec<{ since: number }>("SELECT since FROM listeners WHERE user_id = ?", userId).toArray()[0];
    // Continuous: the room has pushed everything after `since`, the caller has everything up to `from`, and
    // the lease is not one from before the user's current membership (a leave and join again).
    if (row && row.since <= from && row.since >= member.stream_ordering) {
      this.sql.exec("UPDATE listeners SET expires_at = ? WHERE user_id = ?", expiresAt, userId);
      return { joined: true, upto, expiresAt, continuous: true, events: [], gap: false };
    }
    const rows = this.sql
      .exec<Omit<FanOutRow, "accepted">>(
        `SELECT stream_ordering, event_id, type, state_key, sender, membership, origin_server_ts FROM events
         WHERE stream_ordering > ? AND stream_ordering <= ? AND ${ACCEPTED} ORDER BY stream_ordering DESC LIMIT ${sqlLimit(limit + 1)}`,
        from,
        upto,
      )
      .toArray();
    const gap = rows.length > limit;
    const kept = rows.slice(0, limit).reverse();
    // After this answer the caller has everything up to `upto`; pushes continue after it.
    this.sql.exec(
      `INSERT INTO listeners (user_id, since, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (user_id) DO UPDATE SET since = excluded.since, expires_at = excluded.expires_at`,
      userId,
      upto,
      expiresAt,
    );
    const withPushInputs = pushInputsBuilder(this.engine);
    const events = kept.map((r) => withPushInputs({ id: 0, userId, notification: notification(meta.roomId, r) }));
    return { joined: true, upto, expiresAt, continuous: false, events, gap };
  }

  /** What is not delivered yet: failed deliveries and the events after the cursor (tests, diagnostics). */
  pending(): OutboxEntry[] {
    const out = this.engine.outbox(undefined, 10_000);
    const round = this.nextRound();
    if (round) for (const [userId, list] of round.byUser) for (const n of list) out.push({ id: 0, userId, notification: n });
    return out;
  }
}
