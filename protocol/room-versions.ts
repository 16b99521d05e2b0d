// Room-version behaviour as data (spec: "Room Versions", content/rooms/v1.md ... v12.md).
// Each version is defined as a delta of the previous one; code asks a named rule
// (`rules.redaction.keepsOrigin`), never the version number. Modelled on ruma's room_version_rules.rs.

export type EventIdFormat = "v1" | "v3" | "v4";
export type RoomIdFormat = "server-generated" | "create-event-hash";
export type StateResolutionAlgorithm = "v1" | "v2" | "v2.1";

export interface AuthorizationRules {
  /** v1-v5: `m.room.aliases` events are authorised by the sender's server name only. */
  specialCaseAliases: boolean;
  /** v1-v2: redactions of events from the same domain are allowed without redact power. */
  specialCaseRedactionSameDomain: boolean;
  /** v6+: `notifications` power levels are checked when power levels change. */
  limitNotificationsPowerLevels: boolean;
  /** v7+: `knock` membership and join rule. */
  knocking: boolean;
  /** v8+: `restricted` join rule with `join_authorised_via_users_server`. */
  restrictedJoinRule: boolean;
  /** v10+: `knock_restricted` join rule. */
  knockRestrictedJoinRule: boolean;
  /** v10+: power level values must be integers, not strings. */
  integerPowerLevels: boolean;
  /** v11+: the room creator is the sender of the create event (the `creator` field is gone). */
  useRoomCreateSender: boolean;
  /** v12+: creators (create sender and `additional_creators`) have infinite power level. */
  explicitlyPrivilegeRoomCreators: boolean;
  /** v12+: `additional_creators` in the create event's content. */
  additionalRoomCreators: boolean;
  /** v12+: the create event has no `room_id`; the room ID is derived from its event ID,
   * and the create event is not listed in other events' `auth_events`. */
  roomCreateEventIdAsRoomId: boolean;
  /** MSC4345: servers take part by key. The participation event (`PARTICIPATION_EVENT_TYPE`) and
   * its rules run before the member rule; every other event needs its sender's server key to be
   * `accepted`; power levels gain `accept`; the creator's first join follows its participation. */
  serverParticipation: boolean;
  /** MSC4348: accounts take part by account key. Every event is sent by an account-key user ID and
   * signed by that key; it is co-signed by the account's server, whose key the account's own
   * membership names (`org.matrix.msc4348.server_key`), and that server must be `accepted`. A join
   * naming another server moves the account there (auth-rules.ts "Portable accounts"). */
  portableAccounts: boolean;
}

export interface RedactionRules {
  /** v1-v10: top-level `origin`, `membership` and `prev_state` survive redaction. */
  keepsOriginMembershipPrevState: boolean;
  /** v11+: the whole content of `m.room.create` survives (before: only `creator`). */
  keepsAllCreateContent: boolean;
  /** v1-v5: `aliases` of `m.room.aliases` survives. */
  keepsAliasesContent: boolean;
  /** v8+: `allow` of `m.room.join_rules` survives. */
  keepsJoinRulesAllow: boolean;
  /** v9+: `join_authorised_via_users_server` of `m.room.member` survives. */
  keepsJoinAuthorisedViaUsersServer: boolean;
  /** v11+: `invite` of `m.room.power_levels` survives. */
  keepsPowerLevelsInvite: boolean;
  /** v11+: `redacts` of `m.room.redaction` content survives. */
  keepsRedactsInContent: boolean;
  /** v11+: `third_party_invite.signed` of `m.room.member` survives. */
  keepsThirdPartyInviteSigned: boolean;
  /** MSC4345 (decision 9): `participation`, `unverified_domain` and `request_authorised_via_server`
   * of the participation event survive, and `accept` of `m.room.power_levels`. */
  keepsParticipation: boolean;
  /** MSC4348: `org.matrix.msc4348.server_key` of `m.room.member` survives (the rules read it). */
  keepsMemberServerKey: boolean;
}

export interface EventFormatRules {
  /** v1-v2: PDUs carry `event_id`, and prev/auth events are `[id, hashes]` pairs. */
  eventIdInPdu: boolean;
  /** v11+: `redacts` is a content property of `m.room.redaction` (v1-v10: top level). */
  redactsInContent: boolean;
  /** MSC4345 (decisions 11, 12): the server part of a user ID is the server key (unpadded URL-safe
   * base64 of the ed25519 public key) and signatures are keyed by that key, not by a server name. */
  serverKeyIdentity: boolean;
  /** MSC4348: user IDs are `@<account key>` (unpadded URL-safe base64 of the account's ed25519 public
   * key, no server part), and the account key signs the account's events (entity: the key itself). */
  accountKeyIdentity: boolean;
}

export interface RoomVersionRules {
  id: string;
  stable: boolean;
  eventIdFormat: EventIdFormat;
  roomIdFormat: RoomIdFormat;
  stateResolution: StateResolutionAlgorithm;
  /** v5+: signing keys must be valid at the event's origin_server_ts. */
  enforceKeyValidity: boolean;
  /** v6+: events must be strict canonical JSON (integer range, no floats). */
  strictCanonicalJson: boolean;
  eventFormat: EventFormatRules;
  authorization: AuthorizationRules;
  redaction: RedactionRules;
}

type Delta = {
  [K in keyof RoomVersionRules]?: RoomVersionRules[K] extends object ? Partial<RoomVersionRules[K]> : RoomVersionRules[K];
};

function derive(base: RoomVersionRules, id: string, delta: Delta): RoomVersionRules {
  return {
    ...base,
    ...(delta as Partial<RoomVersionRules>),
    id,
    eventFormat: { ...base.eventFormat, ...delta.eventFormat },
    authorization: { ...base.authorization, ...delta.authorization },
    redaction: { ...base.redaction, ...delta.redaction },
  };
}

const V1: RoomVersionRules = {
  id: "1",
  stable: true,
  eventIdFormat: "v1",
  roomIdFormat: "server-generated",
  stateResolution: "v1",
  enforceKeyValidity: false,
  strictCanonicalJson: false,
  eventFormat: { eventIdInPdu: true, redactsInContent: false, serverKeyIdentity: false, accountKeyIdentity: false },
  authorization: {
    specialCaseAliases: true,
    specialCaseRedactionSameDomain: true,
    limitNotificationsPowerLevels: false,
    knocking: false,
    restrictedJoinRule: false,
    knockRestrictedJoinRule: false,
    integerPowerLevels: false,
    useRoomCreateSender: false,
    explicitlyPrivilegeRoomCreators: false,
    additionalRoomCreators: false,
    roomCreateEventIdAsRoomId: false,
    serverParticipation: false,
    portableAccounts: false,
  },
  redaction: {
    keepsOriginMembershipPrevState: true,
    keepsAllCreateContent: false,
    keepsAliasesContent: true,
    keepsJoinRulesAllow: false,
    keepsJoinAuthorisedViaUsersServer: false,
    keepsPowerLevelsInvite: false,
    keepsRedactsInContent: false,
    keepsThirdPartyInviteSigned: false,
    keepsParticipation: false,
    keepsMemberServerKey: false,
  },
};
// v2: state resolution v2.
const V2 = derive(V1, "2", { stateResolution: "v2" });
// v3: event IDs are reference hashes; the same-domain redaction special case is gone.
const V3 = derive(V2, "3", {
  eventIdFormat: "v3",
  eventFormat: { eventIdInPdu: false },
  authorization: { specialCaseRedactionSameDomain: false },
});
// v4: URL-safe base64 event IDs.
const V4 = derive(V3, "4", { eventIdFormat: "v4" });
// v5: signing key validity is enforced.
const V5 = derive(V4, "5", { enforceKeyValidity: true });
// v6: no aliases special case, notifications power level, strict canonical JSON.
const V6 = derive(V5, "6", {
  strictCanonicalJson: true,
  authorization: { specialCaseAliases: false, limitNotificationsPowerLevels: true },
  redaction: { keepsAliasesContent: false },
});
// v7: knocking.
const V7 = derive(V6, "7", { authorization: { knocking: true } });
// v8: restricted joins.
const V8 = derive(V7, "8", {
  authorization: { restrictedJoinRule: true },
  redaction: { keepsJoinRulesAllow: true },
});
// v9: redaction keeps join_authorised_via_users_server.
const V9 = derive(V8, "9", { redaction: { keepsJoinAuthorisedViaUsersServer: true } });
// v10: knock_restricted, integer-only power levels.
const V10 = derive(V9, "10", {
  authorization: { knockRestrictedJoinRule: true, integerPowerLevels: true },
});
// v11: creator is the create event's sender; redaction algorithm updated; redacts moves to content.
const V11 = derive(V10, "11", {
  eventFormat: { redactsInContent: true },
  authorization: { useRoomCreateSender: true },
  redaction: {
    keepsOriginMembershipPrevState: false,
    keepsAllCreateContent: true,
    keepsPowerLevelsInvite: true,
    keepsRedactsInContent: true,
    keepsThirdPartyInviteSigned: true,
  },
});
// v12: MSC4289 privileged creators, MSC4291 room ID = create event hash, MSC4297 state res v2.1.
const V12 = derive(V11, "12", {
  roomIdFormat: "create-event-hash",
  stateResolution: "v2.1",
  authorization: {
    explicitlyPrivilegeRoomCreators: true,
    additionalRoomCreators: true,
    roomCreateEventIdAsRoomId: true,
  },
});

// org.matrix.msc4345 (unstable): v12 plus server participation (MSC4345; the decisions where the
// text is defective or silent are numbered as in ../shared/proposals/README.md and written next to
// the code that makes them, mostly in auth-rules.ts "Server participation").
const MSC4345 = derive(V12, "org.matrix.msc4345", {
  stable: false,
  eventFormat: { serverKeyIdentity: true },
  authorization: { serverParticipation: true },
  redaction: { keepsParticipation: true },
});

// org.matrix.msc4348 (unstable): org.matrix.msc4345 plus portable accounts (MSC4348). Decisions 13-17
// of Myelin's reading are written in auth-rules.ts "Portable accounts" and in the README.
const MSC4348 = derive(MSC4345, "org.matrix.msc4348", {
  eventFormat: { accountKeyIdentity: true },
  authorization: { portableAccounts: true },
  redaction: { keepsMemberServerKey: true },
});

export const ROOM_VERSIONS: ReadonlyMap<string, RoomVersionRules> = new Map(
  [V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, MSC4345, MSC4348].map((v) => [v.id, v]),
);

export const DEFAULT_ROOM_VERSION = "12";

export function roomVersionRules(version: string): RoomVersionRules | undefined {
  return ROOM_VERSIONS.get(version);
}
