// Push delivery (spec: Client-Server API, "Push Notifications"; Push Gateway API, POST /_matrix/push/v1/notify):
// the User DO sends the events its user's push rules say `notify` for to each of the user's http pushers'
// gateways, as Synapse's HttpPusher does (synapse/push/httppusher.py).
//
// - Queue: an event that notifies (user/sync.ts `onNotify`, in the transaction that recorded it) becomes one
//   `push_queue` row, whatever the number of pushers; each pusher keeps its own progress (`last_id`), so a
//   failing gateway delays only its own pusher. Rows every pusher has passed are deleted.
// - Never in the send path: the Room DO hands events to User DOs after its commit (room/fan-out.ts), and
//   this DO sends in the background (`kick`) and on its alarm.
// - Retries: a failed request (network error, timeout, non-2xx, a body that is not JSON) is retried on the
//   alarm with back-off from 1 s doubling to 1 h; a pusher failing for more than 24 h skips the
//   notification it is stuck on (Synapse: "so that if the URL gets fixed, we don't suddenly deliver a load
//   of old notifications").
// - `rejected: [pushkey]` in a gateway's answer removes that pusher (only if it is the pushkey sent).
// - Badge updates: after a read receipt of the user each pusher whose last known count differs gets a
//   notification with only `counts` (Synapse's `_update_badge`/`_send_badge`), once, without retries; the
//   last count each pusher got is kept in memory, as Synapse does.
// - Who gets events: the Room DO pushes events only to User DOs that hold a lease (docs/fan-out.md). A user
//   with http pushers usually does not sync, so while the user has them this DO keeps its leases on the
//   joined rooms itself: the alarm wakes it at least every PUSH_KEEPALIVE_MS to renew them (the same
//   `ensureListening` a sync runs), and a new join is listened to at once.
// - Pushers live in D1 (user/pushers.ts). This DO keeps a copy of the http ones (`push_pushers`), refreshed
//   when the worker tells it they changed (`refresh`), so recording an event needs no D1 read.
import { outboundFetch } from "../../federation-client/outbound-fetch.js";
import { isJsonObject, type JsonObject, type JsonValue } from "../../protocol/json.js";
import type { PushEvaluation } from "../../protocol/push-rules.js";
import type { Env } from "../../worker/env.js";
import type { DeliveredRoomEventNotification } from "../notifications.js";
import type { AlarmClock } from "./alarm-clock.js";
import { pushersOf, removePusher } from "./pushers.js";

/** Synapse's HttpPusher.INITIAL_BACKOFF_SEC, MAX_BACKOFF_SEC and GIVE_UP_AFTER_MS. */
export const PUSH_INITIAL_BACKOFF_MS = 1000;
export const PUSH_MAX_BACKOFF_MS = 60 * 60_000;
export const PUSH_GIVE_UP_AFTER_MS = 24 * 60 * 60_000;
/** A gateway that has not answered by then has failed (the request is retried). */
const PUSH_REQUEST_TIMEOUT_MS = 30_000;
/** While the user has http pushers, the alarm fires at least this often to keep the room leases (10 min,
 * renewed in their last 5 min: room/fan-out.ts LISTEN_LEASE_MS, user/sync.ts LEASE_RENEW_MS). */
export const PUSH_KEEPALIVE_MS = 4 * 60_000;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS push_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    notification TEXT NOT NULL,
    tweaks TEXT NOT NULL,
    created_ts INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS push_pushers (
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    url TEXT NOT NULL,
    data TEXT NOT NULL,
    pushkey_ts INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    failing_since INTEGER,
    backoff_ms INTEGER NOT NULL,
    next_attempt_ts INTEGER NOT NULL,
    PRIMARY KEY (app_id, pushkey)
  );
`;

type QueueRow = { id: number; room_id: string; event_id: string; notification: string; tweaks: string };
type PusherState = {
  app_id: string;
  pushkey: string;
  url: string;
  data: string;
  pushkey_ts: number;
  last_id: number;
  failing_since: number | null;
  backoff_ms: number;
  next_attempt_ts: number;
};

/** One pusher's delivery state (tests, diagnostics). */
export interface PusherDeliveryState {
  appId: string;
  pushkey: string;
  lastId: number;
  failingSince: number | null;
  backoffMs: number;
  nextAttemptTs: number;
}

/** What delivery needs from the rest of the User DO. */
export interface PushDeliverySources {
  /** The DO's user, once known. */
  userId(): string | undefined;
  /** `counts.unread` now (user/sync.ts `badgeCount`). */
  badge(): number;
  /** Makes sure every joined room pushes its events to this DO (user/sync.ts `ensureListening`). */
  keepListening(userId: string): Promise<unknown>;
}

type SendOutcome = { ok: true; rejected: string[] } | { ok: false };

export class PushDelivery {
  private readonly sql: SqlStorage;
  private hasPushers: boolean | undefined;
  private draining = false;
  private again = false;
  /** The `counts.unread` each pusher last got (`app_id\npushkey`), as Synapse's `badge_count_last_call`. */
  private readonly lastBadge = new Map<string, number>();

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly env: Env,
    private readonly clock: AlarmClock,
    private readonly sources: PushDeliverySources,
  ) {
    this.sql = ctx.storage.sql;
    this.sql.exec(SCHEMA);
  }

  /** Whether the user has http pushers (so events are queued and leases kept). */
  active(): boolean {
    return (this.hasPushers ??= this.sql.exec("SELECT 1 FROM push_pushers LIMIT 1").toArray().length > 0);
  }

  /**
   * Queues an event that notifies the user, inside the caller's transaction; sending starts once that
   * transaction is over. Nothing is queued while the user has no http pushers.
   */
  enqueue(n: DeliveredRoomEventNotification, evaluation: PushEvaluation, me: string, now = Date.now()): void {
    if (!n.push || !this.active()) return;
    const event = JSON.parse(n.push.eventJson) as JsonObject;
    const tweaks = evaluation.tweaks;
    // Synapse: high priority only if the push makes a sound or highlights, or may do so (encrypted).
    const prio = n.type === "m.room.encrypted" || truthy(tweaks.highlight) || truthy(tweaks.sound) ? "high" : "low";
    const notification: JsonObject = { event_id: n.eventId, room_id: n.roomId, type: n.type, sender: n.sender, prio };
    if (n.type === "m.room.member" && n.stateKey !== undefined) {
      if (n.membership !== undefined) notification.membership = n.membership;
      notification.user_is_target = n.stateKey === me;
    }
    if (isJsonObject(event.content) && Object.keys(event.content).length > 0) notification.content = event.content;
    if (n.push.senderDisplayName) notification.sender_display_name = n.push.senderDisplayName;
    if (n.push.roomName) notification.room_name = n.push.roomName;
    this.sql.exec(
      "INSERT INTO push_queue (room_id, event_id, notification, tweaks, created_ts) VALUES (?, ?, ?, ?, ?)",
      n.roomId,
      n.eventId,
      JSON.stringify(notification),
      JSON.stringify(tweaks),
      now,
    );
    // Runs after the synchronous transaction that is recording the event.
    this.ctx.waitUntil(Promise.resolve().then(() => this.drain()));
  }

  /**
   * The user's pushers changed (POST /pushers/set, a device logged out, another user took the pushkey):
   * reads the http ones from D1. A new pusher starts after the events already queued, as Synapse starts
   * one at the current stream position.
   */
  async refresh(userId: string): Promise<void> {
    const http = (await pushersOf(this.env.DB, userId)).filter((p) => p.kind === "http");
    // Events the rooms hold for this DO arrive before a new pusher's starting point is taken.
    if (http.length > 0) await this.keepListening(userId);
    this.ctx.storage.transactionSync(() => {
      const head = this.sql.exec<{ m: number | null }>("SELECT MAX(id) AS m FROM push_queue").one().m ?? 0;
      const keep = new Set<string>();
      for (const p of http) {
        let data: JsonObject;
        try {
          const parsed = JSON.parse(p.data) as unknown;
          if (!isJsonObject(parsed) || typeof parsed.url !== "string") continue;
          data = parsed;
        } catch {
          continue;
        }
        const { url, ...rest } = data;
        keep.add(`${p.appId}\n${p.pushkey}`);
        this.sql.exec(
          `INSERT INTO push_pushers (app_id, pushkey, url, data, pushkey_ts, last_id, failing_since, backoff_ms, next_attempt_ts)
           VALUES (?, ?, ?, ?, ?, ?, NULL, ?, 0)
           ON CONFLICT (app_id, pushkey) DO UPDATE SET url = excluded.url, data = excluded.data, pushkey_ts = excluded.pushkey_ts`,
          p.appId,
          p.pushkey,
          url as string,
          JSON.stringify(rest),
          p.pushkeyTs,
          head,
          PUSH_INITIAL_BACKOFF_MS,
        );
      }
      for (const row of this.sql.exec<{ app_id: string; pushkey: string }>("SELECT app_id, pushkey FROM push_pushers").toArray()) {
        if (!keep.has(`${row.app_id}\n${row.pushkey}`)) this.sql.exec("DELETE FROM push_pushers WHERE app_id = ? AND pushkey = ?", row.app_id, row.pushkey);
      }
      this.hasPushers = keep.size > 0;
      this.trimQueue();
    });
    // In the background: the caller (an API request) does not wait for gateways.
    if (this.active()) this.ctx.waitUntil(this.drain());
  }

  /** The alarm fired (after `clock.fired()`): renews the room leases and sends what is due. */
  async alarm(): Promise<void> {
    if (!this.active()) return;
    const userId = this.sources.userId();
    if (userId !== undefined) await this.keepListening(userId);
    await this.drain();
  }

  /** The user sent a read receipt: pushers whose count changed get a badge update, in the background. */
  onReceipt(): void {
    if (!this.active()) return;
    const pushers = this.sql.exec<PusherState>("SELECT * FROM push_pushers").toArray();
    this.ctx.waitUntil(Promise.all(pushers.map((p) => this.sendBadge(p))));
  }

  private async sendBadge(p: PusherState): Promise<void> {
    const badge = this.sources.badge();
    const key = `${p.app_id}\n${p.pushkey}`;
    if (this.lastBadge.get(key) === badge) return;
    this.lastBadge.set(key, badge);
    // Synapse's badge-only notification: empty id and sender, null type, the counts and the device.
    const notification: JsonObject = { id: "", type: null, sender: "", counts: { unread: badge }, devices: [this.device(p)] };
    if (!(await this.post(p, notification)).ok) this.lastBadge.delete(key);
  }

  /** A membership of the user changed: a room joined is listened to now (see the file comment). */
  onOwnMembership(userId: string): void {
    if (this.active()) this.ctx.waitUntil(this.keepListening(userId));
  }

  private async keepListening(userId: string): Promise<void> {
    try {
      await this.sources.keepListening(userId);
    } catch (e) {
      console.warn("push: listening to rooms failed", e instanceof Error ? e.message : e);
    }
  }

  /** Sends what is due to each pusher (one request at a time per pusher, pushers in parallel), then sets the
   * alarm for the next retry or keep-alive. One drain at a time; a kick during one makes it go round again. */
  async drain(): Promise<void> {
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = true;
    try {
      do {
        this.again = false;
        const now = Date.now();
        const due = this.sql.exec<PusherState>("SELECT * FROM push_pushers WHERE next_attempt_ts <= ?", now).toArray();
        await Promise.all(due.map((p) => this.drainPusher(p.app_id, p.pushkey)));
      } while (this.again);
      this.trimQueue();
      await this.scheduleNext();
    } catch (e) {
      console.warn("push: delivery failed", e instanceof Error ? e.message : e);
    } finally {
      this.draining = false;
    }
  }

  private pusher(appId: string, pushkey: string): PusherState | undefined {
    return this.sql.exec<PusherState>("SELECT * FROM push_pushers WHERE app_id = ? AND pushkey = ?", appId, pushkey).toArray()[0];
  }

  private async drainPusher(appId: string, pushkey: string): Promise<void> {
    for (;;) {
      const p = this.pusher(appId, pushkey);
      if (!p) return;
      const row = this.sql.exec<QueueRow>("SELECT * FROM push_queue WHERE id > ? ORDER BY id LIMIT 1", p.last_id).toArray()[0];
      if (!row) return;
      const outcome = await this.send(p, row);
      const now = Date.now();
      // The pusher may have been removed (or replaced) while the request was out.
      const current = this.pusher(appId, pushkey);
      if (!current || current.last_id !== p.last_id) return;
      if (outcome.ok) {
        this.sql.exec(
          "UPDATE push_pushers SET last_id = ?, failing_since = NULL, backoff_ms = ?, next_attempt_ts = 0 WHERE app_id = ? AND pushkey = ?",
          row.id,
          PUSH_INITIAL_BACKOFF_MS,
          appId,
          pushkey,
        );
        // Only the pushkey we sent is removed ("for sanity", as Synapse says).
        if (outcome.rejected.includes(pushkey)) {
          await this.removeRejected(appId, pushkey);
          return;
        }
        continue;
      }
      const failingSince = current.failing_since ?? now;
      if (now - failingSince > PUSH_GIVE_UP_AFTER_MS) {
        this.sql.exec(
          "UPDATE push_pushers SET last_id = ?, failing_since = NULL, backoff_ms = ?, next_attempt_ts = 0 WHERE app_id = ? AND pushkey = ?",
          row.id,
          PUSH_INITIAL_BACKOFF_MS,
          appId,
          pushkey,
        );
        console.warn("push: giving up on a notification after 24 h of failures", appId);
        continue;
      }
      this.sql.exec(
        "UPDATE push_pushers SET failing_since = ?, next_attempt_ts = ?, backoff_ms = ? WHERE app_id = ? AND pushkey = ?",
        failingSince,
        now + current.backoff_ms,
        Math.min(current.backoff_ms * 2, PUSH_MAX_BACKOFF_MS),
        appId,
        pushkey,
      );
      return;
    }
  }

  /** The `devices` entry of a pusher. Spec: the gateway gets `data` without `url` (`format` and custom keys
   * included); `pushkey_ts` is in seconds. */
  private device(p: PusherState): JsonObject {
    return { app_id: p.app_id, pushkey: p.pushkey, pushkey_ts: Math.floor(p.pushkey_ts / 1000), data: JSON.parse(p.data) as JsonObject };
  }

  /** One queued event to one pusher. */
  private async send(p: PusherState, row: QueueRow): Promise<SendOutcome> {
    const stored = JSON.parse(row.notification) as JsonObject;
    const tweaks = JSON.parse(row.tweaks) as JsonObject;
    const badge = this.sources.badge();
    const counts = { unread: badge };
    const device = this.device(p);
    const data = device.data as JsonObject;
    let notification: JsonObject;
    if (data.format === "event_id_only") {
      // Only the IDs, the priority and the counts; no tweaks (Synapse).
      notification = { event_id: row.event_id, room_id: row.room_id, prio: stored.prio ?? "low", counts };
    } else {
      notification = { ...stored, counts };
      if (Object.keys(tweaks).length > 0) device.tweaks = tweaks;
    }
    notification.devices = [device];
    const outcome = await this.post(p, notification);
    if (outcome.ok) this.lastBadge.set(`${p.app_id}\n${p.pushkey}`, badge);
    return outcome;
  }

  /** POST {url} {notification} (Push Gateway API, /_matrix/push/v1/notify). */
  private async post(p: PusherState, notification: JsonObject): Promise<SendOutcome> {
    try {
      const res = await outboundFetch(this.env)(
        new Request(p.url, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ notification }),
          signal: AbortSignal.timeout(PUSH_REQUEST_TIMEOUT_MS),
        }),
      );
      if (!res.ok) {
        await res.body?.cancel();
        return { ok: false };
      }
      const body = (await res.json()) as JsonValue;
      const rejected = isJsonObject(body) && Array.isArray(body.rejected) ? body.rejected.filter((k): k is string => typeof k === "string") : [];
      return { ok: true, rejected };
    } catch (e) {
      console.warn("push: gateway request failed", p.app_id, e instanceof Error ? e.message : e);
      return { ok: false };
    }
  }

  /** The gateway rejected the pushkey: the pusher goes, in D1 and here. */
  private async removeRejected(appId: string, pushkey: string): Promise<void> {
    const userId = this.sources.userId();
    if (userId !== undefined) await removePusher(this.env.DB, userId, appId, pushkey);
    this.sql.exec("DELETE FROM push_pushers WHERE app_id = ? AND pushkey = ?", appId, pushkey);
    this.hasPushers = undefined;
  }

  /** Drops queue rows every pusher has passed (all of them when there is no pusher). */
  private trimQueue(): void {
    const min = this.sql.exec<{ m: number | null }>("SELECT MIN(last_id) AS m FROM push_pushers").one().m;
    if (min === null) this.sql.exec("DELETE FROM push_queue");
    else this.sql.exec("DELETE FROM push_queue WHERE id <= ?", min);
  }

  /** The next alarm: the earliest retry of a pusher with something to send, and the keep-alive. */
  private async scheduleNext(now = Date.now()): Promise<void> {
    if (!this.active()) return;
    const retry = this.sql
      .exec<{ t: number | null }>(
        "SELECT MIN(p.next_attempt_ts) AS t FROM push_pushers p WHERE p.next_attempt_ts > 0 AND EXISTS (SELECT 1 FROM push_queue q WHERE q.id > p.last_id)",
      )
      .one().t;
    await this.clock.wakeBy(Math.min(retry ?? Number.POSITIVE_INFINITY, now + PUSH_KEEPALIVE_MS));
  }

  /** Delivery state of each pusher and the queue length (tests, diagnostics). */
  state(): { pushers: PusherDeliveryState[]; queued: number } {
    const pushers = this.sql
      .exec<PusherState>("SELECT * FROM push_pushers ORDER BY app_id, pushkey")
      .toArray()
      .map((p) => ({ appId: p.app_id, pushkey: p.pushkey, lastId: p.last_id, failingSince: p.failing_since, backoffMs: p.backoff_ms, nextAttemptTs: p.next_attempt_ts }));
    return { pushers, queued: this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM push_queue").one().n };
  }
}

function truthy(v: JsonValue | undefined): boolean {
  return v !== undefined && v !== null && v !== false && v !== "" && v !== 0;
}
