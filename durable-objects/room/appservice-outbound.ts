// The Room DO's side of pushing events to application services (spec: Application Service API, "Pushing
// events"; which events: Synapse's `ApplicationService.is_interested_in_event`, synapse/appservice/__init__.py).
//
// A service gets an event of this room when its sender is the service's (its sender_localpart user or a
// user in its user namespaces), when it is a membership event about such a user (an invite to a bridged
// user), or when the service is interested in the room: the room ID is in its room namespaces, one of the
// room's aliases (the directory's, and the canonical alias and alt_aliases of its state) is in its alias
// namespaces, or a local joined member is one of its users. Services with `url: null` get nothing.
//
// Durability, as room/outbound.ts does it for federation: the room's `events` table is the log and a cursor
// (`appservice_outbound.position`) says up to where every accepted event has been handed to the services'
// queues (durable-objects/appservice.ts). The hand-over runs after the commit, outside the write queue, in
// commit order; the cursor moves once every queue stored its events; the room's alarm is armed before, so
// a crash or a failed hand-over is retried from room.ts alarm(). A retried hand-over may enqueue an event
// twice; the service's queue ignores one it still holds (at least once, in order).
import type { Appservice } from "../appservice/registry.js";
import { appservices } from "../appservice/registry.js";
import type { AppserviceEvent } from "../appservice.js";
import type { Env } from "../../worker/env.js";
import { toClientEvent } from "./client-event.js";
import type { PersistResult, RoomEngine } from "./engine.js";

const ROUND_EVENTS = 100;
const RETRY_MS = 10_000;
const MAX_RETRY_MS = 5 * 60_000;
/** How long the room trusts its copy of its directory aliases (D1 `room_aliases`). */
const ALIASES_CACHE_MS = 30_000;

const SCHEMA = `CREATE TABLE IF NOT EXISTS appservice_outbound (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  position INTEGER NOT NULL
)`;

type EventRow = { stream_ordering: number; event_id: string; type: string; state_key: string | null; sender: string };

class RoomAppserviceOutbound {
  private chain: Promise<void> = Promise.resolve();
  private pending = 0;
  private failed = false;
  private retryMs = RETRY_MS;
  private cursorReady = false;
  private aliases: { at: number; list: string[] } | undefined;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly engine: RoomEngine,
    private readonly env: Env,
  ) {}

  async afterCommit(results: readonly PersistResult[]): Promise<void> {
    try {
      if (!this.engine.meta()) return;
      const fresh = results.filter((r) => !r.duplicate && r.rejectedReason === null && !r.softFailed);
      if (fresh.length === 0) return;
      const services = await this.pushTargets();
      // No service at all: the cursor need not exist yet (created at the first event a service could get).
      if (services.length === 0 && !this.cursorReady) return;
      this.ensureCursor(results);
      if (services.length > 0) await this.armAlarm(Date.now() + this.retryMs);
    } catch (e) {
      console.warn("appservice hand-over not prepared; the next commit or the alarm retries it", e instanceof Error ? e.message : e);
    }
    if (this.cursorReady) void this.kick();
  }

  async retry(): Promise<void> {
    if (!this.engine.meta()) return;
    try {
      if (!this.cursorReady) {
        const exists = this.engine.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'appservice_outbound'").toArray().length > 0;
        if (!exists) return;
        this.cursorReady = true;
      }
    } catch {
      return;
    }
    await this.kick();
    if (this.failed) {
      this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
      await this.armAlarm(Date.now() + this.retryMs);
    }
  }

  forgetAliases(): void {
    this.aliases = undefined;
  }

  async settled(): Promise<void> {
    while (this.pending > 0) await this.chain;
  }

  private kick(): Promise<void> {
    this.pending++;
    const run = this.chain.then(() => this.handOver()).finally(() => this.pending--);
    this.chain = run;
    this.ctx.waitUntil(run);
    return run;
  }

  /** Registered services that receive pushes (a url). */
  private async pushTargets(): Promise<Appservice[]> {
    return (await appservices(this.env)).filter((s) => s.registration.url !== null);
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
            `SELECT stream_ordering, event_id, type, state_key, sender FROM events
             WHERE stream_ordering > ? AND stream_ordering <= ? AND rejected_reason IS NULL AND soft_failed = 0 AND outlier = 0
             ORDER BY stream_ordering LIMIT ?`,
            position,
            latest,
            ROUND_EVENTS,
          )
          .toArray();
        const upTo = rows.length === ROUND_EVENTS ? rows[rows.length - 1]!.stream_ordering : latest;
        const services = await this.pushTargets();
        const byService = new Map<string, AppserviceEvent[]>();
        if (services.length > 0 && rows.length > 0) {
          const roomInterest = await this.servicesInterestedInRoom(room.roomId, services);
          const now = Date.now();
          for (const row of rows) {
            let json: string | undefined;
            for (const service of services) {
              const interested =
                roomInterest.has(service.id) ||
                service.isInterestedInUser(row.sender) ||
                (row.type === "m.room.member" && row.state_key !== null && service.isInterestedInUser(row.state_key));
              if (!interested) continue;
              if (json === undefined) {
                const pdu = this.engine.events.pdu(row.event_id);
                if (!pdu) break;
                json = JSON.stringify(toClientEvent(pdu, { roomId: room.roomId, rules: room.rules, now }));
              }
              let list = byService.get(service.id);
              if (!list) byService.set(service.id, (list = []));
              list.push({ roomId: room.roomId, eventId: row.event_id, json });
            }
          }
        }
        await enqueueAll(this.env, byService);
        this.setPosition(upTo);
      }
      this.failed = false;
      this.retryMs = RETRY_MS;
    } catch (e) {
      this.failed = true;
      console.warn("appservice hand-over failed; the alarm retries it", room.roomId, e instanceof Error ? e.message : e);
    }
  }

  /**
   * An ephemeral event of this room (typing, a public receipt) for the services that asked for them
   * (`receive_ephemeral`, MSC2409) and are interested in the room. Best effort, as for local members: a
   * failure is logged. A waiting event with the same `dedupeKey` is replaced (the latest typing list).
   */
  async pushEphemeral(event: { type: string; room_id: string; content: object }, dedupeKey: string): Promise<void> {
    try {
      const services = (await this.pushTargets()).filter((s) => s.registration.receiveEphemeral);
      if (services.length === 0) return;
      const interested = await this.servicesInterestedInRoom(event.room_id, services);
      const queued = { eduType: event.type, content: JSON.stringify(event), dedupeKey };
      await Promise.all(
        [...interested].map((id) => this.env.APPSERVICES.get(this.env.APPSERVICES.idFromName(id)).enqueue(id, [], [queued])),
      );
    } catch (e) {
      console.warn("appservice ephemeral event not queued", event.room_id, e instanceof Error ? e.message : e);
    }
  }

  /** Which of the services `ids` are interested in this room (appservice/streams.ts: presence, device lists). */
  async interested(ids: readonly string[]): Promise<string[]> {
    const room = this.engine.meta();
    if (!room) return [];
    const wanted = new Set(ids);
    const services = (await appservices(this.env)).filter((s) => wanted.has(s.id));
    if (services.length === 0) return [];
    return [...(await this.servicesInterestedInRoom(room.roomId, services))];
  }

  /** Synapse `is_interested_in_room`: room ID, aliases, or a local joined member in the namespace. */
  private async servicesInterestedInRoom(roomId: string, services: Appservice[]): Promise<Set<string>> {
    const out = new Set<string>();
    const members = this.engine.membersWith("join").filter((u) => this.engine.isLocalUser(u));
    let aliases: string[] | undefined;
    for (const service of services) {
      if (service.isRoomIdInNamespace(roomId) || members.some((u) => service.isInterestedInUser(u))) {
        out.add(service.id);
        continue;
      }
      aliases ??= await this.roomAliases(roomId);
      if (aliases.some((a) => service.isAliasInNamespace(a))) out.add(service.id);
    }
    return out;
  }

  private async roomAliases(roomId: string): Promise<string[]> {
    const now = Date.now();
    const fromState: string[] = [];
    const canonical = this.engine.currentStateEvent("m.room.canonical_alias", "");
    if (canonical) {
      if (typeof canonical.content.alias === "string") fromState.push(canonical.content.alias);
      const alt = canonical.content.alt_aliases;
      if (Array.isArray(alt)) for (const a of alt) if (typeof a === "string") fromState.push(a);
    }
    if (!this.aliases || now - this.aliases.at > ALIASES_CACHE_MS) {
      try {
        const { results } = await this.env.DB.prepare("SELECT alias FROM room_aliases WHERE room_id = ?").bind(roomId).all<{ alias: string }>();
        this.aliases = { at: now, list: results.map((r) => r.alias) };
      } catch {
        this.aliases = { at: now, list: [] };
      }
    }
    return [...fromState, ...this.aliases.list];
  }

  /** Created at the first event a service could get: just before the first new event of `results`. A
   * room that existed before services were registered does not replay its history to them. */
  private ensureCursor(results: readonly PersistResult[]): void {
    if (this.cursorReady) return;
    this.engine.sql.exec(SCHEMA);
    const fresh = results.filter((r) => !r.duplicate).map((r) => r.streamOrdering);
    const start = fresh.length > 0 ? Math.min(...fresh) - 1 : this.engine.maxStreamOrdering();
    this.engine.sql.exec("INSERT OR IGNORE INTO appservice_outbound (id, position) VALUES (1, ?)", start);
    this.cursorReady = true;
  }

  private position(): number {
    return this.engine.sql.exec<{ position: number }>("SELECT position FROM appservice_outbound WHERE id = 1").one().position;
  }

  private setPosition(position: number): void {
    this.engine.sql.exec("UPDATE appservice_outbound SET position = ? WHERE id = 1 AND position < ?", position, position);
  }

  private async armAlarm(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }
}

const instances = new WeakMap<DurableObjectState, RoomAppserviceOutbound>();

const byEngine = new WeakMap<RoomEngine, RoomAppserviceOutbound>();

function outboundOf(ctx: DurableObjectState, engine: RoomEngine, env: Env): RoomAppserviceOutbound {
  let o = instances.get(ctx);
  if (!o) {
    instances.set(ctx, (o = new RoomAppserviceOutbound(ctx, engine, env)));
    byEngine.set(engine, o);
  }
  return o;
}

/** Typing and receipts for services with `receive_ephemeral` (room/ephemeral.ts). Never rejects. */
export async function pushEphemeralToAppservices(
  ctx: DurableObjectState,
  engine: RoomEngine,
  env: Env,
  event: { type: string; room_id: string; content: object },
  dedupeKey: string,
): Promise<void> {
  await (byEngine.get(engine) ?? outboundOf(ctx, engine, env)).pushEphemeral(event, dedupeKey);
}

/** Which of the services `ids` are interested in this room (Synapse `is_interested_in_room`). */
export function appservicesInterestedInRoom(ctx: DurableObjectState, engine: RoomEngine, env: Env, ids: readonly string[]): Promise<string[]> {
  return (byEngine.get(engine) ?? outboundOf(ctx, engine, env)).interested(ids);
}

/** The Room DO's hook after a commit (room.ts `afterCommit`). */
export function enqueueForAppservices(ctx: DurableObjectState, engine: RoomEngine, env: Env, results: readonly PersistResult[]): Promise<void> {
  return outboundOf(ctx, engine, env).afterCommit(results);
}

/** The Room DO's alarm: hands over what a crash or a failed queue call left. */
export function retryAppserviceHandOver(ctx: DurableObjectState, engine: RoomEngine, env: Env): Promise<void> {
  return outboundOf(ctx, engine, env).retry();
}

/** The room's directory aliases changed: read them again at the next event. */
export function forgetRoomAliases(ctx: DurableObjectState): void {
  instances.get(ctx)?.forgetAliases();
}

/** Resolves when the hand-overs started so far have finished (tests, benchmarks). */
export function appserviceHandOverSettled(ctx: DurableObjectState): Promise<void> {
  return instances.get(ctx)?.settled() ?? Promise.resolve();
}

async function enqueueAll(env: Env, byService: Map<string, AppserviceEvent[]>): Promise<void> {
  const results = await Promise.allSettled(
    [...byService].map(([id, events]) => env.APPSERVICES.get(env.APPSERVICES.idFromName(id)).enqueue(id, events)),
  );
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed.length > 0) {
    const reason = failed[0]!.reason;
    throw new Error(`${failed.length} of ${results.length} appservice queues failed: ${reason instanceof Error ? reason.message : String(reason)}`);
  }
}
