// Query parameters shared by the room read endpoints (/messages, /context, /relations, /threads, /members):
// pagination tokens, `dir`, `limit` and RoomEventFilter JSON.
//
// Tokens: `t<N>` (durable-objects/notifications.ts `roomToken`) names a position in the room's stream: the
// point just after the event with stream ordering N. /sync hands out `prev_batch` in that form; its
// `next_batch` (`s...`, a position of the user's own stream) is accepted too and mapped to the room's
// position through the user's DO (`roomOrderingAt`), as the spec lets clients pass either.
import type { Context } from "hono";
import { parseRoomToken } from "../durable-objects/notifications.js";
import { decodeSyncToken } from "../durable-objects/user/sync-token.js";
import { MatrixError, invalidParam } from "../protocol/errors.js";
import { parseRoomEventFilter, type RoomEventFilter } from "../protocol/filter.js";
import type { JsonValue } from "../protocol/json.js";
import type { AppEnv, Env } from "./env.js";
import { userStore } from "./user-store.js";

/** Synapse's cap on page sizes; larger requests are served with this many. */
export const MAX_PAGE_LIMIT = 1000;

/** A token of a room position (see the top of this file); 400 M_INVALID_PARAM for anything else. */
export async function roomPosition(env: Env, userId: string, roomId: string, token: string): Promise<number> {
  const position = parseRoomToken(token);
  if (position !== null) return position;
  const sync = decodeSyncToken(token);
  if (sync !== null) return userStore(env, userId).roomOrderingAt(roomId, sync.position);
  throw invalidParam("Unknown pagination token");
}

/** An optional token query parameter as a room position. */
export async function positionParam(c: Context<AppEnv>, name: string, userId: string, roomId: string): Promise<number | undefined> {
  const raw = c.req.query(name);
  if (raw === undefined || raw === "") return undefined;
  return roomPosition(c.env, userId, roomId, raw);
}

/** `dir`: `b` or `f`; `fallback` when absent (undefined: the parameter is required). */
export function dirParam(c: Context<AppEnv>, fallback?: "b" | "f"): "b" | "f" {
  const raw = c.req.query("dir");
  if (raw === undefined || raw === "") {
    if (fallback === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "Missing dir parameter");
    return fallback;
  }
  if (raw !== "b" && raw !== "f") throw invalidParam("dir must be 'b' or 'f'");
  return raw;
}

/** `limit`: a non-negative integer (400 otherwise), capped at MAX_PAGE_LIMIT. */
export function limitParam(c: Context<AppEnv>, fallback: number, min = 0): number {
  const raw = c.req.query("limit");
  if (raw === undefined || raw === "") return fallback;
  if (!/^-?\d+$/.test(raw)) throw invalidParam("limit must be an integer");
  const n = Number(raw);
  if (n < min) throw invalidParam(`limit must be at least ${min}`);
  return Math.min(n, MAX_PAGE_LIMIT);
}

/** `filter`: a JSON RoomEventFilter (spec: /messages and /context take the filter inline). */
export function roomEventFilterParam(c: Context<AppEnv>): RoomEventFilter | undefined {
  const raw = c.req.query("filter");
  if (raw === undefined || raw === "") return undefined;
  let value: JsonValue;
  try {
    value = JSON.parse(raw) as JsonValue;
  } catch {
    throw new MatrixError(400, "M_NOT_JSON", "filter is not valid JSON");
  }
  return parseRoomEventFilter(value, "filter");
}

/** A boolean query parameter (`true`/`false`). */
export function booleanParam(c: Context<AppEnv>, name: string, fallback = false): boolean {
  const raw = c.req.query(name);
  if (raw === undefined || raw === "") return fallback;
  if (raw === "true") return true;
  if (raw === "false") return false;
  throw invalidParam(`${name} must be 'true' or 'false'`);
}
