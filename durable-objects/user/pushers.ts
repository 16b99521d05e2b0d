// Pushers in D1 (schema/d1.ts `pushers`; spec: Client-Server API, "Push Notifications"). Both sides use
// this module: the worker for GET /pushers, POST /pushers/set and the removals that follow a device's end
// (worker/client/pushers.ts, worker/accounts.ts), the User DO for the http pushers it delivers to and for a
// pushkey the gateway rejected (user/push-delivery.ts). Rows are Synapse's: one per (user, app_id, pushkey).

/** One pusher as GET /pushers shows it (spec: `Pusher`), with what delivery needs besides. */
export interface PusherRecord {
  userId: string;
  appId: string;
  pushkey: string;
  kind: string;
  appDisplayName: string;
  deviceDisplayName: string;
  profileTag: string;
  lang: string | null;
  /** The `data` object, JSON text. */
  data: string;
  /** When the pushkey was last set, ms. */
  pushkeyTs: number;
  deviceId: string | null;
}

type PusherRow = {
  user_id: string;
  app_id: string;
  pushkey: string;
  kind: string;
  app_display_name: string;
  device_display_name: string;
  profile_tag: string;
  lang: string | null;
  data: string;
  pushkey_ts: number;
  device_id: string | null;
};

function record(r: PusherRow): PusherRecord {
  return {
    userId: r.user_id,
    appId: r.app_id,
    pushkey: r.pushkey,
    kind: r.kind,
    appDisplayName: r.app_display_name,
    deviceDisplayName: r.device_display_name,
    profileTag: r.profile_tag,
    lang: r.lang,
    data: r.data,
    pushkeyTs: r.pushkey_ts,
    deviceId: r.device_id,
  };
}

/** A user's pushers (all kinds), oldest first. */
export async function pushersOf(db: D1Database, userId: string): Promise<PusherRecord[]> {
  const { results } = await db.prepare("SELECT * FROM pushers WHERE user_id = ? ORDER BY pushkey_ts, app_id, pushkey").bind(userId).all<PusherRow>();
  return results.map(record);
}

/**
 * Creates or updates a pusher (POST /pushers/set with a kind). An existing pusher keeps its device (Synapse:
 * one device may change another device's pusher); the pushkey's timestamp becomes now. Unless `append`,
 * the same app_id and pushkey of other users go (spec: `append`). Returns the users whose pushers were
 * removed that way (their User DOs must hear of it).
 */
export async function setPusher(db: D1Database, p: Omit<PusherRecord, "pushkeyTs">, append: boolean, now = Date.now()): Promise<string[]> {
  const others = append
    ? []
    : (
        await db
          .prepare("SELECT DISTINCT user_id FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id != ?")
          .bind(p.appId, p.pushkey, p.userId)
          .all<{ user_id: string }>()
      ).results.map((r) => r.user_id);
  const statements: D1PreparedStatement[] = [];
  if (others.length > 0) {
    statements.push(db.prepare("DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id != ?").bind(p.appId, p.pushkey, p.userId));
  }
  statements.push(
    db
      .prepare(
        `INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, pushkey_ts, device_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET kind = excluded.kind, app_display_name = excluded.app_display_name,
           device_display_name = excluded.device_display_name, profile_tag = excluded.profile_tag, lang = excluded.lang,
           data = excluded.data, pushkey_ts = excluded.pushkey_ts`,
      )
      .bind(p.userId, p.appId, p.pushkey, p.kind, p.appDisplayName, p.deviceDisplayName, p.profileTag, p.lang, p.data, now, p.deviceId),
  );
  await db.batch(statements);
  return others;
}

/** Removes one pusher; returns whether it existed. */
export async function removePusher(db: D1Database, userId: string, appId: string, pushkey: string): Promise<boolean> {
  const result = await db.prepare("DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?").bind(userId, appId, pushkey).run();
  return result.meta.changes > 0;
}

/** The statements that remove the pushers of some of a user's devices (chunk `deviceIds` to D1's limit
 * of bound parameters), or of all devices but `keepDeviceId` (`deviceIds` null), for the caller's batch. */
export function removePushersOfDevicesStatement(db: D1Database, userId: string, deviceIds: string[] | null, keepDeviceId?: string): D1PreparedStatement {
  if (deviceIds === null) {
    // Pushers without a device (none are made that way here) go with "all devices" too.
    return keepDeviceId === undefined
      ? db.prepare("DELETE FROM pushers WHERE user_id = ?").bind(userId)
      : db.prepare("DELETE FROM pushers WHERE user_id = ? AND (device_id IS NULL OR device_id != ?)").bind(userId, keepDeviceId);
  }
  return db.prepare(`DELETE FROM pushers WHERE user_id = ? AND device_id IN (${deviceIds.map(() => "?").join(", ")})`).bind(userId, ...deviceIds);
}
