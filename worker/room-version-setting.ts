// The server's default room version: DEFAULT_ROOM_VERSION (Synapse's `default_room_version`), else the
// built-in one (protocol/room-versions.ts). A value this server does not know is ignored with a warning
// (Synapse refuses to start; a Worker cannot, and rooms must still be creatable).
import { DEFAULT_ROOM_VERSION, roomVersionRules } from "../protocol/room-versions.js";
import type { Env } from "./env.js";

let warned: string | undefined;

export function defaultRoomVersion(env: Pick<Env, "DEFAULT_ROOM_VERSION">): string {
  const configured = env.DEFAULT_ROOM_VERSION?.trim();
  if (!configured) return DEFAULT_ROOM_VERSION;
  if (roomVersionRules(configured)) return configured;
  if (warned !== configured) {
    warned = configured;
    console.warn(`DEFAULT_ROOM_VERSION ${configured} is not a room version this server knows; using ${DEFAULT_ROOM_VERSION}`);
  }
  return DEFAULT_ROOM_VERSION;
}
