// The resident server's side of joins, leaves and knocks over federation (spec: Server-Server API,
// "Joining Rooms", "Leaving Rooms (Rejecting Invites)", "Knocking upon a room"): `make_*` hands the joining
// server an unsigned event template on the current state; `send_*` takes the event back, signed, and
// persists it through the room's one entry point (engine.ts `persistEvent`).
import { checkEventAuth } from "../../protocol/auth-rules.js";
import { MatrixError, forbidden, notFound } from "../../protocol/errors.js";
import { eventIdFor, signEventAsServer } from "../../protocol/event-hashes.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { KEY_USER_ID_REQUIRED, serverKeyOfUser } from "../../protocol/participation.js";
import { serverNameOf, type IdentifiedPdu, type Pdu } from "../../protocol/pdu.js";
import type { SigningKey } from "../../protocol/signing.js";
import { unsignedEvent } from "./build-event.js";
import type { PersistResult, RoomEngine } from "./engine.js";
import { authChainIds, pdusOf, wirePdu } from "./federation-reads.js";
import { choosePrevEvents } from "./local-events.js";
import { acceptedKeyOfDomain, originSpeaksFor } from "./federation-participation.js";
import { MEMBER_SERVER_KEY, accountKeyOfUser } from "../../protocol/accounts.js";
import { allowedRooms, chooseAuthoriser, inAllowedRoom, isRestrictedJoinRule, type JoinedElsewhere } from "./membership.js";

export type RemoteMembership = "join" | "leave" | "knock";

export interface MakeMembershipRequest {
  /** The server asking (authenticated by X-Matrix). */
  origin: string;
  userId: string;
  membership: RemoteMembership;
  /** make_join/make_knock `ver`: the room versions the joining server supports. */
  supportedVersions?: string[];
}

export interface MakeMembershipResult {
  event: Pdu;
  room_version: string;
}

/** The first checks of every make_* and send_* request: a known room, a user of the asking server. */
function checkRequester(engine: RoomEngine, origin: string, userId: string, membership?: RemoteMembership): void {
  const meta = engine.meta();
  if (!meta) throw notFound("Unknown room");
  // MSC4348 rooms: an account joins (or moves) through any accepted server; the template names the
  // requesting server's key, and the account's signature on the join is its consent (decision 13).
  if (meta.rules.eventFormat.accountKeyIdentity && membership === "join" && accountKeyOfUser(userId) !== undefined) {
    if (acceptedKeyOfDomain(engine, origin) === undefined) throw forbidden("The requesting server is not accepted in the room");
    return;
  }
  // MSC4345 rooms: the origin is the domain the user's server key advertises (federation-participation.ts).
  if (!originSpeaksFor(engine, origin, userId)) throw forbidden("User is not of the requesting server");
}

/**
 * GET make_join / make_leave / make_knock: the template. Refused (403) when the event would not pass the
 * auth rules on the current state, as Synapse does; for restricted rooms the template names a local
 * member who may invite (`join_authorised_via_users_server`) when the user is in an allowed room.
 */
export async function makeMembership(
  engine: RoomEngine,
  serverName: string,
  request: MakeMembershipRequest,
  joinedElsewhere: JoinedElsewhere,
  /** Whether this server is in a room (a local member is joined): without it, membership there is unknown. */
  serverInRoom: (roomId: string) => Promise<boolean>,
): Promise<MakeMembershipResult> {
  const meta = engine.meta();
  if (!meta) throw notFound("Unknown room");
  // MSC4348 rooms check the requester once the user ID has the room's form (below).
  if (!meta.rules.eventFormat.accountKeyIdentity) checkRequester(engine, request.origin, request.userId);
  if (request.supportedVersions && !request.supportedVersions.includes(meta.roomVersion)) {
    throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", "Your homeserver does not support the features required to interact with this room", {
      room_version: meta.roomVersion,
    });
  }
  // MSC4345 rooms name users by server key: a joining server that asked with its domain-form ID is told
  // so (and asks again with `@user:<its key>`, room/remote-join.ts). Myelin's reading: the proposal has no
  // way for a joining server to learn this before it has a template.
  if (meta.rules.eventFormat.accountKeyIdentity ? accountKeyOfUser(request.userId) === undefined : meta.rules.eventFormat.serverKeyIdentity && serverKeyOfUser(request.userId) === undefined) {
    // MSC4348 rooms name users by account key (`@<account key>`): the same answer, read by room_version.
    const form = meta.rules.eventFormat.accountKeyIdentity ? "@<account key>" : "@user:<your server key>";
    throw new MatrixError(400, KEY_USER_ID_REQUIRED, `This room names users by key: ask with ${form}`, {
      room_version: meta.roomVersion,
    });
  }
  if (meta.rules.eventFormat.accountKeyIdentity) checkRequester(engine, request.origin, request.userId, request.membership);
  const content: JsonObject = { membership: request.membership };
  // MSC4348 (decision 13): a join names the server that speaks for the account: the requesting one.
  const joiningServerKey = meta.rules.authorization.portableAccounts && request.membership === "join" ? acceptedKeyOfDomain(engine, request.origin) : undefined;
  if (joiningServerKey !== undefined) content[MEMBER_SERVER_KEY] = joiningServerKey;
  const current = engine.membershipOf(request.userId)?.membership;
  if (request.membership === "join" && current !== "join" && current !== "invite") {
    if (isRestrictedJoinRule(engine)) {
      if (!(await inAllowedRoom(engine, request.userId, joinedElsewhere))) {
        // As Synapse (EventAuthHandler.check_restricted_join_rules): when this server is not in one of the
        // allowed rooms, the user may be in it unbeknown to us: 400 M_UNABLE_TO_AUTHORISE_JOIN lets the joining
        // server try another resident. Otherwise the user is not allowed: 403.
        for (const roomId of allowedRooms(engine.currentStateEvent("m.room.join_rules", "")?.content)) {
          if (roomId !== meta.roomId && !(await serverInRoom(roomId))) {
            throw new MatrixError(400, "M_UNABLE_TO_AUTHORISE_JOIN", `Unable to check if ${request.userId} is in allowed rooms.`);
          }
        }
        throw forbidden("You do not belong to any of the required rooms/spaces to join this room.");
      }
      const authoriser = chooseAuthoriser(engine);
      if (authoriser === undefined) throw new MatrixError(400, "M_UNABLE_TO_GRANT_JOIN", "Unable to find a user which could issue an invite");
      content.join_authorised_via_users_server = authoriser;
    }
  }
  const template = await unsignedEvent(
    { type: "m.room.member", stateKey: request.userId, sender: request.userId, content },
    { roomId: meta.roomId, rules: meta.rules, serverName: request.origin, prevEvents: choosePrevEvents(engine), state: engine.currentLookup, now: Date.now() },
  );
  // Check the would-be event (unsigned: the auth rules do not look at signatures, and a restricted join's
  // co-signature by this server is added at send_join) on the current state.
  const check = checkEventAuth({ ...template, event_id: "$template" } as IdentifiedPdu, meta.rules, engine.currentLookup, { unsignedTemplate: true });
  if (!check.allowed) throw forbidden(`You are not allowed to ${request.membership} this room: ${check.reason}`);
  // Room versions 1-10 carry `origin`; Synapse's templates have it, so the joining server keeps it.
  if (!meta.rules.eventFormat.redactsInContent) template.origin = request.origin;
  return { event: template, room_version: meta.roomVersion };
}

export interface SendMembershipRequest {
  origin: string;
  /** The event ID in the path. */
  eventId: string;
  membership: RemoteMembership;
  pdu: unknown;
}

/**
 * Checks a send_join/send_leave/send_knock body before it is persisted (spec: send_join's list, which
 * Synapse applies to all three): a member event of the expected membership, sent by a user of the origin
 * for themselves, with the event ID of the path. Returns the event, with this server's signature added
 * when it authorises a restricted join.
 */
export async function checkSentMembership(
  engine: RoomEngine,
  serverName: string,
  key: SigningKey,
  request: SendMembershipRequest,
): Promise<{ event: Pdu; cosigned: boolean }> {
  const meta = engine.meta();
  if (!meta) throw notFound("Unknown room");
  const pdu = request.pdu;
  if (!isJsonObject(pdu)) throw new MatrixError(400, "M_BAD_JSON", "The event must be an object");
  const event = pdu as unknown as Pdu;
  if (event.type !== "m.room.member") throw new MatrixError(400, "M_INVALID_PARAM", "Not an m.room.member event");
  if (!isJsonObject(event.content) || event.content.membership !== request.membership) {
    throw new MatrixError(400, "M_INVALID_PARAM", `Not a ${request.membership} event`);
  }
  if (typeof event.sender !== "string" || !originSpeaksFor(engine, request.origin, event.sender, event)) {
    throw new MatrixError(400, "M_INVALID_PARAM", "The sender is not a user of the origin server");
  }
  if (event.state_key !== event.sender) throw new MatrixError(400, "M_INVALID_PARAM", "The state_key is not the sender");
  if (event.room_id !== meta.roomId) throw new MatrixError(400, "M_INVALID_PARAM", "The event is for another room");
  let id: string;
  try {
    id = await eventIdFor(event, meta.rules);
  } catch {
    throw new MatrixError(400, "M_BAD_JSON", "The event is malformed");
  }
  if (id !== request.eventId) throw new MatrixError(400, "M_INVALID_PARAM", "The event ID does not match the path");
  const via = event.content.join_authorised_via_users_server;
  if (request.membership === "join" && typeof via === "string" && serverNameOf(via) === serverName && meta.rules.authorization.restrictedJoinRule) {
    // Spec: the resident server named by join_authorised_via_users_server signs the join.
    return { event: await signEventAsServer(event, serverName, key, meta.rules), cosigned: true };
  }
  return { event, cosigned: false };
}

/**
 * MSC3943 (as Synapse): a partial-state answer keeps the member events a client needs to name a room that
 * has no name and no canonical alias (its heroes: up to 5 joined or invited members, earliest first).
 */
function heroMembers(engine: RoomEngine, state: ReadonlyMap<string, string>, joinEventId: string): Set<string> {
  const kept = new Set<string>();
  const named = state.has("m.room.name\u0000") || state.has("m.room.canonical_alias\u0000");
  if (named) return kept;
  const candidates: { id: string; ordering: number }[] = [];
  for (const [key, id] of state) {
    if (!key.startsWith("m.room.member\u0000") || id === joinEventId) continue;
    const m = engine.events.meta(id);
    if (m && (m.membership === "join" || m.membership === "invite")) candidates.push({ id, ordering: m.streamOrdering });
  }
  candidates.sort((a, b) => a.ordering - b.ordering);
  for (const c of candidates.slice(0, 5)) kept.add(c.id);
  return kept;
}

/** Spec (send_join v2 `servers_in_room`): the servers with joined members before the join. */
function serversBefore(engine: RoomEngine, group: number | null): string[] {
  const servers = new Set<string>();
  for (const [key, eventId] of engine.stateGroups.load(group)) {
    if (!key.startsWith("m.room.member\u0000")) continue;
    // In MSC4345 rooms a user's server part is a key: the server is the domain it routes to.
    if (engine.events.pdu(eventId)?.content.membership === "join") servers.add(engine.routingServerOf(key.slice(key.indexOf("\u0000") + 1)));
  }
  servers.delete("");
  return [...servers].sort();
}

/** The send_join answer (v2): the state before the join and its auth chain. */
export function sendJoinResponse(
  engine: RoomEngine,
  result: PersistResult,
  cosigned: boolean,
  omitMembers: boolean,
): JsonObject {
  const m = engine.events.meta(result.eventId);
  if (!m) throw notFound("Event not found");
  const before = engine.stateGroups.load(m.stateGroupBefore);
  const kept = omitMembers ? heroMembers(engine, before, result.eventId) : new Set<string>();
  // The joining user's own membership before the join (an invite, a knock, an earlier leave) stays too, as
  // Synapse keeps it: the join is authorised against it (an invited user joining an invite-only room).
  const joiner = engine.events.pdu(result.eventId)?.state_key;
  const ownBefore = typeof joiner === "string" ? before.get(`m.room.member\u0000${joiner}`) : undefined;
  if (ownBefore !== undefined) kept.add(ownBefore);
  const state = [...before].filter(([key, id]) => !(omitMembers && key.startsWith("m.room.member\u0000") && !kept.has(id)));
  const stateIds = state.map(([, id]) => id);
  let authIds = authChainIds(engine, [...stateIds, result.eventId]);
  if (omitMembers) {
    // Spec: events returned in `state` may be left out of `auth_chain`.
    const inState = new Set(stateIds);
    authIds = authIds.filter((id) => !inState.has(id));
  }
  const out: JsonObject = {
    state: pdusOf(engine, stateIds) as unknown as JsonObject[],
    auth_chain: pdusOf(engine, authIds) as unknown as JsonObject[],
    members_omitted: omitMembers,
    servers_in_room: serversBefore(engine, m.stateGroupBefore),
  };
  // Spec: `event` is required when this server signed a restricted join (the joining server needs the
  // copy with both signatures).
  if (cosigned) out.event = wirePdu(engine, result.eventId) as unknown as JsonObject;
  return out;
}
