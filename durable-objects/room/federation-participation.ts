// MSC4345 "The request participation handshake", the resident server's side: a server asks through an
// accepted server to take part in a room (unstable paths, ../shared/proposals/README.md:
// GET .../make_participation/{roomId}/{serverKey}, PUT .../send_participation/{roomId}/{eventId}).
// `make_participation` hands out a `requested` participation template naming this server as the
// co-signer; `send_participation` takes it back signed by the requesting key, checks that the origin
// owns the key and the domain, co-signs it with this server's key and persists it like any other event.
// An admin then accepts (or revokes) the key with a participation state event.
import { actingServerKey, checkEventAuth, hostingServerKey } from "../../protocol/auth-rules.js";
import { accountKeyOfUser } from "../../protocol/accounts.js";
import { MatrixError, forbidden, notFound } from "../../protocol/errors.js";
import { eventIdFor, signEventAsServer } from "../../protocol/event-hashes.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { PARTICIPATION_EVENT_TYPE, isServerKey, keyDocumentListsKey, participationOf, serverKeyOfUser } from "../../protocol/participation.js";
import { serverNameOf, type IdentifiedPdu, type Pdu } from "../../protocol/pdu.js";
import type { SigningKey } from "../../protocol/signing.js";
import { unsignedEvent } from "./build-event.js";
import type { RoomEngine, RoomMeta } from "./engine.js";
import { choosePrevEvents } from "./local-events.js";
import type { KeyDocumentFetch } from "./server-domains.js";

export interface MakeParticipationRequest {
  /** The server asking (authenticated by X-Matrix): the domain it advertises. */
  origin: string;
  serverKey: string;
  /** The user the request is sent as (any localpart on the key: the proposal's "sent on behalf of the
   * server"); default `@server:<key>`. */
  userId?: string;
}

/**
 * Whether the authenticated `origin` speaks for `userId`'s server: its server name, or in MSC4345 rooms
 * the `unverified_domain` of the key's current participation (the routing the key's controller chose;
 * X-Matrix proves the origin holds that domain, the event's signature proves the key).
 */
export function originSpeaksFor(engine: RoomEngine, origin: string, userId: string, event?: Pdu): boolean {
  const rules = engine.meta()?.rules;
  // MSC4348 rooms: an account is spoken for by the server its membership names; for its own new
  // membership event, by the server that event names (a move names the new server).
  if (rules?.eventFormat.accountKeyIdentity && engine.keyIdentity().active) {
    const key = event ? actingServerKey(event, engine.currentLookup, rules) : hostingServerKey(userId, engine.currentLookup, rules);
    return key !== undefined && engine.currentStateEvent(PARTICIPATION_EVENT_TYPE, key)?.content.unverified_domain === origin;
  }
  const key = serverKeyOfUser(userId);
  if (!engine.keyIdentity().active || key === undefined) return serverNameOf(userId) === origin;
  return engine.currentStateEvent(PARTICIPATION_EVENT_TYPE, key)?.content.unverified_domain === origin;
}

/**
 * MSC4348: the accepted server key whose participation advertises `origin` (the authenticated requesting
 * server), which a make_join template names for the joining account (decision 13), or undefined.
 */
export function acceptedKeyOfDomain(engine: RoomEngine, origin: string): string | undefined {
  for (const [key, eventId] of engine.currentState()) {
    if (!key.startsWith(`${PARTICIPATION_EVENT_TYPE}\u0000`)) continue;
    const event = engine.events.pdu(eventId);
    if (event && participationOf(event) === "accepted" && event.content.unverified_domain === origin && isServerKey(event.state_key)) return event.state_key;
  }
  return undefined;
}

function participationRoom(engine: RoomEngine): RoomMeta {
  const meta = engine.meta();
  if (!meta) throw notFound("Unknown room");
  if (!meta.rules.authorization.serverParticipation || engine.ownServerKey === undefined) {
    throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", "This room's version has no server participation", { room_version: meta.roomVersion });
  }
  // Only an accepted server may co-sign a request (rule 1.1.1.3).
  if (participationOf(engine.currentStateEvent(PARTICIPATION_EVENT_TYPE, engine.ownServerKey)) !== "accepted") {
    throw forbidden("This server is not accepted in the room and cannot authorise requests");
  }
  return meta;
}

/** GET make_participation: a `requested` template, refused (403) where the proposal says (banned; an
 * invite-only room without an invite) or when the event would not pass the auth rules now. */
export async function makeParticipation(engine: RoomEngine, request: MakeParticipationRequest): Promise<{ event: Pdu; room_version: string }> {
  const meta = participationRoom(engine);
  const { serverKey, origin } = request;
  if (!isServerKey(serverKey)) throw new MatrixError(400, "M_INVALID_PARAM", "Not a server key");
  const userId = request.userId ?? `@server:${serverKey}`;
  // MSC4348 rooms: the request is spoken through an account (decision 15), named by its account key.
  const accounts = meta.rules.eventFormat.accountKeyIdentity;
  if (accounts ? accountKeyOfUser(userId) === undefined : serverKeyOfUser(userId) !== serverKey) {
    throw new MatrixError(400, "M_INVALID_PARAM", accounts ? "user_id must be an account key user ID (@<account key>)" : "user_id is not a user of that server key");
  }
  const current = participationOf(engine.currentStateEvent(PARTICIPATION_EVENT_TYPE, serverKey));
  if (current !== undefined) throw forbidden(`That server key's participation is already ${current}`);
  const membership = engine.membershipOf(userId)?.membership;
  if (membership === "ban") throw forbidden("The user is banned from the room");
  const joinRule = engine.currentStateEvent("m.room.join_rules", "")?.content.join_rule ?? "invite";
  if (joinRule === "invite" && membership !== "invite") throw forbidden("The room is invite-only and the user has no invite");

  const content: JsonObject = { participation: "requested", unverified_domain: origin, request_authorised_via_server: engine.ownServerKey! };
  const template = await unsignedEvent(
    { type: PARTICIPATION_EVENT_TYPE, stateKey: serverKey, sender: userId, content },
    { roomId: meta.roomId, rules: meta.rules, serverName: origin, prevEvents: choosePrevEvents(engine), state: engine.currentLookup, now: Date.now() },
  );
  // The would-be event, with the two signatures it will carry (the rules only look for them).
  const signatures: JsonObject = { [serverKey]: { "ed25519:x": "" }, [engine.ownServerKey!]: { "ed25519:x": "" } };
  if (accounts) signatures[accountKeyOfUser(userId)!] = { "ed25519:1": "" };
  const wouldBe = { ...template, event_id: "$template", signatures };
  const check = checkEventAuth(wouldBe as IdentifiedPdu, meta.rules, engine.currentLookup);
  if (!check.allowed) throw forbidden(`You may not request participation: ${check.reason}`);
  return { event: template, room_version: meta.roomVersion };
}


/**
 * PUT send_participation: the requesting server's signed `requested` event. The proposal's checks: it
 * is signed by the key of its `state_key` (the signature check when it is persisted), the origin owns
 * that key (its key/v3 document lists it) and the `unverified_domain` (the origin, authenticated by
 * X-Matrix, is that domain), and this server co-signs with the key named in
 * `request_authorised_via_server`, which must be its own. Returns the co-signed event to persist.
 */
export async function checkSentParticipation(
  engine: RoomEngine,
  key: SigningKey,
  request: { origin: string; eventId: string; pdu: unknown },
  fetchKeyDocument: KeyDocumentFetch,
): Promise<Pdu> {
  const meta = participationRoom(engine);
  if (!isJsonObject(request.pdu)) throw new MatrixError(400, "M_BAD_JSON", "The event must be an object");
  const event = request.pdu as unknown as Pdu;
  if (event.type !== PARTICIPATION_EVENT_TYPE || !isServerKey(event.state_key)) {
    throw new MatrixError(400, "M_INVALID_PARAM", "Not a participation event for a server key");
  }
  const serverKey = event.state_key;
  const accountSender = meta.rules.eventFormat.accountKeyIdentity && typeof event.sender === "string" && accountKeyOfUser(event.sender) !== undefined;
  if (typeof event.sender !== "string" || !(accountSender || serverKeyOfUser(event.sender) === serverKey)) {
    throw new MatrixError(400, "M_INVALID_PARAM", "The sender is not a user of the requesting key");
  }
  if (!isJsonObject(event.content) || event.content.participation !== "requested") throw new MatrixError(400, "M_INVALID_PARAM", "Not a request to participate");
  if (event.content.unverified_domain !== request.origin) throw new MatrixError(400, "M_INVALID_PARAM", "unverified_domain is not the requesting server");
  if (event.content.request_authorised_via_server !== engine.ownServerKey) {
    throw new MatrixError(400, "M_INVALID_PARAM", "request_authorised_via_server does not name this server's key");
  }
  if (event.room_id !== meta.roomId) throw new MatrixError(400, "M_INVALID_PARAM", "The event is for another room");
  let id: string;
  try {
    id = await eventIdFor(event, meta.rules);
  } catch {
    throw new MatrixError(400, "M_BAD_JSON", "The event is malformed");
  }
  if (id !== request.eventId) throw new MatrixError(400, "M_INVALID_PARAM", "The event ID does not match the path");
  if (!(await keyDocumentListsKey(await fetchKeyDocument(request.origin), serverKey, request.origin))) {
    throw forbidden("The requesting server does not publish that key at /_matrix/key/v3/org.matrix.msc4345/query");
  }
  // Decision 10: co-signed by the accepted resident's key, before anyone else sees it.
  return signEventAsServer(event, engine.ownServerKey!, key, meta.rules);
}
