// Authorization rules (spec: room version docs v1-v12, "Authorisation rules"; Server-Server API,
// "Auth events selection", "Checks performed on receipt of a PDU"; room v3+ "Handling redactions";
// MSC4289 privileged creators, MSC4291 room ID = create event hash).
//
// Every difference between room versions is a named flag of `rules.authorization`; nothing here
// looks at the version number. The checks are pure and synchronous. The two signature-dependent
// rules are handled as follows:
//  - third-party invites (rule "If any signature in `signed` matches any public key"): Ed25519 is
//    async on WebCrypto, so the caller verifies beforehand with `verifyThirdPartyInviteSigned` and
//    passes the public keys that verified as `options.thirdPartyInviteVerifiedKeys`. Without that
//    option such invites are rejected (fail closed).
//  - `join_authorised_via_users_server` (v8+ "must be validly signed by the homeserver of the user
//    ID denoted by the key"): checked here structurally (a signature from that server is present);
//    the cryptographic validity of every signature present is the signature check that runs
//    before auth (checks on receipt, step 2).
import type { JsonObject, JsonValue } from "./json.js";
import { isJsonObject } from "./json.js";
import { authEventIds, prevEventIds, serverNameOf, type IdentifiedPdu, type Pdu } from "./pdu.js";
import { ROOM_VERSIONS, type RoomVersionRules } from "./room-versions.js";
import { signableBytes, verifyBytes } from "./signing.js";
import {
  DEFAULT_ACCEPT_LEVEL,
  PARTICIPATION_EVENT_TYPE,
  isServerKey,
  isSignedByServerKey,
  participationOf,
  serverKeyOfUser,
} from "./participation.js";
import { MEMBER_SERVER_KEY, accountKeyOfUser } from "./accounts.js";

/** The v12 rejection of a power levels event that names a room creator in `users`. A client that sends one
 * gets 400 rather than 403, as from Synapse (it is a malformed request, not a lack of power). */
export const CREATOR_IN_USERS = "must not appear in users";

/** Looks up the current state event for (type, state_key) in the state the event is checked against. */
export type AuthStateLookup = (type: string, stateKey: string) => IdentifiedPdu | undefined;

export type AuthResult = { allowed: true } | { allowed: false; reason: string };

const ALLOW: AuthResult = { allowed: true };
const reject = (reason: string): AuthResult => ({ allowed: false, reason });

export interface AuthCheckOptions {
  /**
   * For an `m.room.member` invite with `content.third_party_invite`: the public keys (unpadded
   * base64, as they appear in `m.room.third_party_invite` content) that were verified to have made
   * a signature in `content.third_party_invite.signed` (see `verifyThirdPartyInviteSigned`). The
   * invite is allowed only if one of them is a public key of the matching
   * `m.room.third_party_invite` event in the state. Absent: such invites are rejected.
   */
  thirdPartyInviteVerifiedKeys?: ReadonlySet<string>;
  /**
   * The event is a template that is not signed yet (a make_join answer, a would-be event checked before
   * it is built): the rules that ask for signatures being present (MSC4348's account key and co-signing
   * server, v8+ restricted joins' authorising server) are skipped. Never set for an event that is to be stored.
   */
  unsignedTemplate?: boolean;
}

export interface AuthEventsSelectionOptions {
  /** Whether an auth event was itself rejected (rule "entries which were themselves rejected"). */
  isRejected?: (eventId: string) => boolean;
}

// Event types and membership values named by the rules.
const CREATE = "m.room.create";
const MEMBER = "m.room.member";
const POWER_LEVELS = "m.room.power_levels";
const JOIN_RULES = "m.room.join_rules";
const THIRD_PARTY_INVITE = "m.room.third_party_invite";
const ALIASES = "m.room.aliases";
const REDACTION = "m.room.redaction";

/** The integer fields of `m.room.power_levels` content and their defaults (spec: m.room.power_levels). */
const LEVEL_DEFAULTS = {
  users_default: 0,
  events_default: 0,
  state_default: 50,
  ban: 50,
  kick: 50,
  redact: 50,
  invite: 0,
  /** MSC4345: the level to accept a server's participation (and, with more power than the
   * server's, to revoke it). Only rooms with `serverParticipation` know it (decision 9). */
  accept: DEFAULT_ACCEPT_LEVEL,
} as const;
export type NamedLevel = keyof typeof LEVEL_DEFAULTS;
const ALL_NAMED_LEVELS = Object.keys(LEVEL_DEFAULTS) as NamedLevel[];
/** The named levels a room version validates in `m.room.power_levels` content. */
function namedLevelsOf(rules: RoomVersionRules): NamedLevel[] {
  return rules.authorization.serverParticipation ? ALL_NAMED_LEVELS : ALL_NAMED_LEVELS.filter((n) => n !== "accept");
}

// ---------------------------------------------------------------------------------------------
// Identifiers (spec: Appendices, "Server Name", "User Identifiers", "Historical User IDs").

const PORT = /^[0-9]{1,5}$/;
const IPV6 = /^\[[0-9A-Fa-f:.]{2,45}\]$/;
const DNS_NAME = /^[0-9A-Za-z.-]{1,255}$/;

/** Whether `name` matches the server name grammar: hostname (IPv4, [IPv6] or DNS name) [":" port]. */
export function isValidServerName(name: string): boolean {
  let host = name;
  if (name.startsWith("[")) {
    const end = name.indexOf("]");
    if (end < 0) return false;
    host = name.slice(0, end + 1);
    const rest = name.slice(end + 1);
    if (rest !== "" && !(rest.startsWith(":") && PORT.test(rest.slice(1)))) return false;
    return IPV6.test(host);
  }
  const colon = name.indexOf(":");
  if (colon >= 0) {
    if (!PORT.test(name.slice(colon + 1))) return false;
    host = name.slice(0, colon);
  }
  return DNS_NAME.test(host);
}

const utf8 = new TextEncoder();

/**
 * Whether `id` is a user ID as servers must accept it over federation: `@localpart:server_name`,
 * at most 255 bytes, with the historical localpart grammar (any code points except `:` and NUL).
 */
export function isValidUserId(id: string): boolean {
  if (!id.startsWith("@")) return false;
  const colon = id.indexOf(":");
  if (colon < 0) return false;
  if (id.slice(1, colon).includes("\u0000")) return false;
  if (utf8.encode(id).length > 255) return false;
  return isValidServerName(id.slice(colon + 1));
}

/**
 * Whether `id` is a user ID in a room of this version: in rooms with `serverKeyIdentity` (MSC4345,
 * decision 12) the server part may also be a server key, which the server name grammar refuses
 * (`_`); domain-form IDs stay valid there (they can be invited or named, but take no part).
 */
export function isValidUserIdIn(id: string, rules: RoomVersionRules): boolean {
  if (isValidUserId(id)) return true;
  // MSC4348: `@<account key>`, no server part.
  if (rules.eventFormat.accountKeyIdentity && accountKeyOfUser(id) !== undefined) return true;
  if (!rules.eventFormat.serverKeyIdentity || serverKeyOfUser(id) === undefined) return false;
  return !id.slice(1, id.indexOf(":")).includes("\u0000") && utf8.encode(id).length <= 255;
}

// ---------------------------------------------------------------------------------------------
// Power levels (spec: Client-Server API, m.room.power_levels; room v1-v9 "m.room.power_levels
// events accept values as strings", v1-v5 "... as floats"; v10+ integers only).

const STRINGY_INTEGER = /^\s*[+-]?[0-9]+\s*$/;

/**
 * Interprets one power level value. v10+ (`integerPowerLevels`): JSON integers only. Before: also
 * strings holding an integer (`" +100 "`, `"0050"`), and floats truncated towards zero (only v1-v5
 * can carry floats; later versions reject them as non-canonical JSON before auth).
 * Returns `undefined` for anything else.
 */
export function parsePowerLevelValue(value: JsonValue | undefined, rules: RoomVersionRules): number | undefined {
  if (typeof value === "number") {
    if (Number.isInteger(value)) return value;
    if (rules.authorization.integerPowerLevels || !Number.isFinite(value)) return undefined;
    return Math.trunc(value);
  }
  if (typeof value === "string" && !rules.authorization.integerPowerLevels && STRINGY_INTEGER.test(value)) {
    const n = Number.parseInt(value.trim(), 10);
    return Number.isSafeInteger(n) ? n : undefined;
  }
  return undefined;
}

/** Reads a level from content for use (not validation): absent, null or unreadable -> `undefined`. */
function readLevel(container: JsonValue | undefined, key: string, rules: RoomVersionRules): number | undefined {
  if (!isJsonObject(container) || !Object.hasOwn(container, key)) return undefined;
  const v = container[key];
  return v === null ? undefined : parsePowerLevelValue(v, rules);
}

function namedLevelOf(name: NamedLevel, powerLevels: IdentifiedPdu | undefined, rules: RoomVersionRules): number {
  return (powerLevels && readLevel(powerLevels.content, name, rules)) ?? LEVEL_DEFAULTS[name];
}

/** The level named `invite`, `kick`, `ban`, `redact`, ... in the given state, with its spec default. */
export function namedPowerLevel(name: NamedLevel, state: AuthStateLookup, rules: RoomVersionRules): number {
  return namedLevelOf(name, state(POWER_LEVELS, ""), rules);
}

/**
 * The room's creators (spec v12 "room creators"): v1-v10 `content.creator` of the create event,
 * v11 its `sender`, v12 its `sender` plus `content.additional_creators`.
 */
export function roomCreators(createEvent: Pdu, rules: RoomVersionRules): string[] {
  const auth = rules.authorization;
  if (!auth.useRoomCreateSender) {
    const creator = createEvent.content.creator;
    return typeof creator === "string" ? [creator] : [];
  }
  const creators = [createEvent.sender];
  if (auth.additionalRoomCreators) {
    const extra = createEvent.content.additional_creators;
    if (Array.isArray(extra)) {
      for (const c of extra) if (typeof c === "string" && !creators.includes(c)) creators.push(c);
    }
  }
  return creators;
}

/** The creator whose first join is allowed right after the create event (rule "only previous event"). */
function firstJoinCreator(createEvent: Pdu, rules: RoomVersionRules): string | undefined {
  if (rules.authorization.useRoomCreateSender) return createEvent.sender;
  const creator = createEvent.content.creator;
  return typeof creator === "string" ? creator : undefined;
}

/**
 * A user's power level in the given state. v12 creators have an infinite level (`Infinity`).
 * Without an `m.room.power_levels` event the creator has 100 and everybody else 0; with one,
 * `users[userId]`, else `users_default`, else 0.
 */
export function powerLevelOf(userId: string, state: AuthStateLookup, rules: RoomVersionRules): number {
  const create = state(CREATE, "");
  if (rules.authorization.explicitlyPrivilegeRoomCreators && create && roomCreators(create, rules).includes(userId)) {
    return Infinity;
  }
  const powerLevels = state(POWER_LEVELS, "");
  if (powerLevels) {
    return readLevel(powerLevels.content.users, userId, rules) ?? readLevel(powerLevels.content, "users_default", rules) ?? 0;
  }
  return create && roomCreators(create, rules).includes(userId) ? 100 : 0;
}

/**
 * The "required power level" to send an event of `eventType`: `events[eventType]`, else
 * `state_default` (50) for state events or `events_default` (0) for others.
 */
export function requiredPowerLevelFor(eventType: string, isState: boolean, state: AuthStateLookup, rules: RoomVersionRules): number {
  const powerLevels = state(POWER_LEVELS, "");
  const specific = powerLevels ? readLevel(powerLevels.content.events, eventType, rules) : undefined;
  if (specific !== undefined) return specific;
  return namedLevelOf(isState ? "state_default" : "events_default", powerLevels, rules);
}

// ---------------------------------------------------------------------------------------------
// Small readers.

function membershipOf(userId: string, state: AuthStateLookup): string | undefined {
  const m = state(MEMBER, userId)?.content.membership;
  return typeof m === "string" ? m : undefined;
}

/** The room's join rule; without an `m.room.join_rules` event (or `join_rule`) it is `invite`. */
function joinRuleOf(state: AuthStateLookup): string {
  const rule = state(JOIN_RULES, "")?.content.join_rule;
  return typeof rule === "string" ? rule : "invite";
}

/** The event ID a redaction redacts: top-level `redacts` (v1-v10) or `content.redacts` (v11+). */
export function redactsOf(redaction: Pdu, rules: RoomVersionRules): string | undefined {
  const r = rules.eventFormat.redactsInContent ? redaction.content.redacts : redaction.redacts;
  return typeof r === "string" ? r : undefined;
}

/** The room ID derived from a v12 create event's ID (MSC4291): `$hash` -> `!hash`. */
export function roomIdFromCreateEventId(createEventId: string): string {
  return "!" + createEventId.slice(1);
}

// ---------------------------------------------------------------------------------------------
// Auth events selection (spec: Server-Server API, "Auth events selection").

/**
 * The (type, state_key) pairs an event's `auth_events` should be chosen from: the create event
 * (not in v12), the power levels, the sender's membership, and for `m.room.member` the target's
 * membership, the join rules (join/invite/knock), the third-party invite named by
 * `third_party_invite.signed.token` (invite), and the `join_authorised_via_users_server` user's
 * membership (join, v8+).
 */
export function authEventTypesFor(
  type: string,
  stateKey: string | undefined,
  sender: string,
  content: JsonObject,
  rules: RoomVersionRules,
  /** MSC4348 rooms: the server key the sender's current membership names (`hostingServerKey`). */
  senderServerKey?: string,
): [type: string, stateKey: string][] {
  if (type === CREATE) return [];
  const out: [string, string][] = [];
  const add = (t: string, k: string) => {
    if (!out.some(([a, b]) => a === t && b === k)) out.push([t, k]);
  };
  if (!rules.authorization.roomCreateEventIdAsRoomId) add(CREATE, "");
  add(POWER_LEVELS, "");
  add(MEMBER, sender);
  // MSC4345 (decision 7): the participation of the sender's server key (rule 2 and the admin
  // paths read it); for a participation event also the target's current participation and that of
  // the co-signing `request_authorised_via_server`.
  if (rules.authorization.serverParticipation) {
    // MSC4348: the server that speaks for the account (`actingServerKey`): the one its own new
    // membership names, or the one its current membership names.
    const ownServerKey = type === MEMBER && stateKey === sender ? content[MEMBER_SERVER_KEY] : undefined;
    const senderKey = !rules.authorization.portableAccounts ? serverKeyOfUser(sender) : isServerKey(ownServerKey) ? ownServerKey : senderServerKey;
    if (senderKey !== undefined) add(PARTICIPATION_EVENT_TYPE, senderKey);
    if (type === PARTICIPATION_EVENT_TYPE) {
      if (typeof stateKey === "string") add(PARTICIPATION_EVENT_TYPE, stateKey);
      const via = content.request_authorised_via_server;
      if (isServerKey(via)) add(PARTICIPATION_EVENT_TYPE, via);
    }
  }
  if (type === MEMBER) {
    const membership = content.membership;
    if (typeof stateKey === "string") add(MEMBER, stateKey);
    if (membership === "join" || membership === "invite" || membership === "knock") add(JOIN_RULES, "");
    if (membership === "invite") {
      const tpi = content.third_party_invite;
      const signed = isJsonObject(tpi) ? tpi.signed : undefined;
      const token = isJsonObject(signed) ? signed.token : undefined;
      if (typeof token === "string") add(THIRD_PARTY_INVITE, token);
    }
    if (membership === "join" && rules.authorization.restrictedJoinRule) {
      const via = content.join_authorised_via_users_server;
      if (typeof via === "string") add(MEMBER, via);
    }
  }
  return out;
}

/**
 * The rules "Considering the event's auth_events" (v1-v11 rule 2, v12 rule 3): every listed auth
 * event was supplied, is in the same room, is a state event, appears once per (type, state_key),
 * is one the auth events selection allows, and was not rejected; v1-v11 also need the create event
 * among them. `authEvents` are the events named by `event.auth_events`, in any order.
 * The create event itself has no auth events and passes.
 */
export function checkAuthEventsSelection(
  event: IdentifiedPdu,
  authEvents: readonly IdentifiedPdu[],
  rules: RoomVersionRules,
  options: AuthEventsSelectionOptions = {},
): AuthResult {
  if (event.type === CREATE) return ALLOW;
  const byId = new Map(authEvents.map((e) => [e.event_id, e]));
  // MSC4348: the sender's server is read from the sender's membership among the auth events.
  const senderMember = authEvents.find((e) => e.type === MEMBER && e.state_key === event.sender && authEventIds(event).includes(e.event_id));
  const senderServerKey = rules.authorization.portableAccounts && senderMember ? hostingServerKey(event.sender, stateLookupFrom([senderMember]), rules) : undefined;
  const expected = authEventTypesFor(event.type, event.state_key, event.sender, event.content, rules, senderServerKey);
  const seen = new Set<string>();
  let sawCreate = false;
  for (const id of authEventIds(event)) {
    const authEvent = byId.get(id);
    if (!authEvent) return reject(`auth event ${id} was not supplied`);
    if (typeof authEvent.state_key !== "string") return reject(`auth event ${id} is not a state event`);
    const key = `${authEvent.type}\u0000${authEvent.state_key}`;
    if (seen.has(key)) return reject(`duplicate auth events for (${authEvent.type}, ${authEvent.state_key})`);
    seen.add(key);
    if (!expected.some(([t, k]) => t === authEvent.type && k === authEvent.state_key)) {
      return reject(`auth event ${id} (${authEvent.type}, ${authEvent.state_key}) is not one the auth events selection allows`);
    }
    if (options.isRejected?.(id)) return reject(`auth event ${id} was rejected`);
    if (authEvent.room_id !== event.room_id) return reject(`auth event ${id} is in another room`);
    if (authEvent.type === CREATE) sawCreate = true;
  }
  if (!rules.authorization.roomCreateEventIdAsRoomId && !sawCreate) return reject("no m.room.create event among the auth events");
  return ALLOW;
}

/** A state lookup over a set of events (e.g. an event's auth events, plus the create event in v12). */
export function stateLookupFrom(events: Iterable<IdentifiedPdu>): AuthStateLookup {
  const map = new Map<string, IdentifiedPdu>();
  for (const e of events) if (typeof e.state_key === "string") map.set(`${e.type}\u0000${e.state_key}`, e);
  return (type, stateKey) => map.get(`${type}\u0000${stateKey}`);
}

/**
 * Checks on receipt, step 4 ("passes authorisation rules based on the event's auth events"): the
 * auth events selection rules, then all other rules against the state formed by the auth events.
 * In v12 the create event is not among the auth events: pass it as `createEvent`.
 */
export function checkEventAgainstAuthEvents(
  event: IdentifiedPdu,
  authEvents: readonly IdentifiedPdu[],
  rules: RoomVersionRules,
  options: AuthCheckOptions & AuthEventsSelectionOptions & { createEvent?: IdentifiedPdu } = {},
): AuthResult {
  const selection = checkAuthEventsSelection(event, authEvents, rules, options);
  if (!selection.allowed) return selection;
  const events = options.createEvent ? [options.createEvent, ...authEvents] : authEvents;
  return checkEventAuth(event, rules, stateLookupFrom(events), options);
}

// ---------------------------------------------------------------------------------------------
// The authorization rules.

/**
 * Checks `event` against the authorization rules of its room version, given the state to check it
 * against (the state from its auth events, the state before it, or the current state).
 * The room's create event must be reachable as ("m.room.create", "") through `state`, also in v12
 * where it is not listed in `auth_events`.
 * The rules about the `auth_events` list itself are `checkAuthEventsSelection`.
 */
export function checkEventAuth(
  event: IdentifiedPdu,
  rules: RoomVersionRules,
  state: AuthStateLookup,
  options: AuthCheckOptions = {},
): AuthResult {
  const auth = rules.authorization;

  // Rule 1: m.room.create.
  if (event.type === CREATE) return checkCreate(event, rules, options);

  const create = state(CREATE, "");
  if (!create) return reject("no m.room.create event in the state");
  // v12 rule 2: the room ID is the create event's ID with `!` for `$` (MSC4291). Before v12 the
  // create event in the state must simply be this room's.
  if (auth.roomCreateEventIdAsRoomId) {
    if (event.room_id !== roomIdFromCreateEventId(create.event_id)) return reject("room_id is not derived from the room's m.room.create event");
  } else if (create.room_id !== event.room_id) {
    return reject("the m.room.create event in the state belongs to another room");
  }

  // m.federate: only the creating server's users may send into an unfederated room.
  if (create.content["m.federate"] === false && serverNameOf(event.sender) !== serverNameOf(create.sender)) {
    return reject("room is not federated and the sender is from another server than the creator");
  }

  // v1-v5 rule 4: m.room.aliases is authorised by the sender's server name alone.
  if (auth.specialCaseAliases && event.type === ALIASES) {
    if (typeof event.state_key !== "string") return reject("m.room.aliases must have a state_key");
    if (event.state_key !== serverNameOf(event.sender)) return reject("m.room.aliases state_key must be the sender's server name");
    return ALLOW;
  }

  // MSC4345 (decision 5): the participation rule (rule 1 of the proposal) and the sender's
  // participation (its rule 2) come immediately before the m.room.member rule of version 12.
  if (auth.serverParticipation) {
    // MSC4348 rule A (Portable accounts, below): the sender is an account key that signed the event.
    if (auth.portableAccounts) {
      const account = checkAccountKeySignature(event, options);
      if (!account.allowed) return account;
    }
    if (event.type === PARTICIPATION_EVENT_TYPE) return checkParticipation(event, create, rules, state, options);
    // Rule 2 (decision 4): the server key that signed the event, which is the server part of its
    // sender (decision 12), must be `accepted`. Every event but the create event and participation
    // events (whose own rules say who may send them). That key's signature is the signature check
    // before auth (the sender's server must sign); like the other rules this one does not look at
    // signatures, so that make_join templates can be checked unsigned.
    // MSC4348 (rule B): the server speaking for the account is the one its membership names.
    const senderKey = actingServerKey(event, state, rules);
    if (senderKey === undefined) {
      return reject(auth.portableAccounts ? "the account's membership names no server key" : "the sender's server part is not a server key");
    }
    if (participationOf(state(PARTICIPATION_EVENT_TYPE, senderKey)) !== "accepted") {
      return reject("the sender's server key is not accepted in the room");
    }
    // MSC4348 rule C: that server co-signed the event ("cosigned by a participating server").
    if (auth.portableAccounts && !options.unsignedTemplate && !isSignedByServerKey(event, senderKey)) {
      return reject("the event is not co-signed by the account's server");
    }
  }

  if (event.type === MEMBER) return checkMember(event, create, rules, state, options);

  // The sender must be joined.
  if (membershipOf(event.sender, state) !== "join") return reject("sender is not joined to the room");

  const senderLevel = powerLevelOf(event.sender, state, rules);

  // m.room.third_party_invite: allowed iff the sender may invite.
  if (event.type === THIRD_PARTY_INVITE) {
    return senderLevel >= namedPowerLevel("invite", state, rules) ? ALLOW : reject("sender's power level is below the invite level");
  }

  // The event type's required power level.
  const isState = typeof event.state_key === "string";
  if (requiredPowerLevelFor(event.type, isState, state, rules) > senderLevel) {
    return reject(`sender's power level is too low to send ${event.type}`);
  }

  // State keys that look like user IDs belong to that user.
  if (isState && event.state_key!.startsWith("@") && event.state_key !== event.sender) {
    return reject("state_key is another user's ID");
  }

  if (event.type === POWER_LEVELS) return checkPowerLevels(event, create, senderLevel, rules, state);

  // v1-v2 rule 11: redactions need the redact level or the same event ID domain. From v3 on the
  // redact level is checked when the redaction is applied (`redactionAllowedAtDelivery`).
  if (auth.specialCaseRedactionSameDomain && event.type === REDACTION) {
    if (senderLevel >= namedPowerLevel("redact", state, rules)) return ALLOW;
    const target = redactsOf(event, rules);
    if (target !== undefined && serverNameOf(target) === serverNameOf(event.event_id)) return ALLOW;
    return reject("sender may not redact events from other servers");
  }

  return ALLOW;
}

/** Rule 1: the create event. */
function checkCreate(event: IdentifiedPdu, rules: RoomVersionRules, options: AuthCheckOptions): AuthResult {
  const auth = rules.authorization;
  // MSC4348 rule A: the creator is an account too.
  if (auth.portableAccounts) {
    const account = checkAccountKeySignature(event, options);
    if (!account.allowed) return account;
  }
  if (prevEventIds(event).length > 0) return reject("m.room.create must not have prev_events");
  if (auth.roomCreateEventIdAsRoomId) {
    if (event.room_id !== undefined) return reject("m.room.create must not have a room_id");
  } else {
    if (typeof event.room_id !== "string") return reject("m.room.create has no room_id");
    if (serverNameOf(event.room_id) !== serverNameOf(event.sender)) return reject("room_id's server name does not match the sender's");
  }
  const version = event.content.room_version;
  if (version !== undefined && !(typeof version === "string" && ROOM_VERSIONS.has(version))) {
    return reject("content.room_version is not a recognised room version");
  }
  if (!auth.useRoomCreateSender && !Object.hasOwn(event.content, "creator")) return reject("m.room.create content has no creator");
  if (auth.additionalRoomCreators && Object.hasOwn(event.content, "additional_creators")) {
    const extra = event.content.additional_creators;
    if (!Array.isArray(extra) || !extra.every((c) => typeof c === "string" && isValidUserIdIn(c, rules))) {
      return reject("additional_creators must be an array of valid user IDs");
    }
  }
  return ALLOW;
}

/** The rules for m.room.member. */
function checkMember(
  event: IdentifiedPdu,
  create: IdentifiedPdu,
  rules: RoomVersionRules,
  state: AuthStateLookup,
  options: AuthCheckOptions,
): AuthResult {
  const auth = rules.authorization;
  const target = event.state_key;
  const membership = event.content.membership;
  if (typeof target !== "string" || membership === undefined) return reject("m.room.member needs a state_key and content.membership");

  // v8+: a join authorised via another server must carry that server's signature. Presence is
  // checked here; the signature's validity is the signature check that precedes auth.
  if (auth.restrictedJoinRule && Object.hasOwn(event.content, "join_authorised_via_users_server")) {
    const via = event.content.join_authorised_via_users_server;
    if (typeof via !== "string" || !isValidUserIdIn(via, rules)) return reject("join_authorised_via_users_server is not a user ID");
    // MSC4348: the co-signer is the server the authorising account's membership names.
    const viaServer = auth.portableAccounts ? hostingServerKey(via, state, rules) : serverNameOf(via);
    const sigs = viaServer === undefined ? undefined : event.signatures?.[viaServer];
    // A make_join template is checked before that server (the resident answering it) co-signs it.
    if (!options.unsignedTemplate && (!isJsonObject(sigs) || Object.keys(sigs).length === 0)) {
      return reject("event is not signed by the server of join_authorised_via_users_server");
    }
  }

  const sender = event.sender;
  switch (membership) {
    case "join":
      return checkJoin(event, target, create, rules, state);
    case "invite":
      return checkInvite(event, target, rules, state, options);
    case "leave": {
      const senderMembership = membershipOf(sender, state);
      if (sender === target) {
        const ok = senderMembership === "invite" || senderMembership === "join" || (auth.knocking && senderMembership === "knock");
        return ok ? ALLOW : reject("cannot leave a room one is not joined to, invited to or knocking on");
      }
      if (senderMembership !== "join") return reject("sender is not joined to the room");
      const senderLevel = powerLevelOf(sender, state, rules);
      if (membershipOf(target, state) === "ban" && senderLevel < namedPowerLevel("ban", state, rules)) {
        return reject("sender's power level is below the ban level, so cannot unban");
      }
      if (senderLevel >= namedPowerLevel("kick", state, rules) && powerLevelOf(target, state, rules) < senderLevel) return ALLOW;
      return reject("sender may not kick the target user");
    }
    case "ban": {
      if (membershipOf(sender, state) !== "join") return reject("sender is not joined to the room");
      const senderLevel = powerLevelOf(sender, state, rules);
      if (senderLevel >= namedPowerLevel("ban", state, rules) && powerLevelOf(target, state, rules) < senderLevel) return ALLOW;
      return reject("sender may not ban the target user");
    }
    case "knock": {
      if (!auth.knocking) break;
      const joinRule = joinRuleOf(state);
      if (!(joinRule === "knock" || (auth.knockRestrictedJoinRule && joinRule === "knock_restricted"))) {
        return reject("the join rule does not allow knocking");
      }
      if (sender !== target) return reject("cannot knock on behalf of another user");
      const current = membershipOf(sender, state);
      if (current !== "ban" && current !== "invite" && current !== "join") return ALLOW;
      return reject(`cannot knock with membership ${current}`);
    }
  }
  return reject("unknown membership");
}

function checkJoin(event: IdentifiedPdu, target: string, create: IdentifiedPdu, rules: RoomVersionRules, state: AuthStateLookup): AuthResult {
  const auth = rules.authorization;
  // The creator's first join, right after the create event.
  const prev = prevEventIds(event);
  if (prev.length === 1 && prev[0] === create.event_id && target === firstJoinCreator(create, rules)) return ALLOW;
  // MSC4345 "Room creation flow": the creator's server accepts itself before the creator joins, so
  // the creator's first join follows its participation event, which itself follows only the create
  // event (the proposal is silent on this rule; without it no room could be created).
  if (auth.serverParticipation && prev.length === 1 && event.sender === target && target === create.sender) {
    const key = actingServerKey(event, state, rules);
    const own = key === undefined ? undefined : state(PARTICIPATION_EVENT_TYPE, key);
    const ownPrev = own ? prevEventIds(own) : [];
    if (own && own.event_id === prev[0] && ownPrev.length === 1 && ownPrev[0] === create.event_id) return ALLOW;
  }

  if (event.sender !== target) return reject("cannot join on behalf of another user");
  const current = membershipOf(target, state);
  if (current === "ban") return reject("sender is banned");

  const joinRule = joinRuleOf(state);
  if ((joinRule === "invite" || (auth.knocking && joinRule === "knock")) && (current === "invite" || current === "join")) return ALLOW;

  if ((auth.restrictedJoinRule && joinRule === "restricted") || (auth.knockRestrictedJoinRule && joinRule === "knock_restricted")) {
    if (current === "join" || current === "invite") return ALLOW;
    const via = event.content.join_authorised_via_users_server;
    if (typeof via !== "string") return reject("a restricted join needs join_authorised_via_users_server");
    if (membershipOf(via, state) !== "join") return reject("join_authorised_via_users_server is not joined to the room");
    if (powerLevelOf(via, state, rules) < namedPowerLevel("invite", state, rules)) {
      return reject("join_authorised_via_users_server may not invite users");
    }
    return ALLOW;
  }

  if (joinRule === "public") return ALLOW;
  return reject(`the join rule ${joinRule} does not allow this join`);
}

function checkInvite(event: IdentifiedPdu, target: string, rules: RoomVersionRules, state: AuthStateLookup, options: AuthCheckOptions): AuthResult {
  const targetMembership = membershipOf(target, state);
  if (Object.hasOwn(event.content, "third_party_invite")) {
    if (targetMembership === "ban") return reject("target user is banned");
    const tpi = event.content.third_party_invite;
    const signed = isJsonObject(tpi) ? tpi.signed : undefined;
    if (!isJsonObject(signed)) return reject("third_party_invite has no signed object");
    const { mxid, token } = signed;
    if (typeof mxid !== "string" || typeof token !== "string") return reject("third_party_invite.signed needs mxid and token");
    if (mxid !== target) return reject("third_party_invite.signed.mxid does not match the state_key");
    const inviteEvent = state(THIRD_PARTY_INVITE, token);
    if (!inviteEvent) return reject("no m.room.third_party_invite event for the token");
    if (inviteEvent.sender !== event.sender) return reject("sender is not the sender of the m.room.third_party_invite event");
    const verified = options.thirdPartyInviteVerifiedKeys;
    if (verified && thirdPartyInvitePublicKeys(inviteEvent).some((k) => verified.has(k))) return ALLOW;
    return reject("no signature in third_party_invite.signed matches a public key of the m.room.third_party_invite event");
  }
  if (membershipOf(event.sender, state) !== "join") return reject("sender is not joined to the room");
  if (targetMembership === "join" || targetMembership === "ban") return reject(`target user is ${targetMembership === "join" ? "already joined" : "banned"}`);
  if (powerLevelOf(event.sender, state, rules) >= namedPowerLevel("invite", state, rules)) return ALLOW;
  return reject("sender's power level is below the invite level");
}

// ---------------------------------------------------------------------------------------------
// Server participation (MSC4345, "The m.server.participation authorization rule"). The numbers in
// comments are the proposal's (1.1.1.1 ...); the decisions are those of ../shared/proposals/README.md.

/**
 * A server's implicit power level (proposal, "Terminology"): the highest power level of any user
 * resident to it. Myelin's reading: the residents are read from the power levels (an auth state
 * lookup cannot list members): a room creator on that key is infinite (v12), else the highest of
 * `users` entries on that key and `users_default` (the level of every other resident).
 */
export function serverImplicitPowerLevel(serverKey: string, state: AuthStateLookup, rules: RoomVersionRules): number {
  const create = state(CREATE, "");
  const creatorHere = create !== undefined && roomCreators(create, rules).some((c) => hostingServerKey(c, state, rules) === serverKey);
  if (creatorHere && rules.authorization.explicitlyPrivilegeRoomCreators) return Infinity;
  const powerLevels = state(POWER_LEVELS, "");
  if (!powerLevels) return creatorHere ? 100 : 0;
  let level = readLevel(powerLevels.content, "users_default", rules) ?? 0;
  const users = powerLevels.content.users;
  if (isJsonObject(users)) {
    for (const user of Object.keys(users)) {
      if (hostingServerKey(user, state, rules) !== serverKey) continue;
      const n = readLevel(users, user, rules);
      if (n !== undefined && n > level) level = n;
    }
  }
  return level;
}

/** Rule 1 of MSC4345: an `org.matrix.msc4345.participation` event. */
function checkParticipation(
  event: IdentifiedPdu,
  create: IdentifiedPdu,
  rules: RoomVersionRules,
  state: AuthStateLookup,
  options: AuthCheckOptions,
): AuthResult {
  const target = event.state_key;
  if (!isServerKey(target)) return reject("a participation event's state_key must be a server key");
  const participation = participationOf(event);
  if (participation === undefined) return reject("participation must be requested, accepted or revoked");
  const domain = event.content.unverified_domain;
  if (domain !== undefined && !(typeof domain === "string" && isValidServerName(domain))) {
    return reject("unverified_domain is not a server name");
  }
  const current = state(PARTICIPATION_EVENT_TYPE, target);
  const currentParticipation = participationOf(current);
  const portable = rules.authorization.portableAccounts;
  const senderKey = hostingServerKey(event.sender, state, rules);

  // 1.1: the sender's signature matches the state_key: the key's controller speaks for itself.
  // MSC4348 (decision 15): an account has no server part; the key's signature beside the account's
  // is the key's controller speaking, through any account ("regardless of room membership").
  if ((portable || senderKey === target) && isSignedByServerKey(event, target)) {
    if (current === undefined) {
      // 1.1.1.1: the room creator's server accepts itself.
      if (participation === "accepted" && roomCreators(create, rules).includes(event.sender)) return ALLOW;
      // 1.1.1.2
      if (participation !== "requested") return reject("a server's first participation event must be requested");
      // 1.1.1.3, decision 10: the co-signer is an accepted server, named by its key.
      const via = event.content.request_authorised_via_server;
      if (!isServerKey(via)) return reject("request_authorised_via_server must be a server key");
      if (participationOf(state(PARTICIPATION_EVENT_TYPE, via)) !== "accepted") {
        return reject("request_authorised_via_server is not an accepted server");
      }
      // 1.1.1.4: co-signed by that server (its validity is the signature check before auth).
      if (!isSignedByServerKey(event, via)) return reject("the request is not signed by request_authorised_via_server");
      // 1.1.1.5 reads "Otherwise, reject"; decision 1: the text before it and the semantics
      // section allow a self-signed request co-signed by an accepted server.
      return ALLOW;
    }
    // 1.1.2: a key's controller may revoke it at any time, once.
    if (participation === "revoked" && currentParticipation !== "revoked") return ALLOW;
    // 1.1.3
    return reject("a server may only revoke its own participation once it has one");
  }

  // The admin paths (1.2, 1.3). Myelin's reading beyond the text: the sender must be joined and its
  // own server accepted, as rule 2 asks of every other event; decision 4 exempts participation
  // events only because a requesting server is not accepted yet (1.1.1), which is not the case here.
  if (senderKey === undefined || participationOf(state(PARTICIPATION_EVENT_TYPE, senderKey)) !== "accepted") {
    return reject("the sender's server key is not accepted in the room");
  }
  // MSC4348 rule C: the admin's own server co-signs, as for any other event.
  if (portable && !options.unsignedTemplate && !isSignedByServerKey(event, senderKey)) {
    return reject("the event is not co-signed by the account's server");
  }
  if (membershipOf(event.sender, state) !== "join") return reject("sender is not joined to the room");
  const senderLevel = powerLevelOf(event.sender, state, rules);
  const acceptLevel = namedPowerLevel("accept", state, rules);

  if (participation === "revoked") {
    // 1.2.1, decision 3: a revocation by the key's own controller is final; an admin may still
    // revoke a server whose current state is its own request (or an admin's revocation).
    // MSC4348 (decision 15): the key's controller is the one whose signature the revocation carries.
    const byController = (c: IdentifiedPdu) => (portable ? isSignedByServerKey(c, target) : serverKeyOfUser(c.sender) === target);
    if (currentParticipation === "revoked" && byController(current!)) {
      return reject("the server revoked its own key; that is final");
    }
    // 1.2.2, decision 2: at least `accept`, and strictly above the server's implicit level (as
    // for kicks and bans).
    if (senderLevel < acceptLevel) return reject("sender's power level is below the accept level");
    if (senderLevel <= serverImplicitPowerLevel(target, state, rules)) {
      return reject("sender's power level is not above the server's implicit power level");
    }
    return ALLOW;
  }

  if (participation === "accepted") {
    // 1.3.1, 1.3.2: nothing to accept, or revoked for good.
    if (currentParticipation === "accepted") return reject("the server is already accepted");
    if (currentParticipation === "revoked") return reject("a revoked server key cannot be accepted again");
    // Decision 6 (and the "requested" state's purpose: only the key's controller introduces the
    // key and its domain): an admin accepts a request, with the request's `unverified_domain`.
    if (current === undefined) return reject("the server has not requested to participate");
    if (current.content.unverified_domain !== event.content.unverified_domain) {
      return reject("unverified_domain differs from the server's request");
    }
    // 1.3.3
    if (senderLevel >= acceptLevel) return ALLOW;
    return reject("sender's power level is below the accept level");
  }

  // 1.4: `requested` is only ever sent by the key's controller.
  return reject("only the server itself may request participation");
}

// ---------------------------------------------------------------------------------------------
// Portable accounts (MSC4348, room version org.matrix.msc4348 = org.matrix.msc4345 + these rules).
// The proposal gives no rules of its own; Myelin's reading, numbered after the twelve decisions of
// ../shared/proposals/README.md:
//  13. The server that speaks for an account is named by the account's own membership
//      (`org.matrix.msc4348.server_key` in `m.room.member` content, kept by redaction). A later
//      membership of the account naming another server moves it there: its user ID, and so its power,
//      stay; the old server's later events for it fail rule C.
//  A (14). Every event's sender is an account key (`@<key>`) and the event is signed by that key
//      (entity: the key, as a server key in MSC4345 rooms). The create event too.
//  B. MSC4345's rule 2 reads the acting server (`actingServerKey`) instead of the sender's server part.
//  C. The acting server co-signed the event (proposal: "cosigned by a participating server").
//  15. Participation events: the target key's signature beside the account's is the key's controller
//      speaking (rule 1.1), through any account; the admin paths need the admin's own server as in C.
// Signatures are checked for presence here; their validity is the signature check before auth, which in
// these rooms verifies every key-form signature an event carries (room/verify-keys.ts).

/** The server key that hosts `userId` in the room: in MSC4348 rooms the one its current membership
 * names (none without a membership); in MSC4345 rooms the user ID's server part. */
export function hostingServerKey(userId: string, state: AuthStateLookup, rules: RoomVersionRules): string | undefined {
  if (!rules.authorization.portableAccounts) return serverKeyOfUser(userId);
  const key = state(MEMBER, userId)?.content[MEMBER_SERVER_KEY];
  return isServerKey(key) ? key : undefined;
}

/** The server key that speaks for `event` (MSC4345 rule 2, MSC4348 rule B): in MSC4348 rooms the one an
 * account's own membership event names, else the sender's hosting server (`hostingServerKey`). */
export function actingServerKey(event: Pdu, state: AuthStateLookup, rules: RoomVersionRules): string | undefined {
  if (rules.authorization.portableAccounts && event.type === MEMBER && event.state_key === event.sender) {
    const key = event.content[MEMBER_SERVER_KEY];
    return isServerKey(key) ? key : undefined;
  }
  return hostingServerKey(event.sender, state, rules);
}

/** MSC4348 rule A: the sender is an account-key user ID and the event carries that key's signature. */
function checkAccountKeySignature(event: Pdu, options: AuthCheckOptions): AuthResult {
  const accountKey = accountKeyOfUser(event.sender);
  if (accountKey === undefined) return reject("the sender must be an account key user ID (@<account key>)");
  if (!options.unsignedTemplate && !isSignedByServerKey(event, accountKey)) return reject("the event is not signed by the sender's account key");
  return ALLOW;
}

/** Validation result of a new power levels content: levels by key, or the reason it is invalid. */
type LevelMap = Map<string, number>;

function levelMap(value: JsonValue | undefined, what: string, rules: RoomVersionRules, userKeys: boolean): LevelMap | string {
  const out: LevelMap = new Map();
  if (value === undefined) return out;
  if (!isJsonObject(value)) return `${what} must be an object`;
  for (const [k, v] of Object.entries(value)) {
    if (userKeys && !isValidUserIdIn(k, rules)) return `${what} has a key that is not a user ID: ${k}`;
    const n = parsePowerLevelValue(v, rules);
    if (n === undefined) return `${what}.${k} is not ${rules.authorization.integerPowerLevels ? "an integer" : "an integer or a string holding one"}`;
    out.set(k, n);
  }
  return out;
}

/** Reads an already-accepted power levels content leniently (unreadable entries are skipped). */
function storedLevelMap(value: JsonValue | undefined, rules: RoomVersionRules): LevelMap {
  const out: LevelMap = new Map();
  if (!isJsonObject(value)) return out;
  for (const k of Object.keys(value)) {
    const n = readLevel(value, k, rules);
    if (n !== undefined) out.set(k, n);
  }
  return out;
}

/** The rules for m.room.power_levels (v1-v9 rule 10 / v10-v11 rule 9 / v12 rule 10). */
function checkPowerLevels(
  event: IdentifiedPdu,
  create: IdentifiedPdu,
  senderLevel: number,
  rules: RoomVersionRules,
  state: AuthStateLookup,
): AuthResult {
  const auth = rules.authorization;
  const content = event.content;

  // Shape of the new content. The spec validates only `users` before v10, but both Synapse and
  // ruma refuse values they cannot read as integers in every version; so do we.
  const newNamed = new Map<NamedLevel, number>();
  for (const name of namedLevelsOf(rules)) {
    if (!Object.hasOwn(content, name)) continue;
    const n = parsePowerLevelValue(content[name], rules);
    if (n === undefined) return reject(`${name} is not a valid power level`);
    newNamed.set(name, n);
  }
  const newEvents = levelMap(content.events, "events", rules, false);
  if (typeof newEvents === "string") return reject(newEvents);
  const checkNotifications = auth.limitNotificationsPowerLevels || auth.integerPowerLevels;
  const newNotifications = checkNotifications ? levelMap(content.notifications, "notifications", rules, false) : new Map<string, number>();
  if (typeof newNotifications === "string") return reject(newNotifications);
  const newUsers = levelMap(content.users, "users", rules, true);
  if (typeof newUsers === "string") return reject(newUsers);

  // v12: creators' power is implicit and cannot be written down.
  if (auth.explicitlyPrivilegeRoomCreators) {
    for (const creator of roomCreators(create, rules)) {
      if (newUsers.has(creator)) return reject(`room creator ${creator} ${CREATOR_IN_USERS}`);
    }
  }

  const current = state(POWER_LEVELS, "");
  if (!current) return ALLOW;

  for (const name of namedLevelsOf(rules)) {
    const before = readLevel(current.content, name, rules);
    const after = newNamed.get(name);
    if (before === after) continue;
    if (before !== undefined && before > senderLevel) return reject(`cannot change ${name} from a level above one's own`);
    if (after !== undefined && after > senderLevel) return reject(`cannot set ${name} above one's own level`);
  }

  const mapChange = (
    what: string,
    before: LevelMap,
    after: LevelMap,
    currentTooHigh: (key: string, level: number) => boolean,
  ): AuthResult => {
    for (const key of new Set([...before.keys(), ...after.keys()])) {
      const b = before.get(key);
      const a = after.get(key);
      if (b === a) continue;
      if (b !== undefined && currentTooHigh(key, b)) return reject(`cannot change ${what}.${key} from its current level`);
      if (a !== undefined && a > senderLevel) return reject(`cannot set ${what}.${key} above one's own level`);
    }
    return ALLOW;
  };

  const events = mapChange("events", storedLevelMap(current.content.events, rules), newEvents, (_, b) => b > senderLevel);
  if (!events.allowed) return events;
  if (auth.limitNotificationsPowerLevels) {
    const notifications = mapChange("notifications", storedLevelMap(current.content.notifications, rules), newNotifications, (_, b) => b > senderLevel);
    if (!notifications.allowed) return notifications;
  }
  return mapChange("users", storedLevelMap(current.content.users, rules), newUsers, (user, b) => user !== event.sender && b >= senderLevel);
}

// ---------------------------------------------------------------------------------------------
// Redactions at delivery (room v3+ "Handling redactions").

/**
 * Whether a redaction that passed auth may be applied to (and shown with) `redacted`, given the
 * state at the redaction. v3+: the sender has the redact level, or the two events' senders are on
 * the same server. v1-v2 (`specialCaseRedactionSameDomain`): the auth rule already decided, with
 * the same condition on event ID domains. Both events must be in the same room and `redacted` must
 * be the event the redaction names.
 */
export function redactionAllowedAtDelivery(
  redaction: IdentifiedPdu,
  redacted: IdentifiedPdu,
  state: AuthStateLookup,
  rules: RoomVersionRules,
): boolean {
  if (redaction.type !== REDACTION || redactsOf(redaction, rules) !== redacted.event_id) return false;
  if (redaction.room_id !== redacted.room_id) return false;
  if (powerLevelOf(redaction.sender, state, rules) >= namedPowerLevel("redact", state, rules)) return true;
  // MSC4348: an account has no server part; only the account itself redacts without the redact level.
  if (rules.eventFormat.accountKeyIdentity) return redaction.sender === redacted.sender;
  if (rules.authorization.specialCaseRedactionSameDomain) return serverNameOf(redaction.event_id) === serverNameOf(redacted.event_id);
  return serverNameOf(redaction.sender) === serverNameOf(redacted.sender);
}

// ---------------------------------------------------------------------------------------------
// Third-party invites (Client-Server API "Third-party invites"; auth rule "If content has a
// third_party_invite property").

/** The public keys of an `m.room.third_party_invite` event: `public_key` and `public_keys[].public_key`. */
export function thirdPartyInvitePublicKeys(inviteEvent: Pdu): string[] {
  const keys: string[] = [];
  const single = inviteEvent.content.public_key;
  if (typeof single === "string") keys.push(single);
  const list = inviteEvent.content.public_keys;
  if (Array.isArray(list)) {
    for (const entry of list) {
      if (isJsonObject(entry) && typeof entry.public_key === "string" && !keys.includes(entry.public_key)) keys.push(entry.public_key);
    }
  }
  return keys;
}

/**
 * Verifies the ed25519 signatures in `content.third_party_invite.signed` of a member event against
 * `publicKeys` and returns the keys that verified at least one signature. Pass the result to
 * `checkEventAuth` as `options.thirdPartyInviteVerifiedKeys`. Candidate keys are those of the
 * `m.room.third_party_invite` events the event will be checked against (auth events, state before,
 * current state); `thirdPartyInvitePublicKeys` reads them.
 */
export async function verifyThirdPartyInviteSigned(memberEvent: Pdu, publicKeys: Iterable<string>): Promise<Set<string>> {
  const verified = new Set<string>();
  const tpi = memberEvent.content.third_party_invite;
  const signed = isJsonObject(tpi) ? tpi.signed : undefined;
  if (!isJsonObject(signed) || !isJsonObject(signed.signatures)) return verified;
  const signatures: string[] = [];
  for (const byKey of Object.values(signed.signatures)) {
    if (!isJsonObject(byKey)) continue;
    for (const [keyId, sig] of Object.entries(byKey)) {
      if (keyId.startsWith("ed25519:") && typeof sig === "string") signatures.push(sig);
    }
  }
  if (signatures.length === 0) return verified;
  let bytes: Uint8Array;
  try {
    bytes = signableBytes(signed);
  } catch {
    return verified;
  }
  for (const key of new Set(publicKeys)) {
    for (const sig of signatures) {
      let ok = false;
      try {
        ok = await verifyBytes(key, bytes, sig);
      } catch {
        ok = false; // not a valid ed25519 public key
      }
      if (ok) {
        verified.add(key);
        break;
      }
    }
  }
  return verified;
}
