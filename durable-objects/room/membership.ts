// Membership changes asked for by local clients (spec: Client-Server API, "Room membership": join, invite,
// leave, kick, ban, unban, knock; "Restricted rooms"). The auth rules decide what is allowed; this module
// turns an action into event content, answers the cases the auth rules cannot phrase well (as Synapse's
// room member handler does), and finds the authorising user of a restricted join.
import { namedPowerLevel, powerLevelOf } from "../../protocol/auth-rules.js";
import { MatrixError, forbidden } from "../../protocol/errors.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { canonicalJson } from "../../protocol/canonical-json.js";
import { serverNameOf } from "../../protocol/pdu.js";
import type { EventTemplate } from "./build-event.js";
import type { MemberProfile } from "./create-room.js";
import type { RoomEngine } from "./engine.js";

export type MembershipAction = "join" | "invite" | "leave" | "kick" | "ban" | "unban" | "knock";

export interface MembershipRequest {
  /** The local user making the change. */
  sender: string;
  /** The user whose membership changes (the sender for join, leave and knock). */
  target: string;
  action: MembershipAction;
  reason?: string;
  /** join, knock, invite: the target's profile, copied into the event. */
  profile?: MemberProfile;
  /** PUT /state/m.room.member/{userId}: the content the client sent (its `membership` decides the action). */
  content?: JsonObject;
  /** join: resident servers to join through when this server is not in the room (`via`, the alias's
   * servers, the room ID's server). */
  servers?: string[];
  /** The room ID the DO is addressed by: a DO that holds no room yet does not know it. */
  roomId?: string;
}

const EFFECTIVE: Record<MembershipAction, string> = {
  join: "join",
  invite: "invite",
  leave: "leave",
  kick: "leave",
  ban: "ban",
  unban: "leave",
  knock: "knock",
};

/** Asks whether a user is joined to another room (its Room DO), for restricted joins. */
export type JoinedElsewhere = (roomId: string, userId: string) => Promise<boolean>;

export type PreparedMembership = { template: EventTemplate } | { existingEventId: string };

/** The rooms whose members may join a restricted room (`allow` entries of type m.room_membership). */
export function allowedRooms(joinRulesContent: JsonObject | undefined): string[] {
  const allow = joinRulesContent?.allow;
  if (!Array.isArray(allow)) return [];
  const out: string[] = [];
  for (const entry of allow) {
    if (isJsonObject(entry) && entry.type === "m.room_membership" && typeof entry.room_id === "string") out.push(entry.room_id);
  }
  return out;
}

export function sameContent(a: JsonObject, b: JsonObject): boolean {
  try {
    return canonicalJson(a) === canonicalJson(b);
  } catch {
    return JSON.stringify(a) === JSON.stringify(b);
  }
}

/**
 * Builds the membership event template for `request` on the current state, or names the existing event
 * when the request repeats the current membership (same sender, membership and content: Synapse returns
 * the old event instead of sending a duplicate).
 */
export async function prepareMembership(engine: RoomEngine, request: MembershipRequest, joinedElsewhere: JoinedElsewhere): Promise<PreparedMembership> {
  const meta = engine.meta()!;
  const { sender, target, action } = request;
  const membership = EFFECTIVE[action];

  const content: JsonObject = request.content ? { ...request.content } : {};
  content.membership = membership;
  if (request.reason !== undefined) content.reason = request.reason;
  // Only this server may add the authorising user, after checking it (Synapse strips a client's one).
  delete content.join_authorised_via_users_server;
  if (request.profile && (membership === "join" || membership === "knock" || membership === "invite")) {
    if (request.profile.displayname !== undefined && !("displayname" in content)) content.displayname = request.profile.displayname;
    if (request.profile.avatar_url !== undefined && !("avatar_url" in content)) content.avatar_url = request.profile.avatar_url;
  }

  const old = engine.currentStateEvent("m.room.member", target);
  const oldMembership = typeof old?.content.membership === "string" ? old.content.membership : undefined;
  if (action === "unban" && oldMembership !== "ban") {
    throw new MatrixError(403, "M_BAD_STATE", `Cannot unban user who was not banned (membership=${oldMembership ?? "none"})`);
  }
  if (oldMembership === "ban" && action !== "ban" && action !== "unban" && action !== "leave") {
    throw new MatrixError(403, "M_BAD_STATE", `Cannot ${action} user who was banned`);
  }
  if (old && old.sender === sender && oldMembership === membership && sameContent(old.content, content)) {
    return { existingEventId: old.event_id };
  }
  if (action === "kick" && (oldMembership === undefined || oldMembership === "ban" || oldMembership === "leave")) {
    throw forbidden("The target user is not in the room");
  }

  // Restricted rooms (v8+ restricted, v10+ knock_restricted): a user who is neither joined nor invited
  // joins through membership of an allowed room, vouched for by a local member who may invite.
  if (membership === "join" && oldMembership !== "join" && oldMembership !== "invite") {
    if (isRestrictedJoinRule(engine)) {
      if (!(await inAllowedRoom(engine, target, joinedElsewhere))) throw forbidden("You do not belong to any of the required rooms/spaces to join this room.");
      const authoriser = chooseAuthoriser(engine);
      if (authoriser === undefined) {
        throw new MatrixError(400, "M_UNABLE_TO_GRANT_JOIN", "Unable to find a user which could issue an invite");
      }
      content.join_authorised_via_users_server = authoriser;
    }
  }

  return { template: { type: "m.room.member", stateKey: target, sender, content } };
}

/** Whether the room's join rule admits joins through other rooms (v8+ restricted, v10+ knock_restricted). */
export function isRestrictedJoinRule(engine: RoomEngine): boolean {
  const rule = engine.currentStateEvent("m.room.join_rules", "")?.content.join_rule;
  const auth = engine.meta()!.rules.authorization;
  return (rule === "restricted" && auth.restrictedJoinRule) || (rule === "knock_restricted" && auth.knockRestrictedJoinRule);
}

/** Whether `userId` is joined to one of the rooms the join rules allow (this room aside). */
export async function inAllowedRoom(engine: RoomEngine, userId: string, joinedElsewhere: JoinedElsewhere): Promise<boolean> {
  const meta = engine.meta()!;
  for (const roomId of allowedRooms(engine.currentStateEvent("m.room.join_rules", "")?.content)) {
    if (roomId !== meta.roomId && (await joinedElsewhere(roomId, userId))) return true;
  }
  return false;
}

/** A local joined member whose power reaches the invite level, the most powerful first (then by user ID,
 * so the choice is stable). */
export function chooseAuthoriser(engine: RoomEngine): string | undefined {
  const meta = engine.meta()!;
  const lookup = engine.currentLookup;
  const inviteLevel = namedPowerLevel("invite", lookup, meta.rules);
  let best: { userId: string; level: number } | undefined;
  for (const userId of engine.membersWith("join")) {
    if (!engine.isLocalUser(userId)) continue;
    const level = powerLevelOf(userId, lookup, meta.rules);
    if (level < inviteLevel) continue;
    if (!best || level > best.level || (level === best.level && userId < best.userId)) best = { userId, level };
  }
  return best?.userId;
}

/**
 * A restricted join through another server although this one is in the room (Synapse's
 * `_should_perform_remote_join`): the user is neither joined nor invited and no local member may invite, so
 * a server whose member may invite must authorise the join. Returns those servers (their most powerful
 * member first), or undefined when the join is local (not restricted, already a member, or a local authoriser).
 */
export function remoteAuthorisingServers(engine: RoomEngine, userId: string): string[] | undefined {
  const current = engine.membershipOf(userId)?.membership;
  if (current === "join" || current === "invite") return undefined;
  if (!isRestrictedJoinRule(engine) || chooseAuthoriser(engine) !== undefined) return undefined;
  const meta = engine.meta()!;
  const lookup = engine.currentLookup;
  const inviteLevel = namedPowerLevel("invite", lookup, meta.rules);
  const candidates: { server: string; level: number }[] = [];
  for (const member of engine.membersWith("join")) {
    const level = powerLevelOf(member, lookup, meta.rules);
    if (level >= inviteLevel && !engine.isLocalUser(member)) candidates.push({ server: serverNameOf(member), level });
  }
  candidates.sort((a, b) => b.level - a.level || (a.server < b.server ? -1 : 1));
  return [...new Set(candidates.map((c) => c.server))];
}
