// What a Room DO serves to other servers (spec: Server-Server API, "Retrieving events", "Backfilling and
// retrieving missing events", "Authentication" of the room endpoints): single events, the state at an
// event (full or as IDs), auth chains, backfill and missing events.
//
// Who may read: a server with a joined member in the room's current state (Synapse's
// `_check_host_in_room`: 403 "Host not in room" otherwise). What it may see: history visibility applied to
// servers (spec: "Server behaviour" of history visibility; Synapse's `filter_events_for_server`): an event
// is visible when the room was `world_readable` or `shared` at it, or when a user of that server was joined
// at it (or invited, under `invited`). An invisible event is served in its redacted form, as Synapse does,
// so that the requesting server still has the DAG.
import { MatrixError, forbidden, notFound } from "../../protocol/errors.js";
import { authEventIds, prevEventIds, splitStateKey, type IdentifiedPdu, type Pdu } from "../../protocol/pdu.js";
import { redactPdu } from "../../protocol/redaction.js";
import { createEventIdFromRoomId } from "../../protocol/state-res.js";
import { wireForm, type RoomEngine } from "./engine.js";
import { MAX_PARAMS } from "./event-rows.js";
import { historyVisibilityOf } from "./history-visibility.js";
import { isPartialState } from "./partial-state.js";

/** Spec: "get_missing_events" limit default 10; Synapse caps backfill and missing events at 100. */
export const MAX_FEDERATION_PAGE = 100;

/** 403 unless `server` has a joined member in the current state (or is this server). */
export function assertServerInRoom(engine: RoomEngine, server: string): void {
  if (!engine.meta()) throw notFound("Unknown room");
  if (!serverInRoom(engine, server)) throw forbidden("Host not in room.");
}

export function serverInRoom(engine: RoomEngine, server: string): boolean {
  // Member state keys are user IDs; the server name is everything after the first colon. In MSC4345
  // rooms that part is the server key: the server is the domain its participation routes to.
  for (const userId of engine.membersWith("join")) if (engine.routingServerOf(userId) === server) return true;
  return false;
}

/** The servers with at least one joined member, sorted (the `servers_in_room` of send_join, and the
 * destinations of an event). */
export function serversInRoom(engine: RoomEngine): string[] {
  const servers = new Set<string>();
  for (const userId of engine.membersWith("join")) servers.add(engine.routingServerOf(userId));
  servers.delete("");
  return [...servers].sort();
}

/** The wire form of a stored event (redacted already if a redaction applied). */
export function wirePdu(engine: RoomEngine, eventId: string): Pdu | undefined {
  const pdu = engine.events.pdu(eventId);
  const meta = engine.meta();
  return pdu && meta ? wireForm(pdu, meta.rules) : undefined;
}

/** Whether `server` may see an event (history visibility for servers), given its stored row. */
export function serverCanSee(engine: RoomEngine, server: string, eventId: string): boolean {
  const m = engine.events.meta(eventId);
  if (!m) return false;
  // Outliers have no state of their own: they are auth or state events, which every server in the room
  // needs to check the DAG (Synapse serves them).
  if (m.outlier) return true;
  const group = m.stateGroupBefore;
  const hvId = engine.stateGroups.lookup(group, "m.room.history_visibility", "");
  let visibility = historyVisibilityOf(hvId ? engine.events.pdu(hvId)?.content : undefined);
  if (m.type === "m.room.history_visibility" && m.stateKey === "") {
    // The more permissive of before and after, as for users.
    const after = historyVisibilityOf(engine.events.pdu(eventId)?.content);
    if (after === "world_readable" || (after === "shared" && visibility !== "world_readable")) visibility = after;
  }
  if (visibility === "world_readable" || visibility === "shared") return true;
  for (const [key, memberEventId] of engine.stateGroups.load(group)) {
    const [type, userId] = splitStateKey(key);
    if (type !== "m.room.member" || engine.routingServerOf(userId) !== server) continue;
    const membership = engine.events.pdu(memberEventId)?.content.membership;
    if (membership === "join" || (visibility === "invited" && membership === "invite")) return true;
  }
  // The event's own member event, for the server of its state key (an invite or join of its user).
  if (m.type === "m.room.member" && m.stateKey !== null && engine.routingServerOf(m.stateKey) === server) return true;
  return false;
}

/** An event as served to `server`: its wire form, redacted when the server may not see it. */
export function pduForServer(engine: RoomEngine, server: string, eventId: string): Pdu | undefined {
  const pdu = wirePdu(engine, eventId);
  if (!pdu) return undefined;
  return serverCanSee(engine, server, eventId) ? pdu : redactPdu(pdu, engine.meta()!.rules);
}

/** GET /_matrix/federation/v1/event/{eventId}: 404 for unknown events. */
export function eventForServer(engine: RoomEngine, server: string, eventId: string): Pdu {
  assertServerInRoom(engine, server);
  const m = engine.events.meta(eventId);
  if (!m || m.rejectedReason !== null) throw notFound("Event not found");
  return pduForServer(engine, server, eventId)!;
}

/**
 * The auth chain of some events: every event reachable through auth_events, without the events
 * themselves unless they are reachable. Read breadth-first in chunks below the parameter limit.
 */
export function authChainIds(engine: RoomEngine, eventIds: readonly string[]): string[] {
  const seen = new Set<string>();
  let frontier = [...new Set(eventIds)];
  while (frontier.length > 0) {
    const next: string[] = [];
    for (let i = 0; i < frontier.length; i += MAX_PARAMS) {
      const chunk = frontier.slice(i, i + MAX_PARAMS);
      for (const r of engine.sql.exec<{ auth_event_id: string }>(
        `SELECT auth_event_id FROM auth_edges WHERE event_id IN (${chunk.map(() => "?").join(",")})`,
        ...chunk,
      )) {
        if (!seen.has(r.auth_event_id)) {
          seen.add(r.auth_event_id);
          next.push(r.auth_event_id);
        }
      }
    }
    frontier = next;
  }
  // Room version 12 (MSC4291): every event but the create event is authorised by the create event without
  // naming it in auth_events (so no auth edge records it); it is still in the auth chain, as Synapse and
  // gomatrixserverlib count it (their auth_event_ids() add it).
  const meta = engine.meta();
  if (meta?.rules.authorization.roomCreateEventIdAsRoomId) {
    const createId = createEventIdFromRoomId(meta.roomId);
    if (createId !== undefined && !seen.has(createId) && eventIds.some((id) => id !== createId)) seen.add(createId);
  }
  return [...seen];
}

/** The state before an event as event IDs (spec: GET /state_ids "the state at the given event"). */
function stateIdsBefore(engine: RoomEngine, eventId: string): string[] {
  const m = engine.events.meta(eventId);
  if (!m || m.outlier || m.rejectedReason !== null) throw notFound("Event not found");
  return [...engine.stateGroups.load(m.stateGroupBefore).values()];
}

/** Synapse's error code (MSC3895) for a request it cannot authorise while the room is partial-stated. */
export const UNABLE_DUE_TO_PARTIAL_STATE = "ORG.MATRIX.MSC3895_UNABLE_DUE_TO_PARTIAL_STATE";

/**
 * While this server holds the room with partial state (room/partial-state.ts) it knows neither which servers
 * are in the room nor the state at its events: /state and /state_ids are refused, as Synapse refuses them
 * (`assert_host_in_room` without `allow_partial_state_rooms`: 403, MSC3895's code, its words).
 */
function refuseWhilePartial(engine: RoomEngine): void {
  if (isPartialState(engine)) throw new MatrixError(403, UNABLE_DUE_TO_PARTIAL_STATE, "Unable to authorise you right now; room is partial-stated here.");
}

/** GET /_matrix/federation/v1/state_ids/{roomId}?event_id=. */
export function stateIdsForServer(engine: RoomEngine, server: string, eventId: string): { pdu_ids: string[]; auth_chain_ids: string[] } {
  refuseWhilePartial(engine);
  assertServerInRoom(engine, server);
  const stateIds = stateIdsBefore(engine, eventId);
  return { pdu_ids: stateIds, auth_chain_ids: authChainIds(engine, stateIds) };
}

/** GET /_matrix/federation/v1/state/{roomId}?event_id=. */
export function stateForServer(engine: RoomEngine, server: string, eventId: string): { pdus: Pdu[]; auth_chain: Pdu[] } {
  const ids = stateIdsForServer(engine, server, eventId);
  return { pdus: pdusOf(engine, ids.pdu_ids), auth_chain: pdusOf(engine, ids.auth_chain_ids) };
}

/** GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}. */
export function eventAuthForServer(engine: RoomEngine, server: string, eventId: string): { auth_chain: Pdu[] } {
  assertServerInRoom(engine, server);
  if (!engine.events.has(eventId)) throw notFound("Event not found");
  return { auth_chain: pdusOf(engine, authChainIds(engine, [eventId])) };
}

/** Stored events in wire form (state and auth events are not subject to history visibility). */
export function pdusOf(engine: RoomEngine, eventIds: readonly string[]): Pdu[] {
  const out: Pdu[] = [];
  for (const id of eventIds) {
    const pdu = wirePdu(engine, id);
    if (pdu) out.push(pdu);
  }
  return out;
}

/**
 * GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit=: the given events and their ancestors through
 * prev_events, breadth-first from the newest, at most `limit`, deepest first (Synapse's order).
 */
export function backfillForServer(engine: RoomEngine, server: string, from: readonly string[], limit: number): Pdu[] {
  assertServerInRoom(engine, server);
  const n = Math.max(0, Math.min(limit, MAX_FEDERATION_PAGE));
  const picked = new Map<string, number>();
  // A max-depth-first walk: always expand the deepest event not yet taken.
  const queue: { id: string; depth: number }[] = [];
  const push = (id: string) => {
    const m = engine.events.meta(id);
    if (!m || m.outlier || picked.has(id) || queue.some((q) => q.id === id)) return;
    queue.push({ id, depth: m.depth });
  };
  for (const id of from) push(id);
  while (queue.length > 0 && picked.size < n) {
    queue.sort((a, b) => b.depth - a.depth || (a.id < b.id ? -1 : 1));
    const { id, depth } = queue.shift()!;
    picked.set(id, depth);
    const pdu = engine.events.pdu(id);
    if (pdu) for (const prev of prevEventIds(pdu)) push(prev);
  }
  return [...picked.keys()].flatMap((id) => {
    const pdu = pduForServer(engine, server, id);
    return pdu ? [pdu] : [];
  });
}

/**
 * POST /_matrix/federation/v1/get_missing_events/{roomId}: events between `earliest` (exclusive, known to
 * the requester) and `latest` (exclusive), walking prev_events back from `latest`, at most `limit`, not
 * below `minDepth`; returned oldest first (Synapse's order).
 */
export function missingEventsForServer(
  engine: RoomEngine,
  server: string,
  request: { earliest: readonly string[]; latest: readonly string[]; limit: number; minDepth: number },
): Pdu[] {
  assertServerInRoom(engine, server);
  const n = Math.max(0, Math.min(request.limit, MAX_FEDERATION_PAGE));
  const stop = new Set(request.earliest);
  const seen = new Set<string>(request.latest);
  const found: IdentifiedPdu[] = [];
  let frontier = [...request.latest];
  while (frontier.length > 0 && found.length < n) {
    const next: string[] = [];
    for (const id of frontier) {
      const pdu = engine.events.pdu(id);
      if (!pdu) continue;
      for (const prev of prevEventIds(pdu)) {
        if (seen.has(prev) || stop.has(prev)) continue;
        seen.add(prev);
        const m = engine.events.meta(prev);
        if (!m || m.outlier || m.depth < request.minDepth) continue;
        const prevPdu = engine.events.pdu(prev);
        if (!prevPdu) continue;
        found.push(prevPdu);
        next.push(prev);
        if (found.length >= n) break;
      }
      if (found.length >= n) break;
    }
    frontier = next;
  }
  found.sort((a, b) => a.depth - b.depth || (a.event_id < b.event_id ? -1 : 1));
  return found.flatMap((e) => {
    const pdu = pduForServer(engine, server, e.event_id);
    return pdu ? [pdu] : [];
  });
}

/** A parameter error of the federation read endpoints. */
export function badFederationRequest(message: string): MatrixError {
  return new MatrixError(400, "M_INVALID_PARAM", message);
}

export { authEventIds };
