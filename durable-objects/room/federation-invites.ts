// Invites across servers (spec: Server-Server API, "Inviting to a room"; data/api/server-server/
// invites-v2.yaml) and the rejection of an invite to a room this server is not in ("Leaving Rooms
// (Rejecting Invites)").
//
// Inbound: another server asks us to co-sign an invite of one of our users. If we hold the room, the
// invite is persisted like any event (it arrives again through /send when we are in the room); if not, it
// is kept out of band with the stripped state the inviter sent, which is all the user sees until they join.
// Outbound: our user invites a remote user; the invitee's server co-signs, then the invite is persisted here
// and goes out to the room like any local event.
import { checkEventAuth } from "../../protocol/auth-rules.js";
import { MatrixError, forbidden } from "../../protocol/errors.js";
import { signEventAsServer } from "../../protocol/event-hashes.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { serverNameOf, type IdentifiedPdu, type Pdu } from "../../protocol/pdu.js";
import { roomVersionRules, type RoomVersionRules } from "../../protocol/room-versions.js";
import type { SigningKey } from "../../protocol/signing.js";
import type { RoomEventNotification } from "../notifications.js";
import { buildLocalEvent } from "./build-event.js";
import type { PersistResult, RoomEngine } from "./engine.js";
import type { RemoteFetch } from "./federation-inbound.js";
import { wirePdu } from "./federation-reads.js";
import { choosePrevEvents } from "./local-events.js";
import { STRIPPED_STATE_TYPES } from "./sync-reads.js";

const invalid = (message: string) => new MatrixError(400, "M_INVALID_PARAM", message);

export interface InboundInvite {
  origin: string;
  roomId: string;
  eventId: string;
  body: JsonObject;
}

export interface InviteOutcome {
  /** The invite with our signature, for the inviting server. */
  event: Pdu;
  /** Set when the invite was kept out of band: the notification for the invitee's User DO. */
  outOfBand?: RoomEventNotification;
  /** Set when the invite was persisted into the room we hold (the caller delivers after commit). */
  persisted?: PersistResult;
}

/** PUT /_matrix/federation/v2/invite/{roomId}/{eventId}: the checks the spec lists, then co-signing. */
export async function receiveInvite(engine: RoomEngine, serverName: string, key: SigningKey, invite: InboundInvite): Promise<InviteOutcome> {
  const { body } = invite;
  const roomVersion = typeof body.room_version === "string" ? body.room_version : "1";
  const rules = roomVersionRules(roomVersion);
  if (!rules) throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", `Room version ${roomVersion} is not supported`, { room_version: roomVersion });
  if (!isJsonObject(body.event)) throw invalid("Missing event");
  const event = body.event as unknown as Pdu;
  if (event.type !== "m.room.member") throw invalid("Not an m.room.member event");
  if (!isJsonObject(event.content) || event.content.membership !== "invite") throw invalid("Not an invite");
  if (typeof event.sender !== "string" || serverNameOf(event.sender) !== invite.origin) throw invalid("The sender is not a user of the origin server");
  if (typeof event.state_key !== "string" || !event.state_key.startsWith("@") || serverNameOf(event.state_key) !== serverName) {
    throw invalid("The invited user is not a user of this server");
  }
  if (event.room_id !== invite.roomId) throw invalid("The event is for another room");
  const verified = await engine.verifyRemoteEvent(event, rules);
  if (!verified.ok) throw invalid(verified.reason);
  if (verified.eventId !== invite.eventId) throw invalid("The event ID does not match the path");
  const held = engine.meta();
  if (held && held.roomVersion !== roomVersion) throw invalid("The room version does not match the room");

  // MSC4311 asks the inviting server to include the create event in v12 rooms; an invite without it is
  // still accepted, as Synapse accepts it (Complement's TestIsDirectFlagFederation sends none).
  const stripped = strippedStateOf(body.invite_room_state, rules);
  const signed = await signEventAsServer(verified.wire, serverName, key, rules);

  if (held && engine.membershipOf(event.state_key)?.membership !== "join") {
    // We hold the room: persist it on our DAG when its prev events are known; otherwise keep it out of band.
    try {
      const persisted = await engine.persistEvent(signed, { origin: "federation" });
      if (persisted.rejectedReason !== null || persisted.softFailed) throw forbidden("The invite is not allowed in this room");
      return { event: signed, persisted };
    } catch (e) {
      if (!(e instanceof MatrixError) || e.status === 403) throw e;
    }
  }
  const ordering = engine.storeOutOfBandMembership(invite.roomId, roomVersion, signed, verified.eventId, [
    ...stripped.filter((e) => !(e.type === "m.room.member" && e.state_key === event.state_key)),
    { type: event.type, state_key: event.state_key, content: event.content, sender: event.sender },
  ]);
  return {
    event: signed,
    outOfBand: { roomId: invite.roomId, streamOrdering: ordering, eventId: verified.eventId, type: event.type, stateKey: event.state_key, sender: event.sender, membership: "invite", ts: event.origin_server_ts },
  };
}

/** Stripped state for clients (spec: "Stripped state": type, state_key, content, sender) from what another
 * server sent (full PDUs in v12, stripped events before). Malformed entries are dropped. In v12 rooms the
 * create event stays whole (MSC4311, as Synapse's strip_event gives it to clients). */
function strippedStateOf(value: unknown, rules: RoomVersionRules): JsonObject[] {
  if (!Array.isArray(value)) return [];
  const out: JsonObject[] = [];
  for (const e of value) {
    if (!isJsonObject(e) || typeof e.type !== "string" || typeof e.state_key !== "string" || !isJsonObject(e.content) || typeof e.sender !== "string") continue;
    const whole = rules.authorization.roomCreateEventIdAsRoomId && e.type === "m.room.create" && e.state_key === "";
    out.push(whole ? wholeCreateEvent(e) : { type: e.type, state_key: e.state_key, content: e.content, sender: e.sender });
  }
  return out;
}

/** A received create event's PDU fields (anything else, such as `unsigned`, is left out). */
function wholeCreateEvent(e: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const key of ["type", "state_key", "content", "sender", "origin_server_ts", "depth", "prev_events", "auth_events", "hashes", "signatures"]) {
    if (e[key] !== undefined) out[key] = e[key];
  }
  return out;
}

/** The invite state we send with an invite: the stripped-state events as full PDUs (MSC4311, required
 * for the create event from v12; harmless before, where a full PDU is a superset of a stripped event). */
export function inviteRoomState(engine: RoomEngine): Pdu[] {
  const out: Pdu[] = [];
  for (const type of STRIPPED_STATE_TYPES) {
    const e = engine.currentStateEvent(type, "");
    const pdu = e ? wirePdu(engine, e.event_id) : undefined;
    if (pdu) out.push(pdu);
  }
  return out;
}

/**
 * Our user invites a user of another server: the invite is built on the current state and checked
 * against it first (a refused invite never leaves this server), then co-signed by the invitee's server,
 * then persisted.
 */
export async function sendRemoteInvite(
  engine: RoomEngine,
  serverName: string,
  key: SigningKey,
  remote: RemoteFetch,
  request: { sender: string; target: string; content: JsonObject },
): Promise<PersistResult> {
  const meta = engine.meta()!;
  const built = await buildLocalEvent(
    { type: "m.room.member", stateKey: request.target, sender: request.sender, content: { ...request.content, membership: "invite" } },
    { roomId: meta.roomId, rules: meta.rules, serverName, key, prevEvents: choosePrevEvents(engine), state: engine.currentLookup, now: Date.now() },
  );
  const check = checkEventAuth({ ...built.pdu, event_id: built.eventId } as IdentifiedPdu, meta.rules, engine.currentLookup);
  if (!check.allowed) throw forbidden(check.reason);
  const destination = serverNameOf(request.target);
  const answer = await remote(destination, "PUT", `/_matrix/federation/v2/invite/${encodeURIComponent(meta.roomId)}/${encodeURIComponent(built.eventId)}`, {
    room_version: meta.roomVersion,
    event: built.pdu as unknown as JsonObject,
    invite_room_state: inviteRoomState(engine) as unknown as JsonObject[],
  });
  if (!answer.ok) {
    if (answer.status === 403) throw forbidden(answer.error);
    // Spec (invite v2): the invitee's server answers 400 M_INCOMPATIBLE_ROOM_VERSION when it does not
    // know the room's version; the client learns that, as Synapse passes it on.
    if (answer.errcode === "M_INCOMPATIBLE_ROOM_VERSION") throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", answer.error, { room_version: meta.roomVersion });
    throw new MatrixError(502, "M_UNKNOWN", `The invited user's server did not accept the invite: ${answer.error}`);
  }
  const returned = isJsonObject(answer.body) && isJsonObject(answer.body.event) ? (answer.body.event as unknown as Pdu) : undefined;
  // Keep our event as built, with the invitee server's signature added (nothing else may change).
  const theirs = returned?.signatures?.[destination];
  const event: Pdu = theirs ? { ...built.pdu, signatures: { ...built.pdu.signatures, [destination]: theirs } } : built.pdu;
  return engine.persistEvent(event, { origin: "local" });
}
