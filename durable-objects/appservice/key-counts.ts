// MSC3202's one-time-key counts and unused fallback key types for one transaction to an application service
// (Synapse `_ServiceQueuer._compute_msc3202_otk_counts_and_fallback_keys`, synapse/appservice/scheduler.py):
// for the service's sender, its users joined to the rooms the transaction's events and ephemeral events are
// in, and the recipients of its to-device messages, every device of each (the D1 `devices` table) with its
// counts from the user's DO. A device without keys appears with `{}` and `[]`, as Synapse reports it, so
// the bridge learns it must upload.
import type { Appservice } from "./registry.js";
import type { Env } from "../../worker/env.js";
import { keyCountRooms, toDeviceRecipients, type TransactionKeyCounts, type TransactionParts } from "./transaction.js";

type KeyCountEnv = Pick<Env, "DB" | "ROOMS" | "USERS" | "SERVER_NAME">;

/** Users looked up per transaction at most (a bridged room of thousands of puppets is counted in part). */
const MAX_USERS = 1_000;
/** Parallel User DO calls. */
const CONCURRENCY = 16;

export async function transactionKeyCounts(env: KeyCountEnv, service: Appservice, parts: TransactionParts): Promise<TransactionKeyCounts> {
  const users = new Set<string>([service.sender]);
  const rooms = keyCountRooms(parts);
  const memberLists = await Promise.all(
    rooms.map((roomId) =>
      env.ROOMS.get(env.ROOMS.idFromName(roomId))
        .members("join")
        .catch(() => [] as string[]),
    ),
  );
  const local = `:${env.SERVER_NAME}`;
  for (const list of memberLists) for (const u of list) if (u.endsWith(local) && service.isInterestedInUser(u)) users.add(u);
  for (const u of toDeviceRecipients(parts)) users.add(u);

  const list = [...users].slice(0, MAX_USERS);
  const devices = await devicesOf(env, list);
  const out: TransactionKeyCounts = { oneTimeKeys: {}, unusedFallbackKeyTypes: {} };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < list.length) {
      const userId = list[next++]!;
      const deviceIds = devices.get(userId);
      if (!deviceIds || deviceIds.length === 0) continue;
      const counts = await env.USERS.get(env.USERS.idFromName(userId)).appserviceKeyCounts(deviceIds);
      const otks: Record<string, Record<string, number>> = (out.oneTimeKeys[userId] = {});
      const fallbacks: Record<string, string[]> = (out.unusedFallbackKeyTypes[userId] = {});
      for (const deviceId of deviceIds) {
        otks[deviceId] = counts[deviceId]?.oneTimeKeys ?? {};
        fallbacks[deviceId] = counts[deviceId]?.unusedFallbackKeyTypes ?? [];
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, list.length) }, worker));
  return out;
}

async function devicesOf(env: KeyCountEnv, users: string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  // D1 binds at most 100 parameters per statement.
  for (let i = 0; i < users.length; i += 90) {
    const chunk = users.slice(i, i + 90);
    const { results } = await env.DB.prepare(`SELECT user_id, device_id FROM devices WHERE user_id IN (${chunk.map(() => "?").join(",")}) ORDER BY user_id, device_id`)
      .bind(...chunk)
      .all<{ user_id: string; device_id: string }>();
    for (const row of results) {
      let l = out.get(row.user_id);
      if (!l) out.set(row.user_id, (l = []));
      l.push(row.device_id);
    }
  }
  return out;
}
