// Helpers for the room tests: short calls for the room endpoints and the Room DO of a room.
import { env } from "cloudflare:workers";
import type { RoomRpc } from "../../worker/room-store.js";
import { api, registerUser, uniqueLocalpart, type ApiResponse, type RegisteredUser } from "./helpers.js";

export const V3 = "/_matrix/client/v3";
export const r = (roomId: string) => `${V3}/rooms/${encodeURIComponent(roomId)}`;

export async function newUser(prefix = "user"): Promise<RegisteredUser> {
  return registerUser(uniqueLocalpart(prefix));
}

export async function createRoom(user: RegisteredUser, body: Record<string, unknown> = {}): Promise<string> {
  const res = await api("POST", `${V3}/createRoom`, { token: user.access_token, body });
  if (res.status !== 200) throw new Error(`createRoom failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.room_id as string;
}

let txn = 0;
export function send(user: RegisteredUser, roomId: string, content: Record<string, unknown>, type = "m.room.message", txnId?: string): Promise<ApiResponse> {
  return api("PUT", `${r(roomId)}/send/${encodeURIComponent(type)}/${txnId ?? `t${++txn}-${Date.now()}`}`, { token: user.access_token, body: content });
}

export function putState(user: RegisteredUser, roomId: string, type: string, stateKey: string, content: Record<string, unknown>): Promise<ApiResponse> {
  return api("PUT", `${r(roomId)}/state/${encodeURIComponent(type)}/${encodeURIComponent(stateKey)}`, { token: user.access_token, body: content });
}

export function getState(user: RegisteredUser, roomId: string, type: string, stateKey = "", format?: string): Promise<ApiResponse> {
  const q = format ? `?format=${format}` : "";
  return api("GET", `${r(roomId)}/state/${encodeURIComponent(type)}/${encodeURIComponent(stateKey)}${q}`, { token: user.access_token });
}

export function allState(user: RegisteredUser, roomId: string): Promise<ApiResponse> {
  return api("GET", `${r(roomId)}/state`, { token: user.access_token });
}

export function membership(user: RegisteredUser, roomId: string, action: string, body: Record<string, unknown> = {}): Promise<ApiResponse> {
  return api("POST", `${r(roomId)}/${action}`, { token: user.access_token, body });
}

export function join(user: RegisteredUser, roomId: string): Promise<ApiResponse> {
  return membership(user, roomId, "join");
}

export function roomStub(roomId: string): RoomRpc {
  return env.ROOMS.get(env.ROOMS.idFromName(roomId)) as unknown as RoomRpc;
}

/** A state map from GET /state: "type|state_key" -> event. */
export function byKey(events: { type: string; state_key: string; content: Record<string, unknown> }[]): Map<string, { type: string; state_key: string; content: Record<string, unknown>; sender: string }> {
  return new Map(events.map((e) => [`${e.type}|${e.state_key}`, e as never]));
}
