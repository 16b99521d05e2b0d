// Rooms blocked by an admin (Synapse admin API "Block Room API", D1 `blocked_rooms`): local users cannot
// join, be invited to or knock on them (Synapse's RoomMemberHandler refuses every membership but leave and
// ban). The client membership routes ask `refuseIfRoomBlocked`.
import { MatrixError } from "../../protocol/errors.js";
import type { Env } from "../env.js";

/** Synapse's answer to a membership change into a blocked room. */
export async function refuseIfRoomBlocked(env: Pick<Env, "DB">, roomId: string): Promise<void> {
  const row = await env.DB.prepare("SELECT 1 FROM blocked_rooms WHERE room_id = ?").bind(roomId).first();
  if (row) throw new MatrixError(403, "M_FORBIDDEN", "This room has been blocked on this server");
}

export async function setBlocked(env: Env, roomId: string, block: boolean, by: string): Promise<void> {
  if (block) {
    await env.DB.prepare("INSERT INTO blocked_rooms (room_id, user_id, created_ts) VALUES (?, ?, ?) ON CONFLICT (room_id) DO NOTHING")
      .bind(roomId, by, Date.now())
      .run();
  } else {
    await env.DB.prepare("DELETE FROM blocked_rooms WHERE room_id = ?").bind(roomId).run();
  }
}
