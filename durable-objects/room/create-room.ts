// The events of a new room (spec: Client-Server API, POST /createRoom, the ordered list of events and the
// preset table; room v12 / MSC4289 creators and MSC4291 room IDs). Pure: the worker validates the request
// into a `CreateRoomConfig`, the Room DO turns it into event templates with these functions.
import type { JsonObject, JsonValue } from "../../protocol/json.js";
import type { RoomVersionRules } from "../../protocol/room-versions.js";
import type { EventTemplate } from "./build-event.js";
import { PARTICIPATION_EVENT_TYPE, serverKeyOfUser } from "../../protocol/participation.js";

export type RoomPreset = "private_chat" | "public_chat" | "trusted_private_chat";

export interface MemberProfile {
  displayname?: string;
  avatar_url?: string;
}

/** A validated createRoom request. */
export interface CreateRoomConfig {
  creator: string;
  roomVersion: string;
  preset: RoomPreset;
  /** `creation_content` as the client sent it (an object). */
  creationContent: JsonObject;
  powerLevelContentOverride?: JsonObject;
  /** `initial_state` in request order; `stateKey` defaults to "". */
  initialState: { type: string; stateKey: string; content: JsonObject }[];
  /** The full alias of `room_alias_name` (`#name:server`), already reserved by the worker. */
  canonicalAlias?: string;
  name?: string;
  topic?: string;
  /** `invite`, deduplicated, without the creator. */
  invite: string[];
  /** The invitees of other servers (also in `invite`, for power levels and v12 creators): they get no
   * invite event here; the worker invites them through their servers once the room exists. */
  remoteInvitees: string[];
  isDirect: boolean;
  /** The creator's profile, copied into their join event. */
  creatorProfile: MemberProfile;
  /** Profiles of local invitees, copied into their invite events (Synapse's `include_profile_data_on_invite`). */
  inviteeProfiles: Record<string, MemberProfile>;
  /** MSC4345 rooms: the `unverified_domain` the creator's server advertises in its participation. */
  participationDomain?: string;
  /** MSC4348 rooms: the creator's server key (an account ID has no server part to read it from). */
  participationKey?: string;
}

/** The preset table of the spec. `guest_access` is only sent for `can_join`: without the event guests
 * cannot join, which is `forbidden` (Synapse sends no event for public_chat either). */
export const PRESETS: Record<RoomPreset, { joinRule: string; historyVisibility: string; guestAccess: string; inviteesAreCreators: boolean; invitePowerLevel: number }> = {
  // Synapse lets every member of a private chat invite (its presets' `power_level_content_override`
  // {"invite": 0}); Complement's TestFederationRoomsInvite relies on it.
  private_chat: { joinRule: "invite", historyVisibility: "shared", guestAccess: "can_join", inviteesAreCreators: false, invitePowerLevel: 0 },
  trusted_private_chat: { joinRule: "invite", historyVisibility: "shared", guestAccess: "can_join", inviteesAreCreators: true, invitePowerLevel: 0 },
  public_chat: { joinRule: "public", historyVisibility: "shared", guestAccess: "forbidden", inviteesAreCreators: false, invitePowerLevel: 50 },
};

/**
 * The content of the m.room.create event: `creation_content` with `room_version` (and, v1-v10, `creator`)
 * overwritten by the server. v11+ has no `creator` key (the sender is the creator), so a client's one is
 * dropped. v12 trusted_private_chat: the invitees join `additional_creators` (deduplicated).
 */
export function createEventContent(config: CreateRoomConfig, rules: RoomVersionRules): JsonObject {
  const content: JsonObject = { ...config.creationContent };
  delete content.creator;
  if (!rules.authorization.useRoomCreateSender) content.creator = config.creator;
  content.room_version = rules.id;
  if (rules.authorization.additionalRoomCreators && PRESETS[config.preset].inviteesAreCreators && config.invite.length > 0) {
    const existing = Array.isArray(content.additional_creators) ? content.additional_creators : [];
    const merged: JsonValue[] = [...existing];
    for (const user of config.invite) if (!merged.includes(user)) merged.push(user);
    content.additional_creators = merged;
  }
  return content;
}

/** The default power levels of a new room (Synapse's defaults, which clients expect). */
export function defaultPowerLevels(config: CreateRoomConfig, rules: RoomVersionRules): JsonObject {
  const privilegedCreators = rules.authorization.explicitlyPrivilegeRoomCreators;
  const users: JsonObject = {};
  // v1-v11: the creator is listed with 100; v12: creators have infinite power and must not be listed.
  if (!privilegedCreators) {
    users[config.creator] = 100;
    // trusted_private_chat: "All invitees are given the same power level as the room creator." (In v12
    // they are additional creators instead.)
    if (PRESETS[config.preset].inviteesAreCreators) for (const user of config.invite) users[user] = 100;
  }
  return {
    users,
    users_default: 0,
    events: {
      "m.room.name": 50,
      "m.room.power_levels": 100,
      "m.room.history_visibility": 100,
      "m.room.canonical_alias": 50,
      "m.room.avatar": 50,
      // v12: "the power level for sending m.room.tombstone events MUST explicitly be higher than state_default".
      "m.room.tombstone": privilegedCreators ? 150 : 100,
      "m.room.server_acl": 100,
      "m.room.encryption": 100,
    },
    events_default: 0,
    state_default: 50,
    ban: 50,
    kick: 50,
    redact: 50,
    invite: PRESETS[config.preset].invitePowerLevel,
    historical: 100,
  };
}

function memberContent(membership: string, profile: MemberProfile | undefined, extra: JsonObject = {}): JsonObject {
  const content: JsonObject = { membership };
  if (profile?.displayname !== undefined) content.displayname = profile.displayname;
  if (profile?.avatar_url !== undefined) content.avatar_url = profile.avatar_url;
  return { ...content, ...extra };
}

/**
 * The events after m.room.create, in the spec's order: 2. the creator's join, 3. power levels (an
 * `initial_state` power levels event replaces the default content, as in Synapse; otherwise the default
 * with `power_level_content_override` applied on top), 4. m.room.canonical_alias, 5. the preset's join
 * rules, history visibility and guest access (unless `initial_state` has them), 6. `initial_state` in
 * request order, 7. name and topic, 8. invites.
 */
export function initialEventTemplates(config: CreateRoomConfig, rules: RoomVersionRules): EventTemplate[] {
  const sender = config.creator;
  const preset = PRESETS[config.preset];
  const state = (type: string, content: JsonObject, stateKey = ""): EventTemplate => ({ type, stateKey, sender, content });
  const templates: EventTemplate[] = [];

  // Later entries of initial_state with the same (type, state_key) replace earlier ones (Synapse keeps
  // one per key, in first-seen order).
  const initial = new Map<string, { type: string; stateKey: string; content: JsonObject }>();
  for (const e of config.initialState) initial.set(`${e.type}\u0000${e.stateKey}`, e);
  const inInitial = (type: string) => initial.has(`${type}\u0000`);

  // MSC4345 "Room creation flow": the creator's server accepts itself, with the domain it advertises,
  // before the creator's join (rule 1.1.1.1; the creator's first join then follows this event).
  const creatorKey = !rules.authorization.serverParticipation ? undefined : rules.authorization.portableAccounts ? config.participationKey : serverKeyOfUser(sender);
  if (creatorKey !== undefined) {
    const content: JsonObject = { participation: "accepted" };
    if (config.participationDomain !== undefined) content.unverified_domain = config.participationDomain;
    templates.push(state(PARTICIPATION_EVENT_TYPE, content, creatorKey));
  }

  templates.push(state("m.room.member", memberContent("join", config.creatorProfile), sender));

  const initialPowerLevels = initial.get("m.room.power_levels\u0000");
  if (initialPowerLevels) {
    templates.push(state("m.room.power_levels", initialPowerLevels.content));
    initial.delete("m.room.power_levels\u0000");
  } else {
    templates.push(state("m.room.power_levels", { ...defaultPowerLevels(config, rules), ...(config.powerLevelContentOverride ?? {}) }));
  }

  if (config.canonicalAlias !== undefined && !inInitial("m.room.canonical_alias")) {
    templates.push(state("m.room.canonical_alias", { alias: config.canonicalAlias }));
  }

  if (!inInitial("m.room.join_rules")) templates.push(state("m.room.join_rules", { join_rule: preset.joinRule }));
  if (!inInitial("m.room.history_visibility")) templates.push(state("m.room.history_visibility", { history_visibility: preset.historyVisibility }));
  if (preset.guestAccess === "can_join" && !inInitial("m.room.guest_access")) {
    templates.push(state("m.room.guest_access", { guest_access: "can_join" }));
  }

  for (const e of initial.values()) templates.push(state(e.type, e.content, e.stateKey));

  if (config.name !== undefined) templates.push(state("m.room.name", { name: config.name }));
  if (config.topic !== undefined) {
    // m.topic (v1.15) carries the text/plain representation; `topic` duplicates it for older clients.
    templates.push(state("m.room.topic", { topic: config.topic, "m.topic": { "m.text": [{ body: config.topic }] } }));
  }

  for (const user of config.invite) {
    if (config.remoteInvitees.includes(user)) continue;
    const extra: JsonObject = config.isDirect ? { is_direct: true } : {};
    templates.push(state("m.room.member", memberContent("invite", config.inviteeProfiles[user], extra), user));
  }
  return templates;
}
