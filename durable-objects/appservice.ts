// The Appservice Durable Object: the push queue of one application service (spec: Application Service
// API, "Pushing events": PUT /_matrix/app/v1/transactions/{txnId}). One instance per service id
// (`env.APPSERVICES.idFromName(id)`).
//
// The same shape as federation's per-destination queue, and the same machinery: the queue is a
// `DestinationQueue` (destination/queue.ts: rows in this DO's SQLite, one transaction in flight, retried with
// the same ID and the same events, in arrival order) and the retry delay is destination/backoff.ts's, capped
// at a few minutes as Synapse's appservice recoverer is (synapse/appservice/scheduler.py doubles from 2 s;
// a service is usually on the same host, and a bridge that was restarted should not wait an hour).
// Differences from federation: the events are in the client format (the Room DO converts them), nothing is
// ever dropped for catch-up (a service must see every event: at least once, in order), and a transaction
// goes to the registration's `url` with `Authorization: Bearer <hs_token>`.
//
// Rooms hand events over after their commit (room/appservice-outbound.ts); an enqueue returns once the
// rows are stored, so nothing acknowledged is lost across a restart: the alarm (always set while something
// is queued) resumes the queue.
import { DurableObject } from "cloudflare:workers";
import { appserviceById, type Appservice } from "./appservice/registry.js";
import { TransactionSender } from "./destination/sender.js";
import { DestinationQueue, type OutgoingTransaction, type QueueState, type QueuedEdu, type QueuedPdu } from "./destination/queue.js";
import { transactionKeyCounts } from "./appservice/key-counts.js";
import { transactionBody, transactionParts } from "./appservice/transaction.js";
import type { Env } from "../worker/env.js";

export type AppserviceEnv = Pick<Env, "DB" | "SERVER_NAME" | "ROOMS" | "USERS">;

export interface AppserviceTuning {
  minBackoffMs: number;
  maxBackoffMs: number;
  /** How long one PUT may take before it counts as failed. */
  timeoutMs: number;
  /** Tests: queue without sending, so that `previewTransaction()` shows what the next PUT would carry. */
  holdSends: boolean;
}

const DEFAULT_TUNING: AppserviceTuning = { minBackoffMs: 2_000, maxBackoffMs: 5 * 60_000, timeoutMs: 60_000, holdSends: false };

/** An event for the service: the client-format event as JSON text. */
export type AppserviceEvent = QueuedPdu;

/** Ephemeral events (typing, receipts, presence; spec: MSC2409 `ephemeral`): `eduType` is the event type,
 * `content` the whole event as JSON text. To-device messages and device list changes travel as EDUs too
 * (appservice/transaction.ts). */
export type AppserviceEphemeral = QueuedEdu;

export class AppserviceDurableObject extends DurableObject<AppserviceEnv> {
  private readonly queue: DestinationQueue;
  /** When and how transactions go out (destination/sender.ts, shared with the Destination DO). */
  private readonly sender: TransactionSender;
  private tuning: AppserviceTuning = { ...DEFAULT_TUNING };

  constructor(ctx: DurableObjectState, env: AppserviceEnv) {
    super(ctx, env);
    this.queue = new DestinationQueue(ctx.storage);
    this.sender = new TransactionSender(ctx, this.queue, {
      label: "appservice",
      policy: () => this.tuning,
      held: () => this.tuning.holdSends,
      send: (id, txn) => this.push(id, txn),
    });
    ctx.blockConcurrencyWhile(() => this.sender.start());
  }

  /**
   * Appends events (and ephemeral events) for service `id` in the given order; returns once they are
   * stored (the number of new rows: an event still queued is not queued twice).
   */
  async enqueue(id: string, events: AppserviceEvent[], ephemeral: AppserviceEphemeral[] = []): Promise<number> {
    if (typeof id !== "string" || id === "") return 0;
    if (events.length === 0 && ephemeral.length === 0) return 0;
    return this.sender.enqueue(id, events, ephemeral);
  }

  /** The queue as stored (tests, diagnostics). */
  queueState(): QueueState & { sending: boolean; alarmAt: number | null } {
    return this.sender.state();
  }

  /** Resolves when the send running now (if any) has finished (tests, benchmarks). */
  async sendsSettled(): Promise<void> {
    await this.sender.settled();
  }

  /**
   * The service showed it is up (it made a request with its as_token, or answered a ping): the back-off
   * ends and what is queued goes now, as federation's `peerIsUp` does for a server that contacts us.
   */
  async serviceIsUp(): Promise<void> {
    this.sender.receiverIsUp();
  }

  /** Sends now, whatever the back-off says (tests; an operator's nudge). */
  async retryNow(): Promise<void> {
    await this.sender.retryNow();
  }

  /** Tests: shorter back-off or time-out for this instance (not stored). */
  setTuning(tuning: Partial<AppserviceTuning>): AppserviceTuning {
    this.tuning = { ...this.tuning, ...tuning };
    return this.tuning;
  }

  override async alarm(): Promise<void> {
    await this.sender.alarm();
  }

  /** The JSON body of a transaction for `service` (appservice/transaction.ts). */
  private async bodyOf(service: Appservice, txn: OutgoingTransaction): Promise<Record<string, unknown>> {
    const parts = transactionParts(txn);
    // MSC3202's key counts are read when the transaction is (re)sent: a retry carries the current counts.
    const keys = service.registration.msc3202 ? await transactionKeyCounts(this.env, service, parts) : null;
    return transactionBody(service.registration, parts, keys);
  }

  /** The body the next PUT would carry (the transaction in flight, or a new one), as JSON text; null when
   * nothing is queued (tests, diagnostics). Makes the transaction if none is in flight. */
  async previewTransaction(): Promise<string | null> {
    const id = this.queue.destination();
    const service = id === null ? undefined : await appserviceById(this.env, id);
    const txn = service ? this.queue.nextTransaction(Date.now()) : null;
    if (!service || !txn) return null;
    return JSON.stringify({ txnId: txn.txnId, body: await this.bodyOf(service, txn) });
  }

  /** One PUT of a transaction; null when the service accepted it (2xx), else why not. */
  private async push(id: string, txn: OutgoingTransaction): Promise<string | null> {
    const service = await appserviceById(this.env, id);
    // Removed, or `url: null`: the service receives nothing; what was queued for it is dropped.
    if (!service || service.registration.url === null) return null;
    let body: Record<string, unknown>;
    try {
      body = await this.bodyOf(service, txn);
    } catch (e) {
      return `transaction not built: ${e instanceof Error ? e.message : String(e)}`;
    }
    const url = `${service.registration.url}/_matrix/app/v1/transactions/${encodeURIComponent(txn.txnId)}`;
    try {
      const response = await fetch(url, {
        method: "PUT",
        headers: { Authorization: `Bearer ${service.registration.hsToken}`, "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.tuning.timeoutMs),
      });
      // The answer's body is not needed; read it so the connection can be reused.
      await response.arrayBuffer().catch(() => undefined);
      return response.ok ? null : `HTTP ${response.status}`;
    } catch (e) {
      return `no answer: ${e instanceof Error ? e.message : String(e)}`;
    }
  }
}
