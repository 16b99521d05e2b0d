// Access to a room's Durable Object (DESIGN.md, "Who owns what": a room's events and state live there),
// and the room ID check of the `/rooms/{roomId}/...` endpoints.
import type { RoomDurableObject } from "../durable-objects/room.js";
import { invalidParam } from "../protocol/errors.js";
import { isValidRoomId } from "./directory-store.js";
import type { Env } from "./env.js";

/**
 * The Room DO's RPC methods with their declared types. The runtime's RPC type mapping of the JSON-heavy
 * return types (PDUs, client events) is too deep for the compiler; the values are plain JSON, which RPC
 * carries unchanged, so the declared types are the true ones.
 */
export type RoomRpc = {
  [K in keyof RoomDurableObject as RoomDurableObject[K] extends (...args: never[]) => unknown ? K : never]: RoomDurableObject[K] extends (
    ...args: infer A
  ) => infer R
    ? (...args: A) => Promise<Awaited<R>>
    : never;
};

/** The Room DO of `roomId` (one per room, addressed by the room ID). */
export function roomStub(env: Pick<Env, "ROOMS">, roomId: string): RoomRpc {
  return env.ROOMS.get(env.ROOMS.idFromName(roomId)) as unknown as RoomRpc;
}

/** The room ID path parameter, or 400 M_INVALID_PARAM when it is not a room ID. */
export function requireRoomId(roomId: string | undefined): string {
  if (roomId === undefined || !isValidRoomId(roomId)) throw invalidParam(`${roomId ?? ""} is not a legal room ID`);
  return roomId;
}
