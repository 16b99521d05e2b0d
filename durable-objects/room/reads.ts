// Reads for clients: who may see which state (Synapse's `check_user_in_room_or_world_readable` and
// `get_state_events`), and events in the client format (client-event.ts) with their per-reader fields.
import { forbidden } from "../../protocol/errors.js";
import { MAX_STICKY_DURATION_MS, toClientEvent, type ClientEvent, type RedactionClientEvent } from "./client-event.js";
import type { RoomEngine } from "./engine.js";
import type { ReadonlyStateMap } from "./state-groups.js";
import { stickyReceivedAt } from "./sticky-receipt.js";

/** The reader of an event: `unsigned.transaction_id` is only shown to the device that sent it. */
export interface Reader {
  userId: string;
  deviceId?: string;
}

/**
 * The state a user may read: the current state if they are joined; the state when they left if they left
 * (and did not forget the room); the current state if the room is world-readable; otherwise 403 (also for
 * rooms this server does not know, as Synapse answers).
 */
export function visibleState(engine: RoomEngine, userId: string): ReadonlyStateMap {
  const meta = engine.meta();
  if (meta) {
    const m = engine.membershipOf(userId);
    if (m?.membership === "join") return engine.currentState();
    if (m?.membership === "leave" && !engine.isForgotten(userId)) {
      const at = engine.eventMeta(m.eventId);
      if (at) return engine.stateGroups.load(at.stateGroupAfter);
    }
    if (engine.currentStateEvent("m.room.history_visibility", "")?.content.history_visibility === "world_readable") {
      return engine.currentState();
    }
  }
  throw forbidden(`User ${userId} not in room ${meta?.roomId ?? "(unknown)"}`);
}

/** Stored events in the client format. Unknown IDs are skipped. */
export function clientEvents(engine: RoomEngine, eventIds: Iterable<string>, reader?: Reader, now = Date.now()): ClientEvent[] {
  const meta = engine.meta();
  if (!meta) return [];
  const out: ClientEvent[] = [];
  for (const id of eventIds) {
    const event = clientEvent(engine, id, reader, now, true);
    if (event) out.push(event);
  }
  return out;
}

function clientEvent(engine: RoomEngine, eventId: string, reader: Reader | undefined, now: number, withRedaction: boolean): ClientEvent | undefined {
  const meta = engine.meta()!;
  const pdu = engine.events.pdu(eventId);
  const m = engine.eventMeta(eventId);
  if (!pdu || !m) return undefined;
  let transactionId: string | undefined;
  if (reader?.deviceId !== undefined && pdu.sender === reader.userId) {
    transactionId = engine.transactionIdOf(eventId, reader.userId, reader.deviceId);
  }
  const redactedBecause = withRedaction && m.redactedBecause !== null ? (clientEvent(engine, m.redactedBecause, reader, now, false) as RedactionClientEvent | undefined) : undefined;
  const replacedState = m.replacesState !== null ? engine.events.pdu(m.replacesState) : undefined;
  // MSC4354: a sticky event dated after it arrived counts from its arrival (room/sticky-receipt.ts).
  const stickyReceivedTs = pdu.msc4354_sticky !== undefined && pdu.origin_server_ts > now - MAX_STICKY_DURATION_MS ? stickyReceivedAt(engine, eventId) : undefined;
  return toClientEvent(pdu, {
    roomId: meta.roomId,
    rules: meta.rules,
    now,
    transactionId,
    redactedBecause,
    replacedState,
    serverDomainOf: engine.keyIdentity().serverDomainOf,
    accountNameOf: engine.keyIdentity().accountNameOf,
    ...(stickyReceivedTs !== undefined ? { stickyReceivedTs } : {}),
  });
}

/** A state map's events in the client format, ordered by type then state key (a stable order for clients). */
export function stateClientEvents(engine: RoomEngine, state: ReadonlyStateMap, reader?: Reader): ClientEvent[] {
  const keys = [...state.keys()].sort();
  return clientEvents(
    engine,
    keys.map((k) => state.get(k)!),
    reader,
  );
}
