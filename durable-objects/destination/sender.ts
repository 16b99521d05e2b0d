// The sending side of a queue Durable Object: one transaction in flight at a time, retried with the same ID
// and content after an exponential back-off on the DO's alarm, until the receiver accepts it. Shared by the
// two queue DOs: federation's Destination DO (one remote server, PUT /_matrix/federation/v1/send/{txnId})
// and the Appservice DO (one application service, PUT /_matrix/app/v1/transactions/{txnId}). Each owns a
// `DestinationQueue` (queue.ts: the rows, the transaction in flight, the back-off state, in the DO's
// SQLite) and supplies how a transaction goes on the wire; this module decides when.
//
// The alarm: while something is queued an alarm is always set, at the retry time when backing off, else
// WATCHDOG_MS after a send started (longer than a send may take), so a send cut off by a restart resumes.
// An enqueue stores the rows and arms the alarm before it returns (no await in between that could lose
// them), then starts sending unless the queue is backing off. A contact from the receiver (`receiverIsUp`)
// ends the back-off.
import { backoffDelay } from "./backoff.js";
import type { DestinationQueue, OutgoingTransaction, QueueState, QueuedEdu, QueuedPdu } from "./queue.js";

export const WATCHDOG_MS = 90_000;

export interface SenderPolicy {
  /** First back-off step (ms); doubles per failure. */
  minBackoffMs: number;
  /** Longest back-off (ms). */
  maxBackoffMs: number;
}

/** How one queue DO puts a transaction on the wire. */
export interface TransactionTransport {
  /** Log prefix, e.g. "federation". */
  readonly label: string;
  /** The current back-off policy (tests may change it on a live instance). */
  policy(): SenderPolicy;
  /** Tests: queue without sending. */
  held?(): boolean;
  /** Called before each transaction is taken from the queue (federation's catch-up). */
  beforeTransaction?(now: number, failures: number): void;
  /** Sends one transaction to `name`: null when the receiver accepted it, else why not (for the log). */
  send(name: string, txn: OutgoingTransaction): Promise<string | null>;
  /** Log line for a failed attempt (defaults to a generic one). */
  describeFailure?(name: string, txnId: string, error: string, delayMs: number): string;
}

export class TransactionSender {
  private sending: Promise<void> | undefined;
  private sendAgain = false;
  /** The next attempt ignores the back-off (alarm due, receiver contact). */
  private forceNext = false;
  /** The alarm time as last set (null: none). */
  private alarmAt: number | null = null;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly queue: DestinationQueue,
    private readonly transport: TransactionTransport,
  ) {}

  /** From the DO's constructor (inside blockConcurrencyWhile): reads the alarm; a queue left without one
   * (should not happen: every enqueue sets one) is resumed soon. */
  async start(): Promise<void> {
    this.alarmAt = await this.ctx.storage.getAlarm();
    const { pdus, edus } = this.queue.pendingCount();
    if (this.alarmAt === null && pdus + edus > 0) await this.setAlarm(Date.now() + this.transport.policy().minBackoffMs);
  }

  /** Appends rows for `name` in the given order; returns once they are stored (the number of new rows). */
  async enqueue(name: string, pdus: readonly QueuedPdu[], edus: readonly QueuedEdu[]): Promise<number> {
    const now = Date.now();
    const added = this.queue.enqueue(name, pdus, edus, now);
    const { retryAt } = this.queue.backoff();
    // Stored together with the rows: whatever happens to the send below, the alarm comes back for them.
    await this.armAlarm(retryAt ?? now + WATCHDOG_MS);
    if (retryAt === null || retryAt <= now) void this.startSending(false);
    return added;
  }

  /** The receiver contacted us: it is up. Ends the back-off and sends what is queued now. */
  receiverIsUp(): void {
    const wasBackingOff = this.queue.resetBackoff();
    const { pdus, edus } = this.queue.pendingCount();
    if (pdus + edus === 0) return;
    if (wasBackingOff || !this.sending) void this.startSending(true);
  }

  /** Sends now, whatever the back-off says. */
  retryNow(): Promise<void> {
    return this.startSending(true);
  }

  state(): QueueState & { sending: boolean; alarmAt: number | null } {
    return { ...this.queue.state(), sending: this.sending !== undefined, alarmAt: this.alarmAt };
  }

  /** Resolves when the send running now (if any) has finished (tests, benchmarks). */
  async settled(): Promise<void> {
    while (this.sending) await this.sending;
  }

  /** The DO's alarm: a retry is due (or the watchdog after an interrupted send): send now. */
  async alarm(): Promise<void> {
    this.alarmAt = null;
    await this.startSending(true);
    // Still something queued and no retry scheduled by the send (e.g. a send still running): keep watching.
    const { pdus, edus } = this.queue.pendingCount();
    if (pdus + edus > 0 && this.alarmAt === null) await this.setAlarm(Date.now() + WATCHDOG_MS);
  }

  /** One sender at a time; requests during a send ask for another round. */
  private startSending(force: boolean): Promise<void> {
    if (this.transport.held?.()) return Promise.resolve();
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
      .catch((e) => console.error(`${this.transport.label} sender failed; the alarm retries`, this.queue.destination(), e instanceof Error ? e.message : e))
      .finally(() => (this.sending = undefined));
    this.sending = run;
    this.ctx.waitUntil(run);
    return run;
  }

  /** Sends transactions one after the other until the queue is empty or one fails. */
  private async sendQueued(): Promise<void> {
    const name = this.queue.destination();
    if (name === null) return;
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
      this.transport.beforeTransaction?.(now, failures);
      const txn = this.queue.nextTransaction(now);
      if (!txn) return;
      await this.armAlarm(now + WATCHDOG_MS);
      const error = await this.transport.send(name, txn);
      const done = Date.now();
      if (error === null) {
        this.queue.transactionAccepted(txn.txnId, done);
        continue;
      }
      const policy = this.transport.policy();
      const delay = backoffDelay(failures + 1, { minMs: policy.minBackoffMs, maxMs: policy.maxBackoffMs });
      this.queue.transactionFailed(txn.txnId, done, done + delay, error);
      console.warn(
        this.transport.describeFailure?.(name, txn.txnId, error, delay) ??
          `${this.transport.label} ${name}: transaction ${txn.txnId} failed (${error}); retry in ${delay} ms`,
      );
      await this.setAlarm(done + delay);
      return;
    }
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
