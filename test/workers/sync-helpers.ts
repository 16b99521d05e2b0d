// Helpers for the /sync tests.
import { api, type ApiResponse, type RegisteredUser } from "./helpers.js";
import { V3 } from "./room-helpers.js";

export interface SyncParams {
  since?: string;
  timeout?: number;
  filter?: string | Record<string, unknown>;
  full_state?: boolean;
  set_presence?: string;
  use_state_after?: boolean;
}

export function syncRaw(user: RegisteredUser, params: SyncParams = {}): Promise<ApiResponse> {
  const q = new URLSearchParams();
  if (params.since !== undefined) q.set("since", params.since);
  if (params.timeout !== undefined) q.set("timeout", String(params.timeout));
  if (params.filter !== undefined) q.set("filter", typeof params.filter === "string" ? params.filter : JSON.stringify(params.filter));
  if (params.full_state !== undefined) q.set("full_state", String(params.full_state));
  if (params.set_presence !== undefined) q.set("set_presence", params.set_presence);
  if (params.use_state_after !== undefined) q.set("use_state_after", String(params.use_state_after));
  const qs = q.toString();
  return api("GET", `${V3}/sync${qs ? `?${qs}` : ""}`, { token: user.access_token });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type SyncBody = any;

/** GET /sync and expect 200. */
export async function sync(user: RegisteredUser, params: SyncParams = {}): Promise<SyncBody> {
  const res = await syncRaw(user, params);
  if (res.status !== 200) throw new Error(`sync failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Timeline events of a joined room in a sync response (empty if the room is absent). */
export function timeline(body: SyncBody, roomId: string, section = "join"): { type: string; event_id: string; content: Record<string, unknown>; sender: string; state_key?: string }[] {
  return body.rooms?.[section]?.[roomId]?.timeline?.events ?? [];
}

export function bodies(body: SyncBody, roomId: string): string[] {
  return timeline(body, roomId)
    .filter((e) => e.type === "m.room.message")
    .map((e) => e.content.body as string);
}
