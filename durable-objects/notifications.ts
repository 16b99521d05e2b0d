// What a Room DO tells a User DO after it committed an event that concerns the user (DESIGN.md: "Long-polls
// are woken by the writer (the Room DO notifies the User DO)"). Small on purpose: the User DO (sync) reads
// the event itself from the Room DO when it needs more.
//
// Delivery is at least once: the Room DO writes an outbox row in the event's transaction and deletes it
// after the User DO acknowledged, retrying from its alarm. A User DO must therefore treat
// (roomId, streamOrdering) as the identity of a notification and ignore repeats.

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
}
