// The Room DO's side of pushing events to application services (spec: Application Service API, "Pushing
// events"; which events: Synapse's `ApplicationService.is_interested_in_event`, synapse/appservice/__init__.py).
//
// A service gets an event of this room when its sender is the service's (its sender_localpart user or a
// user in its user namespaces), when it is a membership event about such a user (an invite to a bridged
// user), or when the service is interested in the room: the room ID is in its room namespaces, one of the
// room's aliases (the directory's, and the canonical alias and alt_aliases of its state) is in its alias
// namespaces, or a local joined member is one of its users. Services with `url: null` get nothing.
//
// Durability, as for federation (room/hand-over.ts, shared with room/outbound.ts): the room's `events` table is the log and a cursor
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
import { enqueueInQueues, RoomHandOver, type HandOverRow } from "./hand-over.js";

/** Longest delay between retries of a failed hand-over (the room's alarm; room/hand-over.ts). */
const MAX_RETRY_MS = 5 * 60_000;
/** How long the room trusts its copy of its directory aliases (D1 `room_aliases`). */
const ALIASES_CACHE_MS = 30_000;

class RoomAppserviceOutbound {
  /** The cursor, rounds and retries (room/hand-over.ts, shared with federation's room/outbound.ts). */
  private readonly handOver: RoomHandOver;
  private aliases: { at: number; list: string[] } | undefined;

  constructor(
    ctx: DurableObjectState,
    private readonly engine: RoomEngine,
    private readonly env: Env,
  ) {
    this.handOver = new RoomHandOver(ctx, engine, {
      table: "appservice_outbound",
      label: "appservice",
      maxRetryMs: MAX_RETRY_MS,
      handOver: (roomId, rows) => this.handOverRound(roomId, rows),
    });
  }

  async afterCommit(results: readonly PersistResult[]): Promise<void> {
    try {
      if (!this.engine.meta()) return;
      const fresh = results.filter((r) => !r.duplicate && r.rejectedReason === null && !r.softFailed);
      if (fresh.length === 0) return;
      const services = await this.pushTargets();
      // No service at all: the cursor need not exist yet (created at the first event a service could get).
      if (services.length === 0 && !this.handOver.ready) return;
      // A room that existed before services were registered does not replay its history to them.
      this.handOver.ensureCursor(results);
      if (services.length > 0) await this.handOver.armRetry();
    } catch (e) {
      console.warn("appservice hand-over not prepared; the next commit or the alarm retries it", e instanceof Error ? e.message : e);
    }
    if (this.handOver.ready) void this.handOver.kick();
  }

  async retry(): Promise<void> {
    if (!this.engine.meta()) return;
    try {
      if (!this.handOver.hasCursor()) return;
    } catch {
      return;
    }
    await this.handOver.retry();
  }

  forgetAliases(): void {
    this.aliases = undefined;
  }

  settled(): Promise<void> {
    return this.handOver.settled();
  }

  /** Registered services that receive pushes (a url). */
  private async pushTargets(): Promise<Appservice[]> {
    return (await appservices(this.env)).filter((s) => s.registration.url !== null);
  }

  /** One round of accepted events (room/hand-over.ts): each to the services interested in it. */
  private async handOverRound(roomId: string, rows: HandOverRow[]): Promise<void> {
    const rules = this.engine.meta()!.rules;
    const services = await this.pushTargets();
    const byService = new Map<string, AppserviceEvent[]>();
    if (services.length > 0 && rows.length > 0) {
      const roomInterest = await this.servicesInterestedInRoom(roomId, services);
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
            json = JSON.stringify(toClientEvent(pdu, { roomId, rules, now }));
          }
          let list = byService.get(service.id);
          if (!list) byService.set(service.id, (list = []));
          list.push({ roomId, eventId: row.event_id, json });
        }
      }
    }
    await enqueueInQueues("appservice", byService, (id, events) => this.env.APPSERVICES.get(this.env.APPSERVICES.idFromName(id)).enqueue(id, events));
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
