// The client format of room events (spec: Client-Server API, "Room event format" / ClientEvent): a PDU
// without its federation fields, with `unsigned` computed for the reader. The one place that turns a
// stored PDU into what clients see, for every endpoint that returns events.
import type { JsonObject } from "../../protocol/json.js";
import type { IdentifiedPdu } from "../../protocol/pdu.js";
import type { RoomVersionRules } from "../../protocol/room-versions.js";

export interface ClientEventUnsigned {
  /** Milliseconds since the event was sent (as the reading server sees it). */
  age?: number;
  /** The client's transaction ID, only for the device that sent the event. */
  transaction_id?: string;
  /** The redaction event that redacted this one (in client format; its own `unsigned` has no nesting). */
  redacted_because?: RedactionClientEvent;
  /** State events: the content and sender of the state event this one replaced. */
  prev_content?: JsonObject;
  prev_sender?: string;
  replaces_state?: string;
  /** MSC4354: how much longer (ms) a sticky event stays sticky, as the reading server sees it. */
  msc4354_sticky_duration_ttl_ms?: number;
  /** MSC4345: the verified domain of the sender's server key (decision 12). */
  server_domain?: string;
  /** MSC4348: the account name (not a user ID) of the sender's account, where this server knows it. */
  account?: string;
  /** MSC4115: the reader's membership at the time of the event. */
  membership?: string;
}

/** A redaction event as it appears in `redacted_because` (a plain client event without further nesting;
 * kept non-recursive so the type crosses Durable Object RPC). */
export interface RedactionClientEvent extends Omit<ClientEvent, "unsigned"> {
  unsigned?: Omit<ClientEventUnsigned, "redacted_because">;
}

export interface ClientEvent {
  event_id: string;
  type: string;
  content: JsonObject;
  sender: string;
  origin_server_ts: number;
  room_id: string;
  state_key?: string;
  /** Redactions: the redacted event's ID. v11+ keeps it in `content.redacts`; servers still copy it to
   * the top level for clients written before v11 (as Synapse does). */
  redacts?: string;
  /** MSC4354 sticky events: the PDU's sticky duration, capped at one hour. */
  msc4354_sticky?: { duration_ms: number };
  unsigned?: ClientEventUnsigned;
}

export interface ClientEventOptions {
  roomId: string;
  rules: RoomVersionRules;
  /** The reader's clock, for `unsigned.age`. */
  now: number;
  transactionId?: string;
  redactedBecause?: RedactionClientEvent;
  /** For state events: the state event this one replaced (the state before it at its key). */
  replacedState?: IdentifiedPdu;
  /** MSC4345 rooms: the domain this server verified for the sender's server key, if any. */
  serverDomainOf?: (userId: string) => string | undefined;
  /** MSC4348 rooms: the account name of an `@<account key>` sender, if this server knows it. */
  accountNameOf?: (userId: string) => string | undefined;
  /** MSC4115: the reader's membership at the time of the event (timeline reads only, not state lists). */
  membership?: string;
  /** MSC4354: when this server received a sticky event dated in the future (room/sticky-receipt.ts). */
  stickyReceivedTs?: number;
}

/** Converts a stored PDU (already redacted if a redaction applied) into the client format. */
export function toClientEvent(pdu: IdentifiedPdu, options: ClientEventOptions): ClientEvent {
  const event: ClientEvent = {
    event_id: pdu.event_id,
    type: pdu.type,
    content: pdu.content,
    sender: pdu.sender,
    origin_server_ts: pdu.origin_server_ts,
    // The v12 create event has no room_id; clients always get one.
    room_id: pdu.room_id ?? options.roomId,
  };
  if (typeof pdu.state_key === "string") event.state_key = pdu.state_key;
  if (pdu.type === "m.room.redaction") {
    const redacts = options.rules.eventFormat.redactsInContent ? pdu.content.redacts : pdu.redacts;
    if (typeof redacts === "string") event.redacts = redacts;
  }
  const unsigned: ClientEventUnsigned = { age: Math.max(0, options.now - pdu.origin_server_ts) };
  const sticky = stickyDurationMs(pdu);
  if (sticky !== undefined) {
    event.msc4354_sticky = { duration_ms: sticky };
    unsigned.msc4354_sticky_duration_ttl_ms = Math.max(0, stickyUntil(pdu, sticky, options.now, options.stickyReceivedTs) - options.now);
  }
  if (options.transactionId !== undefined) unsigned.transaction_id = options.transactionId;
  if (options.redactedBecause !== undefined) unsigned.redacted_because = options.redactedBecause;
  if (options.replacedState !== undefined) {
    unsigned.replaces_state = options.replacedState.event_id;
    unsigned.prev_content = options.replacedState.content;
    unsigned.prev_sender = options.replacedState.sender;
  }
  // MSC4345 (decision 12): `unsigned.server_domain` only once the server verified the domain.
  const domain = options.serverDomainOf?.(pdu.sender);
  if (domain !== undefined) unsigned.server_domain = domain;
  // MSC4348 "Obtaining account and profile information as a client": `unsigned.account`.
  const account = options.accountNameOf?.(pdu.sender);
  if (account !== undefined) unsigned.account = account;
  if (options.membership !== undefined) unsigned.membership = options.membership;
  event.unsigned = unsigned;
  return event;
}

/** MSC4354's longest sticky duration (one hour): longer durations are treated as this. */
export const MAX_STICKY_DURATION_MS = 3_600_000;

/** The sticky duration of a PDU (MSC4354 `msc4354_sticky.duration_ms`, capped at one hour), or undefined
 * when it is not a sticky event. */
export function stickyDurationMs(pdu: { [key: string]: unknown }): number | undefined {
  const sticky = pdu.msc4354_sticky;
  if (typeof sticky !== "object" || sticky === null) return undefined;
  const duration = (sticky as { duration_ms?: unknown }).duration_ms;
  if (typeof duration !== "number" || !Number.isInteger(duration) || duration < 0) return undefined;
  return Math.min(duration, MAX_STICKY_DURATION_MS);
}

/** When a sticky event stops being sticky: MSC4354 counts from min(origin_server_ts, the time the server
 * received it) (`receivedTs`, room/sticky-receipt.ts; recorded only for events dated in the future when they
 * arrived). Without it, a timestamp in the future is treated as now, as matrix-js-sdk does. */
export function stickyUntil(pdu: { origin_server_ts: number }, durationMs: number, now: number, receivedTs?: number): number {
  return Math.min(pdu.origin_server_ts, receivedTs ?? now, now) + durationMs;
}
