// The Destination Durable Object: the outbound federation queue of one remote server (DESIGN.md,
// "Federation" and "Who owns what"). One instance per server name (`env.DESTINATIONS.idFromName(name)`).
//
// The Room DO hands it PDUs after they committed (room/outbound.ts); later the User DOs hand it EDUs. An
// enqueue returns once the rows are in this DO's storage; sending happens afterwards, never while a room
// waits. One transaction is in flight at a time (spec: Server-Server API, "Transactions": PUT
// /_matrix/federation/v1/send/{txnId}, at most 50 PDUs and 100 EDUs), in arrival order; a failed
// transaction is retried with the same ID and content after an exponential back-off (destination/backoff.ts)
// on this DO's alarm, which also survives restarts. Rows leave the queue only when the peer answered 200
// (or when catch-up replaces them by later events of their room, below).
//
// What counts as failure: everything but a 2xx answer with a JSON body. Network errors, timeouts, 5xx and
// 429 obviously; 4xx too, deliberately: a 401/403 is usually the peer not (yet) able to fetch our keys or
// an ACL that may change, a 404 a misconfigured delegation, and a 400 is not an acceptance either. Synapse
// also keeps the PDUs of a transaction that got an error answer (per_destination_queue.py,
// `_TransactionQueueManager.__aexit__` leaves the queue untouched on any exception). A transaction the peer
// refuses forever is not retried forever as is: catch-up (below) eventually replaces it by a smaller one
// made of the rooms' latest events. Per-PDU errors in a 200 answer are the peer's verdict on those events,
// not a reason to retry (Synapse logs them); they are logged.
//
// Catch-up after a long outage (Synapse's catch-up mode): when the oldest queued PDU waited longer than
// `catchUpAfterMs`, or the queue of a failing destination holds more than `catchUpAfterPdus` PDUs, each
// room keeps only its latest queued events (those no other queued event names as a prev event) and the
// peer fetches the gap with POST /get_missing_events (destination/queue.ts `collapseForCatchUp`).
//
// `peerIsUp()` (called when the server contacts us, destination/peer-contact.ts) ends a back-off and sends
// at once.
import { DurableObject } from "cloudflare:workers";
import type { JsonObject } from "../protocol/json.js";
import { isJsonObject } from "../protocol/json.js";
import type { Env } from "../worker/env.js";
import { DEFAULT_BACKOFF, backoffDelay } from "./destination/backoff.js";
import { DestinationQueue, type OutgoingTransaction, type QueueState, type QueuedEdu, type QueuedPdu } from "./destination/queue.js";
import { sendTransaction, type FederationResponse, type TransactionBody } from "./destination/transport.js";

export type { QueuedEdu, QueuedPdu, QueueState } from "./destination/queue.js";

export interface DestinationTuning {
  /** First back-off step (ms); doubles per failure. */
  minBackoffMs: number;
  /** Longest back-off (ms). */
  maxBackoffMs: number;
  /** Catch-up when the oldest queued PDU waited this long (ms). */
  catchUpAfterMs: number;
  /** Catch-up when a failing destination has more queued PDUs than this. */
  catchUpAfterPdus: number;
}

const DEFAULT_TUNING: DestinationTuning = {
  minBackoffMs: DEFAULT_BACKOFF.minMs,
  maxBackoffMs: DEFAULT_BACKOFF.maxMs,
  catchUpAfterMs: 10 * 60_000,
  catchUpAfterPdus: 500,
};

/** While something is queued an alarm is always set: at the retry time when backing off, else this long
 * after the send started (longer than a send may take), so that a send cut off by a restart resumes. */
const WATCHDOG_MS = 90_000;

export class DestinationDurableObject extends DurableObject<Env> {
  private readonly queue: DestinationQueue;
  private sending: Promise<void> | undefined;
  private sendAgain = false;
  /** The next attempt ignores the back-off (alarm due, peer contact). */
  private forceNext = false;
  /** The alarm time as last set (null: none). */
  private alarmAt: number | null = null;
  private tuning: DestinationTuning = { ...DEFAULT_TUNING };

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.queue = new DestinationQueue(ctx.storage);
    ctx.blockConcurrencyWhile(async () => {
      this.alarmAt = await ctx.storage.getAlarm();
      // A queue left without an alarm (should not happen: every enqueue sets one) is resumed soon.
      const { pdus, edus } = this.queue.pendingCount();
      if (this.alarmAt === null && pdus + edus > 0) await this.setAlarm(Date.now() + this.tuning.minBackoffMs);
    });
  }

  // -------------------------------------------------------------------------------------------
  // RPC.

  /**
   * Appends PDUs (and EDUs) for `destination` in the given order. Returns once they are stored (the
   * number of new rows: a PDU already queued is not queued again); sending starts afterwards unless the
   * destination is backing off. `destination` names this DO (the caller addressed it by that name).
   */
  async enqueue(destination: string, pdus: QueuedPdu[], edus: QueuedEdu[] = []): Promise<number> {
    if (typeof destination !== "string" || destination === "" || destination === this.env.SERVER_NAME) return 0;
    if (pdus.length === 0 && edus.length === 0) return 0;
    const now = Date.now();
    const added = this.queue.enqueue(destination, pdus, edus, now);
    const { retryAt } = this.queue.backoff();
    // Stored together with the rows (no await in between): whatever happens to the send below, the alarm
    // comes back for them.
    await this.armAlarm(retryAt ?? now + WATCHDOG_MS);
    if (retryAt === null || retryAt <= now) void this.startSending(false);
    return added;
  }

  /** The destination contacted us: it is up. Ends the back-off and sends what is queued now. */
  async peerIsUp(): Promise<void> {
    const wasBackingOff = this.queue.resetBackoff();
    const { pdus, edus } = this.queue.pendingCount();
    if (pdus + edus === 0) return;
    if (wasBackingOff || !this.sending) void this.startSending(true);
  }

  /** The queue as stored, for tests and diagnostics. */
  queueState(): QueueState & { sending: boolean; alarmAt: number | null } {
    return { ...this.queue.state(), sending: this.sending !== undefined, alarmAt: this.alarmAt };
  }

  /** Resolves when the send running now (if any) has finished (tests, benchmarks). */
  async sendsSettled(): Promise<void> {
    while (this.sending) await this.sending;
  }

  /** Tests: shorter back-off or catch-up thresholds for this instance (not stored). */
  setTuning(tuning: Partial<DestinationTuning>): DestinationTuning {
    this.tuning = { ...this.tuning, ...tuning };
    return this.tuning;
  }

  /** A retry is due (or the watchdog after an interrupted send): send now, whatever the back-off says. */
  override async alarm(): Promise<void> {
    this.alarmAt = null;
    await this.startSending(true);
    // Still something queued and no retry scheduled by the send (e.g. a send still running): keep watching.
    const { pdus, edus } = this.queue.pendingCount();
    if (pdus + edus > 0 && this.alarmAt === null) await this.setAlarm(Date.now() + WATCHDOG_MS);
  }

  // -------------------------------------------------------------------------------------------
  // Sending.

  /** One sender at a time; requests during a send ask for another round. */
  private startSending(force: boolean): Promise<void> {
    if (force) this.forceNext = true;
    if (this.sending) {
      this.sendAgain = true;
      return this.sending;
    }
    const run = (async () => {
      do {
        this.sendAgain = false;
        await this.sendQueued();
      } while (this.sendAgain);
    })()
      .catch((e) => console.error("federation sender failed; the alarm retries", this.queue.destination(), e instanceof Error ? e.message : e))
      .finally(() => (this.sending = undefined));
    this.sending = run;
    this.ctx.waitUntil(run);
    return run;
  }

  /** Sends transactions one after the other until the queue is empty or one fails. */
  private async sendQueued(): Promise<void> {
    const destination = this.queue.destination();
    if (destination === null) return;
    for (;;) {
      const now = Date.now();
      const { failures, retryAt } = this.queue.backoff();
      if (this.forceNext) {
        this.forceNext = false;
        this.queue.clearRetryAt();
      } else if (retryAt !== null && retryAt > now) {
        await this.armAlarm(retryAt);
        return;
      }
      this.catchUpIfBehind(now, failures);
      const txn = this.queue.nextTransaction(now);
      if (!txn) return;
      await this.armAlarm(now + WATCHDOG_MS);
      const response = await sendTransaction(this.env, destination, txn.txnId, this.bodyOf(txn));
      const done = Date.now();
      if (response.ok) {
        this.queue.transactionAccepted(txn.txnId, done);
        logPduErrors(destination, txn.txnId, response.body);
        continue;
      }
      const delay = backoffDelay(failures + 1, { minMs: this.tuning.minBackoffMs, maxMs: this.tuning.maxBackoffMs });
      const error = describeFailure(response);
      this.queue.transactionFailed(txn.txnId, done, done + delay, error);
      console.warn(`federation: transaction ${txn.txnId} to ${destination} failed (${error}); retry in ${delay} ms`);
      await this.setAlarm(done + delay);
      return;
    }
  }

  private catchUpIfBehind(now: number, failures: number): void {
    const oldest = this.queue.oldestPduTs();
    if (oldest === null) return;
    const tooOld = now - oldest >= this.tuning.catchUpAfterMs;
    const tooMany = failures > 0 && this.queue.pendingCount().pdus > this.tuning.catchUpAfterPdus;
    if (!tooOld && !tooMany) return;
    const dropped = this.queue.collapseForCatchUp();
    if (dropped > 0) console.warn(`federation: catching up ${this.queue.destination()}: ${dropped} queued PDUs left for the peer to fetch`);
  }

  private bodyOf(txn: OutgoingTransaction): TransactionBody {
    const body: TransactionBody = {
      origin: this.env.SERVER_NAME,
      origin_server_ts: txn.originServerTs,
      pdus: txn.pdus.map((p) => JSON.parse(p.json) as JsonObject),
    };
    if (txn.edus.length > 0) body.edus = txn.edus.map((e) => ({ edu_type: e.eduType, content: JSON.parse(e.content) as JsonObject }));
    return body;
  }

  /** Sets the alarm unless one is already due no later than `at` (and not in the past). */
  private async armAlarm(at: number): Promise<void> {
    if (this.alarmAt !== null && this.alarmAt <= at && this.alarmAt > Date.now() - 1000) return;
    await this.setAlarm(at);
  }

  private async setAlarm(at: number): Promise<void> {
    this.alarmAt = at;
    await this.ctx.storage.setAlarm(at);
  }
}

function describeFailure(response: FederationResponse & { ok: false }): string {
  const status = response.status === null ? "no answer" : `HTTP ${response.status}`;
  return `${status}${response.errcode ? ` ${response.errcode}` : ""}: ${response.error}`;
}

/** The answer to PUT /send lists a result per PDU; an `error` there is the peer's verdict on that event. */
function logPduErrors(destination: string, txnId: string, body: unknown): void {
  if (!isJsonObject(body) || !isJsonObject(body.pdus)) return;
  for (const [eventId, result] of Object.entries(body.pdus)) {
    if (isJsonObject(result) && typeof result.error === "string") {
      console.warn(`federation: ${destination} did not accept ${eventId} (transaction ${txnId}): ${result.error}`);
    }
  }
}
