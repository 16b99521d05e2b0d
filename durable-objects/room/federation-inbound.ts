// PDUs from other servers (spec: Server-Server API, "Transactions", "Checks performed on receipt of a
// PDU", "Retrieving missing events"): each goes through the room's one entry point (engine.ts
// `persistEvent`); an event whose prev events are unknown first makes the room fetch the gap from the
// sending server: `get_missing_events` for a short gap, and when that does not reach known events, the
// state before the event (`/state_ids`, then the events it lacks) so that nothing is accepted without its
// auth chain.
import { MatrixError } from "../../protocol/errors.js";
import { eventIdFor } from "../../protocol/event-hashes.js";
import { isJsonObject } from "../../protocol/json.js";
import { authEventIds, prevEventIds, stateKey, type Pdu } from "../../protocol/pdu.js";
import { recordStickyReceipt } from "./sticky-receipt.js";
import { REMOTE_ROOM_FIRST_ORDERING, type PersistResult, type RoomEngine } from "./engine.js";
import type { ReadonlyStateMap } from "./state-groups.js";

/** The per-PDU answer of /send: empty on success, `error` otherwise (spec: "PDU Processing Result"). */
export type PduResult = { error?: string };

/** The answer of a request to another server (federation-client/request.ts `FederationResponse`). */
export type RemoteResponse = { ok: true; status: number; body: unknown } | { ok: false; status: number | null; errcode?: string; error: string };

/** A signed request to another server: the Room DO's one way out (it is given one, it does not build it). */
/** A signed GET whose answer is read as a stream (large answers: room/partial-state.ts). */
export type RemoteStream = (destination: string, path: string) => Promise<{ ok: true; response: Response } | { ok: false; error: string }>;

export type RemoteFetch = (destination: string, method: "GET" | "POST" | "PUT", path: string, body?: Record<string, unknown>) => Promise<RemoteResponse>;

/** Synapse asks for at most 10 missing events before falling back to the state. */
const MISSING_EVENTS_LIMIT = 10;
/** Above this many unknown state or auth events, fetch the whole state (/state) instead of one /event each. */
const SINGLE_FETCH_LIMIT = 50;

export interface ReceiveResult {
  results: Record<string, PduResult>;
  /** What was committed (for the caller's after-commit delivery). */
  persisted: PersistResult[];
}

/**
 * Persists the PDUs of one room from a transaction, in order. `remote` fetches gaps from `origin`; without
 * it (or when the origin cannot fill the gap) an event with unknown prev events gets an error and is not
 * stored (the origin sends it again, or another event's gap-fill brings it).
 */
export async function receivePdus(engine: RoomEngine, origin: string, pdus: Pdu[], remote?: RemoteFetch): Promise<ReceiveResult> {
  const results: Record<string, PduResult> = {};
  const persisted: PersistResult[] = [];
  const meta = engine.meta();
  for (const pdu of pdus) {
    let eventId: string;
    try {
      if (!meta) throw new MatrixError(404, "M_NOT_FOUND", "Unknown room");
      eventId = await eventIdFor(pdu, meta.rules);
    } catch (e) {
      // No event ID: there is nothing to key a result by but the room; Synapse drops such PDUs.
      if (!meta) {
        const id = typeof pdu.event_id === "string" ? pdu.event_id : `$unknown:${origin}`;
        results[id] = { error: "Unknown room" };
      }
      void e;
      continue;
    }
    try {
      const result = await persistFillingGaps(engine, origin, pdu, remote, persisted);
      persisted.push(result);
      // MSC4354: a sticky event dated in the future counts from its arrival (room/sticky-receipt.ts).
      if (!result.duplicate && result.rejectedReason === null) recordStickyReceipt(engine, eventId, pdu, Date.now());
      // An event stored as rejected was processed: its result is empty, as Synapse answers (only an event it
      // could not process gets an `error`; Complement msc3902 "Rejected events remain rejected after resync"
      // sends one in a transaction whose results must all be empty).
      results[eventId] = {};
    } catch (e) {
      if (!(e instanceof MatrixError)) throw e;
      results[eventId] = { error: e.message };
    }
  }
  return { results, persisted };
}

/** Whether every prev event of `pdu` has its place in the room's DAG (stored, and not as an outlier). */
function prevEventsKnown(engine: RoomEngine, pdu: Pdu): boolean {
  return prevEventIds(pdu).every((id) => engine.events.meta(id)?.outlier === false);
}

/**
 * The order Synapse follows (`FederationEventHandler.on_receive_pdu`, `_process_pulled_event`): first the
 * prev events (a short gap through `get_missing_events`, each event it brings processed as a pulled event),
 * then, when some are still missing, the state after each missing prev event from the origin
 * (`_compute_event_context_with_maybe_missing_prevs`), and only then the auth events the event still lacks
 * (`/event_auth`). Fetching state first often brings the auth events too (a room joined with partial state
 * lacks the senders' member events; Complement msc3902 "CanReceiveEventsWith...MissingParents...").
 */
async function persistFillingGaps(engine: RoomEngine, origin: string, pdu: Pdu, remote: RemoteFetch | undefined, persisted: PersistResult[]): Promise<PersistResult> {
  if (!remote || prevEventsKnown(engine, pdu)) {
    if (remote) await fetchMissingAuthEvents(engine, origin, pdu, remote);
    return engine.persistEvent(pdu, { origin: "federation" });
  }
  const meta = engine.meta()!;
  const eventId = await eventIdFor(pdu, meta.rules);

  // 1. A short gap: the events between our forward extremities and this one.
  const extremities = engine.forwardExtremities();
  let minDepth = Infinity;
  for (const id of extremities) minDepth = Math.min(minDepth, engine.events.meta(id)?.depth ?? Infinity);
  const missing = await remote(origin, "POST", `/_matrix/federation/v1/get_missing_events/${encodeURIComponent(meta.roomId)}`, {
    earliest_events: extremities,
    latest_events: [eventId],
    limit: MISSING_EVENTS_LIMIT,
    min_depth: Number.isFinite(minDepth) ? minDepth : 0,
  });
  if (missing.ok && isJsonObject(missing.body) && Array.isArray(missing.body.events)) {
    const events = (missing.body.events.filter(isJsonObject) as unknown as Pdu[]).sort((a, b) => a.depth - b.depth);
    for (const e of events) {
      try {
        persisted.push(await persistPulled(engine, origin, e, remote));
      } catch (err) {
        // This one could not be placed: the state fetch below covers the event we were sent.
        if (!(err instanceof MatrixError)) throw err;
      }
    }
  }
  // 2. Whatever is still missing: the state after each missing prev event, from the origin.
  return persistPulled(engine, origin, pdu, remote);
}

/**
 * An event whose prev events may be missing (one that `get_missing_events` brought, or the event we were
 * sent once that is done): with every prev event known it is persisted as usual; otherwise the state
 * before it is resolved from the states after its prev events, those we lack fetched from the origin.
 */
async function persistPulled(engine: RoomEngine, origin: string, pdu: Pdu, remote: RemoteFetch): Promise<PersistResult> {
  if (prevEventsKnown(engine, pdu)) {
    await fetchMissingAuthEvents(engine, origin, pdu, remote);
    return engine.persistEvent(pdu, { origin: "federation" });
  }
  const stateBefore = await stateFromPrevEvents(engine, origin, pdu, remote);
  await fetchMissingAuthEvents(engine, origin, pdu, remote);
  // Its missing prev events stay missing: the timeline has a hole before it (room/timeline-gaps.ts).
  return engine.persistEvent(pdu, { origin: "federation", stateBefore, afterGap: true });
}

/**
 * The state before `pdu` from the states after its prev events: ours for the prev events we have, the
 * origin's (`/state_ids` at the prev event, plus the event itself) for those we lack, resolved together
 * (Synapse: `_resolve_state_at_missing_prevs`). Resolving against our own states keeps a server from
 * taking over a room by withholding prev events and claiming a state of its choosing.
 */
async function stateFromPrevEvents(engine: RoomEngine, origin: string, pdu: Pdu, remote: RemoteFetch): Promise<ReadonlyStateMap> {
  const states: ReadonlyStateMap[] = [];
  for (const prev of prevEventIds(pdu)) {
    const known = engine.events.meta(prev)?.outlier === false ? engine.stateAtEvent(prev) : null;
    states.push(known ? known.after : await fetchStateAt(engine, origin, prev, remote, "after"));
  }
  if (states.length === 0) throw new MatrixError(400, "M_BAD_JSON", "Event has no prev events");
  return states.length === 1 ? states[0]! : engine.resolveStates(states);
}

/**
 * The state before `eventId` as the origin sees it (/state_ids), after storing every state and auth
 * event we lack as an outlier (each checked: signatures, hashes, auth events).
 */
export function fetchStateBefore(engine: RoomEngine, origin: string, eventId: string, remote: RemoteFetch): Promise<Map<string, string>> {
  return fetchStateAt(engine, origin, eventId, remote, "before");
}

/**
 * The state before (or after) `eventId` as the origin sees it: /state_ids, then the events we lack
 * (/state when many, /event each otherwise), stored as outliers after their checks. The state after an
 * event is the state before it with the event itself when it is a state event (it is fetched too).
 */
async function fetchStateAt(engine: RoomEngine, origin: string, eventId: string, remote: RemoteFetch, at: "before" | "after"): Promise<Map<string, string>> {
  const roomId = engine.meta()!.roomId;
  const ids = await remote(origin, "GET", `/_matrix/federation/v1/state_ids/${encodeURIComponent(roomId)}?event_id=${encodeURIComponent(eventId)}`);
  if (!ids.ok || !isJsonObject(ids.body) || !Array.isArray(ids.body.pdu_ids) || !Array.isArray(ids.body.auth_chain_ids)) {
    throw new MatrixError(502, "M_UNKNOWN", `Could not fetch the state ${at} ${eventId} from ${origin}`);
  }
  const stateIds = ids.body.pdu_ids.filter((x): x is string => typeof x === "string");
  const authIds = ids.body.auth_chain_ids.filter((x): x is string => typeof x === "string");
  const lacking = [...new Set([...authIds, ...stateIds])].filter((id) => !engine.events.has(id));
  const fetched: Pdu[] = [];
  if (lacking.length > SINGLE_FETCH_LIMIT) {
    const full = await remote(origin, "GET", `/_matrix/federation/v1/state/${encodeURIComponent(roomId)}?event_id=${encodeURIComponent(eventId)}`);
    if (!full.ok || !isJsonObject(full.body)) throw new MatrixError(502, "M_UNKNOWN", `Could not fetch the state ${at} ${eventId} from ${origin}`);
    for (const list of [full.body.auth_chain, full.body.pdus]) if (Array.isArray(list)) fetched.push(...(list.filter(isJsonObject) as unknown as Pdu[]));
  } else {
    for (const id of lacking) {
      const one = await fetchEvent(origin, id, remote);
      if (one) fetched.push(one);
    }
  }
  // The event itself, for the state after it (its own auth events are in the state or the auth chain).
  if (at === "after" && !engine.events.has(eventId)) {
    const self = await fetchEvent(origin, eventId, remote);
    if (self) fetched.push(self);
  }
  await engine.persistOutliers(fetched);
  const state = new Map<string, string>();
  for (const id of at === "after" ? [...stateIds, eventId] : stateIds) {
    const e = engine.events.meta(id);
    // Events we could not fetch or that failed their checks are left out of the state, as Synapse does.
    if (!e || e.rejectedReason !== null || e.stateKey === null) continue;
    state.set(stateKey(e.type, e.stateKey), id);
  }
  return state;
}

async function fetchEvent(origin: string, eventId: string, remote: RemoteFetch): Promise<Pdu | undefined> {
  const one = await remote(origin, "GET", `/_matrix/federation/v1/event/${encodeURIComponent(eventId)}`);
  return one.ok && isJsonObject(one.body) && Array.isArray(one.body.pdus) && isJsonObject(one.body.pdus[0]) ? (one.body.pdus[0] as unknown as Pdu) : undefined;
}

/** Events asked for per backfill request (Synapse asks for 100 when a client paginates). */
export const BACKFILL_LIMIT = 100;
/** Backfilled events whose prev events are still unknown each need the state from the remote; at most
 * this many per request (branches of history beyond are left for the next pagination). */
const MAX_STATE_FETCHES_PER_BACKFILL = 3;

/**
 * Fetches history before the room's earliest stored events (spec: "Backfilling") from the first server in
 * `servers` that answers, and stores it below the existing stream orderings. Returns how many events were
 * stored (0: nothing more to get, or nobody answered).
 */
export async function backfill(engine: RoomEngine, servers: string[], remote: RemoteFetch, limit = BACKFILL_LIMIT): Promise<number> {
  const meta = engine.meta();
  if (!meta) return 0;
  const from = engine.backwardExtremities();
  if (from.length === 0) return 0;
  const query = [...from.map((id) => `v=${encodeURIComponent(id)}`), `limit=${limit}`].join("&");
  for (const server of servers) {
    const answer = await remote(server, "GET", `/_matrix/federation/v1/backfill/${encodeURIComponent(meta.roomId)}?${query}`);
    if (!answer.ok || !isJsonObject(answer.body) || !Array.isArray(answer.body.pdus)) continue;
    const pdus = answer.body.pdus.filter(isJsonObject) as unknown as Pdu[];
    if (pdus.length === 0) return 0;
    return storeBackfilled(engine, server, pdus, remote);
  }
  return 0;
}

async function storeBackfilled(engine: RoomEngine, origin: string, pdus: Pdu[], remote: RemoteFetch): Promise<number> {
  const rules = engine.meta()!.rules;
  const withIds: { id: string; pdu: Pdu }[] = [];
  for (const pdu of pdus) {
    const id = await eventIdFor(pdu, rules).catch(() => null);
    if (id !== null && !engine.events.meta(id)) withIds.push({ id, pdu });
    else if (id !== null && engine.events.meta(id)?.outlier) withIds.push({ id, pdu });
  }
  // Oldest first, so that each event's prev events are stored before it; orderings below the lowest.
  withIds.sort((a, b) => a.pdu.depth - b.pdu.depth || (a.id < b.id ? -1 : 1));
  const lowest = engine.minStreamOrdering() ?? REMOTE_ROOM_FIRST_ORDERING;
  const base = lowest - withIds.length;
  if (base < 1) return 0;
  let stored = 0;
  let stateFetches = 0;
  for (const [i, { id, pdu }] of withIds.entries()) {
    if (engine.events.meta(id)?.outlier === false) continue;
    const options = { origin: "federation" as const, backfillOrdering: base + i };
    try {
      const known = prevEventIds(pdu).every((p) => engine.events.meta(p)?.outlier === false);
      if (known) await engine.persistEvent(pdu, options);
      else {
        if (stateFetches >= MAX_STATE_FETCHES_PER_BACKFILL) continue;
        stateFetches += 1;
        const stateBefore = await fetchStateBefore(engine, origin, id, remote);
        await engine.persistEvent(pdu, { ...options, stateBefore });
      }
      stored += 1;
    } catch (e) {
      if (!(e instanceof MatrixError)) throw e;
    }
  }
  return stored;
}

/**
 * An event whose auth events we do not have (typical in a room joined with partial state: the sender's
 * membership was left out) gets its auth chain from the origin (GET /event_auth), stored as outliers after
 * their own checks, so that the event is checked against real events instead of being rejected.
 */
async function fetchMissingAuthEvents(engine: RoomEngine, origin: string, pdu: Pdu, remote: RemoteFetch): Promise<void> {
  if (authEventIds(pdu).every((id) => engine.events.has(id))) return;
  const meta = engine.meta();
  if (!meta) return;
  const eventId = await eventIdFor(pdu, meta.rules).catch(() => null);
  if (eventId === null) return;
  const answer = await remote(origin, "GET", `/_matrix/federation/v1/event_auth/${encodeURIComponent(meta.roomId)}/${encodeURIComponent(eventId)}`);
  if (!answer.ok || !isJsonObject(answer.body) || !Array.isArray(answer.body.auth_chain)) return;
  await engine.persistOutliers(answer.body.auth_chain.filter(isJsonObject) as unknown as Pdu[]);
}
