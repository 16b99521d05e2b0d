// The room's part of the user directory (spec: Client-Server API, "User directory";
// worker/client/user-directory.ts searches it): its joined members, and whether the room makes its members
// findable by themselves (public join rule or world-readable history), kept in D1 (`directory_members`,
// `directory_rooms`, schema/migrations/0013_user_directory.sql) so that a search is one D1 query instead of
// one Room DO call per room of the searcher (a user in 1,000 rooms waited 1.5 s cold, 150-250 ms warm).
//
// Written from the room's own log of current-state changes (`state_deltas`), up to a position kept in the
// room's storage (`directory_index.through`): after a commit that changed a membership or the room's join
// rule or history visibility, the room writes the current state of what changed since that position, then
// moves it. What a crash or a failed D1 write leaves is written at the next commit or the next start of the
// DO, so the index converges on the room's state; a room without a position (new, or from before the index
// existed) writes all its members once. The end of a partial-state resync writes every member again (the
// state it adds is dated just before our join, engine.ts addToCurrentState, under the position), so the
// members it brings are found from then on, as Synapse's directory learns them from that completion.
//
// Other servers' users are kept with the display name and avatar of their member event (Synapse keeps them
// so); this server's users are searched by their global profile (D1 `users`), so theirs are not copied.
import type { RoomEngine } from "./engine.js";

/** State whose change means a write: memberships, and what makes the room public for the directory. */
const WATCHED = ["m.room.member", "m.room.join_rules", "m.room.history_visibility"] as const;
/** More changed members than this since the position: the room's rows are rewritten whole (one DELETE and
 * inserts of 20 rows, instead of a DELETE and an insert per member). */
const REWRITE_OVER = 500;
export const rewritesWhole = (changedMembers: number): boolean => changedMembers > REWRITE_OVER;
/** D1 allows 100 bound parameters per statement: 5 per member row. */
const ROWS_PER_STATEMENT = 20;
/** Longer profile fields of another server's member are not kept (Synapse's profile limits): the member is
 * still found by user ID. */
const MAX_DISPLAYNAME_LENGTH = 256;
const MAX_AVATAR_URL_LENGTH = 1000;
const WATCHED_TYPES = `type IN (${WATCHED.map(() => "?").join(", ")})`;

/** The newest position of the room's state-change log (0 before any). */
const logHead = (engine: RoomEngine): number =>
  engine.sql.exec<{ head: number | null }>("SELECT MAX(stream_ordering) AS head FROM state_deltas").one().head ?? 0;

const SCHEMA = "CREATE TABLE IF NOT EXISTS directory_index (id INTEGER PRIMARY KEY CHECK (id = 1), through INTEGER NOT NULL)";

type MemberRow = {
  user_id: string;
  displayname: SqlStorageValue;
  avatar_url: SqlStorageValue;
};

export class DirectoryIndex {
  private chain: Promise<void> = Promise.resolve();
  /** The engine whose storage has the position's table (a purge makes a new engine). */
  private schemaFor: RoomEngine | undefined;

  constructor(
    private readonly engine: () => RoomEngine,
    private readonly db: D1Database,
  ) {}

  /** Whether a commit's new events change what the directory holds (a membership, the join rule or the
   * history visibility); read from the results without touching storage. */
  static concerns(results: readonly { duplicate: boolean; stored?: { type: string; stateKey: string | null } }[]): boolean {
    return results.some((r) => !r.duplicate && r.stored?.stateKey != null && (WATCHED as readonly string[]).includes(r.stored.type));
  }

  /**
   * Writes what changed since the position, after the writes asked for before it. Resolves when D1 holds
   * every change committed before the call, or when the write failed (logged; the next call or the next
   * start of the DO writes it). Never rejects. `whole`: every member is written again (the end of a
   * partial-state resync, whose deltas are dated before our join, under the position).
   */
  update(whole = false): Promise<void> {
    const run = this.chain.then(() => this.writeChanges(whole));
    this.chain = run.catch((e) => console.warn("user directory: room not indexed", e instanceof Error ? e.message : e));
    return this.chain;
  }

  /** Resolves when the writes asked for so far are done (a purge waits, then deletes the room's rows). */
  settled(): Promise<void> {
    return this.chain;
  }

  /**
   * Whether changes wait to be written: at the DO's start (a crash or a failed write left them), and after a
   * commit of other events (a state resolution may change members without a member event of its own). When
   * only other state changed since the position, the position moves past it here, so that this check reads
   * few rows however much other state (call members, say) a room sends.
   */
  behind(): boolean {
    const engine = this.engine();
    if (!engine.meta()) return false;
    const through = this.through(engine);
    if (through === null) return true;
    const head = logHead(engine);
    if (head <= through) return false;
    const watched = engine.sql.exec(`SELECT 1 FROM state_deltas WHERE stream_ordering > ? AND ${WATCHED_TYPES} LIMIT 1`, through, ...WATCHED).toArray().length > 0;
    if (!watched) engine.sql.exec("UPDATE directory_index SET through = ? WHERE id = 1", head);
    return watched;
  }

  /** The position (read each time: one indexed row; a cached copy would outlive a rolled-back write). */
  private through(engine: RoomEngine): number | null {
    if (this.schemaFor !== engine) {
      engine.sql.exec(SCHEMA);
      this.schemaFor = engine;
    }
    return engine.sql.exec<{ through: number }>("SELECT through FROM directory_index WHERE id = 1").toArray()[0]?.through ?? null;
  }

  private async writeChanges(whole: boolean): Promise<void> {
    const engine = this.engine();
    const meta = engine.meta();
    if (!meta) return;
    const roomId = meta.roomId;
    const through = this.through(engine);
    const head = logHead(engine);
    if (!whole && through !== null && head <= through) return;
    const statements: D1PreparedStatement[] = [];
    let members: string[] | "all" = "all";
    let roomChanged = whole || through === null;
    if (!whole && through !== null) {
      const changed = engine.sql
        .exec<{ type: string; state_key: string }>(
          `SELECT DISTINCT type, state_key FROM state_deltas WHERE stream_ordering > ? AND stream_ordering <= ? AND ${WATCHED_TYPES}`,
          through,
          head,
          ...WATCHED,
        )
        .toArray();
      const users = changed.filter((c) => c.type === "m.room.member").map((c) => c.state_key);
      roomChanged = changed.some((c) => c.type !== "m.room.member");
      members = rewritesWhole(users.length) ? "all" : users;
    }
    if (members === "all") {
      statements.push(this.db.prepare("DELETE FROM directory_members WHERE room_id = ?").bind(roomId));
      statements.push(...this.insertRows(roomId, this.joinedMembers(engine)));
    } else if (members.length > 0) {
      const joined = this.joinedMembers(engine, members);
      const stillJoined = new Set(joined.map((m) => m.user_id));
      // Both forms of a member who left (in MSC4348 rooms, whether an ID is ours depends on its membership).
      const gone = [...new Set(members.filter((u) => !stillJoined.has(u)).flatMap((u) => [u, this.accountOf(engine, u)]))];
      for (let i = 0; i < gone.length; i += 90) {
        const part = gone.slice(i, i + 90);
        statements.push(this.db.prepare(`DELETE FROM directory_members WHERE room_id = ? AND user_id IN (${part.map(() => "?").join(", ")})`).bind(roomId, ...part));
      }
      statements.push(...this.insertRows(roomId, joined));
    }
    if (roomChanged) {
      statements.push(this.db.prepare("INSERT OR REPLACE INTO directory_rooms (room_id, public) VALUES (?, ?)").bind(roomId, isPublicForDirectory(engine) ? 1 : 0));
    }
    if (statements.length > 0) await this.db.batch(statements);
    // The room may have been purged meanwhile (its storage is gone): nothing to remember then.
    if (!this.engine().meta()) return;
    engine.sql.exec("INSERT OR REPLACE INTO directory_index (id, through) VALUES (1, ?)", head);
  }

  /** Joined members with the display name and avatar of their member event when those are strings (all, or
   * those of `only`). */
  private joinedMembers(engine: RoomEngine, only?: readonly string[]): MemberRow[] {
    const text = (path: string) => `CASE WHEN json_type(e.json, '${path}') = 'text' THEN json_extract(e.json, '${path}') END`;
    const select = `SELECT c.state_key AS user_id, ${text("$.content.displayname")} AS displayname,
                           ${text("$.content.avatar_url")} AS avatar_url
                      FROM current_state c JOIN events e ON e.event_id = c.event_id
                     WHERE c.type = 'm.room.member' AND c.membership = 'join'`;
    if (only === undefined) return engine.sql.exec<MemberRow>(select).toArray();
    return engine.sql.exec<MemberRow>(`${select} AND c.state_key IN (SELECT value FROM json_each(?))`, JSON.stringify(only)).toArray();
  }

  /** A member as the directory names them: this server's users by their account (MSC4345/MSC4348 rooms
   * name them by key inside, room/key-identity.ts). */
  private accountOf(engine: RoomEngine, userId: string): string {
    return engine.isLocalUser(userId) ? engine.keyIdentity().local(userId) : userId;
  }

  private insertRows(roomId: string, members: readonly MemberRow[]): D1PreparedStatement[] {
    const engine = this.engine();
    const rows = members.map((m) => {
      const local = engine.isLocalUser(m.user_id);
      // This server's users are searched by their global profile: no copy of the member event's.
      const text = (v: SqlStorageValue, max: number) => (!local && typeof v === "string" && v.length <= max ? v : null);
      return [roomId, this.accountOf(engine, m.user_id), local ? 1 : 0, text(m.displayname, MAX_DISPLAYNAME_LENGTH), text(m.avatar_url, MAX_AVATAR_URL_LENGTH)] as const;
    });
    const out: D1PreparedStatement[] = [];
    for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) {
      const part = rows.slice(i, i + ROWS_PER_STATEMENT);
      out.push(
        this.db
          .prepare(`INSERT OR REPLACE INTO directory_members (room_id, user_id, local, displayname, avatar_url) VALUES ${part.map(() => "(?, ?, ?, ?, ?)").join(", ")}`)
          .bind(...part.flat()),
      );
    }
    return out;
  }
}

/**
 * Whether the room's members are "in a public room" for the user directory: its join rule is public or
 * its history is world-readable (Synapse's `is_room_world_readable_or_publicly_joinable`).
 */
export function isPublicForDirectory(engine: RoomEngine): boolean {
  if (!engine.meta()) return false;
  if (engine.currentStateEvent("m.room.join_rules", "")?.content.join_rule === "public") return true;
  return engine.currentStateEvent("m.room.history_visibility", "")?.content.history_visibility === "world_readable";
}
