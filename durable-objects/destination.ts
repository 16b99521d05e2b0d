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
import { DEFAULT_BACKOFF } from "./destination/backoff.js";
import { TransactionSender } from "./destination/sender.js";
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

export class DestinationDurableObject extends DurableObject<Env> {
  private readonly queue: DestinationQueue;
  /** When and how transactions go out (destination/sender.ts, shared with the Appservice DO). */
  private readonly sender: TransactionSender;
  private tuning: DestinationTuning = { ...DEFAULT_TUNING };

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.queue = new DestinationQueue(ctx.storage);
    this.sender = new TransactionSender(ctx, this.queue, {
      label: "federation",
      policy: () => this.tuning,
      beforeTransaction: (now, failures) => this.catchUpIfBehind(now, failures),
      send: (destination, txn) => this.send(destination, txn),
      describeFailure: (destination, txnId, error, delay) => `federation: transaction ${txnId} to ${destination} failed (${error}); retry in ${delay} ms`,
    });
    ctx.blockConcurrencyWhile(() => this.sender.start());
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
    return this.sender.enqueue(destination, pdus, edus);
  }

  /** The destination contacted us: it is up. Ends the back-off and sends what is queued now. */
  async peerIsUp(): Promise<void> {
    this.sender.receiverIsUp();
  }

  /** The queue as stored, for tests and diagnostics. */
  queueState(): QueueState & { sending: boolean; alarmAt: number | null } {
    return this.sender.state();
  }

  /** Resolves when the send running now (if any) has finished (tests, benchmarks). */
  async sendsSettled(): Promise<void> {
    await this.sender.settled();
  }

  /** Tests: shorter back-off or catch-up thresholds for this instance (not stored). */
  setTuning(tuning: Partial<DestinationTuning>): DestinationTuning {
    this.tuning = { ...this.tuning, ...tuning };
    return this.tuning;
  }

  /** A retry is due (or the watchdog after an interrupted send): send now, whatever the back-off says. */
  override async alarm(): Promise<void> {
    await this.sender.alarm();
  }

  // -------------------------------------------------------------------------------------------
  // Sending.

  private async send(destination: string, txn: OutgoingTransaction): Promise<string | null> {
    const response = await sendTransaction(this.env, destination, txn.txnId, this.bodyOf(txn));
    if (!response.ok) return describeFailure(response);
    logPduErrors(destination, txn.txnId, response.body);
    return null;
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
