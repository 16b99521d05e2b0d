// What a Room DO tells a User DO after it committed an event that concerns the user (DESIGN.md: "Long-polls
// are woken by the writer (the Room DO notifies the User DO)"). Small on purpose: the User DO (sync) reads
// the event itself from the Room DO when it needs more.
//
// Who is told, and when: docs/fan-out.md. Pushes (`onRoomEvents`, batched per user) go to the User DOs
// that listen to the room and to the user a membership event is about; other members' User DOs read the
// same notifications from the room when their user syncs (`RoomDurableObject.listen`). Delivery is at
// least once (a fan-out cursor and an outbox of failed pushes, retried from the Room DO's alarm), so a
// User DO treats (roomId, streamOrdering) as the identity of a notification and ignores repeats.

/** One committed room event that concerns a local user. */
export interface RoomEventNotification {
  roomId: string;
  /** The event's position in the room's stream (per room, increasing, never reused). */
  streamOrdering: number;
  eventId: string;
  type: string;
  stateKey?: string;
  sender: string;
  /** For `m.room.member` events: `content.membership` (the state_key user's new membership). */
  membership?: string;
  /** The event's `origin_server_ts` (sliding sync sorts rooms by the time of their latest activity;
   * catch-ups deliver several rooms' events in no particular order across rooms). */
  ts?: number;
}

// ---------------------------------------------------------------------------------------------
// Sync additions (durable-objects/user/sync.ts is the consumer).

/**
 * What the recipient's push rules need to evaluate the event when the notification arrives (spec:
 * "Push Rules"; the User DO keeps the unread counts of /sync from them). Added by the Room DO when it
 * delivers (room/push-inputs.ts), so the User DO never has to call back for the event.
 */
export interface RoomEventPushInputs {
  /** The event as push rules see it (type, content, sender, state_key, room_id, event_id), JSON text. */
  eventJson: string;
  /** Joined members of the room (`room_member_count`). */
  roomMemberCount: number;
  /** The sender's power level (`sender_notification_permission`). */
  senderPowerLevel: number;
  /** `notifications` of m.room.power_levels (missing keys default to 50). */
  notificationPowerLevels: Record<string, number>;
  /** The recipient's display name in the room (`contains_display_name`). */
  displayName?: string;
  /** The thread root for events in a thread (`m.relates_to.rel_type` `m.thread`). */
  threadId?: string;
  /** For push gateways (Push Gateway API `sender_display_name`): the sender's display name in the room,
   * else their user ID (Synapse's `name_from_member_event`). */
  senderDisplayName?: string;
  /** For push gateways (`room_name`): m.room.name, else the canonical alias (user/push-delivery.ts). */
  roomName?: string;
}

/** A RoomEventNotification as delivered: with its recipient and the push inputs. */
export interface DeliveredRoomEventNotification extends RoomEventNotification {
  /** The local user this notification is for. */
  recipient?: string;
  push?: RoomEventPushInputs;
}

/** One receipt (spec: "Receipts"): `threadId` absent for an unthreaded receipt. */
export interface ReceiptUpdate {
  receiptType: string;
  userId: string;
  eventId: string;
  ts: number;
  threadId?: string;
}

/**
 * Room-scoped ephemeral data (spec: "Typing Notifications", "Receipts") that a Room DO fans out to the
 * User DOs of its joined local members (durable-objects/room/ephemeral.ts). Best effort: not written to
 * the outbox (typing expires anyway; receipts are also read from the Room DO by an initial sync).
 */
export type RoomEphemeralNotification =
  | { kind: "typing"; roomId: string; userIds: string[] }
  | { kind: "receipt"; roomId: string; receipts: ReceiptUpdate[] };

/**
 * Room pagination tokens (prev_batch of /sync, from/to of /messages): `t<N>` names the point just after
 * the event with room stream ordering N (t0: before the first event). Paginating backwards (dir=b) from
 * `t<N>` returns events with stream ordering <= N, newest first; forwards (dir=f) events with ordering > N.
 * A /sync `next_batch` (`s...`, a position of the user's stream) maps to a room point through
 * `UserDurableObject.roomOrderingAt(roomId, position)`.
 */
export const roomToken = (streamOrdering: number): string => `t${streamOrdering}`;

/** Decodes `t<N>`, or null. */
export function parseRoomToken(token: string): number | null {
  const m = /^t([0-9]{1,15})$/.exec(token);
  return m ? Number(m[1]) : null;
}
