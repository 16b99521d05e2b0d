// The old room's side of a room upgrade (spec: Client-Server API, "Room Upgrades", "Server behaviour").
// The Room DO of the old room checks that the user may send the tombstone and collects what the new room
// copies; the worker (worker/client/room-upgrades.ts) creates the new room through createRoom and then
// sends the tombstone, moves the aliases and restricts the old room's power levels.
import { MatrixError, forbidden, notFound } from "../../protocol/errors.js";
import { parsePowerLevelValue, powerLevelOf, requiredPowerLevelFor, roomCreators } from "../../protocol/auth-rules.js";
import { isJsonObject, type JsonObject, type JsonValue } from "../../protocol/json.js";
import { roomVersionRules, type RoomVersionRules } from "../../protocol/room-versions.js";
import type { RoomEngine } from "./engine.js";
import { ACCEPTED } from "./event-rows.js";

/** The state the new room copies (the spec's recommended list, as Synapse; m.room.power_levels is handled
 * separately). Membership is never copied except bans (Synapse), and no sender-sensitive custom state. */
export const UPGRADE_COPIED_STATE = [
  "m.room.server_acl",
  "m.room.encryption",
  "m.room.name",
  "m.room.avatar",
  "m.room.topic",
  "m.room.guest_access",
  "m.room.history_visibility",
  "m.room.join_rules",
];

export interface UpgradeStateEvent {
  type: string;
  stateKey: string;
  content: JsonObject;
}

export interface UpgradeSource {
  /** `creation_content` for the new room: predecessor, and the old room's `type` and `m.federate: false`. */
  creationContent: JsonObject;
  /** `initial_state` for the new room, the power levels first. */
  initialState: UpgradeStateEvent[];
  /** Power levels to send once the copied state and bans are in: the old room's, when the upgrading user
   * was raised above their level to be able to copy the state (Synapse's approach). */
  finalPowerLevels?: JsonObject;
  /** The old room's power levels with `events_default` and `invite` raised to max(50, users_default + 1)
   * (spec step 6), when that changes anything. */
  restrictedPowerLevels?: JsonObject;
  /** Current m.room.canonical_alias content of the old room, if any. */
  canonicalAlias?: JsonObject;
  /** Banned users and their ban event content, copied into the new room. */
  bans: { userId: string; content: JsonObject }[];
  /** The old room's join rule (chooses the preset for what the copied state lacks). */
  joinRule?: string;
}

const LEVEL_KEYS = ["ban", "events_default", "invite", "kick", "redact", "state_default", "users_default", "historical"];
const LEVEL_MAPS = ["events", "users", "notifications"];

/** A copy of power levels content with every level as an integer (v10+ refuse string levels); unreadable
 * levels are dropped, unknown keys kept. */
export function fixedPowerLevels(content: JsonObject, rules: RoomVersionRules): JsonObject {
  const out = structuredClone(content) as JsonObject;
  for (const key of LEVEL_KEYS) {
    if (!Object.hasOwn(out, key)) continue;
    const v = parsePowerLevelValue(out[key], rules);
    if (v === undefined) delete out[key];
    else out[key] = v;
  }
  for (const key of LEVEL_MAPS) {
    const map = out[key];
    if (map === undefined) continue;
    if (!isJsonObject(map)) {
      delete out[key];
      continue;
    }
    for (const [k, value] of Object.entries(map)) {
      const v = parsePowerLevelValue(value, rules);
      if (v === undefined) delete map[k];
      else map[k] = v;
    }
  }
  return out;
}

const level = (content: JsonObject, key: string, fallback: number): number => (typeof content[key] === "number" ? (content[key] as number) : fallback);

/**
 * Checks that `userId` may upgrade the room (joined, with the power to send m.room.tombstone: 403
 * otherwise; 404 for an unknown room) and collects what the new room of version `newVersion` copies.
 */
export function upgradeSource(engine: RoomEngine, userId: string, newVersion: string, additionalCreators: string[]): UpgradeSource {
  const newRules = roomVersionRules(newVersion);
  if (!newRules) throw new MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", "This server does not support that room version");
  const meta = engine.meta();
  if (!meta) throw notFound("Unknown room");
  const lookup = engine.currentLookup;
  if (engine.membershipOf(userId)?.membership !== "join") throw forbidden("You are not in the room");
  if (powerLevelOf(userId, lookup, meta.rules) < requiredPowerLevelFor("m.room.tombstone", true, lookup, meta.rules)) {
    throw forbidden("You cannot upgrade this room");
  }
  const create = engine.currentStateEvent("m.room.create", "")!;

  // The create content: "a predecessor field, the applicable room_version, and a type field which is copied
  // from the predecessor room". predecessor.event_id is "the last known event in the old room".
  const last = engine.sql
    .exec<{ event_id: string }>(`SELECT event_id FROM events WHERE ${ACCEPTED} ORDER BY stream_ordering DESC LIMIT 1`)
    .one().event_id;
  // Room versions whose room ID is the create event's hash (v12, MSC4291) leave event_id out of predecessor
  // (the spec deprecates it there; Synapse omits it; Complement's TestMSC4291..._UpgradedRooms checks).
  const predecessor: JsonObject = { room_id: meta.roomId };
  if (!newRules.authorization.roomCreateEventIdAsRoomId) predecessor.event_id = last;
  const creationContent: JsonObject = { predecessor };
  if (create.content.type !== undefined) creationContent.type = create.content.type;
  if (create.content["m.federate"] === false) creationContent["m.federate"] = false;
  if (newRules.authorization.additionalRoomCreators && additionalCreators.length > 0) {
    creationContent.additional_creators = additionalCreators;
  }

  const initialState: UpgradeStateEvent[] = [];
  for (const type of UPGRADE_COPIED_STATE) {
    const e = engine.currentStateEvent(type, "");
    if (e) initialState.push({ type, stateKey: "", content: e.content });
  }
  if (create.content.type === "m.space") {
    // A space keeps its rooms; removed children (empty content) are not copied.
    for (const r of engine.sql.exec<{ state_key: string; event_id: string }>("SELECT state_key, event_id FROM current_state WHERE type = 'm.space.child'")) {
      const content = engine.events.pdu(r.event_id)?.content;
      if (content && Object.keys(content).length > 0) initialState.push({ type: "m.space.child", stateKey: r.state_key, content });
    }
  }

  const source: UpgradeSource = { creationContent, initialState, bans: [] };
  const joinRule = engine.currentStateEvent("m.room.join_rules", "")?.content.join_rule;
  if (typeof joinRule === "string") source.joinRule = joinRule;
  const canonicalAlias = engine.currentStateEvent("m.room.canonical_alias", "")?.content;
  if (canonicalAlias && Object.keys(canonicalAlias).length > 0) source.canonicalAlias = canonicalAlias;

  const oldPowerLevels = engine.currentStateEvent("m.room.power_levels", "")?.content;
  if (oldPowerLevels) {
    const final = fixedPowerLevels(oldPowerLevels, meta.rules);
    const users = isJsonObject(final.users) ? final.users : (final.users = {});
    const wasCreator = meta.rules.authorization.explicitlyPrivilegeRoomCreators && roomCreators(create, meta.rules).includes(userId);
    if (newRules.authorization.explicitlyPrivilegeRoomCreators) {
      // v12: the creators have unlimited power and must not be listed in `users`.
      for (const creator of [userId, ...additionalCreators]) delete users[creator];
    } else if (wasCreator) {
      // From a version where creators were implicitly privileged: keep the upgrading user in charge.
      users[userId] = Math.max(100, level(users, userId, 0));
    }
    const initial = structuredClone(final) as JsonObject;
    if (!newRules.authorization.explicitlyPrivilegeRoomCreators) {
      // Enough power to send every copied state event and the bans (Synapse: the largest of state_default,
      // ban and the event levels), restored to `final` afterwards.
      const events = isJsonObject(initial.events) ? Object.values(initial.events).filter((v): v is number => typeof v === "number") : [];
      const needed = Math.max(level(initial, "state_default", 50), level(initial, "ban", 50), ...events, 0);
      const initialUsers = initial.users as JsonObject;
      const current = level(initialUsers, userId, level(initial, "users_default", 0));
      if (current < needed) {
        initialUsers[userId] = needed;
        source.finalPowerLevels = final;
      }
    }
    source.initialState.unshift({ type: "m.room.power_levels", stateKey: "", content: initial });

    // Step 6: stop regular users from talking and inviting in the old room.
    const restricted = structuredClone(oldPowerLevels) as JsonObject;
    const restrictedLevel = Math.max(level(fixedPowerLevels(oldPowerLevels, meta.rules), "users_default", 0) + 1, 50);
    let changed = false;
    for (const key of ["events_default", "invite"]) {
      const current = parsePowerLevelValue(restricted[key] as JsonValue | undefined, meta.rules) ?? 0;
      if (current < restrictedLevel) {
        restricted[key] = restrictedLevel;
        changed = true;
      }
    }
    if (changed) source.restrictedPowerLevels = restricted;
  }

  for (const r of engine.sql.exec<{ state_key: string; event_id: string }>(
    "SELECT state_key, event_id FROM current_state WHERE type = 'm.room.member' AND membership = 'ban' ORDER BY state_key",
  )) {
    const content = engine.events.pdu(r.event_id)?.content;
    if (!content) continue;
    const ban: JsonObject = { membership: "ban" };
    if (typeof content.reason === "string") ban.reason = content.reason;
    source.bans.push({ userId: r.state_key, content: ban });
  }
  return source;
}
