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
// Durability without touching the commit (room/hand-over.ts, shared with application services): the room's
// `events` table is the log and a cursor (`federation_outbound.position`, a stream ordering) says what has
// been handed to the Destination DOs. After every commit the hand-over runs outside the write queue (the
// writer never waits for it) and moves the cursor only once every Destination DO stored its PDUs; before it
// starts, the room's alarm is armed, so a crash or a failed Destination DO call is retried from
// `retryRemoteHandOver` (room.ts alarm()). A retried hand-over may enqueue a PDU twice: the Destination DO
// ignores a PDU it still holds, and a peer deduplicates one it already has (by event ID).
import { federationAllowed } from "../../federation-client/config.js";
import { PARTICIPATION_EVENT_TYPE, isServerKey } from "../../protocol/participation.js";
import { hostingServerKey } from "../../protocol/auth-rules.js";
import { serverNameOf } from "../../protocol/pdu.js";
import type { Env } from "../../worker/env.js";
import type { QueuedPdu } from "../destination/queue.js";
import type { PersistResult, RoomEngine } from "./engine.js";
import { partialStateServers } from "./partial-state.js";
import { enqueueInQueues, RoomHandOver, type HandOverRow } from "./hand-over.js";
import { deleteStickyPushes, dueStickyPushes, newlyJoinedServer, nextStickyPush, scheduleStickyPushes } from "./sticky-outbound.js";

/** Longest delay between retries of a failed hand-over (the room's alarm; room/hand-over.ts). */
const MAX_RETRY_MS = 10 * 60_000;

/** Events of ours that are not handed over (see `skipHandOver`). */
const SKIP_SCHEMA = `CREATE TABLE IF NOT EXISTS federation_outbound_skip (event_id TEXT PRIMARY KEY)`;

type EventRow = HandOverRow;

/** Per Room DO instance: the hand-over (room/hand-over.ts: cursor, rounds, retries) and caches (keyed by
 * the DO's state object). */
class RoomOutbound {
  private readonly handOver: RoomHandOver;
  private servers: { key: number; servers: string[] } | undefined;

  constructor(
    ctx: DurableObjectState,
    private readonly engine: RoomEngine,
    private readonly env: Env,
  ) {
    this.handOver = new RoomHandOver(ctx, engine, {
      table: "federation_outbound",
      label: "federation",
      maxRetryMs: MAX_RETRY_MS,
      handOver: (roomId, rows) => this.handOverRound(roomId, rows),
    });
  }

  /** After a commit: arms the alarm when something may have to go out, then hands over in the background.
   * Returns whether the commit's events may go to other servers (a room with their members, or an event
   * that names one); true when that could not be told. Never throws: the write has committed, and the alarm
   * or the next commit retries. */
  async afterCommit(results: readonly PersistResult[]): Promise<boolean> {
    let mayLeave = true;
    try {
      if (!this.engine.meta()) return false;
      this.ensureCursor(results);
      const fresh = results.filter((r) => !r.duplicate && r.rejectedReason === null && !r.softFailed);
      if (fresh.length === 0) return false;
      const remote = this.remoteServers().length > 0;
      mayLeave = remote || fresh.some((r) => this.mayReachServers(r));
      if (remote || fresh.some((r) => this.hasRemoteTarget(r))) {
        // Armed before the hand-over starts (and before the write is acknowledged): a crash from here on
        // still hands the event over from alarm().
        await this.handOver.armRetry();
      } else if (!mayLeave && this.handOver.skipPast(fresh)) {
        // No remote server in the room and no event that names one: nothing to hand over, no round.
        return false;
      }
    } catch (e) {
      console.warn("federation hand-over not prepared; the next commit or the alarm retries it", e instanceof Error ? e.message : e);
    }
    void this.handOver.kick();
    return mayLeave;
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
    await this.handOver.retry(() => this.pushStickyEvents(Date.now()));
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
        this.handOver.markFailed();
        console.warn("sticky events not handed to a destination queue; the alarm retries", push.server, e instanceof Error ? e.message : e);
      }
    }
    const next = nextStickyPush(this.engine);
    // A failed push is already due: retry() re-arms with its back-off (markFailed).
    if (next !== null && next > now) await this.handOver.armAlarm(next);
  }

  /** Resolves when the hand-overs started so far have finished (tests, benchmarks). */
  settled(): Promise<void> {
    return this.handOver.settled();
  }

  /** One round of accepted events (room/hand-over.ts): what each server must get, into its queue. */
  private async handOverRound(roomId: string, rows: EventRow[]): Promise<{ alarmAt?: number }> {
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
        listOf(destination).push({ roomId, eventId: row.event_id, json: row.json });
      }
    }
    await enqueueAll(this.env, byDestination);
    return Number.isFinite(stickyDue) ? { alarmAt: stickyDue } : {};
  }

  /** The servers an event goes to (those this server may federate with: FEDERATION_ENABLED,
   * FEDERATION_DOMAIN_ALLOWLIST). */
  private destinationsOf(row: Pick<EventRow, "event_id" | "type" | "state_key">): string[] {
    const out = new Set(this.remoteServers());
    if (row.type === "m.room.member" && row.state_key !== null && row.state_key.startsWith("@")) {
      const target = this.engine.routingServerOf(row.state_key);
      if (target !== "" && target !== this.env.SERVER_NAME) out.add(target);
      // MSC4348: an account that moved here from another server: that server learns of the move.
      const before = this.accountServerBefore(row.event_id, row.state_key);
      if (before !== undefined && before !== "" && before !== this.env.SERVER_NAME) out.add(before);
    }
    // MSC4345: a change of a server's participation also goes to that server (at the domain it had
    // before the change, which a revocation may leave out), so that a revoked server learns it and stops.
    if (row.type === PARTICIPATION_EVENT_TYPE && isServerKey(row.state_key)) {
      const target = this.participationDomainBefore(row.event_id, row.state_key);
      if (target !== undefined && target !== "" && target !== this.env.SERVER_NAME) out.add(target);
    }
    return [...out].filter((server) => federationAllowed(this.env, server));
  }

  /** MSC4348 rooms: the domain of the server that hosted `userId` (its membership's server key) before
   * `eventId`; undefined in other rooms or without one. */
  private accountServerBefore(eventId: string, userId: string): string | undefined {
    const rules = this.engine.meta()?.rules;
    if (!rules?.eventFormat.accountKeyIdentity) return undefined;
    const group = this.engine.sql.exec<{ g: number | null }>("SELECT state_group_before AS g FROM events WHERE event_id = ?", eventId).toArray()[0]?.g ?? null;
    const before = this.engine.lookupInGroup(group);
    const key = hostingServerKey(userId, before, rules);
    const domain = key === undefined ? undefined : before(PARTICIPATION_EVENT_TYPE, key)?.content.unverified_domain;
    return typeof domain === "string" ? domain : undefined;
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

  /** Whether an event can go to a server other than those of the joined members: a membership event (its
   * `state_key` user's server; a remote join also schedules sticky pushes) or an MSC4345 participation. */
  private mayReachServers(r: PersistResult): boolean {
    const m = this.factsOf(r);
    return m === undefined || m.type === "m.room.member" || m.type === PARTICIPATION_EVENT_TYPE;
  }

  private hasRemoteTarget(r: PersistResult): boolean {
    const m = this.factsOf(r);
    return m !== undefined && m.type === "m.room.member" && m.stateKey !== null && m.stateKey.startsWith("@") && !this.engine.isLocalUser(m.stateKey);
  }

  /** The type and state key of a committed event: from the commit's result, else from its row. */
  private factsOf(r: PersistResult): { type: string; stateKey: string | null } | undefined {
    return r.stored ?? this.engine.eventMeta(r.eventId);
  }

  /** The other servers with joined members now, cached until the membership changes. */
  private remoteServers(): string[] {
    // Recomputed only when the current state changed (not by counting the members on every send).
    const key = this.engine.currentStateVersion;
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

  /** The cursor (room/hand-over.ts), and the table of events left out of it (`skipHandOver`). */
  private ensureCursor(results: readonly PersistResult[]): void {
    if (this.handOver.ready) return;
    this.engine.sql.exec(SKIP_SCHEMA);
    this.handOver.ensureCursor(results);
  }
}

const instances = new WeakMap<DurableObjectState, RoomOutbound>();

function outboundOf(ctx: DurableObjectState, engine: RoomEngine, env: Env): RoomOutbound {
  let o = instances.get(ctx);
  if (!o) instances.set(ctx, (o = new RoomOutbound(ctx, engine, env)));
  return o;
}

/**
 * The Room DO's hook after a commit (room.ts `afterCommit`): returns once the retry alarm is armed, with
 * whether the events may go to other servers; they reach the Destination DOs in the background, in commit
 * order.
 */
export function enqueueForRemoteServers(ctx: DurableObjectState, engine: RoomEngine, env: Env, results: readonly PersistResult[]): Promise<boolean> {
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
function enqueueAll(env: Env, byDestination: Map<string, QueuedPdu[]>): Promise<void> {
  return enqueueInQueues("destination", byDestination, (destination, pdus) => env.DESTINATIONS.get(env.DESTINATIONS.idFromName(destination)).enqueue(destination, pdus));
}
