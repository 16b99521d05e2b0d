// The User DO as the user's sync hub (DESIGN.md: "Sync tokens are gap-free ... Long-polls are woken by the
// writer"; spec: GET /sync). Writers (Room DOs through onRoomEvent / onRoomEphemeral, account data, to-device,
// device lists, presence) take positions of the user's one stream and wake the waiting long-polls at once;
// a /sync builds a plan of everything in (since, now] and, if there is nothing, waits on an in-memory
// promise that the next writer resolves, or until its timeout.
//
// The plan names, per room, which room events the response shows (by room stream ordering) and carries
// everything the User DO owns (account data, ephemeral, unread counts, to-device, device lists, presence).
// The worker (worker/client/sync.ts) then asks each Room DO for its part (room/sync-reads.ts), one RPC per
// room, and writes the JSON.
import { evaluatePushRules, type PushEvaluation, type Ruleset } from "../../protocol/push-rules.js";
import { eventPasses, roomPasses, type SyncFilterView } from "../../protocol/event-filter.js";
import type { JsonObject } from "../../protocol/json.js";
import { serverNameOf } from "../../protocol/pdu.js";
import type { Env } from "../../worker/env.js";
import type { DeliveredRoomEventNotification, ReceiptUpdate, RoomEphemeralNotification } from "../notifications.js";
import type { AccountDataDelta } from "../user.js";
import { roomActivityOf, type RoomActivity } from "../room/event-index.js";
import type { PushedSyncPart } from "../room/pushed-sync-part.js";
import type { AlarmClock } from "./alarm-clock.js";
import type { DeviceListChangeKind, DeviceListChanges } from "./device-lists.js";
import { WATCH_CONCURRENCY, fanOutPresence, federatePresence, joinedMembersOf, remoteServersIn, watchRemoteUsers } from "./room-mates.js";
import { inParallel } from "../in-parallel.js";
import { PresenceFederationLog, presencePingDue, presenceWorthSendingOnJoin } from "./presence-federation.js";
import type { UserStream } from "./stream.js";
import { encodeSyncToken, type SyncToken } from "./sync-token.js";
import { MAIN_THREAD, SyncStore, type InboxRow, type PresenceState, type UnreadCounts } from "./sync-stream.js";
import type { ToDeviceBatch } from "./to-device.js";
import { PartialStateRooms } from "./partial-state-rooms.js";

/** What the hub needs from the rest of the User DO (user.ts and the encryption modules). */
export interface SyncSources {
  /** Records one room event notification in the inbox (inside the caller's transaction); returns its
   * position (the existing one for a repeat). */
  recordRoomEvent(n: DeliveredRoomEventNotification): number;
  accountDataSince(since: number, userId: string): AccountDataDelta;
  /** The user's effective push rules. */
  pushRuleset(userId: string): Ruleset;
  /** The users in the user's `m.ignored_user_list` (spec: "Ignoring Users"). */
  ignoredUsers?(): Set<string>;
  toDeviceSince?(deviceId: string, since: number, limit: number): ToDeviceBatch;
  ackToDevice?(deviceId: string, upto: number): void;
  deviceListsSince?(since: number, upto: number): DeviceListChanges;
  recordDeviceListChange?(userId: string, kind: DeviceListChangeKind): number;
  oneTimeKeyCounts?(deviceId: string): Record<string, number>;
  unusedFallbackKeyTypes?(deviceId: string): string[];
  /** An event whose evaluation says `notify` for the user (joined room, or an invite of the user), inside
   * the transaction that recorded it: push delivery queues it for the user's pushers (user/push-delivery.ts). */
  onNotify?(n: DeliveredRoomEventNotification, evaluation: PushEvaluation): void;
}

/** A lease (room/fan-out.ts LISTEN_LEASE_MS) is renewed in the background once less than this is left. */
const LEASE_RENEW_MS = 5 * 60_000;
/** A lease with less than this left is treated as lapsed (room clocks may differ a little): the sync waits
 * for the room's answer (and catch-up) before it plans. */
const LEASE_SAFETY_MS = 60_000;
/** The most events one catch-up brings per room (the newest; the timeline is limited when it leaves some
 * out). The same as the largest timeline limit a filter may ask for. */
export const CATCH_UP_LIMIT = 1000;

/**
 * Background work a sync starts over many rooms (catch-ups, presence) waits this long, so that the rooms
 * the response needs answer first. On Cloudflare every Room DO runs apart and this only postpones work
 * nobody waits for; locally all rooms share one thread, and a thousand background calls started at once
 * would queue the response's own room reads behind them. A /sync's background work waits for its response
 * instead (ResponseGate below); this delay is for sliding sync, and for a /sync that waits for news.
 */
export const BACKGROUND_DELAY_MS = 500;

/** The longest a /sync's background work waits for the worker to say that the response is built. */
export const BACKGROUND_FALLBACK_MS = 10_000;

function afterTheResponse(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, BACKGROUND_DELAY_MS));
}

/**
 * Holds a /sync's background work (catch-ups of rooms without news, presence over many rooms) until the
 * response it would compete with is built: the worker reads each room's part of an initial /sync after
 * the plan, and a user in 1,000 rooms took longer than BACKGROUND_DELAY_MS to read, so the background
 * calls (one per room, a commit each) used to start in the middle of the response. Opened by the worker
 * (`UserDurableObject.responseBuilt`, when the plan says work waits), when the sync waits for news instead
 * of answering (no response is being built; the background may bring the news), or after
 * BACKGROUND_FALLBACK_MS when the worker never tells.
 */
class ResponseGate {
  readonly opened: Promise<void>;
  private openGate!: () => void;
  private waiting = false;
  private readonly timer: ReturnType<typeof setTimeout>;

  constructor(private readonly gates: Set<ResponseGate>) {
    this.opened = new Promise((resolve) => (this.openGate = resolve));
    this.timer = setTimeout(() => this.open(), BACKGROUND_FALLBACK_MS);
    gates.add(this);
  }

  /** Work that waits for the gate (it then expects the worker's word). */
  wait(): Promise<void> {
    this.waiting = true;
    return this.opened;
  }

  /** Whether work waits behind the gate. */
  get hasWaiters(): boolean {
    return this.waiting;
  }

  open(): void {
    clearTimeout(this.timer);
    this.gates.delete(this);
    this.openGate();
  }
}

export interface EnsureListeningOptions {
  /** Narrows the rooms to wait for (given the due rooms and D1's hints): the others are asked in the
   * background. Default: the rooms whose hint shows news since this DO's position there. */
  urgent?: (due: string[], hints: Map<string, RoomActivity>) => Set<string>;
  /** Leave the background catch-ups for `startBackgroundCatchUps` (a sync starts them once it planned). */
  deferBackground?: boolean;
}

/** From this many rooms to ask at once, a sync consults D1's activity hint and waits only for the rooms
 * with news (below it, asking the rooms costs about what the D1 query costs). */
export const BACKGROUND_CATCH_UP_MIN_ROOMS = 16;

/** How many to-device messages one response carries at most (Synapse: 100). */
export const TO_DEVICE_LIMIT = 100;

export interface SyncRequest {
  userId: string;
  deviceId: string;
  since: SyncToken | null;
  timeoutMs: number;
  fullState: boolean;
  filter: SyncFilterView;
  /** `set_presence` (spec: absent means online). */
  setPresence: "online" | "offline" | "unavailable";
}

/** Which room events the room's timeline shows (see room/sync-reads.ts RoomSyncRequest). */
export type TimelinePlan =
  | { mode: "latest"; upto: number; /** A room joined since the token of an incremental sync. */ newlyJoined?: true }
  | { mode: "exact"; upto: number; orderings: number[]; limited: boolean; sinceOrdering: number };

export type ExactTimelinePlan = Extract<TimelinePlan, { mode: "exact" }>;

export interface AccountDataEntry {
  type: string;
  /** JSON text. */
  content: string;
}

export interface SyncRoomPlan {
  roomId: string;
  section: "join" | "invite" | "knock" | "leave";
  timeline?: TimelinePlan;
  accountData: AccountDataEntry[];
  typing?: string[];
  receipts?: ReceiptUpdate[];
  /** Ask the Room DO for the room's public receipts (the room is new to the client). */
  roomReceipts?: boolean;
  unread?: UnreadCounts;
  unreadThreads?: Record<string, UnreadCounts>;
  /** Rooms without a timeline plan: the room's point at the token (for an empty timeline's prev_batch). */
  point?: number;
  /** Lazy-loading without redundant members: member events of the timeline's senders the device already
   * has (user ID → event ID); they are not sent again. */
  lazyMembersSent?: Record<string, string>;
  /** The room's part of the response, carried by the push that woke this sync (room/pushed-sync-part.ts):
   * its answer to `syncRoom` for exactly this timeline plan with no filters, as JSON text, and with
   * lazy-loading its state for nothing sent before. The worker uses it instead of asking the room when its
   * request has none of the options the part was not built for. */
  pushed?: { result: string; lazyState?: string };
}

export interface PresenceEvent {
  sender: string;
  presence: string;
  lastActiveAgo: number;
  currentlyActive: boolean;
  statusMsg?: string;
}

export interface SyncPlan {
  /** Background work of this sync waits until the worker has built the response and calls
   * `responseBuilt` (ResponseGate). */
  backgroundAfterResponse?: true;
  nextBatch: string;
  /** The position the plan is complete up to. */
  position: number;
  rooms: SyncRoomPlan[];
  accountData: AccountDataEntry[];
  presence: PresenceEvent[];
  /** JSON text of each to-device event. */
  toDevice: string[];
  deviceLists?: { changed: string[]; left: string[] };
  oneTimeKeyCounts?: Record<string, number>;
  unusedFallbackKeyTypes?: string[];
}

/** A user's presence is "currently active" for this long after their last activity (Synapse: 60 s). */
const CURRENTLY_ACTIVE_MS = 60_000;
/** Joining a room with at most this many local members exchanges presence with each of them. */
const PRESENCE_EXCHANGE_MAX_MEMBERS = 100;
/** A user whose clients stopped syncing for this long goes offline (Synapse's SYNC_ONLINE_TIMEOUT). */
export const PRESENCE_SYNC_TIMEOUT_MS = 30_000;

/**
 * Rooms up to this many members have their remote members' device lists followed when the user joins (or,
 * after a partial join, before the resync's completion is answered). Following costs one remote user's
 * Durable Object each: 10,000 of them at a join held /joined_members for 210 s and, locally, ran workerd
 * out of file handles (SQLITE_CANTOPEN; issue 19, bench:join). In a bigger room a remote member is
 * followed once the user asks for their keys (worker/federation/remote-keys.ts), which every client
 * does before it encrypts to them; a member nobody asked about is not listed in `device_lists.changed`,
 * which a client only reads for the users it tracks.
 */
export const FOLLOWED_ROOM_MATES_MAX = 1_000;

/** Whether a room's remote members are followed as room-mates (unknown size: they are). */
export function followsRoomMates(memberCount: number | undefined): boolean {
  return memberCount === undefined || memberCount <= FOLLOWED_ROOM_MATES_MAX;
}

export class SyncHub {
  readonly store: SyncStore;
  /** Rooms joined with partial state: left out of eager syncs until their resync completes. */
  readonly partialStateRooms: PartialStateRooms;
  private readonly waiters = new Set<() => void>();
  /** Rooms whose Room DO pushes every event to this DO, and when that lease ends (the room's clock). In
   * memory: after a restart the first sync asks each joined room again (docs/fan-out.md). */
  private readonly leases = new Map<string, number>();
  private readonly renewing = new Set<string>();
  /** Per room, the part the latest push carried (room/pushed-sync-part.ts). In memory: a hint, never needed. */
  private readonly pushedParts = new Map<string, PushedSyncPart>();

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly env: Env,
    private readonly stream: UserStream,
    private readonly sources: SyncSources,
    private readonly clock: AlarmClock,
  ) {
    this.store = new SyncStore(ctx.storage.sql, stream);
    this.partialStateRooms = new PartialStateRooms(ctx.storage.sql, () => stream.next());
    this.presenceFederation = new PresenceFederationLog(ctx.storage.sql);
  }

  /** When this user's presence last went to other servers (user/presence-federation.ts). */
  private readonly presenceFederation: PresenceFederationLog;

  /** The DO's user (learned from the first RPC that names it). */
  userId(): string | undefined {
    return (this.knownUserId ??= this.store.getMeta("user_id"));
  }

  learnUserId(userId: string | undefined): void {
    if (userId === undefined || userId === this.knownUserId) return;
    // Kept in memory once read back as stored (every pushed notification names the recipient); a write
    // is read again next time, so a rolled-back transaction cannot leave memory ahead of storage.
    if (this.store.getMeta("user_id") === userId) this.knownUserId = userId;
    else this.store.setMeta("user_id", userId);
  }

  /** The stored user ID, once read (see learnUserId). */
  private knownUserId: string | undefined;

  // -------------------------------------------------------------------------------------------
  // Waking long-polls.

  /** Called whenever a stream position is taken. The waiters run after the current synchronous write
   * (and its transaction) has finished. */
  wake(): void {
    if (this.waiters.size === 0) return;
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const w of waiting) w();
  }

  /** Resolves at the next wake() or after `ms`. */
  waitForChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.waiters.add(done);
    });
  }

  /** Number of long-polls waiting (tests). */
  waiting(): number {
    return this.waiters.size;
  }

  // -------------------------------------------------------------------------------------------
  // Writes from Room DOs.

  /** Keeps the part a push carried for the plan of the sync it wakes (the room's latest part only). */
  rememberPushedPart(part: PushedSyncPart): void {
    this.pushedParts.delete(part.roomId);
    this.pushedParts.set(part.roomId, part);
    // A handful of rooms at a time is the case it is for; the oldest go first.
    if (this.pushedParts.size > PUSHED_PARTS_KEPT) this.pushedParts.delete(this.pushedParts.keys().next().value!);
  }

  /**
   * The sync side of a room event notification, inside the transaction that stored its inbox row at
   * `position`: the user's own membership log, unread counts (push rules), device list bookkeeping.
   */
  onRoomEvent(n: DeliveredRoomEventNotification, position: number): void {
    this.learnUserId(n.recipient);
    const me = n.recipient ?? this.userId();
    if (me === undefined) return;
    const isMember = n.type === "m.room.member" && n.stateKey !== undefined;
    const before = this.store.membershipOf(n.roomId);
    if (isMember && n.stateKey === me && n.membership !== undefined) {
      this.store.recordMembership({ roomId: n.roomId, streamOrdering: n.streamOrdering, eventId: n.eventId, membership: n.membership }, position);
      const wasJoined = before?.membership === "join" && before.streamOrdering < n.streamOrdering;
      if (n.membership === "join" && !wasJoined) {
        // A new join: the inbox is complete up to it (what came before shows as the room's latest events);
        // the next sync asks the room to push (listen).
        this.store.setRoomCursor(n.roomId, n.streamOrdering);
        this.leases.delete(n.roomId);
        this.followUp(() => this.markRoomMatesChanged(n.roomId, me));
      }
      if (n.membership !== "join" && (before === undefined || before.streamOrdering < n.streamOrdering)) {
        this.leases.delete(n.roomId);
        this.store.deleteRoomCursor(n.roomId);
      }
      if ((n.membership === "leave" || n.membership === "ban") && wasJoined) this.followUp(() => this.markLeftRoomMates(n.roomId, me));
    }
    // Only the user's own membership event changes the membership read above.
    const ownMembership = isMember && n.stateKey === me && n.membership !== undefined;
    const joined = (ownMembership ? this.store.membershipOf(n.roomId) : before)?.membership === "join";
    if (!joined) {
      // An invite of the user is pushed (`.m.rule.invite_for_me`) but counts nowhere: the room is not joined.
      if (isMember && n.stateKey === me && n.membership === "invite" && n.sender !== me && n.push && this.sources.onNotify) {
        const result = this.evaluate(n, me);
        if (result?.notify) this.sources.onNotify(n, result);
      }
      return;
    }

    if (isMember && n.stateKey !== me) {
      // Device lists (spec: "Tracking the device list for a user"): a new room-mate's devices are news;
      // one who leaves may no longer share any room.
      if (n.membership === "join") {
        this.sources.recordDeviceListChange?.(n.stateKey!, "changed");
        // A new room-mate's presence is news even when it did not change (as Synapse's incremental sync).
        this.store.stampPresence(n.stateKey!, position);
        // A remote room-mate: their server's device list and presence updates must reach this user, and
        // this user's presence reaches their server (Synapse's `_on_user_joined_room`).
        if (serverNameOf(n.stateKey!) !== this.env.SERVER_NAME) {
          const remote = n.stateKey!;
          this.followUp(() => watchRemoteUsers(this.env, [remote], me, n.roomId));
          const mine = this.store.presenceOf(me);
          if (mine && presenceWorthSendingOnJoin(mine, Date.now())) this.followUp(() => federatePresence(this.env, me, [serverNameOf(remote)], presenceStateOf(mine)));
        }
      }
      else if (n.membership === "leave" || n.membership === "ban") {
        const other = n.stateKey!;
        this.followUp(() => this.markLeftIfNoSharedRoom([other], me, n.roomId));
      }
    }

    if (n.sender === me) {
      // The user's own event: they have read the room up to here (as a read receipt would say).
      this.store.clearNotifications(n.roomId, n.streamOrdering);
      return;
    }
    const result = this.evaluate(n, me);
    if (result?.notify) {
      this.store.recordNotification(n.roomId, n.push!.threadId, n.streamOrdering, result.highlight);
      this.sources.onNotify?.(n, result);
    }
  }

  /** The user's push rules run on the event (spec: "Push Rules"); null without push inputs. */
  private evaluate(n: DeliveredRoomEventNotification, me: string): PushEvaluation | null {
    if (!n.push) return null;
    const event = JSON.parse(n.push.eventJson) as JsonObject;
    return evaluatePushRules(this.sources.pushRuleset(me), event, {
      userId: me,
      displayName: n.push.displayName ?? null,
      roomMemberCount: n.push.roomMemberCount,
      senderPowerLevel: n.push.senderPowerLevel,
      notificationPowerLevels: n.push.notificationPowerLevels,
      roomId: n.roomId,
    });
  }

  /**
   * The `unread` count of push notifications (Push Gateway API `counts.unread`), as Synapse's
   * `get_badge_count`: the rooms the user is invited to, plus, per joined room with unread notifications,
   * one (`groupByRoom`, Synapse's default `push.group_unread_count_by_room`) or their number.
   */
  badgeCount(groupByRoom: boolean): number {
    const memberships = this.store.membershipsAt(Number.MAX_SAFE_INTEGER);
    let badge = 0;
    for (const m of memberships.values()) if (m.membership === "invite") badge += 1;
    for (const [roomId, c] of this.store.notificationCountsByRoom()) {
      if (memberships.get(roomId)?.membership !== "join" || c === 0) continue;
      badge += groupByRoom ? 1 : c;
    }
    return badge;
  }

  /** Typing and receipts fanned out by a Room DO. */
  onRoomEphemeral(n: RoomEphemeralNotification): void {
    this.ctx.storage.transactionSync(() => {
      if (n.kind === "typing") this.store.setTyping(n.roomId, n.userIds);
      else this.store.addReceipts(n.roomId, n.receipts);
    });
  }

  /**
   * The user's own receipt (POST /receipt, /read_markers), with the room stream ordering of its event:
   * records it (private receipts reach only this DO) and clears the notifications it covers.
   */
  onOwnReceipt(roomId: string, receipt: ReceiptUpdate, streamOrdering: number): void {
    this.learnUserId(receipt.userId);
    this.ctx.storage.transactionSync(() => {
      const position = this.store.addReceipts(roomId, [receipt]);
      const clears = receipt.receiptType === "m.read" || receipt.receiptType === "m.read.private";
      // The counts changed although the receipt itself was known: mark the room so the next sync shows them.
      if (clears && this.store.clearNotifications(roomId, streamOrdering, receipt.threadId) > 0 && position === null) this.store.markRoom(roomId);
    });
  }

  /** Member events sent to a device while lazy-loading (see SyncStore.recordLazyMembers). */
  recordLazyMembers(deviceId: string, rooms: { roomId: string; members: Record<string, string>; reset: boolean }[]): void {
    this.ctx.storage.transactionSync(() => {
      for (const r of rooms) this.store.recordLazyMembers(deviceId, r.roomId, r.members, r.reset);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Presence (spec: "Presence").

  /** Sets the user's own presence; returns true if what others see changed. */
  setOwnPresence(userId: string, presence: PresenceState["presence"], statusMsg: string | null | undefined, now = Date.now()): boolean {
    this.learnUserId(userId);
    const old = this.store.presenceOf(userId);
    const state: PresenceState = {
      presence,
      lastActiveTs: presence === "offline" && old ? old.lastActiveTs : now,
      currentlyActive: presence === "online",
    };
    // `status_msg` absent keeps the old one (PUT /presence always sends what it wants; sync never does).
    const msg = statusMsg === undefined ? old?.statusMsg : (statusMsg ?? undefined);
    if (msg !== undefined) state.statusMsg = msg;
    return this.ctx.storage.transactionSync(() => {
      const changed = this.store.setPresence(userId, state) !== null;
      // Every caller sends a change to the servers sharing a room (fanOutPresence): the ping clock restarts.
      if (changed) this.presenceFederation.markSent(now);
      return changed;
    });
  }

  /** Another user's presence, fanned out to the users who share a room with them. */
  onPresence(userId: string, state: PresenceState): void {
    this.ctx.storage.transactionSync(() => this.store.setPresence(userId, state));
  }

  /** GET /presence/{userId}/status for this DO's user. */
  presenceOf(userId: string, now = Date.now()): PresenceEvent | null {
    const row = this.store.presenceOf(userId);
    return row ? presenceEvent(row, now) : null;
  }

  // -------------------------------------------------------------------------------------------
  // Follow-ups that need other DOs (device lists). They run after the write that caused them was
  // acknowledged, and record their changes with new stream positions (waking long-polls again).

  private followUp(task: () => Promise<void>): void {
    const run = task().catch((e) => console.warn("sync follow-up failed", e instanceof Error ? e.message : e));
    this.ctx.waitUntil(run);
  }

  /**
   * A room the user joined with partial state became whole (user/partial-state-rooms.ts): its remote
   * members' device lists are followed from now on, with this room as a candidate anchor of our copies
   * (Complement msc3902 "Device list tracking for pre-existing members in partial state room"), and those
   * whose server sent an update since the join (`joinedTs`), which nobody here followed then, are listed in
   * `device_lists.changed`, as Synapse replays the updates it kept while the room was partial
   * (`handle_room_un_partial_stated`; Complement "CanReceiveDeviceListUpdateDuringPartialStateJoin").
   */
  async roomBecameWhole(roomId: string, joinedTs: number, memberCount?: number): Promise<void> {
    const me = this.userId();
    if (me === undefined) return;
    const follow = async (): Promise<void> => {
      try {
        const remote = (await joinedMembersOf(this.env, roomId)).filter((m) => serverNameOf(m) !== this.env.SERVER_NAME);
        // One remote user's DO each, at most WATCH_CONCURRENCY at a time (room-mates.ts watchRemoteUsers).
        const updated = await inParallel(remote, WATCH_CONCURRENCY, (u) =>
          this.env.USERS.get(this.env.USERS.idFromName(u))
            .watchRemoteDeviceList(me, roomId, joinedTs)
            .catch((e: unknown) => (console.warn("remote user watch failed", u, e instanceof Error ? e.message : e), false)),
        );
        const changed = remote.filter((_, i) => updated[i]);
        if (changed.length === 0 || !this.sources.recordDeviceListChange) return;
        this.ctx.storage.transactionSync(() => {
          for (const u of changed) this.sources.recordDeviceListChange!(u, "changed");
        });
      } catch (e) {
        console.warn("room-mates of a whole room", e instanceof Error ? e.message : e);
      }
    };
    // Awaited by the room before it answers the requests that waited for the resync (room.ts alarm). A room
    // of more than FOLLOWED_ROOM_MATES_MAX members is not followed (see there).
    if (followsRoomMates(memberCount)) await follow();
  }

  /** The user joined a room: its members' device lists are news to them, their own included (as Synapse's
   * sync lists every member of a newly joined room: the user's other devices may need to know). */
  private async markRoomMatesChanged(roomId: string, me: string): Promise<void> {
    const members = await joinedMembersOf(this.env, roomId);
    if (this.sources.recordDeviceListChange) {
      this.ctx.storage.transactionSync(() => {
        for (const member of members) this.sources.recordDeviceListChange!(member, "changed");
      });
    }
    const remoteMembers = members.filter((m) => serverNameOf(m) !== this.env.SERVER_NAME);
    // The user's presence goes to the room's other servers (Synapse's `_on_user_joined_room`).
    const mine = this.store.presenceOf(me);
    const servers = new Set(remoteMembers.map((m) => serverNameOf(m)));
    await Promise.all([
      this.exchangePresence(roomId, me, members),
      // Not in a big room: one remote user's DO each (FOLLOWED_ROOM_MATES_MAX).
      followsRoomMates(members.length) ? watchRemoteUsers(this.env, remoteMembers, me, roomId) : undefined,
      mine ? federatePresence(this.env, me, servers, presenceStateOf(mine)) : undefined,
    ]);
  }

  /**
   * The user joined a room: they and its local members learn each other's presence (otherwise neither
   * would see the other's until it next changes). Bounded: in rooms with more local members than
   * PRESENCE_EXCHANGE_MAX_MEMBERS presence only spreads as it changes.
   */
  private async exchangePresence(roomId: string, me: string, members: string[]): Promise<void> {
    const serverName = this.env.SERVER_NAME;
    const mates = members.filter((m) => m !== me && serverNameOf(m) === serverName);
    if (mates.length === 0 || mates.length > PRESENCE_EXCHANGE_MAX_MEMBERS) return;
    const mine = this.store.presenceOf(me);
    const theirs = await Promise.all(
      mates.map(async (mate) => {
        const stub = this.env.USERS.get(this.env.USERS.idFromName(mate));
        if (mine) await stub.onPresence(me, presenceStateOf(mine));
        return { mate, event: await stub.presence(mate) };
      }),
    );
    const now = Date.now();
    this.ctx.storage.transactionSync(() => {
      for (const { mate, event } of theirs) {
        if (!event) continue;
        const state: PresenceState = {
          presence: event.presence as PresenceState["presence"],
          lastActiveTs: now - event.lastActiveAgo,
          currentlyActive: event.currentlyActive,
        };
        if (event.statusMsg !== undefined) state.statusMsg = event.statusMsg;
        // Known and unchanged: shown again all the same, the room-mate is new to this user.
        if (this.store.setPresence(mate, state) === null) this.store.stampPresence(mate, this.stream.next());
      }
    });
  }

  /** The user left a room: members they no longer share any room with are `left`. */
  private async markLeftRoomMates(roomId: string, me: string): Promise<void> {
    const members = await joinedMembersOf(this.env, roomId);
    await this.markLeftIfNoSharedRoom(members.filter((m) => m !== me), me, roomId);
  }

  private async markLeftIfNoSharedRoom(users: string[], me: string, leftRoom: string): Promise<void> {
    if (!this.sources.recordDeviceListChange || users.length === 0) return;
    const remaining = new Set(users);
    for (const roomId of this.store.joinedRooms()) {
      if (roomId === leftRoom) continue;
      for (const member of await joinedMembersOf(this.env, roomId)) remaining.delete(member);
      if (remaining.size === 0) return;
    }
    remaining.delete(me);
    this.ctx.storage.transactionSync(() => {
      for (const user of remaining) this.sources.recordDeviceListChange!(user, "left");
    });
  }

  // -------------------------------------------------------------------------------------------
  // Listening to rooms (docs/fan-out.md; room/fan-out.ts). A Room DO pushes every event to the User DOs
  // that hold a lease, and to no one else except the user a membership event is about. While its user
  // syncs, this DO keeps a lease on each joined room; a room without a valid lease is asked for the events
  // after this DO's position there (a catch-up) before a sync plans, so a sync misses nothing.

  /**
   * Makes sure every joined room pushes to this DO: rooms without a lease (or with one about to lapse) are
   * asked, and the sync waits for those that may have news for it; leases past half their time are renewed
   * in the background. Returns the time by which the leases must be looked at again (a long-poll wakes up
   * then).
   *
   * Many rooms at once (a User DO that has not listened for a while: docs/fan-out.md, "Many rooms"): D1's
   * `room_activity` hint tells which rooms have had events since this DO's position there. Rooms without
   * news are asked in the background, the sync does not wait for them. `urgent` lets a caller narrow the
   * rooms to wait for further (sliding sync waits only for the rooms its response shows).
   */
  async ensureListening(me: string, now = Date.now(), options: EnsureListeningOptions = {}): Promise<number> {
    const { urgent, deferBackground = false } = options;
    const due: string[] = [];
    const renew: string[] = [];
    let recheckAt = Number.POSITIVE_INFINITY;
    for (const roomId of this.store.joinedRooms()) {
      if (this.catchingUp.has(roomId)) continue; // asked in the background already; its answer wakes the sync
      const expiresAt = this.leases.get(roomId);
      if (expiresAt === undefined || now > expiresAt - LEASE_SAFETY_MS) due.push(roomId);
      else {
        if (now > expiresAt - LEASE_RENEW_MS && !this.renewing.has(roomId)) renew.push(roomId);
        recheckAt = Math.min(recheckAt, expiresAt - LEASE_SAFETY_MS);
      }
    }
    if (renew.length > 0) {
      for (const roomId of renew) this.renewing.add(roomId);
      this.followUp(() => this.listenTo(renew, me).finally(() => renew.forEach((r) => this.renewing.delete(r))));
    }
    if (due.length > 0) {
      let waitFor = due;
      if (due.length >= BACKGROUND_CATCH_UP_MIN_ROOMS) {
        const hints = await this.activityHints(due);
        const narrowed = urgent?.(due, hints);
        // The rooms the caller needs now (sliding sync: those its response shows); otherwise a room with
        // news since this DO's position there, or one the hint does not know.
        const wanted = (roomId: string): boolean => {
          if (narrowed) return narrowed.has(roomId);
          const hint = hints.get(roomId);
          return hint === undefined || hint.streamOrdering > this.store.roomCursor(roomId);
        };
        waitFor = [];
        for (const roomId of due) {
          if (wanted(roomId)) waitFor.push(roomId);
          else {
            this.catchingUp.add(roomId);
            this.backgroundQueue.add(roomId);
          }
        }
        if (!deferBackground) this.startBackgroundCatchUps(me);
      }
      if (waitFor.length > 0) await this.listenTo(waitFor, me);
      const after = Date.now();
      for (const roomId of waitFor) {
        // A room that did not answer is asked again at the next wake-up, not in a loop.
        const expiresAt = this.leases.get(roomId);
        if (expiresAt !== undefined && expiresAt - LEASE_SAFETY_MS > after) recheckAt = Math.min(recheckAt, expiresAt - LEASE_SAFETY_MS);
      }
    }
    return recheckAt;
  }

  /** Rooms asked in the background (not waited for by a sync), and those of them not asked yet. */
  private readonly catchingUp = new Set<string>();
  private readonly backgroundQueue = new Set<string>();

  /**
   * Asks the rooms left for the background. A sync calls it once it has planned its response, so that on
   * a server where the rooms share the User DO's thread (locally) their answers do not delay the response:
   * after `gate` opens (a /sync), or BACKGROUND_DELAY_MS from now.
   */
  startBackgroundCatchUps(me: string, gate?: ResponseGate): void {
    if (this.backgroundQueue.size === 0) return;
    const rooms = [...this.backgroundQueue];
    this.backgroundQueue.clear();
    const start = gate ? gate.wait() : afterTheResponse();
    this.followUp(async () => {
      try {
        await start;
        await this.listenTo(rooms, me);
      } finally {
        rooms.forEach((r) => this.catchingUp.delete(r));
      }
    });
  }

  /** /sync responses whose background work waits for them (ResponseGate). */
  private readonly responseGates = new Set<ResponseGate>();

  /** The worker built the response of a /sync whose plan said `backgroundAfterResponse`: its background
   * work starts (that of any other /sync of this user waiting too: they are rare, and it only starts sooner). */
  responseBuilt(): void {
    for (const gate of [...this.responseGates]) gate.open();
  }

  /** D1's activity rows of `rooms`; none when D1 cannot answer (then every room is waited for). */
  private async activityHints(rooms: string[]): Promise<Map<string, RoomActivity>> {
    try {
      return await roomActivityOf(this.env.DB, rooms);
    } catch (e) {
      console.warn("room activity hint unavailable", e instanceof Error ? e.message : e);
      return new Map();
    }
  }

  /** Asks rooms to push to this DO (room/fan-out.ts `listen`) and records their catch-ups, in one write. */
  private async listenTo(rooms: string[], me: string): Promise<void> {
    const answers = await Promise.all(
      rooms.map(async (roomId) => {
        try {
          const answer = await this.env.ROOMS.get(this.env.ROOMS.idFromName(roomId)).listen(me, this.store.roomCursor(roomId), CATCH_UP_LIMIT);
          return { roomId, answer };
        } catch (e) {
          // The room is unreachable: its events come with the next sync that reaches it.
          console.warn("listen failed", roomId, e instanceof Error ? e.message : e);
          return null;
        }
      }),
    );
    this.ctx.storage.transactionSync(() => {
      for (const a of answers) {
        if (!a || !a.answer.joined) continue;
        // A leave that arrived while the room answered: the room no longer counts.
        if (this.store.membershipOf(a.roomId)?.membership !== "join") continue;
        const { answer } = a;
        for (const n of answer.events) this.sources.recordRoomEvent(n);
        // A big room's receipts on the caught-up events (it pushes them to its listeners only).
        if (answer.receipts && answer.receipts.length > 0) this.store.addReceipts(a.roomId, answer.receipts);
        if (answer.gap) this.store.recordGap(a.roomId, this.stream.current());
        // Continuous or caught up: everything up to `upto` is here or on its way from the room.
        this.store.setRoomCursor(a.roomId, Math.max(answer.upto, this.store.roomCursor(a.roomId)));
        this.leases.set(a.roomId, answer.expiresAt);
      }
    });
  }

  // -------------------------------------------------------------------------------------------
  // /sync.

  /**
   * Builds the plan of a sync response. With a `since` token, nothing new, a timeout and no full_state, it
   * waits until a writer takes a new stream position (or the timeout ends) and looks again; content that
   * the filter drops does not end the wait.
   */
  async sync(request: SyncRequest): Promise<SyncPlan> {
    // A token ahead of this user's stream was not issued by it (another user's token, or one from before
    // this DO's storage was reset): answer everything since the stream's start, as an incremental sync,
    // so the client misses nothing, and acknowledge no to-device message on its word. (Synapse's tokens
    // are global, so Complement hands one user's token to another: TestTentativeEventualJoiningAfterRejecting.)
    if (request.since && request.since.position > this.stream.current()) request = { ...request, since: { ...request.since, position: 0, toDevice: 0 } };
    const since = request.since;
    const gate = new ResponseGate(this.responseGates);
    try {
      const plan = await this.syncing(
        request.userId,
        request.setPresence,
        async () => {
          if (since && this.sources.ackToDevice) {
            // The client has the response that listed these (spec: "Send-to-Device messaging", server behaviour).
            this.sources.ackToDevice(request.deviceId, since.toDevice);
          }
          const waitMs = since && !request.fullState ? Math.max(0, request.timeoutMs) : 0;
          const deadline = Date.now() + waitMs;
          for (;;) {
            const recheckAt = await this.ensureListening(request.userId, Date.now(), { deferBackground: true });
            let plan: SyncPlan | null = null;
            const left = deadline - Date.now();
            try {
              // At the token's own position (the usual long-poll, sent as soon as the last one returned) every
              // part of a plan, a range (since, now], is empty: no plan (its twenty-odd reads) until a write
              // takes a position or the wait ends. The to-device part has its own position in the token: a
              // batch cut at TO_DEVICE_LIMIT leaves it behind, and then the plan is read.
              const quiet = left > 0 && since !== null && !request.fullState && since.position === this.stream.current() && since.toDevice >= since.position;
              if (!quiet) plan = this.plan(request);
            } finally {
              this.startBackgroundCatchUps(request.userId, gate);
            }
            if (plan !== null && (!isEmpty(plan) || left <= 0)) return plan;
            // No response is being built while the sync waits; what the background brings may be the news.
            gate.open();
            await this.waitForChange(Math.min(left, Math.max(0, recheckAt - Date.now())));
          }
        },
        gate,
      );
      if (gate.hasWaiters) plan.backgroundAfterResponse = true;
      else gate.open();
      return plan;
    } catch (e) {
      gate.open();
      throw e;
    }
  }

  /**
   * Runs one sync request (/sync, or sliding sync in user/sliding-sync.ts) as presence sees it: `set_presence`
   * (absent: online) marks the user, and the presence timeout counts from the end of the last request.
   */
  async syncing<T>(userId: string, setPresence: "online" | "offline" | "unavailable", run: () => Promise<T>, gate?: ResponseGate): Promise<T> {
    this.learnUserId(userId);
    const now = Date.now();
    if (setPresence !== "offline") {
      const current = this.store.presenceOf(userId);
      if (!current || current.presence !== setPresence || now - current.lastActiveTs > CURRENTLY_ACTIVE_MS / 2) {
        if (this.setOwnPresence(userId, setPresence, undefined, now)) {
          const row = this.store.presenceOf(userId)!;
          const rooms = this.store.joinedRooms();
          // One call per room: with many rooms, after this request's response (see afterTheResponse).
          const start = rooms.length < BACKGROUND_CATCH_UP_MIN_ROOMS ? undefined : gate ? gate.wait() : afterTheResponse();
          this.followUp(async () => {
            await start;
            await fanOutPresence(this.env, userId, rooms, row);
          });
        }
      }
      // Nothing changed for a long time: re-send to the servers sharing a room (user/presence-federation.ts).
      const row = this.store.presenceOf(userId);
      if (row && row.presence !== "offline" && presencePingDue(this.presenceFederation.lastSent(), now)) {
        const rooms = this.store.joinedRooms();
        this.presenceFederation.markSent(now);
        const start = rooms.length < BACKGROUND_CATCH_UP_MIN_ROOMS ? undefined : gate ? gate.wait() : afterTheResponse();
        this.followUp(async () => {
          await start;
          await federatePresence(this.env, userId, await remoteServersIn(this.env, rooms), presenceStateOf(row));
        });
      }
    }
    this.activeSyncs += 1;
    try {
      return await run();
    } finally {
      this.activeSyncs -= 1;
      this.lastSyncEnd = Date.now();
      if (setPresence !== "offline") await this.schedulePresenceTimeout();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Presence timeout (Synapse's SYNC_ONLINE_TIMEOUT): a user whose clients stopped syncing goes offline.

  private activeSyncs = 0;
  private lastSyncEnd = 0;

  private async schedulePresenceTimeout(): Promise<void> {
    // A pending alarm that fires earlier looks again when it fires (user/alarm-clock.ts).
    await this.clock.wakeBy(Date.now() + PRESENCE_SYNC_TIMEOUT_MS);
  }

  /** The User DO's alarm (after `clock.fired()`): marks the user offline once no sync has run for
   * PRESENCE_SYNC_TIMEOUT_MS. */
  async alarm(): Promise<void> {
    const userId = this.userId();
    if (userId === undefined) return;
    const row = this.store.presenceOf(userId);
    if (!row || row.presence === "offline") return;
    const now = Date.now();
    const lastSeen = Math.max(this.lastSyncEnd, row.lastActiveTs);
    if (this.activeSyncs > 0 || now - lastSeen < PRESENCE_SYNC_TIMEOUT_MS) {
      await this.clock.wakeBy((this.activeSyncs > 0 ? now : lastSeen) + PRESENCE_SYNC_TIMEOUT_MS);
      return;
    }
    if (this.setOwnPresence(userId, "offline", undefined, now)) {
      await fanOutPresence(this.env, userId, this.store.joinedRooms(), this.store.presenceOf(userId)!);
    }
  }

  /** Everything in (since, now] for the request. Synchronous: it sees one consistent position. */
  plan(request: SyncRequest): SyncPlan {
    const Q = this.stream.current();
    const f = request.filter;
    const initial = request.since === null;
    const after = initial ? 0 : Math.min(request.since!.position, Q);
    const me = request.userId;
    const now = Date.now();

    const membershipsNow = this.store.membershipsAt(Q);
    const membershipsThen = initial ? new Map() : this.store.membershipsAt(after);
    const changes = initial ? [] : this.store.membershipChanges(after, Q);
    const rowsByRoom = new Map<string, InboxRow[]>();
    if (!initial) {
      for (const row of this.store.inboxRange(after, Q)) {
        let list = rowsByRoom.get(row.roomId);
        if (!list) rowsByRoom.set(row.roomId, (list = []));
        list.push(row);
      }
    }
    const accountData = this.sources.accountDataSince(after, me);
    const typing = this.store.typingSince(initial ? null : after, Q);
    const receipts = this.store.receiptsSince(initial ? null : after, Q);
    const marked = initial ? new Set<string>() : this.store.markedRooms(after, Q);
    // Partial-state rooms (user/partial-state-rooms.ts): a sync that does not lazy-load members does not see
    // them until their resync completes, and then sees them as newly joined (as Synapse).
    const eager = !f.lazyLoadMembers;
    const partialNow = eager ? this.partialStateRooms.partialNow() : new Set<string>();
    const becameFull = eager && !initial ? this.partialStateRooms.becameFullIn(after, Q) : new Set<string>();

    const candidates = new Set<string>();
    if (initial || request.fullState) for (const roomId of membershipsNow.keys()) candidates.add(roomId);
    for (const roomId of rowsByRoom.keys()) candidates.add(roomId);
    for (const c of changes) candidates.add(c.roomId);
    for (const roomId of Object.keys(accountData.rooms)) candidates.add(roomId);
    for (const roomId of typing.keys()) candidates.add(roomId);
    for (const roomId of receipts.keys()) candidates.add(roomId);
    for (const roomId of marked) candidates.add(roomId);
    for (const roomId of becameFull) candidates.add(roomId);

    const rooms: SyncRoomPlan[] = [];
    let ignored: Set<string> | undefined;
    for (const roomId of [...candidates].sort()) {
      if (!roomPasses(f.room, roomId)) continue;
      const m = membershipsNow.get(roomId);
      if (!m) continue;
      const changedInRange = changes.filter((c) => c.roomId === roomId);
      const joinedInRange = changedInRange.some((c) => c.membership === "join");
      const plan: SyncRoomPlan = { roomId, section: "join", accountData: [] };

      if (m.membership === "join") {
        if (partialNow.has(roomId)) continue;
        // A profile change is a join → join member event: only a membership that was something else in
        // between (left and joined again) makes the room new to the client.
        const rejoined = changedInRange.some((c) => c.membership !== "join");
        const newlyJoined = initial || membershipsThen.get(roomId)?.membership !== "join" || rejoined || becameFull.has(roomId);
        if (newlyJoined) {
          plan.timeline = { mode: "latest", upto: this.store.roomOrderingAt(roomId, Q) };
          if (!initial) plan.timeline.newlyJoined = true;
          plan.roomReceipts = true;
        } else {
          const rows = rowsByRoom.get(roomId) ?? [];
          const exact = this.exactTimeline(rows, roomId, after, Q, f, request.fullState);
          if (exact) {
            plan.timeline = exact;
            if (f.lazyLoadMembers && !f.includeRedundantMembers && !request.fullState) {
              const senders = new Set(rows.filter((r) => exact.orderings.includes(r.streamOrdering)).map((r) => r.sender));
              plan.lazyMembersSent = this.store.lazyMembersSent(request.deviceId, roomId, senders);
            }
            const pushed = this.pushedParts.get(roomId);
            if (pushed && !request.fullState && (!f.lazyLoadMembers || pushed.lazyState !== undefined) && pushedPartFits(pushed, exact)) {
              plan.pushed = { result: pushed.result };
              if (f.lazyLoadMembers) plan.pushed.lazyState = pushed.lazyState;
            }
          }
        }
      } else if (m.membership === "invite" || m.membership === "knock") {
        if (!(initial || request.fullState || changedInRange.some((c) => c.membership === m.membership))) continue;
        // Spec ("Ignoring Users"): invites from ignored users are not sent to clients.
        if (m.membership === "invite" && (ignored ??= this.sources.ignoredUsers?.() ?? new Set()).size > 0) {
          const inviter = this.store.senderAt(roomId, m.streamOrdering);
          if (inviter !== undefined && ignored.has(inviter)) continue;
        }
        plan.section = m.membership;
        rooms.push(plan);
        continue;
      } else {
        // leave or ban.
        plan.section = "leave";
        const leftInRange = changedInRange.some((c) => c.membership === m.membership);
        if (initial || (request.fullState && !leftInRange)) {
          if (!f.includeLeave) continue;
          // A forgotten room is not listed again (spec: POST /forget); a leave after the token still is
          // (below), so the user's other devices learn of it (Complement's TestRoomForget).
          if (this.store.forgottenAt(roomId) === m.eventId) continue;
          plan.timeline = { mode: "latest", upto: m.streamOrdering };
        } else if (leftInRange) {
          const wasJoined = membershipsThen.get(roomId)?.membership === "join" || joinedInRange;
          const rows = (rowsByRoom.get(roomId) ?? []).filter((r) => r.streamOrdering <= m.streamOrdering);
          plan.timeline = wasJoined
            ? (this.exactTimeline(rows, roomId, after, Q, f, request.fullState) ?? leaveOnly(m.streamOrdering, this.store.roomOrderingAt(roomId, after)))
            : leaveOnly(m.streamOrdering, this.store.roomOrderingAt(roomId, after));
        } else continue;
      }

      // Room account data.
      for (const [type, content] of Object.entries(accountData.rooms[roomId] ?? {})) {
        if (eventPasses(f.roomAccountData, { type }) && roomPasses(f.roomAccountData, roomId)) {
          plan.accountData.push({ type, content: JSON.stringify(content) });
        }
      }
      if (plan.section === "join") {
        // Ephemeral (spec: typing and receipts in `ephemeral`).
        const ephemeralRoom = roomPasses(f.ephemeral, roomId);
        const t = typing.get(roomId);
        if (t && ephemeralRoom && eventPasses(f.ephemeral, { type: "m.typing" })) plan.typing = t;
        const r = receipts.get(roomId);
        const receiptsWanted = ephemeralRoom && eventPasses(f.ephemeral, { type: "m.receipt" });
        if (r && receiptsWanted) {
          // Private receipts are only ever the user's own.
          const visible = r.filter((x) => x.receiptType !== "m.read.private" || x.userId === me);
          if (visible.length > 0) plan.receipts = visible;
        }
        if (!receiptsWanted) delete plan.roomReceipts;
        // Unread counts (spec: "Receiving notifications"; "Threading" for per-thread counts).
        const counts = this.store.unreadCounts(roomId);
        const main = counts.get(MAIN_THREAD) ?? { notification_count: 0, highlight_count: 0 };
        if (f.unreadThreadNotifications) {
          plan.unread = main;
          const threads: Record<string, UnreadCounts> = {};
          for (const [thread, c] of counts) if (thread !== MAIN_THREAD) threads[thread] = c;
          if (Object.keys(threads).length > 0) plan.unreadThreads = threads;
        } else {
          const total = { notification_count: 0, highlight_count: 0 };
          for (const c of counts.values()) {
            total.notification_count += c.notification_count;
            total.highlight_count += c.highlight_count;
          }
          plan.unread = total;
        }
        const hasNews =
          plan.timeline !== undefined || plan.accountData.length > 0 || plan.typing !== undefined || plan.receipts !== undefined || marked.has(roomId);
        if (!hasNews) continue;
        if (!plan.timeline) plan.point = this.store.roomOrderingAt(roomId, Q);
      }
      rooms.push(plan);
    }

    // Global account data.
    const globalAccountData: AccountDataEntry[] = [];
    for (const [type, content] of Object.entries(accountData.global)) {
      if (eventPasses(f.accountData, { type })) globalAccountData.push({ type, content: JSON.stringify(content) });
    }

    // Presence.
    const presence: PresenceEvent[] = [];
    for (const row of this.store.presenceSince(initial ? null : after, Q)) {
      if (eventPasses(f.presence, { type: "m.presence", sender: row.userId })) presence.push(presenceEvent(row, now));
    }

    // To-device, device lists, one-time keys.
    let toDevice: string[] = [];
    let toDevicePosition = Q;
    if (this.sources.toDeviceSince) {
      const from = initial ? 0 : Math.min(request.since!.toDevice, Q);
      const batch = this.sources.toDeviceSince(request.deviceId, from, TO_DEVICE_LIMIT);
      toDevice = batch.events;
      if (batch.limited) toDevicePosition = Math.min(batch.position, Q);
    }
    const plan: SyncPlan = {
      nextBatch: encodeSyncToken({ position: Q, toDevice: toDevicePosition }),
      position: Q,
      rooms,
      accountData: globalAccountData,
      presence,
      toDevice,
    };
    if (!initial && this.sources.deviceListsSince) {
      const d = this.sources.deviceListsSince(after, Q);
      plan.deviceLists = { changed: d.changed, left: d.left };
    }
    if (this.sources.oneTimeKeyCounts) plan.oneTimeKeyCounts = this.sources.oneTimeKeyCounts(request.deviceId);
    if (this.sources.unusedFallbackKeyTypes) plan.unusedFallbackKeyTypes = this.sources.unusedFallbackKeyTypes(request.deviceId);
    return plan;
  }

  /** The exact timeline plan of a joined room from its new inbox rows (null if the room has none). */
  private exactTimeline(rows: InboxRow[], roomId: string, after: number, upto: number, f: SyncFilterView, fullState: boolean): ExactTimelinePlan | null {
    const sinceOrdering = this.store.roomOrderingAt(roomId, after);
    if (rows.length === 0 && !fullState) return null;
    const sorted = [...rows].sort((a, b) => a.streamOrdering - b.streamOrdering);
    const timelineRoom = roomPasses(f.timeline, roomId);
    const passing = timelineRoom ? sorted.filter((r) => eventPasses(f.timeline, { type: r.type, sender: r.sender })) : [];
    const hasState = sorted.some((r) => r.stateKey !== null);
    if (passing.length === 0 && !hasState && !fullState) return null;
    const limit = f.timelineLimit;
    const last = sorted.length > 0 ? sorted[sorted.length - 1]!.streamOrdering : sinceOrdering;
    return {
      mode: "exact",
      upto: Math.max(last, sinceOrdering),
      orderings: passing.slice(Math.max(0, passing.length - limit)).map((r) => r.streamOrdering),
      // A catch-up that left out older events (docs/fan-out.md) makes the timeline limited too.
      limited: passing.length > limit || this.store.hasGap(roomId, after, upto),
      sinceOrdering,
    };
  }
}

/** How many rooms' pushed parts a User DO keeps. */
const PUSHED_PARTS_KEPT = 16;

/** Whether a pushed part is the room's answer to this exact timeline plan: the same events, the same point
 * before them, nothing left out. */
export function pushedPartFits(part: PushedSyncPart, plan: ExactTimelinePlan): boolean {
  if (plan.limited || plan.upto !== part.upto || plan.sinceOrdering !== part.sinceOrdering) return false;
  if (plan.orderings.length !== part.orderings.length) return false;
  return plan.orderings.every((o, i) => o === part.orderings[i]);
}

/** A left room whose only news is the leave itself (a rejected invite, a withdrawn knock). */
function leaveOnly(leaveOrdering: number, sinceOrdering: number): ExactTimelinePlan {
  return { mode: "exact", upto: leaveOrdering, orderings: [leaveOrdering], limited: false, sinceOrdering: Math.min(sinceOrdering, leaveOrdering) };
}

function presenceStateOf(row: PresenceState): PresenceState {
  const state: PresenceState = { presence: row.presence, lastActiveTs: row.lastActiveTs, currentlyActive: row.currentlyActive };
  if (row.statusMsg !== undefined) state.statusMsg = row.statusMsg;
  return state;
}

function presenceEvent(row: { userId: string; presence: string; lastActiveTs: number; currentlyActive: boolean; statusMsg?: string }, now: number): PresenceEvent {
  const e: PresenceEvent = {
    sender: row.userId,
    presence: row.presence,
    lastActiveAgo: Math.max(0, now - row.lastActiveTs),
    currentlyActive: row.currentlyActive && row.presence === "online" && now - row.lastActiveTs < CURRENTLY_ACTIVE_MS,
  };
  if (row.statusMsg !== undefined) e.statusMsg = row.statusMsg;
  return e;
}

function isEmpty(plan: SyncPlan): boolean {
  return (
    plan.rooms.length === 0 &&
    plan.accountData.length === 0 &&
    plan.presence.length === 0 &&
    plan.toDevice.length === 0 &&
    (plan.deviceLists === undefined || (plan.deviceLists.changed.length === 0 && plan.deviceLists.left.length === 0))
  );
}
