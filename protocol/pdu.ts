// The persistent data unit (spec: Server-Server API, "PDUs"; room version docs, "Event format").
import type { JsonObject } from "./json.js";

/** `[event_id, {sha256: hash}]` as used by room versions 1 and 2. */
export type EventReferenceV1 = [string, { sha256?: string }];

/** A PDU as it travels on the wire and is stored. */
export interface Pdu {
  /** Present in room versions 1-2 only; later versions derive it from the reference hash. */
  event_id?: string;
  /** Absent on the v12 create event (the room ID is derived from it). */
  room_id?: string;
  sender: string;
  origin?: string;
  origin_server_ts: number;
  type: string;
  state_key?: string;
  content: JsonObject;
  prev_events: string[] | EventReferenceV1[];
  auth_events: string[] | EventReferenceV1[];
  depth: number;
  hashes: { sha256: string };
  signatures: Record<string, Record<string, string>>;
  /** v1-v10 top-level redaction target; v11+ puts it in content. */
  redacts?: string;
  unsigned?: JsonObject;
  [extra: string]: unknown;
}

/** A PDU together with its event ID (computed for v3+, taken from the PDU for v1-v2). */
export interface IdentifiedPdu extends Pdu {
  event_id: string;
}

function referenceIds(refs: string[] | EventReferenceV1[]): string[] {
  return refs.map((r) => (typeof r === "string" ? r : r[0]));
}

export const prevEventIds = (pdu: Pdu): string[] => referenceIds(pdu.prev_events);
export const authEventIds = (pdu: Pdu): string[] => referenceIds(pdu.auth_events);

export const isStateEvent = (pdu: Pdu): boolean => typeof pdu.state_key === "string";

/** Key of a state map entry. `\u0000` cannot occur in event types or state keys we accept. */
export type StateKey = string;
export const stateKey = (type: string, key: string): StateKey => `${type}\u0000${key}`;
export function splitStateKey(k: StateKey): [type: string, stateKey: string] {
  const i = k.indexOf("\u0000");
  return [k.slice(0, i), k.slice(i + 1)];
}

/** A room state: (type, state_key) -> event ID. */
export type StateMap = Map<StateKey, string>;

/** The server name part of a user, room or event ID (`@user:server` -> `server`). */
export function serverNameOf(id: string): string {
  const i = id.indexOf(":");
  return i < 0 ? "" : id.slice(i + 1);
}
