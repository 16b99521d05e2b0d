// A room's current state as the directory endpoints read it from the Room DO, and what they derive from
// it: the summary shown in the published room directory and the space hierarchy (spec: Client-Server API,
// "Published room directory", PublishedRoomsChunk / RoomSummary), who may see a room (spec: GET
// /hierarchy, "rooms the user can see") and who may change its directory entry (Synapse's rule: a
// joined member with the power to send m.room.canonical_alias, or a server admin).
import { powerLevelOf, requiredPowerLevelFor, type AuthStateLookup } from "../protocol/auth-rules.js";
import type { JsonObject } from "../protocol/json.js";
import { isJsonObject } from "../protocol/json.js";
import type { IdentifiedPdu } from "../protocol/pdu.js";
import { serverNameOf } from "../protocol/pdu.js";
import { roomVersionRules, type RoomVersionRules } from "../protocol/room-versions.js";
import type { Env } from "./env.js";

/** The fields of a state event the directory reads. */
export interface StateEventView {
  event_id: string;
  type: string;
  state_key: string;
  sender: string;
  origin_server_ts: number;
  content: JsonObject;
}

/** One room's current state, indexed by (type, state_key). */
export class RoomStateSnapshot {
  private readonly byKey = new Map<string, StateEventView>();
  readonly rules: RoomVersionRules | undefined;

  constructor(
    readonly roomId: string,
    readonly roomVersion: string,
    events: Iterable<StateEventView>,
  ) {
    for (const e of events) this.byKey.set(`${e.type}\u0000${e.state_key}`, e);
    this.rules = roomVersionRules(roomVersion);
  }

  get(type: string, stateKey: string): StateEventView | undefined {
    return this.byKey.get(`${type}\u0000${stateKey}`);
  }

  ofType(type: string): StateEventView[] {
    const out: StateEventView[] = [];
    for (const e of this.byKey.values()) if (e.type === type) out.push(e);
    return out;
  }

  membershipOf(userId: string): string | undefined {
    const m = this.get("m.room.member", userId)?.content.membership;
    return typeof m === "string" ? m : undefined;
  }

  joinedMembers(): string[] {
    return this.ofType("m.room.member")
      .filter((e) => e.content.membership === "join")
      .map((e) => e.state_key);
  }

  /** The servers of the joined members, in order of first appearance. */
  joinedServers(): string[] {
    const servers: string[] = [];
    for (const user of this.joinedMembers()) {
      const s = serverNameOf(user);
      if (s !== "" && !servers.includes(s)) servers.push(s);
    }
    return servers;
  }

  /** The state as the auth-rule helpers read it. They only look at `type`, `state_key`, `sender` and
   * `content` of the create and power levels events, which a state event view has. */
  authLookup(): AuthStateLookup {
    return (type, stateKey) => this.get(type, stateKey) as unknown as IdentifiedPdu | undefined;
  }
}

/**
 * Reads a room's current state from its Room DO; null when this server does not know the room.
 * This is the one place that talks to the Room DO, so a change of its RPC touches only this function.
 */
export async function loadRoomState(env: Pick<Env, "ROOMS">, roomId: string): Promise<RoomStateSnapshot | null> {
  // The Room DO is addressed by the room ID (worker/room-store.ts `roomStub`). The narrow type avoids the
  // RPC stub's recursive JsonObject mapping, which TypeScript cannot instantiate here (TS2589).
  const stub = env.ROOMS.get(env.ROOMS.idFromName(roomId)) as unknown as {
    currentStateForDirectory(): Promise<{ roomVersion: string; events: StateEventView[] } | null>;
  };
  const state = await stub.currentStateForDirectory();
  return state ? new RoomStateSnapshot(roomId, state.roomVersion, state.events) : null;
}

// ---------------------------------------------------------------------------------------------
// Summaries (spec: PublishedRoomsChunk; RoomSummary adds room_version, encryption, allowed_room_ids).

export interface PublicRoomChunk {
  room_id: string;
  name?: string;
  topic?: string;
  canonical_alias?: string;
  num_joined_members: number;
  world_readable: boolean;
  guest_can_join: boolean;
  avatar_url?: string;
  join_rule?: string;
  room_type?: string;
}

export interface RoomSummary extends PublicRoomChunk {
  room_version?: string;
  encryption?: string;
  allowed_room_ids?: string[];
}

const nonEmptyString = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

/** The room's join rule (spec: m.room.join_rules; without the event the rule is `invite`, as auth does). */
export function joinRuleOf(state: RoomStateSnapshot): string {
  return nonEmptyString(state.get("m.room.join_rules", "")?.content.join_rule) ?? "invite";
}

export function historyVisibilityOf(state: RoomStateSnapshot): string {
  // Spec: m.room.history_visibility, "shared" is assumed when there is no event.
  return nonEmptyString(state.get("m.room.history_visibility", "")?.content.history_visibility) ?? "shared";
}

export const isWorldReadable = (state: RoomStateSnapshot): boolean => historyVisibilityOf(state) === "world_readable";

/** The plain-text topic: `topic`, else the `text/plain` representation in `m.topic` (spec: m.room.topic;
 * the chunk's `topic` is "omitted if no text/plain mimetype exists"). */
function topicOf(content: JsonObject | undefined): string | undefined {
  if (!content) return undefined;
  const plain = nonEmptyString(content.topic);
  if (plain !== undefined) return plain;
  const block = content["m.topic"];
  const texts = isJsonObject(block) ? block["m.text"] : undefined;
  if (!Array.isArray(texts)) return undefined;
  for (const t of texts) {
    if (isJsonObject(t) && (t.mimetype === undefined || t.mimetype === "text/plain")) {
      const body = nonEmptyString(t.body);
      if (body !== undefined) return body;
    }
  }
  return undefined;
}

/** The published room directory entry of a room, from its current state. */
export function publicRoomChunk(state: RoomStateSnapshot): PublicRoomChunk {
  const chunk: PublicRoomChunk = {
    room_id: state.roomId,
    num_joined_members: state.joinedMembers().length,
    world_readable: isWorldReadable(state),
    guest_can_join: state.get("m.room.guest_access", "")?.content.guest_access === "can_join",
    join_rule: joinRuleOf(state),
  };
  const name = nonEmptyString(state.get("m.room.name", "")?.content.name);
  if (name !== undefined) chunk.name = name;
  const topic = topicOf(state.get("m.room.topic", "")?.content);
  if (topic !== undefined) chunk.topic = topic;
  const alias = nonEmptyString(state.get("m.room.canonical_alias", "")?.content.alias);
  if (alias !== undefined) chunk.canonical_alias = alias;
  const avatar = nonEmptyString(state.get("m.room.avatar", "")?.content.url);
  if (avatar !== undefined) chunk.avatar_url = avatar;
  const roomType = nonEmptyString(state.get("m.room.create", "")?.content.type);
  if (roomType !== undefined) chunk.room_type = roomType;
  return chunk;
}

/** The room summary of the space hierarchy: the directory entry plus version, encryption and, for
 * restricted rooms, the rooms whose members may join. */
export function roomSummary(state: RoomStateSnapshot): RoomSummary {
  const summary: RoomSummary = { ...publicRoomChunk(state), room_version: state.roomVersion };
  const encryption = nonEmptyString(state.get("m.room.encryption", "")?.content.algorithm);
  if (encryption !== undefined) summary.encryption = encryption;
  const rule = summary.join_rule;
  if (rule === "restricted" || rule === "knock_restricted") {
    const allowed = allowedRoomIds(state);
    if (allowed.length > 0) summary.allowed_room_ids = allowed;
  }
  return summary;
}

/** The rooms named by `m.room_membership` conditions of a restricted join rule (spec: "Restricted rooms"). */
export function allowedRoomIds(state: RoomStateSnapshot): string[] {
  const allow = state.get("m.room.join_rules", "")?.content.allow;
  if (!Array.isArray(allow)) return [];
  const ids: string[] = [];
  for (const cond of allow) {
    if (isJsonObject(cond) && cond.type === "m.room_membership" && typeof cond.room_id === "string") ids.push(cond.room_id);
  }
  return ids;
}

// ---------------------------------------------------------------------------------------------
// Permissions.

/**
 * Whether `userId` may change the room's published-directory visibility or delete another user's alias
 * of it. The spec leaves this to the server ("MAY implement additional access control checks"); this is
 * Synapse's rule (`check_can_change_room_list`): a server admin, or a joined member whose power level
 * reaches the level needed to send `m.room.canonical_alias` (in default power levels: a moderator, 50).
 */
export function canChangeRoomList(state: RoomStateSnapshot, userId: string, isAdmin: boolean): boolean {
  if (isAdmin) return true;
  if (state.membershipOf(userId) !== "join" || !state.rules) return false;
  const lookup = state.authLookup();
  return powerLevelOf(userId, lookup, state.rules) >= requiredPowerLevelFor("m.room.canonical_alias", true, lookup, state.rules);
}

/**
 * Whether a user may see a room's summary in the space hierarchy (spec: GET /hierarchy, `rooms`): they
 * are joined or invited, the room is publicly joinable or knockable, world-readable, or restricted and
 * they are joined to one of the allowed rooms (`isJoinedTo` answers that).
 */
export async function canSeeInHierarchy(
  state: RoomStateSnapshot,
  userId: string,
  isJoinedTo: (roomId: string) => Promise<boolean>,
): Promise<boolean> {
  const membership = state.membershipOf(userId);
  if (membership === "join" || membership === "invite") return true;
  const rule = joinRuleOf(state);
  const auth = state.rules?.authorization;
  if (rule === "public") return true;
  if (rule === "knock" && auth?.knocking) return true;
  if (rule === "knock_restricted" && auth?.knockRestrictedJoinRule) return true;
  if (isWorldReadable(state)) return true;
  if (rule === "restricted" && auth?.restrictedJoinRule) {
    for (const roomId of allowedRoomIds(state)) if (await isJoinedTo(roomId)) return true;
  }
  return false;
}
