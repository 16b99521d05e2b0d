// MSC4345, the joining server's side: a local user's join of a room whose resident answered that this
// server must first take part (room/remote-join.ts, 403 PARTICIPATION_PENDING) is kept here, and made
// again once a participation event accepting this server's key arrives (the resident sends every change
// of a server's participation to that server, room/outbound.ts). Myelin's reading: the proposal's join
// flow names no such step, but a user who asked to join should not have to ask twice. The acceptance
// arrives as an event of a room this server holds no state of, so it cannot be checked here: it is
// only a cue to try again, and the join itself (make_join, send_join) is checked as any other.
import { PARTICIPATION_EVENT_TYPE } from "../../protocol/participation.js";
import type { Pdu } from "../../protocol/pdu.js";
import type { MembershipRequest } from "./membership.js";

const KEY = "msc4345:pending-joins";
/** At most this many users wait per room (the oldest are dropped): storage stays small whatever asks. */
const MAX_PENDING = 50;

/** The storage a Durable Object gives (its key-value part). */
export interface PendingJoinStorage {
  get<T>(key: string): Promise<T | undefined>;
  put<T>(key: string, value: T): Promise<void>;
  delete(key: string): Promise<boolean>;
}

export async function pendingJoins(storage: PendingJoinStorage): Promise<MembershipRequest[]> {
  return (await storage.get<MembershipRequest[]>(KEY)) ?? [];
}

/** Keeps `request` (a join answered PARTICIPATION_PENDING), replacing an earlier one of the same user. */
export async function rememberPendingJoin(storage: PendingJoinStorage, request: MembershipRequest): Promise<void> {
  const list = (await pendingJoins(storage)).filter((r) => r.target !== request.target);
  list.push(request);
  await storage.put(KEY, list.slice(-MAX_PENDING));
}

export async function forgetPendingJoin(storage: PendingJoinStorage, target: string): Promise<void> {
  const list = await pendingJoins(storage);
  const left = list.filter((r) => r.target !== target);
  if (left.length === list.length) return;
  if (left.length === 0) await storage.delete(KEY);
  else await storage.put(KEY, left);
}

/** Whether `pdus` hold a participation event accepting `serverKey` (a cue only: see above). */
export function acceptsServerKey(pdus: readonly Pdu[], serverKey: string): boolean {
  return pdus.some((p) => p.type === PARTICIPATION_EVENT_TYPE && p.state_key === serverKey && p.content?.participation === "accepted");
}
