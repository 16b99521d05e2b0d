// Our users' device list updates in a room held with partial state, once the resync shows who was really
// in it (Complement msc3902 "Outgoing device list updates": "... reach incorrectly kicked/absent servers once
// partial state join completes"; Synapse's `DeviceWriterHandler.handle_room_un_partial_stated`).
//
// While the room is partial, an update of a local member's devices goes to the servers the resident named
// (`servers_in_room`) and to those with members we know (worker/device-lists.ts serversSharingRooms). A
// server whose members we did not know (the resident left it out, or an event accepted wrongly made its
// members look gone) missed it. So the room keeps the last EDU of each local member's device (and signing
// keys) sent while it is partial; when the resync completes (after partial-state-recheck.ts corrected the
// state), the servers that may have missed them are those of members whose membership differs between the
// state at our join and the current state, and those with members now, less the ones the resident named at
// the join (they were told each time), as Synapse computes `potentially_changed_hosts`. Those get the kept
// EDUs through their Destination DOs (room.ts, after the resync's last step). A peer that sees an EDU whose
// `prev_id` it never saw fetches the whole list (spec: "Device Management"), so one EDU per device is enough.
import type { QueuedEdu } from "../destination.js";
import { splitStateKey } from "../../protocol/pdu.js";
import type { RoomEngine } from "./engine.js";
import { isPartialState } from "./partial-state.js";

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS partial_state_device_edus (user_id TEXT NOT NULL, edu_key TEXT NOT NULL, edu_type TEXT NOT NULL, content TEXT NOT NULL, PRIMARY KEY (user_id, edu_key));
  CREATE TABLE IF NOT EXISTS partial_state_device_hosts (server TEXT PRIMARY KEY);
`;

const ready = new WeakSet<RoomEngine>();
function ensureSchema(engine: RoomEngine): void {
  if (ready.has(engine)) return;
  engine.sql.exec(SCHEMA);
  ready.add(engine);
}

/** Whether the tables exist (rooms that were never partial have none: reads must not create them). */
function hasTables(engine: RoomEngine): boolean {
  if (ready.has(engine)) return true;
  const found = engine.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'partial_state_device_hosts'").toArray().length > 0;
  if (found) ready.add(engine);
  return found;
}

/**
 * Keeps the device list EDUs of local member `userId` sent while the room is partial (the last per device,
 * and per kind for signing keys). Returns whether they were kept (false: the room is not partial).
 */
export function keepPartialStateDeviceListEdus(engine: RoomEngine, userId: string, edus: QueuedEdu[]): boolean {
  if (!engine.meta() || !isPartialState(engine) || !engine.isLocalUser(userId)) return false;
  const member = engine.membershipOf(userId)?.membership;
  if (member !== "join") return false;
  ensureSchema(engine);
  engine.transaction(() => {
    for (const edu of edus) {
      let key = edu.eduType;
      if (edu.eduType === "m.device_list_update") {
        try {
          const deviceId = (JSON.parse(edu.content) as { device_id?: unknown }).device_id;
          if (typeof deviceId !== "string") continue;
          key = `device:${deviceId}`;
        } catch {
          continue;
        }
      }
      engine.sql.exec(
        "INSERT INTO partial_state_device_edus (user_id, edu_key, edu_type, content) VALUES (?, ?, ?, ?) ON CONFLICT (user_id, edu_key) DO UPDATE SET edu_type = excluded.edu_type, content = excluded.content",
        userId,
        key,
        edu.eduType,
        edu.content,
      );
    }
  });
  return true;
}

/**
 * At the end of the resync (the room is whole, still marked partial): the servers that may have missed the
 * kept EDUs (see the header). `serversAtJoin`: the servers the resident named. Without kept EDUs nothing is
 * planned; nor for this server (its members are local). Idempotent (a repeated end after a restart plans
 * the same).
 */
export function planMissedDeviceListUpdates(engine: RoomEngine, joinEventId: string, serversAtJoin: string[]): void {
  if (!hasTables(engine)) return;
  const kept = engine.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM partial_state_device_edus").one().n;
  if (kept === 0) return;
  const join = engine.events.meta(joinEventId);
  const atJoin = join && !join.outlier ? engine.stateGroups.load(join.stateGroupBefore) : new Map<string, string>();
  const current = engine.currentState();
  const hosts = new Set<string>();
  // Members whose membership changed between our join and now (joined, left, or wrongly kicked meanwhile).
  const changed = (from: ReadonlyMap<string, string>, to: ReadonlyMap<string, string>) => {
    for (const [key, id] of from) {
      const [type, userId] = splitStateKey(key);
      if (type === "m.room.member" && to.get(key) !== id && !engine.isLocalUser(userId)) hosts.add(engine.routingServerOf(userId));
    }
  };
  changed(current, atJoin);
  changed(atJoin, current);
  // ... and the servers with members now.
  for (const userId of engine.membersWith("join")) if (!engine.isLocalUser(userId)) hosts.add(engine.routingServerOf(userId));
  for (const server of serversAtJoin) hosts.delete(server);
  hosts.delete("");
  engine.transaction(() => {
    for (const server of hosts) engine.sql.exec("INSERT OR IGNORE INTO partial_state_device_hosts (server) VALUES (?)", server);
    if (hosts.size === 0) engine.sql.exec("DELETE FROM partial_state_device_edus");
  });
}

/** What the room must still send: the kept EDUs and the servers to send them to (null: nothing). */
export function missedDeviceListUpdates(engine: RoomEngine): { servers: string[]; edus: QueuedEdu[] } | null {
  if (!engine.meta() || isPartialState(engine) || !hasTables(engine)) return null;
  const servers = engine.sql.exec<{ server: string }>("SELECT server FROM partial_state_device_hosts ORDER BY server").toArray().map((r) => r.server);
  if (servers.length === 0) return null;
  const edus = engine.sql
    .exec<{ edu_type: string; content: string }>("SELECT edu_type, content FROM partial_state_device_edus ORDER BY user_id, edu_key")
    .toArray()
    .map((r) => ({ eduType: r.edu_type, content: r.content }));
  return { servers, edus };
}

/** The missed updates were handed to `servers`' Destination DOs (the rest stay for the next try). */
export function sentMissedDeviceListUpdates(engine: RoomEngine, servers: string[]): void {
  if (!hasTables(engine)) return;
  engine.transaction(() => {
    for (const server of servers) engine.sql.exec("DELETE FROM partial_state_device_hosts WHERE server = ?", server);
    if (engine.sql.exec("SELECT 1 FROM partial_state_device_hosts LIMIT 1").toArray().length === 0) engine.sql.exec("DELETE FROM partial_state_device_edus");
  });
}
