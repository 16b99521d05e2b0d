// The push-rule inputs a Room DO adds to a notification when it delivers it (notifications.ts
// `RoomEventPushInputs`): the User DO evaluates the recipient's push rules when the notification arrives
// (spec: "Push Rules", "Receiving notifications") and keeps the unread counts /sync reports, without
// calling back into the room.
import { powerLevelOf } from "../../protocol/auth-rules.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import type { DeliveredRoomEventNotification, RoomEventPushInputs } from "../notifications.js";
import type { OutboxEntry, RoomEngine } from "./engine.js";

/** Returns a function that turns outbox entries into delivered notifications. Per-event work (the event
 * JSON, member count, power levels) is shared by the entries of one delivery round. Used for pushes
 * (fan-out rounds, retries) and catch-ups alike (room/fan-out.ts): the inputs are read from the room's
 * state when the event is handed out, which for a catch-up can be later than the event. */
export function pushInputsBuilder(engine: RoomEngine): (entry: OutboxEntry) => DeliveredRoomEventNotification {
  const perEvent = new Map<string, Omit<RoomEventPushInputs, "displayName"> | null>();
  return (entry) => {
    const n: DeliveredRoomEventNotification = { ...entry.notification, recipient: entry.userId };
    // The user's own events never notify them (spec: "Push Rules"); skip the work.
    if (n.sender === entry.userId) return n;
    let shared = perEvent.get(n.eventId);
    if (shared === undefined) {
      shared = eventInputs(engine, n.eventId);
      perEvent.set(n.eventId, shared);
    }
    if (shared === null) return n;
    const push: RoomEventPushInputs = { ...shared };
    const name = displayNameOf(engine, entry.userId);
    if (name !== undefined) push.displayName = name;
    n.push = push;
    return n;
  };
}

/** Recipients' display names, per change of the current state (RoomEngine.currentStateVersion): a round
 * for a big room's listeners, and every round after it, reads the same names (docs/fan-out.md, "Big rooms"). */
const displayNames = new WeakMap<RoomEngine, { version: number; names: Map<string, string | undefined> }>();
/** Names kept per room at most (the listeners of a round, and members catching up). */
const DISPLAY_NAMES_KEPT = 4096;

function displayNameOf(engine: RoomEngine, userId: string): string | undefined {
  let cache = displayNames.get(engine);
  if (cache?.version !== engine.currentStateVersion) displayNames.set(engine, (cache = { version: engine.currentStateVersion, names: new Map() }));
  if (cache.names.has(userId)) return cache.names.get(userId);
  const name = engine.currentStateEvent("m.room.member", userId)?.content.displayname;
  const value = typeof name === "string" && name !== "" ? name : undefined;
  if (cache.names.size >= DISPLAY_NAMES_KEPT) cache.names.clear();
  cache.names.set(userId, value);
  return value;
}

function eventInputs(engine: RoomEngine, eventId: string): Omit<RoomEventPushInputs, "displayName"> | null {
  const meta = engine.meta();
  const pdu = engine.events.pdu(eventId);
  if (!meta || !pdu) return null;
  const event: JsonObject = { event_id: eventId, type: pdu.type, content: pdu.content, sender: pdu.sender, room_id: meta.roomId };
  if (typeof pdu.state_key === "string") event.state_key = pdu.state_key;
  const powerLevels = engine.currentStateEvent("m.room.power_levels", "");
  const notificationPowerLevels: Record<string, number> = {};
  const notifications = powerLevels?.content.notifications;
  if (isJsonObject(notifications)) {
    for (const [key, value] of Object.entries(notifications)) {
      // Room versions before 10 allow string levels ("50"); the auth rules read them the same way.
      const n = typeof value === "number" ? value : typeof value === "string" && /^[+-]?[0-9]+$/.test(value.trim()) ? Number(value) : NaN;
      if (Number.isFinite(n)) notificationPowerLevels[key] = n;
    }
  }
  const inputs: Omit<RoomEventPushInputs, "displayName"> = {
    eventJson: JSON.stringify(event),
    // Counted once per change of the current state (RoomEngine.memberCount), not per event and recipient.
    roomMemberCount: engine.memberCount("join"),
    senderPowerLevel: powerLevelOf(pdu.sender, engine.currentLookup, meta.rules),
    notificationPowerLevels,
  };
  // What a push gateway shows (Push Gateway API; Synapse's push_tools.get_context_for_event). Synapse's
  // room name falls back to member names only for rooms of three or more; that fallback is left out.
  const senderName = engine.currentStateEvent("m.room.member", pdu.sender)?.content.displayname;
  inputs.senderDisplayName = typeof senderName === "string" && senderName !== "" ? senderName : pdu.sender;
  const roomName = engine.currentStateEvent("m.room.name", "")?.content.name;
  const alias = engine.currentStateEvent("m.room.canonical_alias", "")?.content.alias;
  if (typeof roomName === "string" && roomName !== "") inputs.roomName = roomName;
  else if (typeof alias === "string" && /^#.*:.+$/.test(alias)) inputs.roomName = alias;
  const rel = pdu.content["m.relates_to"];
  if (isJsonObject(rel) && rel.rel_type === "m.thread" && typeof rel.event_id === "string") inputs.threadId = rel.event_id;
  return inputs;
}
