// What reaches application services besides room events and room EDUs (those come from the Room DO,
// room/appservice-outbound.ts): to-device messages for their users (MSC4203, was MSC2409), device list
// changes (MSC3202) and presence (MSC2409), each queued in the service's Appservice DO and sent in its
// next transaction (appservice/transaction.ts names the fields). Called by whoever makes the change: the
// worker's send-to-device and device list hooks, the sync layer's presence fan-out. Best effort, as the same
// updates to local users are: a failure is logged and the change is not retried.
//
// Interest follows Synapse (synapse/handlers/appservice.py):
// - to-device: services with `receive_ephemeral` whose user namespace holds the recipient
//   (`_get_to_device_messages`); Synapse also needs its experimental `msc2409_to_device_messages_enabled`,
//   here the registration's flag is the opt-in.
// - device lists: services with `org.matrix.msc3202` interested in the user or in one of the user's rooms
//   (`_is_appservice_interested_in_device_lists_of_user`).
// - presence: services with `receive_ephemeral` interested in the user or in one of the user's rooms
//   (`ApplicationService.is_interested_in_presence`).
// "Interested in a room" is the Room DO's judgement (room/appservice-outbound.ts: the room ID, an alias, or a
// local joined member in the service's namespaces).
import type { Env } from "../../worker/env.js";
import type { PresenceState } from "../user/sync-stream.js";
import { appservices, type Appservice } from "./registry.js";
import { deviceListRow, toDeviceRow } from "./transaction.js";
import type { QueuedEdu } from "../destination/queue.js";

type StreamEnv = Pick<Env, "DB" | "SERVER_NAME" | "APPSERVICES" | "ROOMS">;

async function enqueue(env: StreamEnv, serviceId: string, rows: QueuedEdu[], what: string): Promise<void> {
  try {
    await env.APPSERVICES.get(env.APPSERVICES.idFromName(serviceId)).enqueue(serviceId, [], rows);
  } catch (e) {
    console.warn(`appservice ${serviceId}: ${what} not queued`, e instanceof Error ? e.message : e);
  }
}

/** Services that receive pushes and pass `filter`. */
async function targets(env: StreamEnv, filter: (s: Appservice) => boolean): Promise<Appservice[]> {
  return (await appservices(env)).filter((s) => s.registration.url !== null && filter(s));
}

/** The services (of `candidates`) interested in any of `rooms`, asked of each Room DO. */
export async function servicesInterestedInRooms(env: StreamEnv, candidates: Appservice[], rooms: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>();
  let open = candidates.map((s) => s.id);
  for (const roomId of rooms) {
    if (open.length === 0) break;
    let ids: string[];
    try {
      ids = await env.ROOMS.get(env.ROOMS.idFromName(roomId)).appservicesInterested(open);
    } catch {
      continue;
    }
    for (const id of ids) out.add(id);
    open = open.filter((id) => !out.has(id));
  }
  return out;
}

/**
 * A to-device message was put into the inboxes of `recipient`'s devices: the services holding the recipient
 * get it too, one entry per device (`contents[i]` for `deviceIds[i]`, JSON text).
 */
export async function pushToDeviceToAppservices(
  env: StreamEnv,
  recipient: string,
  sender: string,
  type: string,
  deviceIds: readonly string[],
  contents: readonly string[],
): Promise<void> {
  if (deviceIds.length === 0) return;
  const services = await targets(env, (s) => s.registration.receiveEphemeral && s.isInterestedInUser(recipient));
  if (services.length === 0) return;
  const rows = deviceIds.map((deviceId, i) => toDeviceRow(recipient, deviceId, sender, type, contents[i]!));
  await Promise.all(services.map((s) => enqueue(env, s.id, rows, "to-device message")));
}

/**
 * `userId`'s device list changed (`rooms`: the rooms they are joined to, as far as this server knows;
 * `alsoInterestedVia`: other users whose interest counts, e.g. the local users watching a remote user).
 */
export async function pushDeviceListChangeToAppservices(
  env: StreamEnv,
  userId: string,
  rooms: readonly string[],
  alsoInterestedVia: readonly string[] = [],
  kind: "changed" | "left" = "changed",
): Promise<void> {
  const services = await targets(env, (s) => s.registration.msc3202);
  if (services.length === 0) return;
  const direct = services.filter((s) => s.isInterestedInUser(userId) || alsoInterestedVia.some((u) => s.isInterestedInUser(u)));
  const viaRooms = await servicesInterestedInRooms(
    env,
    services.filter((s) => !direct.includes(s)),
    rooms,
  );
  const ids = [...direct.map((s) => s.id), ...viaRooms];
  await Promise.all(ids.map((id) => enqueue(env, id, [deviceListRow(userId, kind)], "device list change")));
}

/**
 * `userId`'s presence changed (`rooms`: their joined rooms; `alsoInterestedVia` as for device lists): an `m.presence` event as Synapse formats it for
 * services (`format_user_presence_state` without `user_id`; `sender` names the user). A waiting presence of
 * the same user is replaced.
 */
export async function pushPresenceToAppservices(
  env: StreamEnv,
  userId: string,
  rooms: readonly string[],
  state: PresenceState,
  alsoInterestedVia: readonly string[] = [],
  now = Date.now(),
): Promise<void> {
  const services = await targets(env, (s) => s.registration.receiveEphemeral);
  if (services.length === 0) return;
  const direct = services.filter((s) => s.isInterestedInUser(userId) || alsoInterestedVia.some((u) => s.isInterestedInUser(u)));
  const viaRooms = await servicesInterestedInRooms(
    env,
    services.filter((s) => !direct.includes(s)),
    rooms,
  );
  const ids = [...direct.map((s) => s.id), ...viaRooms];
  if (ids.length === 0) return;
  const content: Record<string, unknown> = { presence: state.presence };
  if (state.lastActiveTs) content.last_active_ago = Math.max(0, now - state.lastActiveTs);
  if (state.statusMsg) content.status_msg = state.statusMsg;
  if (state.presence === "online") content.currently_active = state.currentlyActive;
  const row: QueuedEdu = { eduType: "m.presence", content: JSON.stringify({ type: "m.presence", sender: userId, content }), dedupeKey: `presence:${userId}` };
  await Promise.all(ids.map((id) => enqueue(env, id, [row], "presence")));
}
