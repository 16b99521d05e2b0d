// Sync tokens (spec: GET /sync `since` / `next_batch`): opaque to clients, decodable here.
//
//   s<position>            everything of the user's stream up to <position> was delivered
//   s<position>_<toDevice> the same, except that to-device messages were delivered only up to <toDevice>
//                          (the per-response to-device limit cut the batch; the rest follow next time)
//
// <position> is a position of the User DO's one stream (durable-objects/user.ts `stream`): room events
// (room_events_inbox), account data, push rules, to-device, device list changes, typing, receipts,
// presence and unread-count resets all take positions from the same counter, so "what changed since the
// token" is one range (position, now] of every table, and whatever commits after a token was issued has a
// larger position: it is in the next response, exactly once.
import { MatrixError } from "../../protocol/errors.js";

export interface SyncToken {
  position: number;
  /** Position up to which to-device messages were delivered (equal to `position` when not cut short). */
  toDevice: number;
}

export function encodeSyncToken(token: SyncToken): string {
  return token.toDevice < token.position ? `s${token.position}_${token.toDevice}` : `s${token.position}`;
}

const TOKEN = /^s([0-9]{1,15})(?:_([0-9]{1,15}))?$/;

/** Decodes a `since` token, or null if it is not one of ours. */
export function decodeSyncToken(text: string): SyncToken | null {
  const m = TOKEN.exec(text);
  if (!m) return null;
  const position = Number(m[1]);
  const toDevice = m[2] === undefined ? position : Number(m[2]);
  if (toDevice > position) return null;
  return { position, toDevice };
}

/** Decodes a client's `since`, or throws 400 M_INVALID_PARAM. */
export function parseSyncToken(text: string): SyncToken {
  const token = decodeSyncToken(text);
  if (!token) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid sync token");
  return token;
}
