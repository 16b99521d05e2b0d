// Server-Server API: the space hierarchy across servers (spec: "Spaces": GET
// /_matrix/federation/v1/hierarchy/{roomId}; data/api/server-server/space_hierarchy.yaml). Served: one
// room's summary with its `m.space.child` events, and the summaries of its children we hold. Used: a
// client's /hierarchy walk (worker/client/space-hierarchy.ts) asks a child's `via` servers for a room this
// server is not in (`fetchRemoteHierarchy`).
//
// Which rooms another server may see (Synapse's `_is_remote_room_accessible`, the spec leaving it to the
// server): publicly joinable or knockable rooms, world-readable ones, rooms where the server has a joined
// member, and restricted rooms whose allowed rooms have a member of that server.
import { Hono } from "hono";
import { federationRequest } from "../../federation-client/request.js";
import { notFound } from "../../protocol/errors.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { serverNameOf } from "../../protocol/pdu.js";
import { orderedChildren, strippedChild, type HierarchyRoom } from "../client/space-hierarchy.js";
import { isValidRoomId } from "../directory-store.js";
import type { AppEnv, Env } from "../env.js";
import { allowedRoomIds, isWorldReadable, joinRuleOf, loadRoomState, roomSummary, type RoomStateSnapshot } from "../room-summary.js";
import { requestOrigin } from "./auth.js";

export const federationHierarchyRoutes = new Hono<AppEnv>();

const hasMemberOf = (state: RoomStateSnapshot, server: string) => state.joinedMembers().some((m) => serverNameOf(m) === server);

/** Whether `server` may see the room's summary (see the file comment). */
async function serverCanSee(env: Env, state: RoomStateSnapshot, server: string): Promise<boolean> {
  const rule = joinRuleOf(state);
  const auth = state.rules?.authorization;
  if (rule === "public" || (rule === "knock" && auth?.knocking) || (rule === "knock_restricted" && auth?.knockRestrictedJoinRule)) return true;
  if (isWorldReadable(state) || hasMemberOf(state, server)) return true;
  if ((rule === "restricted" && auth?.restrictedJoinRule) || (rule === "knock_restricted" && auth?.knockRestrictedJoinRule)) {
    for (const roomId of allowedRoomIds(state)) {
      const allowed = await loadRoomState(env, roomId);
      if (allowed && hasMemberOf(allowed, server)) return true;
    }
  }
  return false;
}

function entryOf(state: RoomStateSnapshot, suggestedOnly: boolean): HierarchyRoom {
  const summary = roomSummary(state);
  const children = summary.room_type === "m.space" ? orderedChildren(state, suggestedOnly) : [];
  return { ...summary, children_state: children.map(strippedChild) };
}

// GET /_matrix/federation/v1/hierarchy/{roomId}
federationHierarchyRoutes.get("/_matrix/federation/v1/hierarchy/:roomId", async (c) => {
  const origin = requestOrigin(c);
  const roomId = c.req.param("roomId");
  const suggested = c.req.query("suggested_only");
  const suggestedOnly = suggested === "true";
  // Spec 404: "The room is not known to the server or the requesting server is unable to peek/join it."
  const state = isValidRoomId(roomId) ? await loadRoomState(c.env, roomId) : null;
  if (!state || !(await serverCanSee(c.env, state, origin))) throw notFound("Unknown room");
  const room = entryOf(state, suggestedOnly);
  const children: HierarchyRoom[] = [];
  const inaccessible: string[] = [];
  for (const child of room.children_state) {
    const childState = await loadRoomState(c.env, child.state_key);
    if (!childState) continue;
    if (await serverCanSee(c.env, childState, origin)) children.push(entryOf(childState, suggestedOnly));
    else inaccessible.push(child.state_key);
  }
  return c.json({ room, children, inaccessible_children: inaccessible });
});

/** What another server told us about a room and its children. */
export interface RemoteHierarchy {
  room: HierarchyRoom;
  children: HierarchyRoom[];
  inaccessibleChildren: string[];
}

/** A summary from another server, kept only if it has the fields a client needs. */
function summaryOf(value: unknown): HierarchyRoom | undefined {
  if (!isJsonObject(value) || typeof value.room_id !== "string" || typeof value.num_joined_members !== "number") return undefined;
  const childrenState = Array.isArray(value.children_state) ? value.children_state.filter(isJsonObject) : [];
  return { ...(value as unknown as HierarchyRoom), children_state: childrenState as unknown as HierarchyRoom["children_state"] };
}

/** Asks `via` servers (in order, at most three) for a room we do not hold. Undefined if none could tell. */
export async function fetchRemoteHierarchy(env: Env, roomId: string, via: string[], suggestedOnly: boolean): Promise<RemoteHierarchy | undefined> {
  for (const server of via.filter((s) => s !== env.SERVER_NAME).slice(0, 3)) {
    const response = await federationRequest(env, {
      destination: server,
      method: "GET",
      path: `/_matrix/federation/v1/hierarchy/${encodeURIComponent(roomId)}?suggested_only=${suggestedOnly}`,
      timeoutMs: 10_000,
    });
    if (!response.ok || !isJsonObject(response.body)) continue;
    const room = summaryOf(response.body.room);
    if (!room || room.room_id !== roomId) continue;
    const children = (Array.isArray(response.body.children) ? response.body.children : []).map(summaryOf).filter((r): r is HierarchyRoom => r !== undefined);
    const inaccessible = Array.isArray(response.body.inaccessible_children) ? response.body.inaccessible_children.filter((r): r is string => typeof r === "string") : [];
    return { room, children, inaccessibleChildren: inaccessible };
  }
  return undefined;
}

/** Whether a user of this server may see a remote room's summary: by what the summary says (the remote
 * server already decided we may see it). `isJoinedTo` answers for rooms of a restricted join rule. */
export async function userCanSeeRemote(room: HierarchyRoom, isJoinedTo: (roomId: string) => Promise<boolean>): Promise<boolean> {
  const rule = room.join_rule;
  if (rule === "public" || rule === "knock" || room.world_readable) return true;
  if ((rule === "restricted" || rule === "knock_restricted") && Array.isArray(room.allowed_room_ids)) {
    for (const id of room.allowed_room_ids) if (await isJoinedTo(id)) return true;
    return rule === "knock_restricted";
  }
  return false;
}

