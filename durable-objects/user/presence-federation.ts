// Presence over federation, kept alive (spec: Server-Server API, "Presence"; Synapse's PresenceHandler).
// A server hears of a remote user's presence only through `m.presence` EDUs, and Synapse times a remote
// user out (offline) when it has heard nothing for 30 minutes (FEDERATION_TIMEOUT). So, as Synapse, a
// local user who stays online is re-sent to the servers sharing a room with them once their presence has
// not gone out for more than 25 minutes (FEDERATION_PING_INTERVAL), even though nothing changed. It also
// repairs a presence a peer dropped (Synapse drops presence from servers of a room it holds with partial
// state). The rate is bounded per user: at most one re-send per interval, only while the user syncs
// (a user who stops syncing goes offline, which is a change and is sent as such).
//
// And, as Synapse's `_on_user_joined_room`: a local user who joins a room sends their presence to the
// room's other servers; a remote user who joins a room makes each local member send theirs to that user's
// server (offline states only if recent or with a status message, as Synapse filters them).

/** Synapse's FEDERATION_PING_INTERVAL. */
export const FEDERATION_PING_INTERVAL_MS = 25 * 60_000;
/** Synapse's filter for presence sent to a server that joins: offline presences older than a week are left out. */
export const JOIN_PRESENCE_MAX_OFFLINE_AGE_MS = 7 * 24 * 60 * 60_000;

/** Whether a re-send is due: never sent, or last sent more than the interval ago (Synapse: `>`). */
export function presencePingDue(lastSentTs: number | null, now: number): boolean {
  return lastSentTs === null || now - lastSentTs > FEDERATION_PING_INTERVAL_MS;
}

/** Whether a presence goes to a server that just joined a room with this user (Synapse's filter). */
export function presenceWorthSendingOnJoin(state: { presence: string; lastActiveTs: number; statusMsg?: string | null }, now: number): boolean {
  return state.presence !== "offline" || now - state.lastActiveTs < JOIN_PRESENCE_MAX_OFFLINE_AGE_MS || (state.statusMsg !== undefined && state.statusMsg !== null);
}

/** When this DO's user's presence last went to other servers (the User DO's SQLite, created on first use). */
export class PresenceFederationLog {
  private ready = false;
  constructor(private readonly sql: SqlStorage) {}

  private table(): SqlStorage {
    if (!this.ready) {
      this.sql.exec("CREATE TABLE IF NOT EXISTS presence_federated (id INTEGER PRIMARY KEY CHECK (id = 1), sent_ts INTEGER NOT NULL)");
      this.ready = true;
    }
    return this.sql;
  }

  lastSent(): number | null {
    return this.table().exec<{ sent_ts: number }>("SELECT sent_ts FROM presence_federated WHERE id = 1").toArray()[0]?.sent_ts ?? null;
  }

  markSent(ts: number): void {
    this.table().exec("INSERT INTO presence_federated (id, sent_ts) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET sent_ts = excluded.sent_ts", ts);
  }
}
