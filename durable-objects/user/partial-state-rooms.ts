// Rooms the user joined with partial state (a remote join with `omit_members`, room/partial-state.ts), as
// the user's sync sees them. Synapse leaves such rooms out of every /sync that does not lazy-load members
// (its `SyncHandler` excludes partial-state rooms unless the filter has `lazy_load_members`): an eager
// client takes the state it is given for the whole state, and the member list is not complete yet. Once
// the resync completes, the room appears in the next eager sync as if the user had just joined it (the
// whole state, a limited timeline), and that event wakes waiting long-polls (Complement tests/msc3902,
// EagerInitialSync..., EagerIncrementalSync..., EagerLongPollingSyncWokenWhenResyncCompletes).
//
// One row per room, keyed by the join it is about (a second partial join after a leave starts again):
//   full_position NULL  the room is partial now (hidden from eager syncs);
//   full_position P     the resync completed at stream position P (an eager sync whose range covers P
//                       shows the room as newly joined).
// The Room DO tells the User DO both ends (RoomDurableObject: after a local join while partial, and when
// the resync completes); either may arrive first, so each keeps the other's row for the same join.

export const PARTIAL_STATE_ROOMS_SCHEMA = `
  CREATE TABLE IF NOT EXISTS sync_partial_state_rooms (
    room_id TEXT PRIMARY KEY,
    join_event_id TEXT NOT NULL,
    full_position INTEGER
  );
  CREATE INDEX IF NOT EXISTS sync_partial_state_rooms_by_position ON sync_partial_state_rooms (full_position);
`;

export class PartialStateRooms {
  private ready = false;

  constructor(
    private readonly sql: SqlStorage,
    /** Takes the next position of the user's stream (and wakes long-polls once the write ends). */
    private readonly nextPosition: () => number,
  ) {}

  private ensure(): void {
    if (this.ready) return;
    this.sql.exec(PARTIAL_STATE_ROOMS_SCHEMA);
    this.ready = true;
  }

  /** The user's join `joinEventId` made the room partial for them (a repeat, or a resync that already
   * completed for this join, changes nothing). */
  joinedPartial(roomId: string, joinEventId: string): void {
    this.ensure();
    const row = this.sql
      .exec<{ join_event_id: string }>("SELECT join_event_id FROM sync_partial_state_rooms WHERE room_id = ?", roomId)
      .toArray()[0];
    if (row?.join_event_id === joinEventId) return;
    this.sql.exec(
      "INSERT INTO sync_partial_state_rooms (room_id, join_event_id, full_position) VALUES (?, ?, NULL) ON CONFLICT (room_id) DO UPDATE SET join_event_id = excluded.join_event_id, full_position = NULL",
      roomId,
      joinEventId,
    );
  }

  /**
   * The room's resync completed (its state is whole now). Takes a stream position, so that the next eager
   * sync shows the room and a waiting long-poll wakes. Returns that position, or null when nothing changed
   * (the room was never partial for this user, or this was said before).
   */
  becameFull(roomId: string, joinEventId: string): number | null {
    this.ensure();
    const row = this.sql
      .exec<{ join_event_id: string; full_position: number | null }>("SELECT join_event_id, full_position FROM sync_partial_state_rooms WHERE room_id = ?", roomId)
      .toArray()[0];
    if (row && row.join_event_id === joinEventId && row.full_position !== null) return null;
    if (row && row.join_event_id !== joinEventId && row.full_position === null) {
      // A later partial join of the user is still resyncing: this completion is about an older one. The
      // room stays hidden; its own completion will show it.
      return null;
    }
    const position = this.nextPosition();
    this.sql.exec(
      "INSERT INTO sync_partial_state_rooms (room_id, join_event_id, full_position) VALUES (?, ?, ?) ON CONFLICT (room_id) DO UPDATE SET join_event_id = excluded.join_event_id, full_position = excluded.full_position",
      roomId,
      joinEventId,
      position,
    );
    return position;
  }

  /** Rooms that are partial now. */
  partialNow(): Set<string> {
    this.ensure();
    return new Set(
      this.sql
        .exec<{ room_id: string }>("SELECT room_id FROM sync_partial_state_rooms WHERE full_position IS NULL")
        .toArray()
        .map((r) => r.room_id),
    );
  }

  /** Rooms whose resync completed in (after, upto]. */
  becameFullIn(after: number, upto: number): Set<string> {
    this.ensure();
    return new Set(
      this.sql
        .exec<{ room_id: string }>("SELECT room_id FROM sync_partial_state_rooms WHERE full_position > ? AND full_position <= ?", after, upto)
        .toArray()
        .map((r) => r.room_id),
    );
  }
}
