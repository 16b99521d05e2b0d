// Client-Server API: Spaces, the space hierarchy (spec: "Spaces" / "Discovering rooms within spaces",
// data/api/client-server/space_hierarchy.yaml `GET /_matrix/client/v1/rooms/{roomId}/hierarchy`).
//
// A depth-first walk over `m.space.child` state events from the requested room, as Synapse's
// RoomSummaryHandler does: pop a room, summarise it if the requester may see it, queue its children
// (first child popped next). Rooms already visited are skipped, which breaks loops. A room this server
// does not have is asked of the servers its `m.space.child` event names in `via` (federation /hierarchy,
// worker/federation/hierarchy.ts); the answer's children summaries are kept for the rest of the walk.
//
// Pagination is stateless: `next_batch` records the walk's parameters and how many rooms were returned
// so far, and the next request walks again and skips them. The spec requires `suggested_only` and
// `max_depth` to stay the same across pages (400 otherwise); the token also names its requester.
import { Hono } from "hono";
import { forbidden, invalidParam } from "../../protocol/errors.js";
import { decodeBase64, encodeBase64Url } from "../../protocol/base64.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { intParam } from "../http.js";
import { fetchRemoteHierarchy, userCanSeeRemote } from "../federation/hierarchy.js";
import { canSeeInHierarchy, loadRoomState, roomSummary, type RoomStateSnapshot, type RoomSummary, type StateEventView } from "../room-summary.js";

/** Default and largest page size (Synapse's MAX_ROOMS is 50). */
export const DEFAULT_HIERARCHY_LIMIT = 50;
export const MAX_HIERARCHY_LIMIT = 100;
/** Default and largest depth: the spec asks for both, to bound the walk over long or looping trees. */
export const MAX_HIERARCHY_DEPTH = 20;
/** Bounds the rooms one request looks at (visible or not), against huge spaces. */
const MAX_ROOMS_VISITED = 1000;

export interface StrippedChildEvent {
  type: string;
  state_key: string;
  content: JsonObject;
  sender: string;
  origin_server_ts: number;
}

export interface HierarchyRoom extends RoomSummary {
  children_state: StrippedChildEvent[];
}

export interface HierarchyQuery {
  roomId: string;
  userId: string;
  suggestedOnly: boolean;
  /** As the client gave it (undefined: not given); the walk uses `MAX_HIERARCHY_DEPTH` as bound. */
  maxDepth?: number;
  limit: number;
  from?: string;
}

/** Spec: "Ordering of children within a space": a valid `order` is 1-50 characters in \x20-\x7E. */
const VALID_ORDER = /^[\x20-\x7E]{1,50}$/;

function validOrder(content: JsonObject): string | undefined {
  const order = content.order;
  return typeof order === "string" && VALID_ORDER.test(order) ? order : undefined;
}

/** A child whose `via` is not a non-empty list of strings is not a child (spec: m.space.child, "Child
 * rooms can be removed from a space by omitting the `via` key"). */
function hasValidVia(content: JsonObject): boolean {
  const via = content.via;
  return Array.isArray(via) && via.length > 0 && via.every((v) => typeof v === "string");
}

/**
 * The space's children in the spec's order: those with a valid `order` first, by order (code points),
 * then the rest; ties by the child event's `origin_server_ts`, then by room ID.
 */
export function orderedChildren(state: RoomStateSnapshot, suggestedOnly: boolean): StateEventView[] {
  const children = state
    .ofType("m.space.child")
    .filter((e) => hasValidVia(e.content) && (!suggestedOnly || e.content.suggested === true));
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return children.sort((a, b) => {
    const oa = validOrder(a.content);
    const ob = validOrder(b.content);
    if (oa !== undefined && ob === undefined) return -1;
    if (oa === undefined && ob !== undefined) return 1;
    if (oa !== undefined && ob !== undefined && oa !== ob) return cmp(oa, ob);
    if (a.origin_server_ts !== b.origin_server_ts) return a.origin_server_ts - b.origin_server_ts;
    return cmp(a.state_key, b.state_key);
  });
}

export function strippedChild(e: StateEventView): StrippedChildEvent {
  return { type: e.type, state_key: e.state_key, content: e.content, sender: e.sender, origin_server_ts: e.origin_server_ts };
}

interface PageToken {
  /** Requested room, requester, suggested_only, max_depth as given, rooms already returned. */
  r: string;
  u: string;
  s: boolean;
  d: number | null;
  o: number;
}

function encodeToken(t: PageToken): string {
  return encodeBase64Url(new TextEncoder().encode(JSON.stringify(t)));
}

function decodeToken(token: string): PageToken {
  try {
    const t: unknown = JSON.parse(new TextDecoder().decode(decodeBase64(token)));
    if (
      isJsonObject(t) &&
      typeof t.r === "string" &&
      typeof t.u === "string" &&
      typeof t.s === "boolean" &&
      (t.d === null || (typeof t.d === "number" && Number.isSafeInteger(t.d))) &&
      typeof t.o === "number" &&
      Number.isSafeInteger(t.o) &&
      t.o >= 0
    ) {
      return { r: t.r, u: t.u, s: t.s, d: t.d, o: t.o };
    }
  } catch {
    // fall through
  }
  throw invalidParam("Unknown pagination token");
}

/** One page of the space hierarchy under `q.roomId` as `q.userId` may see it. */
export async function spaceHierarchy(env: Env, q: HierarchyQuery): Promise<{ rooms: HierarchyRoom[]; next_batch?: string }> {
  let offset = 0;
  if (q.from !== undefined) {
    const t = decodeToken(q.from);
    if (t.r !== q.roomId || t.u !== q.userId) throw invalidParam("Unknown pagination token");
    if (t.s !== q.suggestedOnly || t.d !== (q.maxDepth ?? null)) {
      throw invalidParam("suggested_only and max_depth cannot change on paginated requests");
    }
    offset = t.o;
  }
  const maxDepth = Math.min(q.maxDepth ?? MAX_HIERARCHY_DEPTH, MAX_HIERARCHY_DEPTH);

  const states = new Map<string, RoomStateSnapshot | null>();
  const stateOf = async (roomId: string): Promise<RoomStateSnapshot | null> => {
    if (!states.has(roomId)) states.set(roomId, await loadRoomState(env, roomId));
    return states.get(roomId)!;
  };
  const isJoinedTo = async (roomId: string) => (await stateOf(roomId))?.membershipOf(q.userId) === "join";

  // Spec 403: "The user cannot view or peek on the room" (including: the room does not exist).
  const root = await stateOf(q.roomId);
  if (!root || !(await canSeeInHierarchy(root, q.userId, isJoinedTo))) {
    throw forbidden("You are not allowed to view this room.");
  }

  const queue: { roomId: string; depth: number; via: string[] }[] = [{ roomId: q.roomId, depth: 0, via: [] }];
  const visited = new Set<string>();
  const rooms: HierarchyRoom[] = [];
  // Rooms of other servers, as their /hierarchy answers described them (null: inaccessible or unknown).
  const remote = new Map<string, HierarchyRoom | null>();
  const remoteEntry = async (roomId: string, via: string[]): Promise<HierarchyRoom | null> => {
    if (!remote.has(roomId)) {
      const answer = await fetchRemoteHierarchy(env, roomId, via, q.suggestedOnly);
      remote.set(roomId, answer?.room ?? null);
      for (const child of answer?.children ?? []) if (!remote.has(child.room_id)) remote.set(child.room_id, child);
      for (const id of answer?.inaccessibleChildren ?? []) if (!remote.has(id)) remote.set(id, null);
    }
    return remote.get(roomId)!;
  };
  while (queue.length > 0 && rooms.length < offset + q.limit && visited.size < MAX_ROOMS_VISITED) {
    const { roomId, depth, via } = queue.pop()!;
    if (visited.has(roomId)) continue;
    visited.add(roomId);
    const state = await stateOf(roomId);
    let entry: HierarchyRoom;
    if (state) {
      if (!(await canSeeInHierarchy(state, q.userId, isJoinedTo))) continue;
      const summary = roomSummary(state);
      const children = summary.room_type === "m.space" ? orderedChildren(state, q.suggestedOnly) : [];
      entry = { ...summary, children_state: children.map(strippedChild) };
    } else {
      const found = await remoteEntry(roomId, via);
      if (!found || !(await userCanSeeRemote(found, isJoinedTo))) continue;
      entry = found;
    }
    rooms.push(entry);
    if (depth < maxDepth && entry.room_type === "m.space") {
      // Pushed in reverse so that the first child is popped next (depth-first, in the spec's order).
      const children = entry.children_state.filter((e) => e.type === "m.space.child" && typeof e.state_key === "string" && isJsonObject(e.content) && hasValidVia(e.content) && (!q.suggestedOnly || e.content.suggested === true));
      for (let i = children.length - 1; i >= 0; i--) {
        queue.push({ roomId: children[i]!.state_key, depth: depth + 1, via: children[i]!.content.via as string[] });
      }
    }
  }

  const response: { rooms: HierarchyRoom[]; next_batch?: string } = { rooms: rooms.slice(offset) };
  if (queue.some((e) => !visited.has(e.roomId)) && visited.size < MAX_ROOMS_VISITED) {
    response.next_batch = encodeToken({ r: q.roomId, u: q.userId, s: q.suggestedOnly, d: q.maxDepth ?? null, o: rooms.length });
  }
  return response;
}

function booleanParam(value: string | undefined, name: string): boolean {
  if (value === undefined || value === "") return false;
  if (value === "true") return true;
  if (value === "false") return false;
  throw invalidParam(`${name} must be 'true' or 'false'`);
}

export const spaceHierarchyRoutes = new Hono<AppEnv>();

// GET /_matrix/client/v1/rooms/{roomId}/hierarchy
spaceHierarchyRoutes.get("/_matrix/client/v1/rooms/:roomId/hierarchy", requireAuth, async (c) => {
  const user = requester(c);
  const q: HierarchyQuery = {
    roomId: c.req.param("roomId"),
    userId: user.userId,
    suggestedOnly: booleanParam(c.req.query("suggested_only"), "suggested_only"),
    // Spec: limit "must be an integer greater than zero"; larger values are clamped.
    limit: Math.min(intParam(c, "limit", DEFAULT_HIERARCHY_LIMIT, 1), MAX_HIERARCHY_LIMIT),
  };
  const depth = c.req.query("max_depth");
  if (depth !== undefined && depth !== "") q.maxDepth = intParam(c, "max_depth", 0, 0);
  const from = c.req.query("from");
  if (from !== undefined && from !== "") q.from = from;
  return c.json(await spaceHierarchy(c.env, q));
});
