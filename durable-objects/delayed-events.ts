// The Delayed Events Durable Object (MSC4140, `org.matrix.msc4140`): one user's scheduled events. One
// instance per user (`env.DELAYED_EVENTS.idFromName(userId)`). This is what ends a MatrixRTC call
// membership when the client that holds it crashes: the client schedules its own "leave" and keeps
// restarting the timer while it is alive.
//
// Durable and exactly once:
// - A scheduled event is a row in this DO's SQLite storage, and the DO's alarm (the platform's durable
//   timer, which survives restarts and is retried when its handler fails) is kept at the earliest due time.
// - Sending claims the row (`sending = 1`) before asking the Room DO, and finalises it after. The Room DO
//   is asked with a transaction ID derived from the delay ID, so when a send is cut off between the Room
//   DO's commit and our finalisation (a crash, a restart), the retry gets back the same event instead of a
//   second one. A claim left by a dead instance is released when the DO starts again.
// - The event is built and authorised by the Room DO when it is sent, as of that moment, like any new
//   event (MSC4140: the server sends it "as if the user sent it at that time"); a refusal is recorded as
//   the delayed event's finalised error.
// Management (restart, cancel, send) is keyed by the delay ID alone (MSC4140: these endpoints need no
// access token, so that a party the client delegates to, e.g. the SFU, can restart the timer).
import { DurableObject } from "cloudflare:workers";
import { decodeBase64, encodeBase64Url } from "../protocol/base64.js";
import { MatrixError, notFound } from "../protocol/errors.js";
import type { JsonObject } from "../protocol/json.js";
import { randomToken } from "../protocol/signing.js";
import type { RoomDurableObject, SentEvent, SendEventRequest } from "./room.js";
import { errorOutcome, type Outcome } from "./room/outcome.js";
import { sqlLimit } from "./sql-limit.js";

export interface DelayedEventsEnv {
  ROOMS: DurableObjectNamespace<RoomDurableObject>;
}

/** The device ID under which the Room DO keeps delayed sends' transaction IDs: no client device has it, so
 * no client sees a `transaction_id` it did not choose. */
export const DELAYED_TXN_DEVICE = "org.matrix.msc4140";

/** Finalised delayed events kept per user for `?status=finalised` (Synapse prunes them too). */
const FINALISED_KEPT = 50;
const FINALISED_RETENTION_MS = 7 * 24 * 3600_000;
/** When a send fails for a reason other than the room's answer (an RPC error), try again this much later. */
const RETRY_AFTER_MS = 2000;

export interface ScheduleRequest {
  userId: string;
  deviceId: string;
  /** The client's transaction (PUT /send): a retry returns the first delay ID. */
  txnId?: string;
  roomId: string;
  type: string;
  /** Present for state events. */
  stateKey?: string;
  content: JsonObject;
  /** MSC4354: send it as a sticky event for this long (ms). */
  stickyDurationMs?: number;
  delayMs: number;
  /** The most scheduled events the user may have (MAX_DELAYED_EVENTS_PER_USER). */
  maxScheduled: number;
}

/** A scheduled event as MSC4140's GET /delayed_events lists it. */
export interface ScheduledDelayedEvent {
  delay_id: string;
  room_id: string;
  type: string;
  state_key?: string;
  delay: number;
  running_since: number;
  content: JsonObject;
}

export interface FinalisedDelayedEvent {
  delayed_event: ScheduledDelayedEvent;
  outcome: "send" | "cancel";
  reason: "action" | "delay" | "error";
  /** Why it was not sent: the room's refusal, or M_CANCELLED_BY_STATE_UPDATE (in `org.matrix.msc4140.errcode`). */
  error?: { errcode: string; error: string; [key: string]: string };
  event_id?: string;
  origin_server_ts: number;
}

export type DelayedEventAction = "cancel" | "restart" | "send";

interface Row {
  delay_id: string;
  user_id: string;
  room_id: string;
  event_type: string;
  state_key: string | null;
  content: string;
  delay: number;
  send_ts: number;
  sending: number;
  finalised_ts: number | null;
  outcome: string | null;
  reason: string | null;
  event_id: string | null;
  error: string | null;
  sticky_duration_ms: number | null;
  [key: string]: SqlStorageValue;
}

/** The Room DO's send, as RPC carries it. */
type RoomSend = { sendEvent(request: SendEventRequest): Promise<Outcome<SentEvent>> };
type RoomWatch = { watchDelayedState(userId: string, type: string, stateKey: string): Promise<void> };

/** The finalised error of a delayed state event cancelled by a state update, as Synapse words it
 * (storage/databases/main/delayed_events.py `_generate_cancelled_by_state_update_json`). */
const CANCELLED_BY_STATE_UPDATE = {
  errcode: "M_UNKNOWN",
  error: "The delayed event did not get sent because a different user updated the same state event. So the scheduled event might change it in an undesired way.",
  "org.matrix.msc4140.errcode": "M_CANCELLED_BY_STATE_UPDATE",
};

export class DelayedEventsDurableObject extends DurableObject<DelayedEventsEnv> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: DelayedEventsEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    ctx.blockConcurrencyWhile(async () => {
      this.sql.exec(`
        CREATE TABLE IF NOT EXISTS delayed_events (
          delay_id TEXT PRIMARY KEY,
          user_id TEXT NOT NULL,
          device_id TEXT NOT NULL,
          txn_id TEXT,
          room_id TEXT NOT NULL,
          event_type TEXT NOT NULL,
          state_key TEXT,
          content TEXT NOT NULL,
          delay INTEGER NOT NULL,
          send_ts INTEGER NOT NULL,
          sending INTEGER NOT NULL DEFAULT 0,
          finalised_ts INTEGER,
          outcome TEXT,
          reason TEXT,
          event_id TEXT,
          error TEXT,
          sticky_duration_ms INTEGER
        );
        CREATE UNIQUE INDEX IF NOT EXISTS delayed_events_txn ON delayed_events (device_id, txn_id) WHERE txn_id IS NOT NULL;
        CREATE INDEX IF NOT EXISTS delayed_events_due ON delayed_events (finalised_ts, send_ts);
      `);
      // Tables made before sticky delayed events (MSC4354) lack the column.
      const columns = this.sql.exec<{ name: string }>("PRAGMA table_info(delayed_events)").toArray().map((r) => r.name);
      if (!columns.includes("sticky_duration_ms")) this.sql.exec("ALTER TABLE delayed_events ADD COLUMN sticky_duration_ms INTEGER");
      // No send is in flight in a fresh instance: a claim still set was cut off (a crash or a restart).
      // The retry reuses the transaction ID, so the Room DO answers with the event if it was committed.
      this.sql.exec("UPDATE delayed_events SET sending = 0 WHERE sending = 1 AND finalised_ts IS NULL");
      await this.armAlarm();
    });
  }

  // -------------------------------------------------------------------------------------------
  // RPC.

  /** Stores a delayed event and arms the alarm; the delay ID, or 400 over the user's limit. */
  async schedule(request: ScheduleRequest): Promise<Outcome<{ delayId: string }>> {
    try {
      if (request.txnId !== undefined) {
        const existing = this.sql
          .exec<{ delay_id: string }>("SELECT delay_id FROM delayed_events WHERE device_id = ? AND txn_id = ?", request.deviceId, request.txnId)
          .toArray()[0];
        if (existing) return { ok: { delayId: existing.delay_id } };
      }
      const scheduled = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM delayed_events WHERE finalised_ts IS NULL").one().n;
      if (scheduled >= request.maxScheduled) {
        // Synapse's answer (storage/databases/main/delayed_events.py, add_delayed_event).
        throw new MatrixError(400, "M_UNKNOWN", "The maximum number of delayed events has been reached.", {
          "org.matrix.msc4140.errcode": "M_MAX_DELAY_UNSUPPORTED",
        });
      }
      // A delayed state event is cancelled when another event changes that state first: the room keeps
      // a list of whom to tell (room/delayed-state-watch.ts). Registered before the row exists.
      if (request.stateKey !== undefined) {
        const room = this.env.ROOMS.get(this.env.ROOMS.idFromName(request.roomId)) as unknown as RoomWatch;
        await room.watchDelayedState(request.userId, request.type, request.stateKey);
      }
      const delayId = newDelayId(request.userId);
      this.sql.exec(
        `INSERT INTO delayed_events (delay_id, user_id, device_id, txn_id, room_id, event_type, state_key, content, delay, send_ts, sticky_duration_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        delayId,
        request.userId,
        request.deviceId,
        request.txnId ?? null,
        request.roomId,
        request.type,
        request.stateKey ?? null,
        JSON.stringify(request.content),
        request.delayMs,
        Date.now() + request.delayMs,
        request.stickyDurationMs ?? null,
      );
      await this.armAlarm();
      return { ok: { delayId } };
    } catch (e) {
      return errorOutcome(e);
    }
  }

  /**
   * MSC4140: the state (type, stateKey) of the room was changed by another event (room/delayed-state-watch.ts):
   * the user's scheduled delayed events for it are cancelled, finalised with Synapse's error
   * (`org.matrix.msc4140.errcode` M_CANCELLED_BY_STATE_UPDATE). One being sent right now is left alone, as
   * Synapse leaves a processed one. Returns how many were cancelled and how many remain for the key.
   */
  async cancelForStateUpdate(roomId: string, type: string, stateKey: string): Promise<{ cancelled: number; remaining: number }> {
    const rows = this.sql
      .exec<{ delay_id: string }>(
        "SELECT delay_id FROM delayed_events WHERE room_id = ? AND event_type = ? AND state_key = ? AND finalised_ts IS NULL AND sending = 0",
        roomId,
        type,
        stateKey,
      )
      .toArray();
    for (const row of rows) this.finalise(row.delay_id, { outcome: "cancel", reason: "error", error: CANCELLED_BY_STATE_UPDATE });
    if (rows.length > 0) await this.armAlarm();
    const remaining = this.sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM delayed_events WHERE room_id = ? AND event_type = ? AND state_key = ? AND finalised_ts IS NULL", roomId, type, stateKey)
      .one().n;
    return { cancelled: rows.length, remaining };
  }

  /** MSC4140 GET /delayed_events: the user's scheduled and finalised delayed events. */
  list(statuses: { scheduled: boolean; finalised: boolean }, delayIds: string[]): { scheduled?: ScheduledDelayedEvent[]; finalised?: FinalisedDelayedEvent[] } {
    const wanted = (row: Row) => delayIds.length === 0 || delayIds.includes(row.delay_id);
    const out: { scheduled?: ScheduledDelayedEvent[]; finalised?: FinalisedDelayedEvent[] } = {};
    if (statuses.scheduled) {
      out.scheduled = this.sql
        .exec<Row>("SELECT * FROM delayed_events WHERE finalised_ts IS NULL ORDER BY send_ts")
        .toArray()
        .filter(wanted)
        .map(scheduledView);
    }
    if (statuses.finalised) {
      this.pruneFinalised();
      out.finalised = this.sql
        .exec<Row>("SELECT * FROM delayed_events WHERE finalised_ts IS NOT NULL ORDER BY finalised_ts")
        .toArray()
        .filter(wanted)
        .map((row) => ({
          delayed_event: scheduledView(row),
          outcome: row.outcome === "send" ? "send" : "cancel",
          reason: row.reason === "action" ? "action" : row.reason === "error" ? "error" : "delay",
          ...(row.error !== null ? { error: JSON.parse(row.error) as FinalisedDelayedEvent["error"] & object } : {}),
          ...(row.event_id !== null ? { event_id: row.event_id } : {}),
          origin_server_ts: row.finalised_ts!,
        }));
    }
    return out;
  }

  /**
   * cancel, restart or send one scheduled event. 404 M_NOT_FOUND when there is no such scheduled event
   * (never was, already sent or cancelled, or being sent right now), as Synapse answers. `send` answers
   * once the event is sent, with the room's error if it refused it.
   */
  async act(delayId: string, action: DelayedEventAction): Promise<Outcome<Record<string, never>>> {
    try {
      const row = this.sql
        .exec<Row>("SELECT * FROM delayed_events WHERE delay_id = ? AND finalised_ts IS NULL AND sending = 0", delayId)
        .toArray()[0];
      if (!row) throw notFound("Delayed event not found");
      if (action === "restart") {
        this.sql.exec("UPDATE delayed_events SET send_ts = ? + delay WHERE delay_id = ?", Date.now(), delayId);
      } else if (action === "cancel") {
        this.finalise(delayId, { outcome: "cancel", reason: "action" });
      } else {
        const sent = await this.sendRow(row, "action");
        if (sent && "error" in sent) return sent;
      }
      await this.armAlarm();
      return { ok: {} };
    } catch (e) {
      return errorOutcome(e);
    }
  }

  /** Tests and the benchmark: when the alarm is set (null: none). */
  async alarmTime(): Promise<number | null> {
    return this.ctx.storage.getAlarm();
  }

  // -------------------------------------------------------------------------------------------
  // The alarm: send what is due, then wait for the next one.

  override async alarm(): Promise<void> {
    const due = this.sql
      .exec<Row>("SELECT * FROM delayed_events WHERE finalised_ts IS NULL AND sending = 0 AND send_ts <= ? ORDER BY send_ts, rowid", Date.now())
      .toArray();
    // One at a time, in due order: two delayed changes of the same state then apply in the order meant.
    for (const row of due) await this.sendRow(row, "delay");
    await this.armAlarm();
  }

  /**
   * Sends one claimed row through its room and finalises it with the event ID or the room's refusal.
   * Returns the room's outcome, or undefined when another send holds the row or the RPC itself failed
   * (the row is then released and retried by the alarm).
   */
  private async sendRow(row: Row, reason: "action" | "delay"): Promise<Outcome<SentEvent> | undefined> {
    // The alarm claims only what is still due: a restart that arrived while earlier rows were being sent
    // has moved this one on.
    const claimed = this.sql.exec(
      "UPDATE delayed_events SET sending = 1 WHERE delay_id = ? AND sending = 0 AND finalised_ts IS NULL AND send_ts <= ?",
      row.delay_id,
      reason === "delay" ? Date.now() : Number.MAX_SAFE_INTEGER,
    );
    if (claimed.rowsWritten === 0) return undefined;
    const room = this.env.ROOMS.get(this.env.ROOMS.idFromName(row.room_id)) as unknown as RoomSend;
    let result: Outcome<SentEvent>;
    try {
      result = await room.sendEvent({
        sender: row.user_id,
        type: row.event_type,
        ...(row.state_key !== null ? { stateKey: row.state_key } : {}),
        content: JSON.parse(row.content) as JsonObject,
        txn: { deviceId: DELAYED_TXN_DEVICE, txnId: row.delay_id },
        ...(row.sticky_duration_ms !== null ? { stickyDurationMs: row.sticky_duration_ms } : {}),
      });
    } catch (e) {
      console.warn(`delayed event ${row.delay_id}: sending failed (${e instanceof Error ? e.message : String(e)}); retrying`);
      this.sql.exec("UPDATE delayed_events SET sending = 0, send_ts = ? WHERE delay_id = ?", Date.now() + RETRY_AFTER_MS, row.delay_id);
      return undefined;
    }
    if ("ok" in result) {
      this.finalise(row.delay_id, { outcome: "send", reason, eventId: result.ok.eventId });
    } else {
      const { errcode, error } = result.error;
      this.finalise(row.delay_id, { outcome: "send", reason: "error", error: { errcode, error } });
    }
    return result;
  }

  private finalise(delayId: string, f: { outcome: "send" | "cancel"; reason: string; eventId?: string; error?: { errcode: string; error: string; [key: string]: string } }): void {
    this.sql.exec(
      "UPDATE delayed_events SET finalised_ts = ?, sending = 0, outcome = ?, reason = ?, event_id = ?, error = ? WHERE delay_id = ?",
      Date.now(),
      f.outcome,
      f.reason,
      f.eventId ?? null,
      f.error ? JSON.stringify(f.error) : null,
      delayId,
    );
    this.pruneFinalised();
  }

  private pruneFinalised(): void {
    this.sql.exec("DELETE FROM delayed_events WHERE finalised_ts IS NOT NULL AND finalised_ts < ?", Date.now() - FINALISED_RETENTION_MS);
    this.sql.exec(
      `DELETE FROM delayed_events WHERE finalised_ts IS NOT NULL AND delay_id NOT IN
         (SELECT delay_id FROM delayed_events WHERE finalised_ts IS NOT NULL ORDER BY finalised_ts DESC LIMIT ${sqlLimit(FINALISED_KEPT)})`,
    );
  }

  /** Keeps the alarm at the earliest due time of a scheduled event (none when nothing is scheduled). */
  private async armAlarm(): Promise<void> {
    const next = this.sql
      .exec<{ t: number | null }>("SELECT MIN(send_ts) AS t FROM delayed_events WHERE finalised_ts IS NULL AND sending = 0")
      .one().t;
    const current = await this.ctx.storage.getAlarm();
    if (next === null) {
      if (current !== null) await this.ctx.storage.deleteAlarm();
    } else if (current !== next) {
      await this.ctx.storage.setAlarm(next);
    }
  }
}

function scheduledView(row: Row): ScheduledDelayedEvent {
  return {
    delay_id: row.delay_id,
    room_id: row.room_id,
    type: row.event_type,
    ...(row.state_key !== null ? { state_key: row.state_key } : {}),
    delay: row.delay,
    running_since: row.send_ts - row.delay,
    content: JSON.parse(row.content) as JsonObject,
  };
}

// -------------------------------------------------------------------------------------------
// Delay IDs: `<random>.<base64url user ID>`. The user part says which DO holds the event, so the
// management endpoints (which take no access token) need no global index; the random part (144 bits)
// is what makes it a capability.

export function newDelayId(userId: string): string {
  return `${randomToken(18)}.${encodeBase64Url(new TextEncoder().encode(userId))}`;
}

/** The user a delay ID belongs to, or undefined when it is not one of ours. */
export function delayIdOwner(delayId: string): string | undefined {
  const m = /^[A-Za-z0-9_-]{24}\.([A-Za-z0-9_-]{1,400})$/.exec(delayId);
  if (!m) return undefined;
  try {
    const userId = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(decodeBase64(m[1]!));
    return /^@[^:]+:.+$/.test(userId) ? userId : undefined;
  } catch {
    return undefined;
  }
}
