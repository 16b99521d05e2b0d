// Creating an event for a local sender on top of the room's current state: prev_events are the forward
// extremities (at most 10, the most recent first, as Synapse), auth events come from the current state,
// and the event then goes through the one entry point, `RoomEngine.persistEvent`.
import type { IdentifiedPdu } from "../../protocol/pdu.js";
import { forbidden } from "../../protocol/errors.js";
import { signingKey } from "../../worker/server-identity.js";
import type { Env } from "../../worker/env.js";
import { MAX_PREV_EVENTS, buildLocalEvent, type EventTemplate } from "./build-event.js";
import type { PersistResult, RoomEngine, TxnKey } from "./engine.js";

/** The prev events of the next local event: the forward extremities, deepest first, at most 10. */
export function choosePrevEvents(engine: RoomEngine): IdentifiedPdu[] {
  const prevs: IdentifiedPdu[] = [];
  for (const id of engine.forwardExtremities()) {
    const e = engine.events.pdu(id);
    if (e) prevs.push(e);
  }
  prevs.sort((a, b) => b.depth - a.depth || b.origin_server_ts - a.origin_server_ts);
  return prevs.slice(0, MAX_PREV_EVENTS);
}

/**
 * Builds a local event on the current state and persists it. Auth failures are 403 M_FORBIDDEN with the
 * auth rule's reason; nothing is stored then. A repeated client transaction returns the first event.
 */
export async function createLocalEvent(engine: RoomEngine, env: Env, template: EventTemplate, txn?: TxnKey): Promise<PersistResult> {
  const meta = engine.meta();
  if (!meta) throw forbidden("Unknown room");
  if (txn) {
    const existing = engine.txnEventId(txn);
    if (existing !== undefined) {
      const m = engine.eventMeta(existing)!;
      return { eventId: existing, streamOrdering: m.streamOrdering, rejectedReason: null, softFailed: false, duplicate: true, fanOut: false };
    }
  }
  const built = await buildLocalEvent(template, {
    roomId: meta.roomId,
    rules: meta.rules,
    serverName: env.SERVER_NAME,
    key: await signingKey(env),
    prevEvents: choosePrevEvents(engine),
    state: engine.currentLookup,
    now: template.originServerTs ?? Date.now(),
    accountKey: engine.localAccounts.signingKeyOf(template.sender),
  });
  return engine.persistEvent(built.pdu, { origin: "local", txn });
}
