// The Room DO's side of outbound federation (DESIGN.md, "Federation": the Room DO never calls another
// server; after commit it puts the event into the Destination DO of each server in the room).
//
// Which events: the accepted (not rejected, not soft-failed, not outlier) events whose sender is a local
// user: the events this server originated. Events this server accepted as the resident server of a
// send_join/send_leave/send_knock go out through `enqueuePdus` (the caller knows them).
//
// Where to: the servers of the room's joined members, plus, for a membership event, the server of its
// `state_key` user (a kicked, banned, invited or leaving remote user's server must learn about it), minus
// this server. The joined servers are read when the event is handed over, which is right after its commit
// (so "after the event"); an event handed over late (after a crash) goes to the servers in the room then.
//
// Durability without touching the commit: the room's `events` table is the log, and this module keeps a
// cursor (`federation_outbound.position`, a stream ordering) of what has been handed to the Destination
// DOs. After every commit the hand-over runs outside the write queue (the writer never waits for it) and
// moves the cursor only once every Destination DO stored its PDUs; before it starts, the room's alarm is
// armed, so a crash or a failed Destination DO call is retried from `retryRemoteHandOver` (room.ts
// alarm()). A retried hand-over may enqueue a PDU twice: the Destination DO ignores a PDU it still holds,
// and a peer deduplicates one it already has (by event ID).
import { federationAllowed } from "../../federation-client/config.js";
import { PARTICIPATION_EVENT_TYPE, isServerKey } from "../../protocol/participation.js";
import { serverNameOf } from "../../protocol/pdu.js";
import type { Env } from "../../worker/env.js";
import type { QueuedPdu } from "../destination/queue.js";
import type { PersistResult, RoomEngine } from "./engine.js";
import { partialStateServers } from "./partial-state.js";
import { deleteStickyPushes, dueStickyPushes, newlyJoinedServer, nextStickyPush, scheduleStickyPushes } from "./sticky-outbound.js";

/** Events read per hand-over round (each Destination DO gets one call per round). */
const ROUND_EVENTS = 100;
/** Retry of a failed hand-over (the room's alarm; doubles up to the maximum). */
const RETRY_MS = 10_000;
const MAX_RETRY_MS = 10 * 60_000;

const SCHEMA = `CREATE TABLE IF NOT EXISTS federation_outbound (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  position INTEGER NOT NULL
)`;

/** Events of ours that are not handed over (see `skipHandOver`). */
const SKIP_SCHEMA = `CREATE TABLE IF NOT EXISTS federation_outbound_skip (event_id TEXT PRIMARY KEY)`;

type EventRow = { stream_ordering: number; event_id: string; type: string; state_key: string | null; sender: string; json: string; membership: string | null };

/** Per Room DO instance: the hand-over chain and caches (keyed by the DO's state object). */
class RoomOutbound {
  private chain: Promise<void> = Promise.resolve();
  private pending = 0;
  private failed = false;
  private retryMs = RETRY_MS;
  private cursorReady: boolean | undefined;
  private servers: { key: string; servers: string[] } | undefined;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly engine: RoomEngine,
    private readonly env: Env,
  ) {}

  /** After a commit: arms the alarm when something may have to go out, then hands over in the background.
   * Never throws: the write has committed, and the alarm or the next commit retries. */
  async afterCommit(results: readonly PersistResult[]): Promise<void> {
    try {
      if (!this.engine.meta()) return;
      this.ensureCursor(results);
      const fresh = results.filter((r) => !r.duplicate && r.rejectedReason === null && !r.softFailed);
      if (fresh.length === 0) return;
      if (this.remoteServers().length > 0 || fresh.some((r) => this.hasRemoteTarget(r.eventId))) {
        // Armed before the hand-over starts (and before the write is acknowledged): a crash from here on
        // still hands the event over from alarm().
        await this.armAlarm(Date.now() + this.retryMs);
      }
    } catch (e) {
      console.warn("federation hand-over not prepared; the next commit or the alarm retries it", e instanceof Error ? e.message : e);
    }
    void this.kick();
  }

  /** From the room's alarm: hands over what is left; re-arms the alarm while a Destination DO fails. */
  async retry(): Promise<void> {
    if (!this.engine.meta()) return;
    try {
      this.ensureCursor([]);
    } catch (e) {
      console.warn("federation hand-over cursor unavailable", e instanceof Error ? e.message : e);
      return;
    }
    await this.kick();
    await this.pushStickyEvents(Date.now());
    if (this.failed) {
      this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
      await this.armAlarm(Date.now() + this.retryMs);
    }
  }

  /** MSC4354: the due pushes of our sticky events to servers that joined (room/sticky-outbound.ts); a
   * failed one stays scheduled and the alarm retries it. */
  async pushStickyEvents(now: number): Promise<void> {
    const room = this.engine.meta();
    if (!room) return;
    for (const push of dueStickyPushes(this.engine, now)) {
      try {
        if (push.events.length > 0) await enqueueAll(this.env, new Map([[push.server, push.events.map((e) => ({ roomId: room.roomId, ...e }))]]));
        deleteStickyPushes(this.engine, push.server, push.dueAts);
      } catch (e) {
        this.failed = true;
        console.warn("sticky events not handed to a destination queue; the alarm retries", push.server, e instanceof Error ? e.message : e);
      }
    }
    const next = nextStickyPush(this.engine);
    // A failed push is already due: retry() re-arms with its back-off (this.failed).
    if (next !== null && next > now) await this.armAlarm(next);
  }

  /** Resolves when the hand-overs started so far have finished (tests, benchmarks). */
  async settled(): Promise<void> {
    while (this.pending > 0) await this.chain;
  }

  /** Serialised hand-overs: each reads from the cursor the one before left. */
  private kick(): Promise<void> {
    this.pending++;
    const run = this.chain.then(() => this.handOver()).finally(() => this.pending--);
    this.chain = run;
    this.ctx.waitUntil(run);
    return run;
  }

  private async handOver(): Promise<void> {
    const room = this.engine.meta();
    if (!room) return;
    try {
      for (;;) {
        const position = this.position();
        const latest = this.engine.maxStreamOrdering();
        if (position >= latest) break;
        const rows = this.engine.sql
          .exec<EventRow>(
            `SELECT stream_ordering, event_id, type, state_key, sender, json, membership FROM events
             WHERE stream_ordering > ? AND stream_ordering <= ? AND rejected_reason IS NULL AND soft_failed = 0 AND outlier = 0
             ORDER BY stream_ordering LIMIT ?`,
            position,
            latest,
            ROUND_EVENTS,
          )
          .toArray();
        const upTo = rows.length === ROUND_EVENTS ? rows[rows.length - 1]!.stream_ordering : latest;
        const byDestination = new Map<string, QueuedPdu[]>();
        let stickyDue = Infinity;
        const listOf = (destination: string): QueuedPdu[] => {
          let list = byDestination.get(destination);
          if (!list) byDestination.set(destination, (list = []));
          return list;
        };
        for (const row of rows) {
          // MSC4354: a server that joins gets our unexpired sticky events from before its join, a little
          // later (room/sticky-outbound.ts).
          const joined = newlyJoinedServer(this.engine, this.env.SERVER_NAME, row);
          if (joined !== null && federationAllowed(this.env, joined)) {
            const due = scheduleStickyPushes(this.engine, joined, row.stream_ordering, Date.now());
            stickyDue = Math.min(stickyDue, due);
          }
          if (!this.engine.isLocalUser(row.sender)) continue;
          if (row.type === "m.room.member" && this.engine.sql.exec("SELECT 1 FROM federation_outbound_skip WHERE event_id = ?", row.event_id).toArray().length > 0) continue;
          for (const destination of this.destinationsOf(row)) {
            // The stored JSON is the wire form (event_id only in room v1-v2), as wireForm() gives it.
            listOf(destination).push({ roomId: room.roomId, eventId: row.event_id, json: row.json });
          }
        }
        await enqueueAll(this.env, byDestination);
        this.setPosition(upTo);
        if (Number.isFinite(stickyDue)) await this.armAlarm(stickyDue);
      }
      this.failed = false;
      this.retryMs = RETRY_MS;
    } catch (e) {
      this.failed = true;
      console.warn("federation hand-over failed; the alarm retries it", room.roomId, e instanceof Error ? e.message : e);
    }
  }

  /** The servers an event goes to (those this server may federate with: FEDERATION_ENABLED,
   * FEDERATION_DOMAIN_ALLOWLIST). */
  private destinationsOf(row: Pick<EventRow, "event_id" | "type" | "state_key">): string[] {
    const out = new Set(this.remoteServers());
    if (row.type === "m.room.member" && row.state_key !== null && row.state_key.startsWith("@")) {
      const target = this.engine.routingServerOf(row.state_key);
      if (target !== "" && target !== this.env.SERVER_NAME) out.add(target);
    }
    // MSC4345: a change of a server's participation also goes to that server (at the domain it had
    // before the change, which a revocation may leave out), so that a revoked server learns it and stops.
    if (row.type === PARTICIPATION_EVENT_TYPE && isServerKey(row.state_key)) {
      const target = this.participationDomainBefore(row.event_id, row.state_key);
      if (target !== undefined && target !== "" && target !== this.env.SERVER_NAME) out.add(target);
    }
    return [...out].filter((server) => federationAllowed(this.env, server));
  }

  /** The `unverified_domain` of `serverKey`'s participation in the state before `eventId`, or this event's. */
  private participationDomainBefore(eventId: string, serverKey: string): string | undefined {
    const group = this.engine.sql.exec<{ g: number | null }>("SELECT state_group_before AS g FROM events WHERE event_id = ?", eventId).toArray()[0]?.g ?? null;
    for (const event of [this.engine.lookupInGroup(group)(PARTICIPATION_EVENT_TYPE, serverKey), this.engine.events.pdu(eventId)]) {
      const domain = event?.content.unverified_domain;
      if (typeof domain === "string") return domain;
    }
    return undefined;
  }

  private hasRemoteTarget(eventId: string): boolean {
    const m = this.engine.eventMeta(eventId);
    return m !== undefined && m.type === "m.room.member" && m.stateKey !== null && m.stateKey.startsWith("@") && !this.engine.isLocalUser(m.stateKey);
  }

  /** The other servers with joined members now, cached until the membership changes. */
  private remoteServers(): string[] {
    const sig = this.engine.sql
      .exec<{ m: number | null; n: number }>("SELECT MAX(stream_ordering) AS m, COUNT(*) AS n FROM current_state WHERE type IN ('m.room.member', ?)", PARTICIPATION_EVENT_TYPE)
      .one();
    const key = `${sig.m}:${sig.n}`;
    if (this.servers?.key === key) return this.servers.servers;
    const servers = new Set<string>();
    for (const userId of this.engine.membersWith("join")) {
      const server = this.engine.routingServerOf(userId);
      if (server !== "" && server !== this.env.SERVER_NAME) servers.add(server);
    }
    // A room joined with partial state does not know its members yet: the servers the resident named
    // (send_join `servers_in_room`) stand for them until the resync is done (room/partial-state.ts).
    const partial = partialStateServers(this.engine);
    for (const server of partial) if (server !== this.env.SERVER_NAME) servers.add(server);
    // Not cached while partial: the list changes when the resync completes, without a member change.
    if (partial.length > 0) return [...servers].sort();
    this.servers = { key, servers: [...servers].sort() };
    return this.servers.servers;
  }

  /**
   * Creates the cursor on first use: just before the first new event of `results` (a new room: before
   * its create event), or at the latest event for a room that existed before this module (its history was
   * never meant to be sent).
   */
  private ensureCursor(results: readonly PersistResult[]): void {
    if (this.cursorReady) return;
    this.engine.sql.exec(SCHEMA);
    this.engine.sql.exec(SKIP_SCHEMA);
    const fresh = results.filter((r) => !r.duplicate).map((r) => r.streamOrdering);
    const start = fresh.length > 0 ? Math.min(...fresh) - 1 : this.engine.maxStreamOrdering();
    this.engine.sql.exec("INSERT OR IGNORE INTO federation_outbound (id, position) VALUES (1, ?)", start);
    this.cursorReady = true;
  }

  private position(): number {
    return this.engine.sql.exec<{ position: number }>("SELECT position FROM federation_outbound WHERE id = 1").one().position;
  }

  private setPosition(position: number): void {
    this.engine.sql.exec("UPDATE federation_outbound SET position = ? WHERE id = 1 AND position < ?", position, position);
  }

  /** Sets the room's alarm unless one is due earlier (room.ts sets it too; the earliest wins). */
  private async armAlarm(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }
}

const instances = new WeakMap<DurableObjectState, RoomOutbound>();

function outboundOf(ctx: DurableObjectState, engine: RoomEngine, env: Env): RoomOutbound {
  let o = instances.get(ctx);
  if (!o) instances.set(ctx, (o = new RoomOutbound(ctx, engine, env)));
  return o;
}

/**
 * The Room DO's hook after a commit (room.ts `afterCommit`): returns once the retry alarm is armed; the
 * events reach the Destination DOs in the background, in commit order.
 */
export function enqueueForRemoteServers(ctx: DurableObjectState, engine: RoomEngine, env: Env, results: readonly PersistResult[]): Promise<void> {
  return outboundOf(ctx, engine, env).afterCommit(results);
}

/** The Room DO's alarm: hands over whatever a crash or a failed Destination DO call left. */
export function retryRemoteHandOver(ctx: DurableObjectState, engine: RoomEngine, env: Env): Promise<void> {
  return outboundOf(ctx, engine, env).retry();
}

/** MSC4354: pushes the sticky events due at `now` to servers that joined (the alarm does this; tests call it
 * with a later `now`). */
export function pushStickyEventsDue(ctx: DurableObjectState, engine: RoomEngine, env: Env, now = Date.now()): Promise<void> {
  return outboundOf(ctx, engine, env).pushStickyEvents(now);
}

/**
 * Leaves one of our events out of the hand-over: our user's join made through another server's send_join.
 * That server has it already and passes it on to the other servers in the room, as a resident does;
 * Synapse does not send such a join again either (Complement's TestOutboundFederationSend expects the
 * first PDU it receives after the join to be the next event). Call before the commit's hand-over.
 */
export function skipHandOver(engine: RoomEngine, eventId: string): void {
  engine.sql.exec(SKIP_SCHEMA);
  engine.sql.exec("INSERT OR IGNORE INTO federation_outbound_skip (event_id) VALUES (?)", eventId);
}

/** Resolves when the hand-overs started so far have finished (tests, benchmarks). */
export function remoteHandOverSettled(ctx: DurableObjectState): Promise<void> {
  return instances.get(ctx)?.settled() ?? Promise.resolve();
}

/**
 * Puts PDUs into the queues of the given servers (e.g. a remote user's join accepted through send_join:
 * its sender is not local, so the cursor above skips it). Returns once every queue stored them; throws if
 * one could not. This server and empty names are skipped.
 */
export async function enqueuePdus(env: Env, destinations: readonly string[], roomId: string, pdus: readonly { eventId: string; json: string }[]): Promise<void> {
  const byDestination = new Map<string, QueuedPdu[]>();
  for (const d of new Set(destinations)) {
    if (d === "" || d === env.SERVER_NAME) continue;
    byDestination.set(
      d,
      pdus.map((p) => ({ roomId, eventId: p.eventId, json: p.json })),
    );
  }
  await enqueueAll(env, byDestination);
}

/** One Destination DO call per server, all at once; throws if any failed (the others keep their rows). */
async function enqueueAll(env: Env, byDestination: Map<string, QueuedPdu[]>): Promise<void> {
  const results = await Promise.allSettled(
    [...byDestination].map(([destination, pdus]) => env.DESTINATIONS.get(env.DESTINATIONS.idFromName(destination)).enqueue(destination, pdus)),
  );
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed.length > 0) {
    const reason = failed[0]!.reason;
    throw new Error(`${failed.length} of ${results.length} destination queues failed: ${reason instanceof Error ? reason.message : String(reason)}`);
  }
}
