// Authorization rules (spec: room version docs, "Authorization rules"). Placeholder signature:
// the implementation is being written; the signature below is the agreed interface.
import type { IdentifiedPdu } from "./pdu.js";
import type { RoomVersionRules } from "./room-versions.js";

/** Looks up the current state event for (type, state_key) in the state the event is checked against. */
export type AuthStateLookup = (type: string, stateKey: string) => IdentifiedPdu | undefined;

export type AuthResult = { allowed: true } | { allowed: false; reason: string };

/**
 * Checks `event` against the authorization rules of its room version, given the state to check it
 * against (the state from its auth events, the state before it, or the current state).
 * The room's create event must be reachable as ("m.room.create", "") through `state`, also in v12
 * where it is not listed in `auth_events`.
 */
export function checkEventAuth(_event: IdentifiedPdu, _rules: RoomVersionRules, _state: AuthStateLookup): AuthResult {
  throw new Error("checkEventAuth: not implemented yet");
}
