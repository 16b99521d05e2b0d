// Joining a room that lives on other servers (spec: Server-Server API, "Joining Rooms"): ask a resident
// server for a template (make_join), sign it, hand it back (send_join v2), then check everything the
// answer carries before the user sees the room: every state and auth-chain event is verified (format,
// signatures, hashes) and authorised against its auth events, stored as an outlier, and the join event is
// persisted on that state through the room's one entry point (engine.ts).
//
// Built for size (DESIGN.md, "Federation"): the events are processed in auth order in one pass with
// bounded look-ups; a partial-state join (`omit_members`, issue 19) adds a resync cursor on alarms later.
import { MatrixError, forbidden } from "../../protocol/errors.js";
import { eventIdFor, hashAndSignEvent, signEventAsServer } from "../../protocol/event-hashes.js";
import { MEMBER_SERVER_KEY, accountKeyOfUser, accountKeyUserId } from "../../protocol/accounts.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { KEY_USER_ID_REQUIRED, PARTICIPATION_EVENT_TYPE, isServerKey, keyFormUserId } from "../../protocol/participation.js";
import { authEventIds, stateKey, type Pdu } from "../../protocol/pdu.js";
import { ROOM_VERSIONS, roomVersionRules, type RoomVersionRules } from "../../protocol/room-versions.js";
import { randomToken, type SigningKey } from "../../protocol/signing.js";
import type { PersistResult, RoomEngine } from "./engine.js";
import type { RemoteFetch, RemoteResponse } from "./federation-inbound.js";
import { ownServerKey } from "./key-identity.js";

export interface RemoteJoinRequest {
  roomId: string;
  userId: string;
  /** Resident servers to try, in order (the `via`/`server_name` of the request, the alias's server, the
   * room ID's server). */
  servers: string[];
  /** Extra content of the join (displayname, avatar_url, reason). */
  content: JsonObject;
  /** MSC4348 rooms: the account key of the (local) joining user, loaded or made on first use. */
  accountFor?: (userId: string) => Promise<{ accountKey: string; key: SigningKey }>;
  /** Ask for partial state (`omit_members`); false when this server is in the room already. Default true. */
  partialState?: boolean;
  /** MSC4348 rooms this server already holds: `userId` is the account's `@<account key>`, and this its key. */
  accountKey?: SigningKey;
  /** Starts fetching a resident's verify keys without waiting: the send_join answer is signed by it, and a
   * first join to a server would otherwise fetch them only once the answer is in (a key fetch and its D1
   * writes, 50-80 ms here), after make_join and send_join rather than beside them. */
  prefetchKeys?: (server: string) => void;
}

/** Why a remote join failed, as the client sees it (the last server's answer). */
function errorFrom(server: string, response: RemoteResponse & { ok: false }): MatrixError {
  if (response.status === 403 || response.errcode === "M_FORBIDDEN") return forbidden(response.error);
  if (response.status === 404) return new MatrixError(404, "M_NOT_FOUND", `No known servers: ${server} does not know the room`);
  if (response.errcode === "M_INCOMPATIBLE_ROOM_VERSION") return new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", response.error);
  if (response.errcode) return new MatrixError(response.status && response.status >= 400 && response.status < 500 ? response.status : 502, response.errcode, response.error);
  return new MatrixError(502, "M_UNKNOWN", `Failed to reach ${server}: ${response.error}`);
}

/**
 * The whole join: returns the persisted join event. Tries each server until one gives a template and
 * accepts the join; the last failure becomes the client's error (404 "No known servers" when there is
 * none to try).
 */
export interface RemoteJoinResult {
  result: PersistResult;
  /** Set when the resident left the member events out (omit_members): the servers to resync from. */
  partialStateServers?: string[];
}

export async function joinRemoteRoom(engine: RoomEngine, serverName: string, key: SigningKey, remote: RemoteFetch, request: RemoteJoinRequest): Promise<RemoteJoinResult> {
  const servers = [...new Set(request.servers)].filter((s) => s !== serverName);
  if (servers.length === 0) throw new MatrixError(404, "M_NOT_FOUND", "No known servers");
  let lastError: MatrixError = new MatrixError(404, "M_NOT_FOUND", "No known servers");
  for (const server of servers) {
    request.prefetchKeys?.(server);
    let joining = request;
    let accountKey: SigningKey | undefined = request.accountKey;
    let made = await makeJoin(remote, server, joining);
    if (!made.ok && made.errcode === KEY_USER_ID_REQUIRED) {
      // MSC4345: the room names users by server key. Ask again as `@user:<our key>`; a 403 then means
      // our key is not accepted in the room: ask to take part ("Room join flow"), and the user joins once
      // a room admin accepts the key.
      joining = { ...request, userId: keyFormUserId(request.userId, ownServerKey(key)) };
      made = await makeJoin(remote, server, joining);
      if (!made.ok && made.errcode === KEY_USER_ID_REQUIRED && request.accountFor) {
        // MSC4348: the room names users by account key (`@<account key>`); the account signs its events.
        const account = await request.accountFor(request.userId);
        accountKey = account.key;
        joining = { ...request, userId: accountKeyUserId(account.accountKey) };
        made = await makeJoin(remote, server, joining);
      }
      if (!made.ok && made.status === 403) await requestParticipation(server, serverName, key, remote, joining, made.error, accountKey);
    }
    if (!made.ok) {
      lastError = errorFrom(server, made);
      // A resident server that refuses the user speaks for the room: do not ask the others.
      if (made.status === 403) throw lastError;
      continue;
    }
    const template = checkTemplate(made.body, joining);
    if (typeof template === "string") {
      lastError = new MatrixError(502, "M_UNKNOWN", `${server} sent a bad join template: ${template}`);
      continue;
    }
    const { event, eventId, roomVersion } = await signJoin(template.event, template.roomVersion, joining, serverName, key, accountKey);
    // Ask for partial state (omit_members): the join answers without the member list, which is fetched in
    // the background (room/partial-state.ts).
    const sent = await remote(server, "PUT", `/_matrix/federation/v2/send_join/${encodeURIComponent(request.roomId)}/${encodeURIComponent(eventId)}${request.partialState === false ? "" : "?omit_members=true"}`, event as unknown as Record<string, unknown>);
    if (!sent.ok) {
      lastError = errorFrom(server, sent);
      if (sent.status === 403) throw lastError;
      continue;
    }
    if (!isJsonObject(sent.body) || !Array.isArray(sent.body.state) || !Array.isArray(sent.body.auth_chain)) {
      lastError = new MatrixError(502, "M_UNKNOWN", `${server} sent a bad send_join answer`);
      continue;
    }
    // A restricted join comes back co-signed by the resident server: that copy is the one to keep.
    let joinEvent = event;
    const returned = sent.body.event;
    if (isJsonObject(returned) && (await eventIdFor(returned as unknown as Pdu, roomVersionRules(roomVersion)!).catch(() => null)) === eventId) {
      joinEvent = returned as unknown as Pdu;
    }
    const membersOmitted = sent.body.members_omitted === true;
    const result = await persistJoin(engine, request.roomId, roomVersion, joinEvent, sent.body.state as unknown[], sent.body.auth_chain as unknown[], membersOmitted);
    if (!membersOmitted) return { result };
    const listed = Array.isArray(sent.body.servers_in_room) ? sent.body.servers_in_room.filter((x): x is string => typeof x === "string") : [];
    // The server that answered first: it has the state.
    return { result, partialStateServers: [server, ...listed.filter((s) => s !== server)] };
  }
  throw lastError;
}

function makeJoin(remote: RemoteFetch, server: string, request: RemoteJoinRequest): Promise<RemoteResponse> {
  const versions = [...ROOM_VERSIONS.keys()].map((v) => `ver=${encodeURIComponent(v)}`).join("&");
  return remote(server, "GET", `/_matrix/federation/v1/make_join/${encodeURIComponent(request.roomId)}/${encodeURIComponent(request.userId)}?${versions}`);
}

/** The errcode of a join refused because this server asked to take part and waits for an admin. */
export const PARTICIPATION_PENDING = "ORG.MATRIX.MSC4345_PARTICIPATION_PENDING";

/**
 * MSC4345 "Room join flow", the joining server's side: our key has no accepted participation, so ask the
 * resident (an accepted server) to take part: GET make_participation for a `requested` template naming
 * it as co-signer, sign it with our server key, PUT send_participation (the resident checks our key/v3
 * document and co-signs). Then the join must wait until a room admin accepts our key: this always throws,
 * 403 with `PARTICIPATION_PENDING` once the request is in the room (the user joins again after the
 * acceptance, as after a knock), 403 M_FORBIDDEN when the resident refuses the request (an earlier
 * request is pending, the key is revoked, the user is banned or not invited).
 */
async function requestParticipation(
  server: string,
  serverName: string,
  key: SigningKey,
  remote: RemoteFetch,
  request: RemoteJoinRequest,
  joinRefusal: string,
  accountKey?: SigningKey,
): Promise<never> {
  const serverKey = ownServerKey(key);
  const made = await remote(
    server,
    "GET",
    `/_matrix/federation/unstable/org.matrix.msc4345/make_participation/${encodeURIComponent(request.roomId)}/${encodeURIComponent(serverKey)}?user_id=${encodeURIComponent(request.userId)}`,
  );
  if (!made.ok) {
    if (made.status === 403) throw forbidden(`This server may not take part in the room yet (${joinRefusal}); asking to take part was refused: ${made.error}`);
    throw errorFrom(server, made);
  }
  const body = made.body;
  if (!isJsonObject(body) || !isJsonObject(body.event) || typeof body.room_version !== "string") throw new MatrixError(502, "M_UNKNOWN", `${server} sent a bad participation template`);
  const rules = roomVersionRules(body.room_version);
  const t = body.event;
  const content = isJsonObject(t.content) ? t.content : {};
  if (
    !rules?.authorization.serverParticipation ||
    t.room_id !== request.roomId ||
    t.type !== PARTICIPATION_EVENT_TYPE ||
    t.state_key !== serverKey ||
    t.sender !== request.userId ||
    content.participation !== "requested" ||
    content.unverified_domain !== serverName ||
    !isServerKey(content.request_authorised_via_server)
  ) {
    throw new MatrixError(502, "M_UNKNOWN", `${server} sent a bad participation template`);
  }
  const signed = await signTemplate(t, content, rules, serverName, key, accountKey);
  const sent = await remote(
    server,
    "PUT",
    `/_matrix/federation/unstable/org.matrix.msc4345/send_participation/${encodeURIComponent(request.roomId)}/${encodeURIComponent(signed.eventId)}`,
    signed.pdu as unknown as Record<string, unknown>,
  );
  if (!sent.ok) throw sent.status === 403 ? forbidden(`${server} refused this server's request to take part: ${sent.error}`) : errorFrom(server, sent);
  throw new MatrixError(403, PARTICIPATION_PENDING, "This server has asked to take part in the room (MSC4345); join again once a room admin accepts it", {
    "org.matrix.msc4345.server_key": serverKey,
    "org.matrix.msc4345.participation_event_id": signed.eventId,
  });
}

/** Spec: make_join's checks before signing. Returns the template or why it is unusable. */
function checkTemplate(body: unknown, request: RemoteJoinRequest): { event: JsonObject; roomVersion: string } | string {
  if (!isJsonObject(body) || !isJsonObject(body.event)) return "no event";
  const roomVersion = typeof body.room_version === "string" ? body.room_version : "1";
  if (!roomVersionRules(roomVersion)) return `unsupported room version ${roomVersion}`;
  const e = body.event;
  if (e.room_id !== request.roomId) return "room_id differs";
  if (e.sender !== request.userId || e.state_key !== request.userId) return "sender or state_key differs";
  if (e.type !== "m.room.member") return "not a member event";
  if (!isJsonObject(e.content) || e.content.membership !== "join") return "not a join";
  return { event: e, roomVersion };
}

async function signJoin(
  template: JsonObject,
  roomVersion: string,
  request: RemoteJoinRequest,
  serverName: string,
  key: SigningKey,
  accountKey?: SigningKey,
): Promise<{ event: Pdu; eventId: string; roomVersion: string }> {
  const rules = roomVersionRules(roomVersion)!;
  const content: JsonObject = { ...(template.content as JsonObject), ...request.content, membership: "join" };
  // MSC4348 (decision 13): the join names this server as the one that speaks for the account.
  if (rules.authorization.portableAccounts) content[MEMBER_SERVER_KEY] = ownServerKey(key);
  // Keep the resident's authorising user of a restricted join (it chose one that may invite).
  const via = (template.content as JsonObject).join_authorised_via_users_server;
  if (via !== undefined) content.join_authorised_via_users_server = via;
  const signed = await signTemplate(template, content, rules, serverName, key, accountKey);
  return { event: signed.pdu, eventId: signed.eventId, roomVersion };
}

/**
 * Stores the send_join answer and the join on it. The room's meta exists from the start (so outliers can
 * be checked) but has no create event, and so is unknown to readers, until the join commits.
 */
async function persistJoin(
  engine: RoomEngine,
  roomId: string,
  roomVersion: string,
  joinEvent: Pdu,
  state: unknown[],
  authChain: unknown[],
  membersOmitted: boolean,
): Promise<PersistResult> {
  const hadRoom = engine.meta() !== null;
  if (hadRoom && engine.meta()!.roomVersion !== roomVersion) throw new MatrixError(502, "M_UNKNOWN", "The resident server reports another room version");
  if (!hadRoom) engine.beginRemoteRoom(roomId, roomVersion);
  const rules = roomVersionRules(roomVersion)!;
  const pdus = [...authChain, ...state].filter(isJsonObject) as unknown as Pdu[];
  await engine.persistOutliers(pdus);

  const stateBefore = new Map<string, string>();
  let createEventId: string | undefined;
  for (const raw of state) {
    if (!isJsonObject(raw) || typeof raw.type !== "string" || typeof raw.state_key !== "string") continue;
    const id = await eventIdFor(raw as unknown as Pdu, rules).catch(() => null);
    const m = id === null ? undefined : engine.events.meta(id);
    // Events that failed their checks are left out of the state (Synapse's choice too).
    if (!m || m.rejectedReason !== null) continue;
    stateBefore.set(stateKey(raw.type, raw.state_key), id!);
    if (raw.type === "m.room.create" && raw.state_key === "") createEventId = id!;
  }
  if (createEventId === undefined) throw new MatrixError(502, "M_UNKNOWN", "The resident server's state has no valid create event");
  if (membersOmitted) {
    // A partial-state answer leaves out member events, among them the join's other member auth event: a
    // restricted join's authorising user (v8+). Synapse authorises an event in a partial-state room against
    // its own auth events resolved with the state it knows; here the join's verified member auth events
    // fill the member keys the partial state lacks (the resync replaces the whole state later).
    for (const id of authEventIds(joinEvent)) {
      const m = engine.events.meta(id);
      const pdu = m && m.rejectedReason === null ? engine.events.pdu(id) : undefined;
      if (pdu?.type !== "m.room.member" || typeof pdu.state_key !== "string") continue;
      const key = stateKey(pdu.type, pdu.state_key);
      if (!stateBefore.has(key)) stateBefore.set(key, id);
    }
    // A second partial join into a room we hold partially (another local user joining during the resync,
    // room.ts): the members the room already knows (our first joiner among them) stay in its state.
    if (hadRoom) {
      for (const [key, id] of engine.currentState()) {
        if (!stateBefore.has(key) && engine.events.meta(id)?.type === "m.room.member") stateBefore.set(key, id);
      }
    }
  }
  if (!hadRoom) engine.setCreateEvent(createEventId);
  try {
    const result = await engine.persistRemoteJoin(joinEvent, stateBefore);
    if (result.rejectedReason !== null) throw forbidden(`The join was rejected: ${result.rejectedReason}`);
    return result;
  } catch (e) {
    // Readers must not see a room whose join did not commit.
    if (!hadRoom) engine.setCreateEvent(null);
    throw e;
  }
}

/** A make_leave/make_knock answer as a template for the user of `request`, or undefined when it is not
 * one (the checks the spec lists for make_join, applied to all three). */
function membershipTemplate(body: unknown, request: { roomId: string; userId: string }): { template: JsonObject; roomVersion: string; rules: RoomVersionRules } | undefined {
  if (!isJsonObject(body) || !isJsonObject(body.event)) return undefined;
  const template = body.event;
  const roomVersion = typeof body.room_version === "string" ? body.room_version : "1";
  const rules = roomVersionRules(roomVersion);
  if (!rules || template.room_id !== request.roomId || template.sender !== request.userId || template.state_key !== request.userId || template.type !== "m.room.member") return undefined;
  return { template, roomVersion, rules };
}

/** Fills in a make_* template (our content, our timestamp, a v1-v2 event ID of ours) and hashes and signs it. */
async function signTemplate(
  template: JsonObject,
  content: JsonObject,
  rules: RoomVersionRules,
  serverName: string,
  key: SigningKey,
  /** MSC4348 rooms: the account's key, which signs beside the server's (rule A). */
  accountKey?: SigningKey,
): Promise<{ pdu: Pdu; eventId: string }> {
  const { signatures: _s, hashes: _h, unsigned: _u, ...rest } = template;
  const unsigned: JsonObject = { ...rest, content, origin_server_ts: Date.now() };
  if (rules.eventFormat.eventIdInPdu) unsigned.event_id = `$${randomToken(18)}:${serverName}`;
  else delete unsigned.event_id;
  // MSC4345 rooms (decision 11): signed under the server key, not the server name.
  const entity = rules.eventFormat.serverKeyIdentity ? ownServerKey(key) : serverName;
  try {
    const signed = await hashAndSignEvent(unsigned as unknown as Pdu, entity, key, rules);
    const account = typeof unsigned.sender === "string" ? accountKeyOfUser(unsigned.sender) : undefined;
    if (!accountKey || account === undefined || !rules.eventFormat.accountKeyIdentity) return signed;
    return { pdu: await signEventAsServer(signed.pdu, account, accountKey, rules), eventId: signed.eventId };
  } catch {
    // A template canonical JSON refuses (a float, a too-large integer): the resident's fault, not a 500.
    throw new MatrixError(502, "M_UNKNOWN", "The resident server sent a template that cannot be signed");
  }
}

/**
 * Leaves (rejects an invite to) a room this server is not in, through a resident server (spec: make_leave,
 * send_leave v2). Returns the signed leave event when a server accepted it, or null when none did (the
 * caller then records the rejection locally, as Synapse does, so the user is not stuck with the invite).
 */
export async function leaveRemoteRoom(serverName: string, key: SigningKey, remote: RemoteFetch, request: { roomId: string; userId: string; servers: string[]; reason?: string }): Promise<{ event: Pdu; eventId: string } | null> {
  for (const server of [...new Set(request.servers)].filter((s) => s !== serverName)) {
    const made = await remote(server, "GET", `/_matrix/federation/v1/make_leave/${encodeURIComponent(request.roomId)}/${encodeURIComponent(request.userId)}`);
    const usable = made.ok ? membershipTemplate(made.body, request) : undefined;
    if (!usable) continue;
    const content: JsonObject = { membership: "leave" };
    if (request.reason !== undefined) content.reason = request.reason;
    const signed = await signTemplate(usable.template, content, usable.rules, serverName, key);
    const sent = await remote(server, "PUT", `/_matrix/federation/v2/send_leave/${encodeURIComponent(request.roomId)}/${encodeURIComponent(signed.eventId)}`, signed.pdu as unknown as Record<string, unknown>);
    if (sent.ok) return { event: signed.pdu, eventId: signed.eventId };
  }
  return null;
}

/**
 * Knocks on a room this server is not in (spec: make_knock, send_knock): the signed knock and the stripped
 * state the resident server answers with (`knock_room_state`), which is all the user sees of the room until
 * someone lets them in. Throws the last server's refusal when none accepts.
 */
export async function knockRemoteRoom(
  serverName: string,
  key: SigningKey,
  remote: RemoteFetch,
  request: { roomId: string; userId: string; servers: string[]; reason?: string },
): Promise<{ event: Pdu; eventId: string; roomVersion: string; strippedState: JsonObject[] }> {
  const servers = [...new Set(request.servers)].filter((s) => s !== serverName);
  if (servers.length === 0) throw new MatrixError(404, "M_NOT_FOUND", "No known servers");
  const versions = [...ROOM_VERSIONS.keys()].map((v) => `ver=${encodeURIComponent(v)}`).join("&");
  let lastError: MatrixError = new MatrixError(404, "M_NOT_FOUND", "No known servers");
  for (const server of servers) {
    const made = await remote(server, "GET", `/_matrix/federation/v1/make_knock/${encodeURIComponent(request.roomId)}/${encodeURIComponent(request.userId)}?${versions}`);
    if (!made.ok) {
      lastError = errorFrom(server, made);
      if (made.status === 403) throw lastError;
      continue;
    }
    const usable = membershipTemplate(made.body, request);
    if (!usable) continue;
    const { roomVersion } = usable;
    const content: JsonObject = { membership: "knock" };
    if (request.reason !== undefined) content.reason = request.reason;
    const signed = await signTemplate(usable.template, content, usable.rules, serverName, key);
    const sent = await remote(server, "PUT", `/_matrix/federation/v1/send_knock/${encodeURIComponent(request.roomId)}/${encodeURIComponent(signed.eventId)}`, signed.pdu as unknown as Record<string, unknown>);
    if (!sent.ok) {
      lastError = errorFrom(server, sent);
      if (sent.status === 403) throw lastError;
      continue;
    }
    const state = isJsonObject(sent.body) && Array.isArray(sent.body.knock_room_state) ? sent.body.knock_room_state : [];
    const strippedState: JsonObject[] = [];
    for (const e of state) {
      if (!isJsonObject(e) || typeof e.type !== "string" || typeof e.state_key !== "string" || !isJsonObject(e.content) || typeof e.sender !== "string") continue;
      strippedState.push({ type: e.type, state_key: e.state_key, content: e.content, sender: e.sender });
    }
    strippedState.push({ type: "m.room.member", state_key: request.userId, content, sender: request.userId });
    return { event: signed.pdu, eventId: signed.eventId, roomVersion, strippedState };
  }
  throw lastError;
}
