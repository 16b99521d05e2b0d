// Room-scoped ephemeral data in the Room DO (spec: Client-Server API, "Typing Notifications", "Receipts"):
// who is typing (in memory: it expires within seconds and means nothing after a restart) and the latest
// receipt of each user, receipt type and thread (in SQLite: /sync of a user who joins later shows them).
// Every change is fanned out to the User DOs of the joined local members (notifications.ts
// `RoomEphemeralNotification`), which put it into their sync streams and wake their long-polls.
//
// Federation (spec: Server-Server API, "Typing Notifications", "Receipts"): a change by a LOCAL user is also
// sent as an `m.typing` / `m.receipt` EDU to every other server with joined members, through their
// Destination DOs (a waiting EDU with the same dedupe key is replaced: only the latest state matters).
// Changes by remote users arrive through PUT /send (worker/federation/edus.ts) and are applied here like
// local ones, but never sent on: each server sends its own users' EDUs to every server in the room.
import { pushEphemeralToAppservices } from "./appservice-outbound.js";
import { MatrixError, forbidden, notFound } from "../../protocol/errors.js";
import type { Env } from "../../worker/env.js";
import type { ReceiptUpdate, RoomEphemeralNotification } from "../notifications.js";
import type { RoomEngine } from "./engine.js";
import { serversInRoom } from "./federation-reads.js";
import { partialStateServers } from "./partial-state.js";
import { serverNameOf } from "../../protocol/pdu.js";
import { inParallel } from "../in-parallel.js";

/** Spec/Synapse: a remote user's typing lasts this long unless refreshed or stopped (Synapse's
 * FEDERATION_TIMEOUT in handlers/typing.py); the EDU itself carries no timeout. */
export const FEDERATION_TYPING_TIMEOUT_MS = 60_000;
/** Synapse's FEDERATION_PING_INTERVAL: how often an ongoing local typing notification is re-sent. */
const FEDERATION_PING_INTERVAL_MS = 40_000;

/** The longest typing timeout honoured (Synapse caps at the same order of magnitude). */
export const MAX_TYPING_TIMEOUT_MS = 120_000;

/** Receipt types shown to everyone in the room; `m.read.private` only reaches its sender. */
export const PUBLIC_RECEIPT_TYPES = ["m.read"];

/** `thread_id` column value of an unthreaded receipt ('' cannot be a thread root or "main"). */
const UNTHREADED = "";

/**
 * A room with more local members than this pushes typing and receipts only to those syncing now (its
 * listeners, room/fan-out.ts), at most EPHEMERAL_PUSH_CONCURRENCY calls at a time: a keystroke in a room
 * of 10,000 local members was 10,000 User DO calls at once. The others get the receipts with their next
 * catch-up (`listen`, room.ts), and miss typing, which lasts seconds. Up to it every local member is pushed.
 */
export const EPHEMERAL_PUSH_ALL_MAX = 100;
const EPHEMERAL_PUSH_CONCURRENCY = 16;

export class RoomEphemeral {
  private readonly typing = new Map<string, { until: number; timer: ReturnType<typeof setTimeout>; lastPoke: number }>();

  constructor(
    private readonly engine: RoomEngine,
    private readonly env: Env,
    /** For application services with `receive_ephemeral` (room/appservice-outbound.ts). */
    private readonly ctx?: DurableObjectState,
    /** The members syncing now (room/fan-out.ts listeners); without it every local member is pushed. */
    private readonly listeners?: () => string[],
  ) {}

  /** Typing and public receipts also go to application services that asked for them (MSC2409). */
  private toAppservices(event: { type: string; room_id: string; content: object }, dedupeKey: string): Promise<void> {
    return this.ctx ? pushEphemeralToAppservices(this.ctx, this.engine, this.env, event, dedupeKey) : Promise.resolve();
  }

  private requireJoined(userId: string): string {
    const meta = this.engine.meta();
    if (!meta) throw forbidden("Unknown room");
    const member = this.engine.membershipOf(userId);
    if (member?.membership === "join") return meta.roomId;
    // Partial state (room/partial-state.ts): a user of another server whose membership we do not know yet
    // counts as in the room when the resident named their server (Synapse checks the server against
    // `servers_in_room` then), so typing and receipts arrive during the resync.
    if (member == null && !this.engine.isLocalUser(userId) && partialStateServers(this.engine).includes(serverNameOf(userId))) return meta.roomId;
    throw forbidden(`User ${userId} not in room ${meta.roomId}`);
  }

  // -------------------------------------------------------------------------------------------
  // Typing (spec: PUT /rooms/{roomId}/typing/{userId}).

  /** Users typing now. */
  typingUsers(now = Date.now()): string[] {
    const out: string[] = [];
    for (const [userId, t] of this.typing) if (t.until > now) out.push(userId);
    return out.sort();
  }

  /** Starts (for `timeoutMs`) or stops a user's typing and tells the members. */
  async setTyping(userId: string, typing: boolean, timeoutMs: number): Promise<void> {
    const roomId = this.requireJoined(userId);
    const old = this.typing.get(userId);
    if (old) clearTimeout(old.timer);
    const wasTyping = old !== undefined;
    if (typing) {
      const ms = Math.max(0, Math.min(timeoutMs, MAX_TYPING_TIMEOUT_MS));
      const timer = setTimeout(() => {
        if (this.typing.get(userId)?.timer !== timer) return;
        this.typing.delete(userId);
        void this.fanOut({ kind: "typing", roomId, userIds: this.typingUsers() });
        void this.toAppservices({ type: "m.typing", room_id: roomId, content: { user_ids: this.typingUsers() } }, `typing:${roomId}`);
        // Synapse tells the other servers when a local user's typing times out, too.
        void this.federate(typingEdu(roomId, userId, false), `typing:${roomId}:${userId}`, userId);
      }, ms);
      this.typing.set(userId, { until: Date.now() + ms, timer, lastPoke: Date.now() });
      // A refresh of an ongoing typing notification changes nothing the local members see. Remote servers
      // end a typing notification after their own timeout, so they get a refresh at most every
      // FEDERATION_PING_INTERVAL_MS (Synapse's keep-alive, handlers/typing.py).
      if (wasTyping) {
        const lastPoke = old.lastPoke;
        this.typing.get(userId)!.lastPoke = lastPoke;
        if (Date.now() - lastPoke < FEDERATION_PING_INTERVAL_MS) return;
        this.typing.get(userId)!.lastPoke = Date.now();
        await this.federate(typingEdu(roomId, userId, true), `typing:${roomId}:${userId}`, userId);
        return;
      }
    } else {
      this.typing.delete(userId);
      if (!wasTyping) return;
    }
    await Promise.all([
      this.fanOut({ kind: "typing", roomId, userIds: this.typingUsers() }),
      this.federate(typingEdu(roomId, userId, typing), `typing:${roomId}:${userId}`, userId),
      this.toAppservices({ type: "m.typing", room_id: roomId, content: { user_ids: this.typingUsers() } }, `typing:${roomId}`),
    ]);
  }

  // -------------------------------------------------------------------------------------------
  // Receipts (spec: POST /rooms/{roomId}/receipt/{receiptType}/{eventId}).

  /**
   * Records a receipt and tells the members (public types) or the user (private). Receipts only move
   * forward: one for an event before the current receipt of the same type and thread is ignored (as
   * Synapse does). Returns the stream ordering of the receipt's event (the User DO resets unread counts up
   * to it) and whether the receipt moved.
   */
  async setReceipt(update: ReceiptUpdate): Promise<{ streamOrdering: number; applied: boolean }> {
    const roomId = this.requireJoined(update.userId);
    const known = this.engine.eventMeta(update.eventId);
    // Another server's user may read an event this server does not have (yet; or during a partial-state
    // resync): Synapse stores such a receipt without an ordering and shows it, and so do we, at ordering 0
    // (any later receipt moves past it). A local user's receipt needs an event of the timeline.
    const remoteUnknown = !known && !this.engine.isLocalUser(update.userId);
    const target = remoteUnknown ? { streamOrdering: 0 } : known;
    if (!target || (known && (known.outlier || known.rejectedReason !== null))) throw notFound("Event not found");
    if (!remoteUnknown && update.threadId !== undefined && receiptThreadOf(this.engine, update.eventId, update.threadId === "main") !== update.threadId) {
      // Spec (400): "The event_id is not related to the thread_id".
      throw new MatrixError(400, "M_INVALID_PARAM", "event_id is not related to thread_id");
    }
    const threadId = update.threadId ?? UNTHREADED;
    const existing = this.engine.sql
      .exec<{ stream_ordering: number }>(
        "SELECT stream_ordering FROM receipts WHERE receipt_type = ? AND user_id = ? AND thread_id = ?",
        update.receiptType,
        update.userId,
        threadId,
      )
      .toArray()[0];
    if (existing && !remoteUnknown && existing.stream_ordering >= target.streamOrdering) return { streamOrdering: target.streamOrdering, applied: false };
    this.engine.sql.exec(
      `INSERT INTO receipts (receipt_type, user_id, thread_id, event_id, stream_ordering, ts) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (receipt_type, user_id, thread_id) DO UPDATE SET event_id = excluded.event_id,
         stream_ordering = excluded.stream_ordering, ts = excluded.ts`,
      update.receiptType,
      update.userId,
      threadId,
      update.eventId,
      target.streamOrdering,
      update.ts,
    );
    this.engine.sql.exec(
      `INSERT INTO receipts_changed (receipt_type, user_id, thread_id, at) VALUES (?, ?, ?, ?)
       ON CONFLICT (receipt_type, user_id, thread_id) DO UPDATE SET at = excluded.at`,
      update.receiptType,
      update.userId,
      threadId,
      this.engine.maxStreamOrdering(),
    );
    const notification: RoomEphemeralNotification = { kind: "receipt", roomId, receipts: [update] };
    if (PUBLIC_RECEIPT_TYPES.includes(update.receiptType)) {
      // Private receipts never leave the server (spec: "Private read receipts").
      await Promise.all([
        this.fanOut(notification),
        this.federate(receiptEdu(roomId, update), `receipt:${roomId}:${update.receiptType}:${update.userId}:${threadId}`, update.userId),
        this.toAppservices(
          {
            type: "m.receipt",
            room_id: roomId,
            content: { [update.eventId]: { [update.receiptType]: { [update.userId]: update.threadId !== undefined ? { ts: update.ts, thread_id: update.threadId } : { ts: update.ts } } } },
          },
          `receipt:${roomId}:${update.receiptType}:${update.userId}:${threadId}`,
        ),
      ]);
    } else await this.fanOut(notification, [update.userId]);
    return { streamOrdering: target.streamOrdering, applied: true };
  }

  /** The room's public receipts (an initial sync shows them). */
  publicReceipts(): ReceiptUpdate[] {
    return this.readPublicReceipts("receipts r", "", []);
  }

  /** The public receipts that changed since the room's head was at stream ordering `from` (a catch-up of a
   * room that pushes them to its listeners only; some may be known to the caller: it keeps the latest). */
  publicReceiptsChangedSince(from: number): ReceiptUpdate[] {
    return this.readPublicReceipts(
      "receipts_changed c JOIN receipts r ON r.receipt_type = c.receipt_type AND r.user_id = c.user_id AND r.thread_id = c.thread_id",
      "c.at >= ? AND",
      [from],
    );
  }

  /** Public receipts of `r` in `from`, filtered by `where` (ending in AND) with its bindings. */
  private readPublicReceipts(from: string, where: string, bindings: number[]): ReceiptUpdate[] {
    if (!this.engine.meta()) return [];
    const types = PUBLIC_RECEIPT_TYPES;
    return this.engine.sql
      .exec<{ receipt_type: string; user_id: string; thread_id: string; event_id: string; ts: number }>(
        `SELECT r.receipt_type, r.user_id, r.thread_id, r.event_id, r.ts FROM ${from} WHERE ${where} r.receipt_type IN (${types.map(() => "?").join(",")})`,
        ...bindings,
        ...types,
      )
      .toArray()
      .map((r) => {
        const u: ReceiptUpdate = { receiptType: r.receipt_type, userId: r.user_id, eventId: r.event_id, ts: r.ts };
        if (r.thread_id !== UNTHREADED) u.threadId = r.thread_id;
        return u;
      });
  }

  // -------------------------------------------------------------------------------------------

  /**
   * Queues an EDU about local user `userId` for every other server with joined members (their Destination
   * DOs keep it until the peer accepted it). Remote users' changes are not sent on. Failures are logged:
   * typing and receipts are best effort, as for local members.
   */
  private async federate(edu: { edu_type: string; content: object }, dedupeKey: string, userId: string): Promise<void> {
    if (!this.engine.isLocalUser(userId)) return;
    const servers = serversInRoom(this.engine).filter((s) => s !== this.env.SERVER_NAME);
    const queued = { eduType: edu.edu_type, content: JSON.stringify(edu.content), dedupeKey };
    await Promise.all(
      servers.map(async (server) => {
        try {
          await this.env.DESTINATIONS.get(this.env.DESTINATIONS.idFromName(server)).enqueue(server, [], [queued]);
        } catch (e) {
          console.warn("ephemeral EDU not queued", server, e instanceof Error ? e.message : e);
        }
      }),
    );
  }

  /** Tells the User DOs of the joined local members (or of `only`; EPHEMERAL_PUSH_ALL_MAX). Failures are
   * logged, not retried. */
  private async fanOut(notification: RoomEphemeralNotification, only?: string[]): Promise<void> {
    let users: readonly string[];
    if (only) users = only.filter((u) => this.engine.isLocalUser(u));
    else if (this.pushesToListenersOnly()) {
      const joined = this.localJoined().set;
      users = this.listeners!().filter((u) => joined.has(u));
    } else users = this.localJoined().list;
    await inParallel(users, EPHEMERAL_PUSH_CONCURRENCY, async (userId) => {
      try {
        await this.env.USERS.get(this.env.USERS.idFromName(this.engine.keyIdentity().local(userId))).onRoomEphemeral(notification);
      } catch (e) {
        console.warn("ephemeral notification failed", userId, e instanceof Error ? e.message : e);
      }
    });
  }

  /** Whether this room pushes typing and receipts to its listeners only (EPHEMERAL_PUSH_ALL_MAX). */
  pushesToListenersOnly(): boolean {
    return this.listeners !== undefined && this.localJoined().list.length > EPHEMERAL_PUSH_ALL_MAX;
  }

  /** The joined local members, read once per change of the current state (a keystroke in a big room read
   * every member row). */
  private localJoinedCache: { version: number; list: string[]; set: Set<string> } | undefined;
  private localJoined(): { list: string[]; set: Set<string> } {
    const version = this.engine.currentStateVersion;
    if (this.localJoinedCache?.version !== version) {
      const list = this.engine.membersWith("join").filter((u) => this.engine.isLocalUser(u));
      this.localJoinedCache = { version, list, set: new Set(list) };
    }
    return this.localJoinedCache;
  }
}

/** Spec: Server-Server API, "Typing Notifications": the `m.typing` EDU. */
export function typingEdu(roomId: string, userId: string, typing: boolean): { edu_type: string; content: object } {
  return { edu_type: "m.typing", content: { room_id: roomId, user_id: userId, typing } };
}

/** Spec: Server-Server API, "Receipts": the `m.receipt` EDU, one receipt (`data.thread_id` for a threaded one). */
export function receiptEdu(roomId: string, update: ReceiptUpdate): { edu_type: string; content: object } {
  const data: { ts: number; thread_id?: string } = { ts: update.ts };
  if (update.threadId !== undefined) data.thread_id = update.threadId;
  return { edu_type: "m.receipt", content: { [roomId]: { [update.receiptType]: { [update.userId]: { event_ids: [update.eventId], data } } } } };
}

/** How many relation hops a receipt's thread look-up follows (relations form a tree; this bounds a walk
 * through a malicious chain). */
const MAX_RELATION_HOPS = 16;

/**
 * The thread an event belongs to for a threaded receipt, as Synapse decides (`_is_event_in_thread`,
 * `get_thread_id`, `get_thread_id_for_receipts`): walking up the event's relations (an annotation to a
 * reference to a thread reply counts too), the first `m.thread` hop names the thread. Without one, the
 * event is in the main timeline (`main` is asked) or, for a thread ID, belongs to the thread of its
 * topmost ancestor: a thread root and anything related to it may carry the root's thread receipt.
 */
export function receiptThreadOf(engine: RoomEngine, eventId: string, main: boolean): string {
  let current = eventId;
  for (let hop = 0; hop < MAX_RELATION_HOPS; hop++) {
    const row = engine.sql
      .exec<{ rel_type: string | null; relates_to: string | null }>("SELECT rel_type, relates_to FROM events WHERE event_id = ?", current)
      .toArray()[0];
    if (row?.rel_type === "m.thread" && row.relates_to !== null) return row.relates_to;
    if (!row || row.relates_to === null) break;
    current = row.relates_to;
  }
  return main ? "main" : current;
}
