// "Everyone who shares a room with a user": the audience of their presence (spec: "Presence") and of their
// device list changes (spec: "Tracking the device list for a user"). The user's joined rooms come from
// their User DO (the membership log of sync), each room's joined members from its Room DO, one RPC per
// room. Only local users have User DOs; remote room-mates learn through federation (m.presence EDUs).
import { inParallel } from "../in-parallel.js";
import { serverNameOf } from "../../protocol/pdu.js";
import type { Env } from "../../worker/env.js";
import type { DeviceListChangeKind } from "./device-lists.js";
import type { PresenceState } from "./sync-stream.js";
import { pushPresenceToAppservices } from "../appservice/streams.js";

/** The joined members of a room (empty for a room this server does not know). */
export async function joinedMembersOf(env: Pick<Env, "ROOMS">, roomId: string): Promise<string[]> {
  return env.ROOMS.get(env.ROOMS.idFromName(roomId)).members("join");
}

/** Rooms with more joined members than this send presence only to members whose users sync now. */
export const PRESENCE_ALL_MEMBERS_MAX = 100;

/** Local users joined to any of `rooms`, without `userId`. */
export async function localRoomMates(env: Pick<Env, "ROOMS" | "SERVER_NAME">, userId: string, rooms: string[]): Promise<Set<string>> {
  const lists = await Promise.all(rooms.map((roomId) => joinedMembersOf(env, roomId).catch(() => [] as string[])));
  return localOnly(env, userId, lists);
}

function localOnly(env: Pick<Env, "SERVER_NAME">, userId: string, lists: string[][]): Set<string> {
  const mates = new Set<string>();
  for (const list of lists) for (const member of list) if (member !== userId && serverNameOf(member) === env.SERVER_NAME) mates.add(member);
  return mates;
}

/**
 * Where `userId`'s presence goes, one call per room (Room DO `presenceTargets`): the local room-mates who
 * hear of it (everyone in a small room; in a big one, the members whose users sync now, the room's
 * listeners: docs/fan-out.md) and the other servers with joined members.
 */
async function presenceTargetsOf(env: Pick<Env, "ROOMS" | "SERVER_NAME">, userId: string, rooms: string[]): Promise<{ mates: Set<string>; servers: Set<string> }> {
  const empty = { audience: [] as string[], servers: [] as string[] };
  const targets = await Promise.all(
    rooms.map((roomId) => env.ROOMS.get(env.ROOMS.idFromName(roomId)).presenceTargets(PRESENCE_ALL_MEMBERS_MAX).catch(() => empty)),
  );
  const servers = new Set<string>();
  for (const t of targets) for (const server of t.servers) servers.add(server);
  servers.delete(env.SERVER_NAME);
  return { mates: localOnly(env, userId, targets.map((t) => t.audience)), servers };
}

/**
/**
 * Tells the User DOs of a user's local room-mates about their new presence. In rooms of more than
 * PRESENCE_ALL_MEMBERS_MAX members only the room-mates who sync now hear of it, as with room events
 * (docs/fan-out.md): in a room of 10,000 members a status change would otherwise call 10,000 User DOs.
 * There, room-mates who are not syncing learn a presence when it next changes while they sync.
 *
 * The other servers with members in those rooms are told too (spec: Server-Server API, "Presence": an
 * `m.presence` EDU, sent only to servers that share a room with the user). Only changes the sync layer
 * deems worth telling go out (Synapse's `should_notify`), and a destination's waiting presence EDU of the
 * user is replaced by the newer one (dedupe key), so a peer that is slow or down gets the latest state
 * once, not every step.
 */
export async function fanOutPresence(env: Env, userId: string, rooms: string[], state: PresenceState): Promise<void> {
  const targets = await presenceTargetsOf(env, userId, rooms);
  const mates = targets.mates;
  // Only our own users' presence goes to other servers (a remote user's came from their server).
  const servers = serverNameOf(userId) === env.SERVER_NAME ? targets.servers : new Set<string>();
  const plain: PresenceState = { presence: state.presence, lastActiveTs: state.lastActiveTs, currentlyActive: state.currentlyActive };
  if (state.statusMsg !== undefined) plain.statusMsg = state.statusMsg;
  await federatePresence(env, userId, servers, state);
  // Application services with receive_ephemeral interested in the user or one of their rooms (MSC2409).
  const toServices = pushPresenceToAppservices(env, userId, rooms, plain).catch((e: unknown) =>
    console.warn("presence not queued for application services", userId, e instanceof Error ? e.message : e),
  );
  await Promise.all(
    [toServices, ...[...mates].map((mate) =>
      env.USERS.get(env.USERS.idFromName(mate))
        .onPresence(userId, plain)
        .catch((e: unknown) => console.warn("presence fan-out failed", mate, e instanceof Error ? e.message : e)),
    )],
  );
}

/**
 * Queues a local user's presence as an `m.presence` EDU for each of `servers` (spec: Server-Server API,
 * "Presence"). A waiting presence EDU of the user is replaced by this one (dedupe key), so a burst of
 * changes or re-sends reaches a slow peer once.
 */
export async function federatePresence(env: Pick<Env, "DESTINATIONS">, userId: string, servers: Iterable<string>, state: PresenceState): Promise<void> {
  const list = [...servers];
  if (list.length === 0) return;
  const push: Record<string, unknown> = {
    user_id: userId,
    presence: state.presence,
    last_active_ago: Math.max(0, Date.now() - state.lastActiveTs),
    currently_active: state.currentlyActive,
  };
  if (state.statusMsg !== undefined && state.statusMsg !== null) push.status_msg = state.statusMsg;
  const edu = { eduType: "m.presence", content: JSON.stringify({ push: [push] }), dedupeKey: `presence:${userId}` };
  await Promise.all(
    list.map((server) =>
      env.DESTINATIONS.get(env.DESTINATIONS.idFromName(server))
        .enqueue(server, [], [edu])
        .catch((e: unknown) => console.warn("presence EDU not queued", server, e instanceof Error ? e.message : e)),
    ),
  );
}

/** The other servers with joined members in any of `rooms` (one call per room, as presence fan-out). */
export async function remoteServersIn(env: Pick<Env, "ROOMS" | "SERVER_NAME">, rooms: string[]): Promise<Set<string>> {
  return (await presenceTargetsOf(env, "", rooms)).servers;
}

/** Records `userId`'s device list change in the User DOs of their local room-mates. */
export async function fanOutDeviceListChange(env: Env, userId: string, rooms: string[], kind: DeviceListChangeKind = "changed"): Promise<void> {
  const mates = await localRoomMates(env, userId, rooms);
  await Promise.all(
    [...mates].map((mate) =>
      env.USERS.get(env.USERS.idFromName(mate))
        .recordDeviceListChange(userId, kind)
        .catch((e: unknown) => console.warn("device list fan-out failed", mate, e instanceof Error ? e.message : e)),
    ),
  );
}

/**
 * Registers local user `me` with the DOs of remote users it now shares a room with (or asked keys of):
 * their servers' device list and presence updates are passed on to the registered local users
 * (durable-objects/user/federated-device-list.ts "watchers"); `roomId`, the room shared, becomes a candidate
 * anchor of our copy of their device list. Failures are logged: the user is registered again at their next
 * key query (without a room: their copy is then fetched at each query until a later join names one).
 */
export async function watchRemoteUsers(env: Pick<Env, "USERS">, remoteUsers: string[], me: string, roomId?: string): Promise<void> {
  // At most WATCH_CONCURRENCY calls at a time: a room joined with partial state brings all its members at
  // once when its resync completes (10,000 in issue 19's benchmark), and one call each at once opened
  // 10,000 Durable Objects together (locally: 2.8 GB of memory and SQLITE_CANTOPEN, out of file handles).
  await inParallel(remoteUsers, WATCH_CONCURRENCY, (u) =>
    env.USERS.get(env.USERS.idFromName(u))
      .watchRemoteDeviceList(me, roomId)
      .catch((e: unknown) => console.warn("remote user watch failed", u, e instanceof Error ? e.message : e)),
  );
}

/** Remote users' DOs called at once by watchRemoteUsers. */
export const WATCH_CONCURRENCY = 32;
