// The Room Durable Object: the only writer of one room's event DAG (DESIGN.md, "Who owns what"). One instance
// per room (`env.ROOMS.idFromName(roomId)`).
//
// Every write (createRoom, sendEvent, updateMembership, persistEvent) runs through one queue, so the async
// checks of one event (signatures, hashing, asking other rooms about restricted joins) never interleave
// with another write: prev_events, auth and the txn ID check always see the state the commit builds on.
// Reads do not queue; they see committed data.
//
// A write is acknowledged once committed; delivery to the User DOs runs after it, outside the queue
// (docs/fan-out.md, room/fan-out.ts): the events are pushed to the User DOs of members whose users sync
// (listeners) and to the user a membership event is about; other members read them when their user syncs
// (`listen`). A fan-out cursor makes delivery durable: whatever a crash or an unreachable User DO leaves is
// finished from alarm().
//
// Storage layout: room/schema.ts. State snapshots: room/state-groups.ts. Checks and commit: room/engine.ts.
import { DurableObject } from "cloudflare:workers";
import { checkEventAuth, namedPowerLevel, powerLevelOf } from "../protocol/auth-rules.js";
import { eventIdFor } from "../protocol/event-hashes.js";
import { MatrixError, badJson, forbidden, notFound } from "../protocol/errors.js";
import { isJsonObject, type JsonObject } from "../protocol/json.js";
import { serverNameOf, splitStateKey, type IdentifiedPdu, type Pdu } from "../protocol/pdu.js";
import { roomVersionRules } from "../protocol/room-versions.js";
import { signingKey } from "../worker/server-identity.js";
import type { Env } from "../worker/env.js";
import type { RoomEventNotification } from "./notifications.js";
import { RoomFanOut, type ListenResult } from "./room/fan-out.js";
import { inParallel } from "./in-parallel.js";
import { PUSHED_PART_MAX_RECIPIENTS, pushedSyncPart, sharedPushedParts, type PushedSyncPart } from "./room/pushed-sync-part.js";
import { buildLocalEvent } from "./room/build-event.js";
import type { ClientEvent } from "./room/client-event.js";
import { initialEventTemplates, type CreateRoomConfig } from "./room/create-room.js";
import { RoomEngine, type OutboxEntry, type PersistResult, type StateDeltaEntry, type StateEntry } from "./room/engine.js";
import { BUMP_EVENT_TYPES } from "../protocol/sliding-sync.js";
import { createLocalEvent } from "./room/local-events.js";
import { prepareMembership, remoteAuthorisingServers, sameContent, type MembershipAction, type MembershipRequest } from "./room/membership.js";
import { clientEvents, stateClientEvents, visibleState, type Reader } from "./room/reads.js";
import { errorOutcome, outcomeOf, type Outcome } from "./room/outcome.js";
import type { ReadonlyStateMap } from "./room/state-groups.js";
import type { ReceiptUpdate } from "./notifications.js";
import { RoomEphemeral } from "./room/ephemeral.js";
import { pushInputsBuilder } from "./room/push-inputs.js";
import { roomSync, strippedState, type RoomSyncRequest, type RoomSyncResult, type StrippedStateEvent } from "./room/sync-reads.js";
import {
  roomFacts,
  slidingRoom,
  slidingStickyEvents,
  spaceChildren,
  type RoomFacts,
  type SlidingRoomRequest,
  type SlidingRoomResult,
  type SlidingStickyRequest,
} from "./room/sliding-reads.js";
import { eventContext, eventForReader, messages, timestampToEvent, type ContextRequest, type ContextResult, type MessagesRequest, type MessagesResult } from "./room/timeline.js";
import { joinedMembers, roomMembers, type JoinedMember, type MembersRequest } from "./room/members.js";
import { relationsForReader, threadsForReader, type ReadEvent, type RelationsRequest, type RelationsResult, type ThreadsRequest, type ThreadsResult } from "./room/relations.js";
import { searchRoom, type RoomSearchRequest, type RoomSearchResult } from "./room/search.js";
import { upgradeSource, type UpgradeSource } from "./room/upgrade.js";
import { backfillForServer, eventAuthForServer, eventForServer, missingEventsForServer, serversInRoom, stateForServer, stateIdsForServer, wirePdu } from "./room/federation-reads.js";
import { checkSentMembership, makeMembership, sendJoinResponse, type MakeMembershipRequest, type MakeMembershipResult, type RemoteMembership } from "./room/federation-membership.js";
import { backfill, receivePdus, type PduResult, type RemoteFetch, type RemoteStream } from "./room/federation-inbound.js";
import { PARTICIPATION_PENDING, joinRemoteRoom, knockRemoteRoom, leaveRemoteRoom } from "./room/remote-join.js";
import { acceptsServerKey, forgetPendingJoin, pendingJoins, rememberPendingJoin } from "./room/pending-joins.js";
import { EventIndexWriter, type RoomActivity } from "./room/event-index.js";
import { adminRoomSummary, mediaInRoom, type AdminRoomSummary } from "./room/admin.js";
import { beginPartialState, isPartialState, partialStateServers, resyncStep } from "./room/partial-state.js";
import { DirectoryIndex } from "./room/directory-index.js";
import { keepPartialStateDeviceListEdus, missedDeviceListUpdates, sentMissedDeviceListUpdates } from "./room/partial-state-device-lists.js";
import type { QueuedEdu } from "./destination.js";
import { federationRawRequest, federationRequest } from "../federation-client/request.js";
import { federationEnabled } from "../federation-client/config.js";
import { receiveInvite, sendRemoteInvite, type InboundInvite } from "./room/federation-invites.js";
import { enqueuePdus, enqueueForRemoteServers, retryRemoteHandOver, skipHandOver } from "./room/outbound.js";
import { appservicesInterestedInRoom, enqueueForAppservices, forgetRoomAliases, retryAppserviceHandOver } from "./room/appservice-outbound.js";
import { cancelDelayedStateEvents, watchDelayedState } from "./room/delayed-state-watch.js";
import { ownServerKey } from "./room/key-identity.js";
import { accountKeyOf, accountsOfKeys } from "./account-keys.js";
import { accountKeyOfUser } from "../protocol/accounts.js";
import { verifyServerDomains, type KeyDocumentFetch } from "./room/server-domains.js";
import { verifyKeysFor } from "./room/verify-keys.js";
import { PARTICIPATION_EVENT_TYPE, serverKeyOfUser } from "../protocol/participation.js";
import { checkSentParticipation, makeParticipation, type MakeParticipationRequest } from "./room/federation-participation.js";
import type { RoomVersionRules } from "../protocol/room-versions.js";
import type { DeliveredRoomEventNotification } from "./notifications.js";
import { sharedSince, sharingAnchor } from "./room/device-list-sharing.js";

export type { CreateRoomConfig } from "./room/create-room.js";
export type { MembershipAction, MembershipRequest } from "./room/membership.js";
export type { ClientEvent } from "./room/client-event.js";
export type { PersistResult, StateDeltaEntry, StateEntry } from "./room/engine.js";
export type { Outcome } from "./room/outcome.js";

/** A message, state or redaction event from a local client. */
export interface SendEventRequest {
  sender: string;
  type: string;
  /** Present for state events. */
  stateKey?: string;
  content: JsonObject;
  /** PUT /send and /redact: the client's transaction (a retry returns the first event). */
  txn?: { deviceId: string; txnId: string };
  /** m.room.redaction: the event to redact. */
  redacts?: string;
  /** Application services' timestamp massaging (`ts=`): the event's `origin_server_ts`. */
  originServerTs?: number;
  /** MSC4354: send as a sticky event for this long (ms; the worker caps it at one hour). */
  stickyDurationMs?: number;
}

export interface SentEvent {
  eventId: string;
  streamOrdering: number;
}

export interface CreateRoomRequest {
  /** The room ID the DO is addressed by: v12 the create event's hash, before `!opaque:server`. */
  roomId: string;
  /** The signed m.room.create event (worker/client/rooms.ts builds it: it defines the room ID). */
  createEvent: Pdu;
  config: CreateRoomConfig;
}

/** A state event as the directory reads it (worker/room-summary.ts `StateEventView`). */
export interface DirectoryStateEvent {
  event_id: string;
  type: string;
  state_key: string;
  sender: string;
  origin_server_ts: number;
  content: JsonObject;
}

/** Delay before the alarm retries undelivered notifications. */
const OUTBOX_RETRY_MS = 10_000;
/** How long /members and /joined_members wait for a partial-state resync before answering what is known. */
const FULL_STATE_WAIT_MS = 60_000;
const OUTBOX_MAX_RETRY_MS = 10 * 60_000;
/** Outbox rows one retry round reads. */
const OUTBOX_ROUND_ROWS = 1000;
/** User DO calls of one big fan-out round in flight at once (docs/fan-out.md, "Big rooms"). */
const FAN_OUT_CONCURRENCY = 16;
/** The same while sends keep arriving: every call in flight is work that the next send's steps queue
 * behind on a shared thread (locally, measured: send p50 with 100 listeners 46-49 ms at 16, 22-26 ms at 4). */
const FAN_OUT_CONCURRENCY_WHILE_SENDING = 4;
/** How long a big round's next call waits at most for the room's queued writes. */
const WRITES_FIRST_MAX_MS = 100;
/** The most events a catch-up (`listen`) answers. */
const MAX_CATCH_UP = 1000;


function entries(state: ReadonlyStateMap): StateEntry[] {
  const out: StateEntry[] = [];
  for (const [key, eventId] of state) {
    const [type, stateKey] = splitStateKey(key);
    out.push({ type, stateKey, eventId });
  }
  return out;
}

/** The longest a membership request waits for its user directory write (see serialised). */
const DIRECTORY_WAIT_MS = 1_000;

/** Resolves when `promise` settles or after `ms`, whichever comes first (never rejects). */
function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([promise.then(() => undefined, () => undefined), timeout]).finally(() => {
    if (timer !== null) clearTimeout(timer);
  });
}

export class RoomDurableObject extends DurableObject<Env> {
  private engine: RoomEngine;
  private readonly eventIndex: EventIndexWriter;
  /** The room's rows of the user directory in D1 (room/directory-index.ts). */
  private readonly directory: DirectoryIndex;
  /** The directory write a commit in the write queue started, which its request waits for (serialised). */
  private directoryWrite: Promise<void> | undefined;
  private writes: Promise<unknown> = Promise.resolve();
  private alarmPending = false;
  private draining: Promise<void> | undefined;
  private drainAgain = false;
  private retryDelay = OUTBOX_RETRY_MS;
  private failedDeliveries = 0;
  /** Requests waiting for a partial-state resync to finish (fullState()). */
  private readonly fullStateWaiters = new Set<() => void>();
  private fanOut: RoomFanOut;
  /** Test hook (reached through runInDurableObject): skip delivery after commit, as a crash would. */
  deliverAfterCommit = true;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.engine = new RoomEngine(ctx.storage, env);
    this.eventIndex = new EventIndexWriter(env.DB, (p) => ctx.waitUntil(p));
    this.directory = new DirectoryIndex(() => this.engine, env.DB);
    this.fanOut = new RoomFanOut(this.engine, ctx.storage);
    ctx.blockConcurrencyWhile(async () => {
      // MSC4345 rooms need this server's key to name local users (room/key-identity.ts). A failure here
      // must not take the DO down: the request that needs the room reports it.
      await (async () => this.loadServerKey(this.engine.meta()?.rules))().catch((e) => console.warn("server key not loaded", e instanceof Error ? e.message : e));
      this.alarmPending = (await ctx.storage.getAlarm()) !== null;
      this.catchUpDirectory();
      // Deliveries left by a crash between commit and delivery, or failed ones.
      if (!this.alarmPending && this.fanOut.hasWork()) {
        await ctx.storage.setAlarm(Date.now() + OUTBOX_RETRY_MS);
        this.alarmPending = true;
      }
    });
  }

  /** At the DO's start: directory changes a crash or a failed write left, or all members of a room from
   * before the index (room/directory-index.ts), written in the background. */
  catchUpDirectory(): void {
    if (this.directoryBehind()) this.ctx.waitUntil(this.directory.update());
  }

  /** Whether the room's directory rows are behind its state; a failure to tell is logged, never thrown (after
   * a commit, an error would report a committed event as failed). */
  private directoryBehind(): boolean {
    try {
      return this.directory.behind();
    } catch (e) {
      console.warn("user directory: room not checked", e instanceof Error ? e.message : e);
      return false;
    }
  }

  /** Runs one write after the previous one finished; a MatrixError it throws becomes the error outcome. */
  private serialised<T>(fn: () => Promise<T>): Promise<Outcome<T>> {
    this.queuedWrites += 1;
    // The user directory write this write's commit started (afterCommit): the request is answered after
    // it, outside the queue, so that a search right after a join or a leave sees it; but not later than
    // DIRECTORY_WAIT_MS (a slow D1 must not hold up a join; the write goes on, and the directory is a
    // derived copy that catches up: room/directory-index.ts).
    let directory: Promise<void> | undefined;
    const body = async () => {
      this.directoryWrite = undefined;
      try {
        return await fn();
      } finally {
        directory = this.directoryWrite;
        this.directoryWrite = undefined;
      }
    };
    const run = this.writes.then(body, body).finally(() => (this.queuedWrites -= 1));
    this.writes = run.catch(() => undefined);
    return run.then(
      async (ok) => {
        if (directory) await waitAtMost(directory, DIRECTORY_WAIT_MS);
        return { ok };
      },
      errorOutcome,
    );
  }
  /** Writes queued or running (a big room's fan-out lets them go first: `fanOutRounds`). */
  private queuedWrites = 0;
  /** Deliveries asked for while a drain ran (commits during a fan-out round), and whether the last big
   * round saw any (fanOutRounds). */
  private commitsDuringDrain = 0;
  private sendsStreaming = false;

  /**
   * The one hook after a commit. It runs inside the write queue but does not wait for delivery: the write
   * is acknowledged once its storage committed (DESIGN.md), and the fan-out cursor, which only moves after
   * delivery, makes delivery durable (room/fan-out.ts). It makes sure the alarm will pick up whatever a
   * crash leaves, then starts (or extends) the delivery that runs outside the queue.
   */
  private async afterCommit(results: PersistResult[]): Promise<void> {
    // A fan-out cursor moved in memory (room/fan-out.ts finishRound) is written with this commit: before
    // any await, so that it joins the commit's write instead of costing one of its own.
    this.fanOut.storeCursor();
    const meta = this.engine.meta();
    const mayLeave = await enqueueForRemoteServers(this.ctx, this.engine, this.env, results); // room/outbound.ts: federation
    // The /event index (room/event-index.ts): in the background, never on the client's path. Events that
    // go to other servers are indexed without the first write's delay: a server that receives them may ask
    // for one by ID (GET /event) at once.
    if (meta) this.eventIndex.add(meta.roomId, results.filter((r) => !r.duplicate).map((r) => r.eventId), this.activityOf(results), mayLeave);
    if (DirectoryIndex.concerns(results)) {
      // room/directory-index.ts: started now, waited for by the request outside the queue (serialised).
      this.directoryWrite = this.directory.update();
      this.ctx.waitUntil(this.directoryWrite);
    } else if (this.directoryBehind()) {
      // Members changed without a member event (a state resolution), or an earlier write failed.
      this.ctx.waitUntil(this.directory.update());
    }
    await enqueueForAppservices(this.ctx, this.engine, this.env, results); // room/appservice-outbound.ts
    this.ctx.waitUntil(cancelDelayedStateEvents(this.engine, this.env, results)); // room/delayed-state-watch.ts (MSC4140)
    if (!results.some((r) => r.fanOut)) return;
    if (isPartialState(this.engine)) await this.tellPartialStateJoins(results);
    if (!this.alarmPending) {
      this.alarmPending = true;
      // Set before the delivery is started: written together with the commit. Never later than an alarm
      // already set (a partial-state resync step or a federation retry due sooner must not wait 10 s).
      await this.armAlarmWithin(this.retryDelay);
    }
    if (this.deliverAfterCommit) void this.startDelivery();
  }

  /**
   * Local users who join while the room is in partial state (the remote join itself, or a join after it)
   * are told, before their join is answered, so that their eager syncs leave the room out until the resync
   * completes (user/partial-state-rooms.ts; as Synapse).
   */
  private async tellPartialStateJoins(results: PersistResult[]): Promise<void> {
    const roomId = this.engine.meta()!.roomId;
    for (const r of results) {
      if (!r.fanOut) continue;
      const pdu = this.engine.events.pdu(r.eventId);
      if (!pdu || pdu.type !== "m.room.member" || typeof pdu.state_key !== "string" || !this.engine.isLocalUser(pdu.state_key)) continue;
      if (!isJsonObject(pdu.content) || pdu.content.membership !== "join") continue;
      try {
        await this.userStub(pdu.state_key).roomPartialState(roomId, r.eventId);
      } catch (e) {
        console.warn("partial state: could not tell", pdu.state_key, e instanceof Error ? e.message : e);
      }
    }
  }

  /** The resync completed: the local members' eager syncs show the room from now on (see above). */
  private async tellFullState(): Promise<void> {
    const meta = this.engine.meta();
    if (!meta) return;
    const members = this.engine.membersWith("join").filter((u) => this.engine.isLocalUser(u));
    const memberCount = this.engine.memberCount("join");
    await Promise.all(
      members.map(async (userId) => {
        const joinEventId = this.engine.membershipOf(userId)?.eventId;
        if (joinEventId === undefined) return;
        try {
          await this.userStub(userId).roomFullState(meta.roomId, joinEventId, this.engine.events.pdu(joinEventId)?.origin_server_ts, memberCount);
        } catch (e) {
          console.warn("partial state: could not tell", userId, "that the resync completed", e instanceof Error ? e.message : e);
        }
      }),
    );
  }

  /** After a resync: our users' device list updates for the servers that missed them while the room was
   * partial (room/partial-state-device-lists.ts). Servers whose queue could not take them keep them for
   * the next resync's end; a failure is logged. */
  private async sendMissedDeviceListUpdates(): Promise<void> {
    const missed = missedDeviceListUpdates(this.engine);
    if (!missed) return;
    const handed: string[] = [];
    await Promise.all(
      missed.servers.map(async (server) => {
        try {
          await this.env.DESTINATIONS.get(this.env.DESTINATIONS.idFromName(server)).enqueue(server, [], missed.edus);
          handed.push(server);
        } catch (e) {
          console.warn("partial state: missed device list updates not queued for", server, e instanceof Error ? e.message : e);
        }
      }),
    );
    sentMissedDeviceListUpdates(this.engine, handed);
  }

  /**
   * A local member's device list EDUs (worker/device-lists.ts), kept while the room is partial for the
   * servers its resync may show missed them (room/partial-state-device-lists.ts). In the write queue, so
   * that none falls between the resync's last step and its end.
   */
  async keepPartialStateDeviceListEdus(userId: string, edus: QueuedEdu[]): Promise<boolean> {
    const outcome = await this.serialised(async () => keepPartialStateDeviceListEdus(this.engine, userId, edus));
    return "ok" in outcome ? outcome.ok : false;
  }

  /** The room's newest activity after a commit, for D1's `room_activity` hint (room/event-index.ts). */
  private activityOf(results: PersistResult[]): RoomActivity | undefined {
    let activity: RoomActivity | undefined;
    const now = Date.now();
    for (const r of results) {
      if (!r.fanOut) continue;
      // A fresh commit's result carries the event's type and time; a duplicate's does not (read the row).
      const pdu = r.stored ? undefined : this.engine.events.pdu(r.eventId);
      const type = r.stored?.type ?? pdu?.type;
      const ts = r.stored?.originServerTs ?? pdu?.origin_server_ts;
      // bump_stamp is the event's time capped at its arrival, as the User DO records it (user/sliding-sync.ts).
      const bumpTs = type !== undefined && BUMP_EVENT_TYPES.has(type) ? Math.min(typeof ts === "number" ? ts : now, now) : null;
      activity = {
        streamOrdering: Math.max(r.streamOrdering, activity?.streamOrdering ?? 0),
        bumpTs: bumpTs === null ? (activity?.bumpTs ?? null) : Math.max(bumpTs, activity?.bumpTs ?? 0),
      };
    }
    return activity;
  }

  /**
   * Delivery outside the write queue, one drain at a time. Commits during a drain only ask for another
   * round, so events that pile up meanwhile go out together: one User DO call per recipient and round.
   */
  private startDelivery(): Promise<void> {
    if (this.draining) {
      this.drainAgain = true;
      this.commitsDuringDrain += 1;
      return this.draining;
    }
    const run = (async () => {
      do {
        this.drainAgain = false;
        await this.fanOutRounds();
      } while (this.drainAgain);
    })()
      .catch((e) => console.warn("room event delivery failed; the alarm retries it", e instanceof Error ? e.message : e))
      .finally(() => (this.draining = undefined));
    this.draining = run;
    this.ctx.waitUntil(run);
    return run;
  }

  private userStub(userId: string) {
    return this.env.USERS.get(this.env.USERS.idFromName(this.engine.keyIdentity().local(userId)));
  }

  // MSC4345 rooms name this server's users by its server key (room/key-identity.ts): IDs from the worker
  // and the User DOs are translated on the way in, notifications to User DOs on the way out.

  /** Loads this server's key when the room (being created, or stored) needs it; in MSC4348 rooms also
   * the account keys of the local accounts among the members (room/key-identity.ts). */
  private async loadServerKey(rules: RoomVersionRules | undefined): Promise<void> {
    if (rules?.eventFormat.serverKeyIdentity && this.engine.ownServerKey === undefined) {
      this.engine.ownServerKey = ownServerKey(await signingKey(this.env));
    }
    if (rules?.eventFormat.accountKeyIdentity && this.engine.meta()) {
      const keys = ["join", "invite", "knock"].flatMap((m) => this.engine.membersWith(m)).map(accountKeyOfUser).filter((k) => k !== undefined);
      for (const a of await accountsOfKeys(this.env, keys)) this.engine.localAccounts.add(a.userId, a.accountKey, a.key);
    }
  }

  /**
   * MSC4348 rooms: loads (generating on first use, durable-objects/account-keys.ts) the account keys of
   * the local accounts a request names, so that the room names them `@<account key>` and their events are
   * signed by their keys. Other rooms: nothing.
   */
  private async loadAccounts(rules: RoomVersionRules | undefined, userIds: (string | undefined)[], fresh = false): Promise<void> {
    if (!rules?.eventFormat.accountKeyIdentity) return;
    for (const userId of userIds) {
      if (userId === undefined || !userId.startsWith("@") || serverNameOf(userId) !== this.env.SERVER_NAME) continue;
      // Membership changes read the key afresh: a key released (exported away) must not sign a join.
      if (!fresh && this.engine.localAccounts.has(userId)) continue;
      const account = await accountKeyOf(this.env, userId);
      this.engine.localAccounts.add(userId, account.accountKey, account.key);
    }
  }

  private inRoom(userId: string): string {
    return this.engine.keyIdentity().inRoom(userId);
  }

  private readerInRoom<R extends { userId: string }>(reader: R): R {
    const userId = this.inRoom(reader.userId);
    return userId === reader.userId ? reader : { ...reader, userId };
  }

  /** A notification as the recipient's User DO knows the users in it (account IDs). */
  private toLocal<N extends RoomEventNotification>(n: N): N {
    const ids = this.engine.keyIdentity();
    if (!ids.active) return n;
    const out: N = { ...n, sender: ids.local(n.sender) };
    if (n.stateKey !== undefined) out.stateKey = ids.local(n.stateKey);
    const delivered = out as unknown as DeliveredRoomEventNotification;
    if (typeof delivered.recipient === "string") delivered.recipient = ids.local(delivered.recipient);
    return out;
  }

  /**
   * Hands out the events after the fan-out cursor, round by round, to the listeners and the users they
   * are about (room/fan-out.ts). One call per recipient carries the round's events for them in commit
   * order. A failed call, and every later event for a user with failed calls waiting, goes to the outbox
   * for the alarm, so a user's events arrive in order.
   */
  private async fanOutRounds(): Promise<void> {
    for (;;) {
      const round = this.fanOut.nextRound();
      if (!round) return;
      const waiting = this.fanOut.usersWithRetries();
      const undelivered = new Map<string, RoomEventNotification[]>();
      const withPushInputs = pushInputsBuilder(this.engine); // room/push-inputs.ts: unread counts in the User DO
      // A round for many listeners (docs/fan-out.md, "Big rooms") keeps at most FAN_OUT_CONCURRENCY calls in
      // flight and lets the room's queued writes go first between calls: a send then waits for a few
      // deliveries, not for the whole round, and the events committed meanwhile go out together in the next
      // round (one call per listener for all of them). Small rounds go out at once, as before.
      const recipients = [...round.byUser];
      const big = recipients.length > FAN_OUT_CONCURRENCY;
      // Rounds carry the room's part of the /sync response they wake (room/pushed-sync-part.ts): built for
      // each recipient of a small round, shared by the recipients of a big one.
      const shared = recipients.length <= PUSHED_PART_MAX_RECIPIENTS ? undefined : sharedPushedParts(this.engine);
      // While sends keep arriving (during this round or the last one), fewer calls are in flight: the
      // round takes longer, so more events go out together in the next one, and each send's steps wait
      // behind fewer deliveries. A lone send (the wake of waiting long-polls) goes out at full width.
      const commitsAtStart = this.commitsDuringDrain;
      const sending = () => this.sendsStreaming || this.commitsDuringDrain !== commitsAtStart;
      let inFlight = 0;
      const freed: (() => void)[] = [];
      await inParallel(recipients, big ? FAN_OUT_CONCURRENCY : recipients.length, async ([userId, list]) => {
        if (waiting.has(userId)) {
          undelivered.set(userId, list);
          return;
        }
        while (big && inFlight >= FAN_OUT_CONCURRENCY_WHILE_SENDING && sending()) await new Promise<void>((resolve) => freed.push(resolve));
        inFlight += 1;
        try {
          if (big && this.queuedWrites > 0) await this.writesFirst();
          const part = this.pushedPart(() => (shared ? shared(userId, list) : pushedSyncPart(this.engine, userId, list)));
          await this.userStub(userId).onRoomEvents(list.map((notification) => this.toLocal(withPushInputs({ id: 0, userId, notification }))), part);
        } catch (e) {
          this.failedDeliveries += 1;
          undelivered.set(userId, list);
          console.warn("room event notification failed; the alarm retries it", userId, e instanceof Error ? e.message : e);
        } finally {
          inFlight -= 1;
          freed.shift()?.();
        }
      });
      if (big) this.sendsStreaming = this.commitsDuringDrain !== commitsAtStart;
      this.fanOut.finishRound(round, undelivered);
      // At the head: no need to ask for a next round (its three queries) to learn that there is none.
      if (round.upto >= this.engine.maxStreamOrdering()) return;
    }
  }

  /** Waits for the writes queued now (not for later ones), at most WRITES_FIRST_MAX_MS: a write that waits
   * for the fan-out itself (purge) or for another server must not stall delivery. */
  private async writesFirst(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | null = null;
    await Promise.race([this.writes, new Promise<void>((resolve) => (timer = setTimeout(resolve, WRITES_FIRST_MAX_MS)))]);
    if (timer !== null) clearTimeout(timer);
  }

  /** The part a push carries (room/pushed-sync-part.ts); a failure only means the woken sync asks the room. */
  private pushedPart(build: () => PushedSyncPart | undefined): PushedSyncPart | undefined {
    try {
      return build();
    } catch (e) {
      console.warn("pushed sync part not built", e instanceof Error ? e.message : e);
      return undefined;
    }
  }

  /** Retries the outbox: one call per user with their waiting notifications, oldest first, until it is
   * empty or only users whose retry failed now are left. */
  private async retryOutbox(): Promise<void> {
    const failedUsers = new Set<string>();
    for (;;) {
      const byUser = new Map<string, OutboxEntry[]>();
      for (const entry of this.engine.outbox(undefined, OUTBOX_ROUND_ROWS)) {
        if (failedUsers.has(entry.userId)) continue;
        let list = byUser.get(entry.userId);
        if (!list) byUser.set(entry.userId, (list = []));
        list.push(entry);
      }
      if (byUser.size === 0) return;
      const withPushInputs = pushInputsBuilder(this.engine);
      await Promise.all(
        [...byUser].map(async ([userId, entries]) => {
          try {
            await this.userStub(userId).onRoomEvents(entries.map((e) => this.toLocal(withPushInputs(e))));
            this.engine.deleteOutbox(entries.map((e) => e.id));
          } catch (e) {
            this.failedDeliveries += 1;
            failedUsers.add(userId);
            this.engine.markOutboxAttempt(entries.map((e) => e.id));
            console.warn("room event notification retry failed", userId, e instanceof Error ? e.message : e);
          }
        }),
      );
    }
  }

  /** Makes sure the alarm fires within `ms` (the earliest of all who ask wins). */
  private async armAlarmWithin(ms: number): Promise<void> {
    const at = Date.now() + ms;
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }

  /** Retries failed deliveries and finishes a fan-out a crash interrupted (DESIGN.md: retries survive
   * restarts), with exponential back-off while deliveries keep failing; steps a partial-state resync. */
  override async alarm(): Promise<void> {
    // A partial-state join's background resync: one bounded step per alarm (room/partial-state.ts). Only
    // its steps that change the room run in the write queue; waiting for other servers does not.
    const wasPartial = isPartialState(this.engine);
    const step = await resyncStep(this.engine, this.remote, this.remoteStream, async (fn) => {
      const outcome = await this.serialised(fn);
      if ("ok" in outcome) return outcome.ok;
      throw new MatrixError(500, outcome.error.errcode, outcome.error.error);
    }).then((ok) => ({ ok }), errorOutcome);
    const nextStep: number | null = "ok" in step ? step.ok : 5_000;
    if (wasPartial && !isPartialState(this.engine)) {
      await this.tellFullState();
      // The members the resync brought, findable before /members is answered (room/directory-index.ts).
      await this.directory.update(true);
      await this.sendMissedDeviceListUpdates();
    }
    // After the local members were told (their syncs, the members the resync brought as room-mates), so
    // that a request that waited for the resync (/members, Complement's sign of completion) is followed by
    // a server that already tracks those members' device lists.
    if (nextStep === null) for (const wake of [...this.fullStateWaiters]) wake();
    if (!("ok" in step)) console.warn("partial-state resync step failed; retried", step.error.error);
    await this.runAlarmTasks();
    if (nextStep !== null) await this.armAlarmWithin(nextStep);
  }

  private async runAlarmTasks(): Promise<void> {
    this.alarmPending = false;
    await retryRemoteHandOver(this.ctx, this.engine, this.env); // room/outbound.ts: federation
    await retryAppserviceHandOver(this.ctx, this.engine, this.env); // room/appservice-outbound.ts
    this.failedDeliveries = 0;
    await this.draining;
    await this.retryOutbox();
    await this.startDelivery();
    this.fanOut.storeCursor();
    if (this.fanOut.hasWork()) {
      this.retryDelay = this.failedDeliveries > 0 ? Math.min(this.retryDelay * 2, OUTBOX_MAX_RETRY_MS) : OUTBOX_RETRY_MS;
      this.alarmPending = true;
      await this.armAlarmWithin(this.retryDelay);
    } else {
      this.retryDelay = OUTBOX_RETRY_MS;
    }
  }

  /**
   * A local member's User DO asks to be pushed every new event of the room while its user syncs, and for
   * the events after its position `from` when the room has not been pushing to it (room/fan-out.ts).
   */
  listen(userId: string, from: number, limit: number): ListenResult {
    const result = this.fanOut.listen(this.inRoom(userId), from, Math.max(0, Math.min(limit, MAX_CATCH_UP)));
    if (result.joined) {
      result.events = result.events.map((n) => this.toLocal(n));
      // Receipts were pushed to listeners only: the ones this member missed come with its catch-up.
      if (!result.continuous && this.ephemeral.pushesToListenersOnly()) result.receipts = this.ephemeral.publicReceiptsChangedSince(from);
    }
    return result;
  }

  // -------------------------------------------------------------------------------------------
  // Writes.

  /**
   * Creates the room (spec: POST /createRoom): checks the whole list of initial events against the auth
   * rules first (400 M_INVALID_ROOM_STATE naming the failing event, nothing stored), then persists the
   * create event and the others in the spec's order. Fails with M_ROOM_IN_USE if this DO already holds a
   * room (the worker then derives another room ID).
   */
  async createRoom(request: CreateRoomRequest): Promise<Outcome<{ roomId: string; eventIds: string[] }>> {
    const outcome = await this.serialised(async () => {
      const { roomId, createEvent, config } = request;
      if (this.engine.meta()) throw new MatrixError(400, "M_ROOM_IN_USE", "Room already exists");
      const version = createEvent.content?.room_version;
      const rules = typeof version === "string" ? roomVersionRules(version) : undefined;
      if (!rules) throw new MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", "Unsupported room version");
      await this.loadServerKey(rules);
      // MSC4348: the creator and the local invitees are named by their account keys already.
      if (rules.eventFormat.accountKeyIdentity) {
        const keys = [config.creator, ...config.invite].map(accountKeyOfUser).filter((k) => k !== undefined);
        for (const a of await accountsOfKeys(this.env, keys)) this.engine.localAccounts.add(a.userId, a.accountKey, a.key);
      }
      const create = { ...createEvent, event_id: await eventIdFor(createEvent, rules) } as IdentifiedPdu;

      // Dry run: build every event on the simulated state and check it, so a bad request stores nothing.
      const key = await signingKey(this.env);
      const state = new Map<string, IdentifiedPdu>([["m.room.create\u0000", create]]);
      const lookup = (type: string, sk: string) => state.get(`${type}\u0000${sk}`);
      const createCheck = checkEventAuth(create, rules, lookup);
      if (!createCheck.allowed) throw new MatrixError(400, "M_INVALID_ROOM_STATE", `m.room.create: ${createCheck.reason}`);
      const built: Pdu[] = [];
      let prev = create;
      for (const template of initialEventTemplates(config, rules)) {
        const event = await buildLocalEvent(template, {
          roomId,
          rules,
          serverName: this.env.SERVER_NAME,
          key,
          prevEvents: [prev],
          state: lookup,
          now: Date.now(),
          accountKey: this.engine.localAccounts.signingKeyOf(template.sender),
        });
        const identified = { ...event.pdu, event_id: event.eventId } as IdentifiedPdu;
        const check = checkEventAuth(identified, rules, lookup);
        if (!check.allowed) {
          const what = template.stateKey ? `${template.type} (${template.stateKey})` : template.type;
          throw new MatrixError(400, "M_INVALID_ROOM_STATE", `${what}: ${check.reason}`);
        }
        state.set(`${template.type}\u0000${template.stateKey ?? ""}`, identified);
        built.push(event.pdu);
        prev = identified;
      }

      const results: PersistResult[] = [await this.engine.persistEvent(createEvent, { origin: "local" }, roomId)];
      try {
        for (const pdu of built) results.push(await this.engine.persistEvent(pdu, { origin: "local" }));
      } finally {
        await this.afterCommit(results);
      }
      return { roomId, eventIds: results.map((r) => r.eventId) };
    });
    // The creator's join is in their room list before the answer (see `membershipDelivered`).
    if ("ok" in outcome) await this.membershipDelivered(this.engine.maxStreamOrdering());
    return outcome;
  }

  /**
   * A message, state event or redaction from a local client. State events that repeat the current one
   * (same sender and content) return the existing event, as Synapse does. Redactions need the redact
   * level unless the sender redacts their own event.
   */
  async sendEvent(request: SendEventRequest): Promise<Outcome<SentEvent>> {
    const outcome = await this.serialised(async () => {
      const meta = this.engine.meta();
      if (!meta) throw forbidden("Unknown room");
      await this.loadAccounts(meta.rules, [request.sender, request.stateKey], request.type === "m.room.member");
      const sender = this.inRoom(request.sender);
      const { type, content } = request;
      // A state key naming a local user (m.room.member) names them as the room does.
      const stateKey = request.stateKey?.startsWith("@") ? this.inRoom(request.stateKey) : request.stateKey;
      const txn = request.txn ? { userId: sender, deviceId: request.txn.deviceId, txnId: request.txn.txnId } : undefined;
      if (txn) {
        const existing = this.engine.txnEventId(txn);
        if (existing !== undefined) return { eventId: existing, streamOrdering: this.engine.eventMeta(existing)!.streamOrdering };
      }

      if (type === "m.room.member" && stateKey !== undefined) {
        const membership = content.membership;
        const action = membershipActionFor(membership);
        return this.membershipLocked({ sender, target: stateKey, action, content });
      }

      if (stateKey !== undefined) {
        const current = this.engine.currentStateEvent(type, stateKey);
        if (current && current.sender === sender && sameContent(current.content, content)) {
          return { eventId: current.event_id, streamOrdering: this.engine.eventMeta(current.event_id)!.streamOrdering };
        }
      }

      let redacts = request.redacts;
      if (type === "m.room.redaction") {
        if (redacts === undefined && typeof content.redacts === "string") redacts = content.redacts;
        if (redacts === undefined) throw badJson("A redaction needs the event to redact");
        this.checkRedactionAllowed(sender, redacts);
      }

      const template = {
        type,
        stateKey,
        sender,
        content,
        redacts,
        originServerTs: request.originServerTs,
        ...(request.stickyDurationMs !== undefined ? { stickyDurationMs: request.stickyDurationMs } : {}),
      };
      const result = await createLocalEvent(this.engine, this.env, template, txn);
      await this.afterCommit([result]);
      return { eventId: result.eventId, streamOrdering: result.streamOrdering };
    });
    if ("ok" in outcome && request.type === "m.room.member") await this.membershipDelivered(outcome.ok.streamOrdering);
    return outcome;
  }

  /** Client-side redaction check (Synapse's): the redact level, or one's own event. From room v3 on the
   * auth rules no longer check redactions; the same condition is applied again when the redaction is
   * delivered (engine.ts, `redactionAllowedAtDelivery`). */
  private checkRedactionAllowed(sender: string, redacts: string): void {
    const meta = this.engine.meta()!;
    const target = this.engine.events.pdu(redacts);
    if (target && target.type === "m.room.create") throw forbidden("You cannot redact the creation event");
    if (target && target.room_id !== undefined && target.room_id !== meta.roomId) throw badJson("Cannot redact event from a different room");
    const lookup = this.engine.currentLookup;
    if (powerLevelOf(sender, lookup, meta.rules) >= namedPowerLevel("redact", lookup, meta.rules)) return;
    if (target && target.sender !== sender) throw forbidden("You don't have permission to redact events");
  }

  /** join, invite, leave, kick, ban, unban, knock by a local user (spec: "Room membership"). */
  async updateMembership(request: MembershipRequest): Promise<Outcome<SentEvent>> {
    const outcome = await this.serialised(async () => {
      await this.loadAccounts(this.engine.meta()?.rules, [request.sender, request.target], true);
      return this.membershipLocked({ ...request, sender: this.inRoom(request.sender), target: this.inRoom(request.target) });
    });
    if ("ok" in outcome) await this.membershipDelivered(outcome.ok.streamOrdering);
    // MSC4345: a join waiting for this server's acceptance is made again when it comes (room/pending-joins.ts).
    if (request.action === "join" && request.sender === request.target) {
      if ("error" in outcome && outcome.error.errcode === PARTICIPATION_PENDING) await rememberPendingJoin(this.ctx.storage, request);
      else if ("ok" in outcome) await forgetPendingJoin(this.ctx.storage, request.target);
    }
    return outcome;
  }

  /** MSC4345: the joins kept while this server's participation was pending, made again now that an
   * acceptance of its key arrived. One still pending (the cue was not the acceptance) stays kept. */
  private async completePendingJoins(): Promise<void> {
    for (const request of await pendingJoins(this.ctx.storage)) {
      const outcome = await this.updateMembership(request);
      if ("error" in outcome && outcome.error.errcode !== PARTICIPATION_PENDING) await forgetPendingJoin(this.ctx.storage, request.target);
    }
  }

  /**
   * A membership change answers once the fan-out has handed it out (after the commit, outside the write
   * queue): the user it is about has it in their room list (GET /joined_rooms, the rooms of their next
   * /sync) when their request returns. Messages answer right after the commit (docs/fan-out.md).
   */
  private async membershipDelivered(streamOrdering: number): Promise<void> {
    while (this.draining && this.fanOut.cursor() < streamOrdering) await this.draining;
  }

  private async membershipLocked(request: MembershipRequest): Promise<SentEvent> {
    const meta = this.engine.meta();
    const outOfBand = this.engine.outOfBandMembership(request.target);
    const pendingOutOfBand = (outOfBand?.membership === "invite" || outOfBand?.membership === "knock") && (!meta || this.engine.membershipOf(request.target) === null);
    const invitedOutOfBand = pendingOutOfBand && outOfBand?.membership === "invite";
    // Rejecting an invite, or withdrawing a knock, in a room this server is not in.
    if (pendingOutOfBand && request.action === "leave" && request.sender === request.target) return this.rejectOutOfBandInvite(request, outOfBand!.eventId);
    if (invitedOutOfBand && request.action === "join") {
      // Join through the inviting server first: it is in the room.
      const inviter = this.engine.events.pdu(outOfBand!.eventId)?.sender;
      if (inviter) request = { ...request, servers: [serverNameOf(inviter), ...(request.servers ?? [])] };
    }
    if (request.action === "knock" && this.remote && !meta && (request.servers ?? []).some((s) => s !== this.env.SERVER_NAME)) {
      // Knocking on a room this server is not in: through a resident server, kept out of band.
      const knock = await knockRemoteRoom(this.env.SERVER_NAME, await signingKey(this.env), this.remote, {
        roomId: request.roomId ?? "",
        userId: request.target,
        servers: request.servers ?? [],
        reason: request.reason,
      });
      const ordering = this.engine.storeOutOfBandMembership(request.roomId ?? "", knock.roomVersion, knock.event, knock.eventId, knock.strippedState);
      await this.notifyOutOfBand({ roomId: request.roomId ?? "", streamOrdering: ordering, eventId: knock.eventId, type: "m.room.member", stateKey: request.target, sender: request.target, membership: "knock" });
      return { eventId: knock.eventId, streamOrdering: ordering };
    }
    // A room held with partial state cannot tell whether a join is allowed (members are missing): the join
    // goes through a resident as a second partial join, as Synapse's `_should_perform_remote_join` does
    // (Complement msc3902 "Leave during resync/works after a second partial join"); the resync goes on.
    // A member already joined (a profile change) stays local. The resident's servers are added to those
    // named only while this server is in the room: once its last member left, a join is a join from
    // outside, through the servers named, as Synapse's (a restricted join through a server that cannot
    // authorise it must fail: Complement TestRestrictedRoomsRemoteJoinFailOver, whose rejoin comes while
    // the room it left is still partial here).
    const partial = request.action === "join" && meta !== null && isPartialState(this.engine) && this.engine.membershipOf(this.inRoom(request.target))?.membership !== "join";
    if (partial && this.hasLocalJoinedMember()) request = { ...request, servers: [...new Set([...(request.servers ?? []), ...partialStateServers(this.engine)])] };
    // In the room, a restricted join that no local member may authorise goes through a server whose member may.
    const authorisingServers = !partial && request.action === "join" && meta && this.hasLocalJoinedMember() ? remoteAuthorisingServers(this.engine, request.target) : undefined;
    if (authorisingServers) request = { ...request, servers: authorisingServers };
    if (request.action === "join" && this.remote && (!meta || !this.hasLocalJoinedMember() || authorisingServers || partial) && (request.servers ?? []).some((s) => s !== this.env.SERVER_NAME)) {
      // This server is not in the room: join through a resident server (room/remote-join.ts). The client's
      // extra keys come first; the server's own keys win.
      const content: JsonObject = { ...(request.content ?? {}) };
      delete content.join_authorised_via_users_server;
      if (request.profile?.displayname !== undefined) content.displayname = request.profile.displayname;
      if (request.profile?.avatar_url !== undefined) content.avatar_url = request.profile.avatar_url;
      if (request.reason !== undefined) content.reason = request.reason;
      const key = await signingKey(this.env);
      // The room's version is known only from the resident's answer: an MSC4345 room needs our server
      // key from the first verified event on (harmless in other rooms: only key-form IDs use it).
      this.engine.ownServerKey ??= ownServerKey(key);
      const { result, partialStateServers } = await joinRemoteRoom(this.engine, this.env.SERVER_NAME, key, this.remote, {
        roomId: request.roomId ?? "",
        userId: request.target,
        servers: request.servers ?? [],
        content,
        // MSC4348 rooms: the account key names and signs for the user (room/key-identity.ts).
        accountKey: this.engine.localAccounts.signingKeyOf(request.target),
        accountFor: async (userId) => {
          const account = await accountKeyOf(this.env, userId);
          this.engine.localAccounts.add(userId, account.accountKey, account.key);
          return account;
        },
        // A server in the room has its full state: no partial-state join.
        partialState: authorisingServers === undefined,
        // A failed prefetch is not an error: the answer's check fetches again and reports.
        prefetchKeys: (server) => void verifyKeysFor(this.env, server).catch(() => undefined),
      });
      // The resident has our join from send_join and passes it on: it is not sent again.
      skipHandOver(this.engine, result.eventId);
      if (partialStateServers) {
        beginPartialState(this.engine, result.eventId, partialStateServers, this.env.SERVER_NAME);
        await this.armAlarmWithin(0);
      }
      // The room exists now: in an MSC4345 room the user is named by our key.
      this.engine.setForgotten(this.inRoom(request.target), false);
      this.verifyServerDomainsSoon();
      await this.afterCommit([result]);
      return { eventId: result.eventId, streamOrdering: result.streamOrdering };
    }
    if (!meta) {
      if (request.action === "join") throw notFound("No known servers");
      if (request.action === "leave") throw notFound("Not a known room");
      throw forbidden("Unknown room");
    }
    if (request.action === "invite" && !this.engine.isLocalUser(request.target)) {
      if (!this.remote) throw new MatrixError(403, "M_FORBIDDEN", "Federation is disabled on this server");
      if (meta.rules.eventFormat.serverKeyIdentity) {
        // MSC4345 rooms name members by server key: a domain-form ID can never be a member. Invites to
        // other servers' key-form users are not built yet (the invitee's server is reached through its
        // participation, and co-signs under its key): such users join the room themselves.
        if (serverKeyOfUser(request.target) === undefined) throw new MatrixError(400, "M_INVALID_PARAM", "This room names users by their server key (@user:<server key>)");
        throw forbidden("Invites to users of other servers are not supported in this room version yet: the user can join (the join rules permitting)");
      }
      const current = this.engine.membershipOf(request.target)?.membership;
      if (current === "join" || current === "ban") throw forbidden(`${request.target} is ${current === "join" ? "already in the room" : "banned from the room"}`);
      // The client's content (PUT /state/m.room.member, createRoom's is_direct) is kept; the membership is set.
      const content: JsonObject = { ...(request.content ?? {}) };
      delete content.membership;
      if (request.reason !== undefined) content.reason = request.reason;
      const result = await sendRemoteInvite(this.engine, this.env.SERVER_NAME, await signingKey(this.env), this.remote, { sender: request.sender, target: request.target, content });
      await this.afterCommit([result]);
      return { eventId: result.eventId, streamOrdering: result.streamOrdering };
    }
    const prepared = await prepareMembership(this.engine, request, (roomId, userId) =>
      this.env.ROOMS.get(this.env.ROOMS.idFromName(roomId)).isJoined(userId),
    );
    if ("existingEventId" in prepared) {
      return { eventId: prepared.existingEventId, streamOrdering: this.engine.eventMeta(prepared.existingEventId)!.streamOrdering };
    }
    const result = await createLocalEvent(this.engine, this.env, prepared.template);
    // A join (again) undoes /forget: the room shows up for the user again.
    if (request.action === "join" || request.action === "invite" || request.action === "knock") {
      this.engine.setForgotten(request.target, false);
    }
    await this.afterCommit([result]);
    return { eventId: result.eventId, streamOrdering: result.streamOrdering };
  }

  /**
   * Rejects an invite to a room this server is not in: a leave through the inviting server (make_leave,
   * send_leave), or, when that server cannot be reached, a leave made and kept here only (Synapse's
   * "locally generated out-of-band leave"), so the user is never stuck with the invite.
   */
  private async rejectOutOfBandInvite(request: MembershipRequest, inviteEventId: string): Promise<SentEvent> {
    const invite = this.engine.events.pdu(inviteEventId)!;
    const identity = this.engine.roomIdentity()!;
    const key = await signingKey(this.env);
    const servers = [serverNameOf(invite.sender), ...(request.servers ?? [])];
    const remote = this.remote ? await leaveRemoteRoom(this.env.SERVER_NAME, key, this.remote, { roomId: identity.roomId, userId: request.target, servers, reason: request.reason }) : null;
    let leave = remote;
    if (!leave) {
      const content: JsonObject = { membership: "leave" };
      if (request.reason !== undefined) content.reason = request.reason;
      const built = await buildLocalEvent(
        { type: "m.room.member", stateKey: request.target, sender: request.target, content },
        { roomId: identity.roomId, rules: identity.rules, serverName: this.env.SERVER_NAME, key, prevEvents: [invite], state: () => undefined, now: Date.now() },
      );
      leave = { event: built.pdu, eventId: built.eventId };
    }
    const ordering = this.engine.storeOutOfBandMembership(identity.roomId, identity.rules.id, leave.event, leave.eventId, []);
    await this.notifyOutOfBand({ roomId: identity.roomId, streamOrdering: ordering, eventId: leave.eventId, type: "m.room.member", stateKey: request.target, sender: request.target, membership: "leave" });
    return { eventId: leave.eventId, streamOrdering: ordering };
  }

  /** Out-of-band memberships are not room events in the DAG: their notification goes to the User DO directly,
   * before the request that made them is answered (so a retry finds it delivered). */
  private async notifyOutOfBand(notification: RoomEventNotification): Promise<void> {
    await this.env.USERS.get(this.env.USERS.idFromName(notification.stateKey!)).onRoomEvent({ ...notification, recipient: notification.stateKey! });
  }

  /**
   * Inbound PDUs for a room this server is not in, where our users may hold out-of-band invites: a leave of
   * an invited user of ours, sent by the user who invited them from the origin server, rescinds the invite
   * (it is kept out of band, as the invite was, and shows in their /sync as a leave). Only the inviter may
   * rescind, as Synapse (Complement's "Non-invitee user cannot rescind invite over federation"). Returns
   * null when the room holds no out-of-band invite (the usual "Unknown room" answers follow).
   */
  private async receiveRescindedInvites(origin: string, pdus: Pdu[]): Promise<Record<string, PduResult> | null> {
    const identity = this.engine.roomIdentity();
    if (!identity) return null;
    const results: Record<string, PduResult> = {};
    for (const pdu of pdus) {
      const verified = await this.engine.verifyRemoteEvent(pdu, identity.rules);
      if (!verified.ok) {
        if (typeof pdu.event_id === "string") results[pdu.event_id] = { error: verified.reason };
        continue;
      }
      const target = pdu.type === "m.room.member" && typeof pdu.state_key === "string" ? pdu.state_key : undefined;
      const held = target !== undefined && this.engine.isLocalUser(target) ? this.engine.outOfBandMembership(target) : null;
      const invite = held?.membership === "invite" ? this.engine.events.pdu(held.eventId) : undefined;
      const rescinds = invite !== undefined && pdu.content?.membership === "leave" && pdu.sender === invite.sender && serverNameOf(pdu.sender) === origin && pdu.room_id === identity.roomId;
      if (!rescinds) {
        results[verified.eventId] = { error: "Unknown room" };
        continue;
      }
      const ordering = this.engine.storeOutOfBandMembership(identity.roomId, identity.rules.id, verified.wire, verified.eventId, []);
      await this.notifyOutOfBand({ roomId: identity.roomId, streamOrdering: ordering, eventId: verified.eventId, type: "m.room.member", stateKey: target!, sender: pdu.sender, membership: "leave" });
      results[verified.eventId] = {};
    }
    return results;
  }

  /** PUT /_matrix/federation/v2/invite/{roomId}/{eventId}: co-signs an invite of one of our users. */
  receiveInvite(invite: InboundInvite): Promise<Outcome<{ event: Pdu }>> {
    return this.serialised(async () => {
      const outcome = await receiveInvite(this.engine, this.env.SERVER_NAME, await signingKey(this.env), invite);
      if (outcome.persisted) await this.afterCommit([outcome.persisted]);
      if (outcome.outOfBand) await this.notifyOutOfBand(outcome.outOfBand);
      return { event: outcome.event };
    });
  }

  private hasLocalJoinedMember(): boolean {
    return this.engine.membersWith("join").some((userId) => this.engine.isLocalUser(userId));
  }

  /** POST /rooms/{roomId}/forget: allowed once the user has left or was banned (Synapse: 400 otherwise). */
  forget(accountId: string): Promise<Outcome<null>> {
    const userId = this.inRoom(accountId);
    return this.serialised(async () => {
      if (!this.engine.meta()) return null;
      const m = this.engine.membershipOf(userId);
      if (m && m.membership !== "leave" && m.membership !== "ban") {
        throw new MatrixError(400, "M_UNKNOWN", `User ${userId} in room ${this.engine.meta()!.roomId}`);
      }
      if (m) this.engine.setForgotten(userId, true);
      return null;
    });
  }

  /**
   * The entry point for events from other servers (federation, later): the same checks and commit as
   * local events, storing rejected and soft-failed events as the spec requires.
   */
  persistEvent(pdu: Pdu, options: { origin: "local" | "federation" }): Promise<Outcome<PersistResult>> {
    return this.serialised(async () => {
      const result = await this.engine.persistEvent(pdu, options);
      await this.afterCommit([result]);
      return result;
    });
  }

  // -------------------------------------------------------------------------------------------
  // Federation: the resident server's side (room/federation-membership.ts, room/federation-reads.ts,
  // room/federation-inbound.ts). The worker has authenticated `origin` and checked the server ACL.

  /** Signed requests to other servers (gap filling, backfill, joins, invites): the federation client;
   * undefined when federation is off, so that every remote path fails cleanly instead. */
  private get remote(): RemoteFetch | undefined {
    if (!federationEnabled(this.env)) return undefined;
    return (destination, method, path, body) => federationRequest(this.env, { destination, method, path, body: body as JsonObject | undefined });
  }

  /** Fetches a domain's `/_matrix/key/v3/org.matrix.msc4345/query` document (null when it cannot). */
  private get keyDocumentFetch(): KeyDocumentFetch | undefined {
    const remote = this.remote;
    if (!remote) return undefined;
    return async (domain) => {
      const res = await remote(domain, "GET", "/_matrix/key/v3/org.matrix.msc4345/query");
      return res.ok ? res.body : null;
    };
  }

  /** MSC4345: verifies, in the background, the domains of the room's server keys not verified yet
   * (room/server-domains.ts), so that clients get `unsigned.server_domain` for their users. */
  private verifyServerDomainsSoon(): void {
    const fetchKeyDocument = this.keyDocumentFetch;
    if (!fetchKeyDocument || !this.engine.meta()?.rules.authorization.serverParticipation) return;
    this.ctx.waitUntil(
      verifyServerDomains(this.engine, this.engine.serverDomains, fetchKeyDocument).catch((e) =>
        console.warn("server domain verification failed", e instanceof Error ? e.message : e),
      ),
    );
  }

  /** Signed GETs whose answers are read as streams (a big room's /state). */
  private get remoteStream(): RemoteStream | undefined {
    if (!federationEnabled(this.env)) return undefined;
    return (destination, path) => federationRawRequest(this.env, { destination, method: "GET", path });
  }

  /** GET /_matrix/federation/v1/make_{join,leave,knock}/{roomId}/{userId}. */
  makeMembership(request: MakeMembershipRequest): Promise<Outcome<MakeMembershipResult>> {
    if (request.membership !== "leave" && isPartialState(this.engine)) return Promise.resolve(notFullyJoined());
    return outcomeOf(() =>
      makeMembership(
        this.engine,
        this.env.SERVER_NAME,
        request,
        // A remote user's membership of a room this server has left is stale: it counts only while we are in
        // it (Synapse clears the current state of rooms it leaves).
        async (roomId, userId) => {
          const allowed = this.env.ROOMS.get(this.env.ROOMS.idFromName(roomId));
          return (await allowed.hasLocalMember()) && (await allowed.isJoined(userId));
        },
        (roomId) => this.env.ROOMS.get(this.env.ROOMS.idFromName(roomId)).hasLocalMember(),
      ),
    );
  }

  /** Whether this server is in the room (a local user is joined): restricted joins ask it of allowed rooms. */
  hasLocalMember(): boolean {
    return this.engine.meta() !== null && this.hasLocalJoinedMember();
  }

  /**
   * PUT /_matrix/federation/v2/send_{join,leave,knock}/{roomId}/{eventId}: the signed event of a remote
   * user, persisted like any federation event; refused (403) if it is rejected or soft-failed. A join
   * answers the state before it and the auth chain (send_join v2); a knock the stripped state.
   */
  sendMembership(request: { origin: string; eventId: string; membership: RemoteMembership; pdu: unknown; omitMembers?: boolean }): Promise<Outcome<JsonObject>> {
    if (request.membership !== "leave" && isPartialState(this.engine)) return Promise.resolve(notFullyJoined());
    return this.serialised(async () => {
      const key = await signingKey(this.env);
      const { event, cosigned } = await checkSentMembership(this.engine, this.env.SERVER_NAME, key, request);
      // MSC4348: the server an account moves away from has no member left to count it in the room, but
      // must learn of the move (room/outbound.ts does the same for local senders).
      const hostBefore = this.engine.routingServerOf(event.sender);
      const result = await this.engine.persistEvent(event, { origin: "federation" });
      await this.afterCommit([result]);
      if (result.rejectedReason !== null) throw forbidden(`The event was rejected: ${result.rejectedReason}`);
      if (result.softFailed) throw forbidden("The event is not allowed by the room's current state");
      if (!result.duplicate) {
        // As the resident server we pass the remote user's membership on to the other servers in the room
        // (room/outbound.ts sends only events of local senders by itself). Before answering: the joining
        // server retries send_join if this fails.
        const destinations = [...new Set([...serversInRoom(this.engine), hostBefore])].filter((s) => s !== request.origin && s !== "" && s !== this.env.SERVER_NAME);
        const json = JSON.stringify(wirePdu(this.engine, result.eventId));
        try {
          await enqueuePdus(this.env, destinations, this.engine.meta()!.roomId, [{ eventId: result.eventId, json }]);
        } catch (e) {
          console.warn("membership not handed to the destination queues", e instanceof Error ? e.message : e);
        }
      }
      if (request.membership === "join") {
        return sendJoinResponse(this.engine, result, cosigned, request.omitMembers === true);
      }
      if (request.membership === "knock") return { knock_room_state: strippedState(this.engine, event.sender) as unknown as JsonObject[] };
      return {};
    });
  }

  /** GET /_matrix/federation/unstable/org.matrix.msc4345/make_participation/{roomId}/{serverKey}. */
  makeParticipation(request: MakeParticipationRequest): Promise<Outcome<{ event: Pdu; room_version: string }>> {
    return outcomeOf(() => makeParticipation(this.engine, request));
  }

  /**
   * PUT /_matrix/federation/unstable/org.matrix.msc4345/send_participation/{roomId}/{eventId}: checks and
   * co-signs the request (room/federation-participation.ts), persists it (403 if it is rejected or
   * soft-failed) and passes it on to the other servers; answers the co-signed event.
   */
  sendParticipation(request: { origin: string; eventId: string; pdu: unknown }): Promise<Outcome<{ event: Pdu }>> {
    return this.serialised(async () => {
      const fetchKeyDocument = this.keyDocumentFetch;
      if (!fetchKeyDocument) throw new MatrixError(403, "M_FORBIDDEN", "Federation is disabled on this server");
      const event = await checkSentParticipation(this.engine, await signingKey(this.env), request, fetchKeyDocument);
      const result = await this.engine.persistEvent(event, { origin: "federation" });
      await this.afterCommit([result]);
      if (result.rejectedReason !== null) throw forbidden(`The event was rejected: ${result.rejectedReason}`);
      if (result.softFailed) throw forbidden("The event is not allowed by the room's current state");
      // The check above verified the domain: its users' events can show it (room/server-domains.ts).
      this.engine.serverDomains.record(event.state_key!, request.origin);
      const wire = wirePdu(this.engine, result.eventId)!;
      if (!result.duplicate) {
        const destinations = serversInRoom(this.engine).filter((s) => s !== request.origin);
        try {
          await enqueuePdus(this.env, destinations, this.engine.meta()!.roomId, [{ eventId: result.eventId, json: JSON.stringify(wire) }]);
        } catch (e) {
          console.warn("participation not handed to the destination queues", e instanceof Error ? e.message : e);
        }
      }
      return { event: wire };
    });
  }

  /** The PDUs of one room from PUT /_matrix/federation/v1/send/{txnId}, each persisted in order. */
  receivePdus(origin: string, pdus: Pdu[]): Promise<Outcome<Record<string, PduResult>>> {
    return this.serialised(async () => {
      // A room we are not in, where one of our users holds an out-of-band invite: the inviter may rescind it.
      if (!this.engine.meta()) {
        const rescinded = await this.receiveRescindedInvites(origin, pdus);
        if (rescinded !== null) return rescinded;
        // MSC4345: our key accepted in a room where a local user's join waits for it (room/pending-joins.ts);
        // the joins go through the write queue after this.
        if (acceptsServerKey(pdus, ownServerKey(await signingKey(this.env))) && (await pendingJoins(this.ctx.storage)).length > 0) {
          this.ctx.waitUntil(this.completePendingJoins());
        }
      }
      const { results, persisted } = await receivePdus(this.engine, origin, pdus, this.remote);
      await this.afterCommit(persisted);
      if (persisted.some((p) => this.engine.eventMeta(p.eventId)?.type === PARTICIPATION_EVENT_TYPE)) this.verifyServerDomainsSoon();
      return results;
    });
  }

  /** GET /_matrix/federation/v1/event/{eventId}. */
  eventForServer(origin: string, eventId: string): Promise<Outcome<Pdu>> {
    return outcomeOf(() => eventForServer(this.engine, origin, eventId));
  }

  /** GET /_matrix/federation/v1/state_ids/{roomId}. */
  stateIdsForServer(origin: string, eventId: string): Promise<Outcome<{ pdu_ids: string[]; auth_chain_ids: string[] }>> {
    return outcomeOf(() => stateIdsForServer(this.engine, origin, eventId));
  }

  /** GET /_matrix/federation/v1/state/{roomId}. */
  stateForServer(origin: string, eventId: string): Promise<Outcome<{ pdus: Pdu[]; auth_chain: Pdu[] }>> {
    return outcomeOf(() => stateForServer(this.engine, origin, eventId));
  }

  /** GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}. */
  eventAuthForServer(origin: string, eventId: string): Promise<Outcome<{ auth_chain: Pdu[] }>> {
    return outcomeOf(() => eventAuthForServer(this.engine, origin, eventId));
  }

  /** GET /_matrix/federation/v1/backfill/{roomId}. */
  backfillForServer(origin: string, from: string[], limit: number): Promise<Outcome<Pdu[]>> {
    return outcomeOf(() => backfillForServer(this.engine, origin, from, limit));
  }

  /** POST /_matrix/federation/v1/get_missing_events/{roomId}. */
  missingEventsForServer(origin: string, request: { earliest: string[]; latest: string[]; limit: number; minDepth: number }): Promise<Outcome<Pdu[]>> {
    return outcomeOf(() => missingEventsForServer(this.engine, origin, request));
  }

  // -------------------------------------------------------------------------------------------
  // Reads.

  /** MSC4140: a user scheduled a delayed state event for (type, stateKey); a change of that state by
   * another event cancels it (room/delayed-state-watch.ts). */
  watchDelayedState(userId: string, type: string, stateKey: string): void {
    if (this.engine.meta()) watchDelayedState(this.engine, userId, type, stateKey);
  }

  /** The room this DO holds, or null for an unknown room. */
  roomInfo(): { roomId: string; roomVersion: string; createEventId: string } | null {
    const meta = this.engine.meta();
    return meta ? { roomId: meta.roomId, roomVersion: meta.roomVersion, createEventId: meta.createEventId! } : null;
  }

  /** The content of the room's current `m.room.server_acl`, or null if it has none (or the room is unknown):
   * worker/federation/auth.ts checks federation requests about the room against it. */
  serverAclContent(): JsonObject | null {
    if (!this.engine.meta()) return null;
    return this.engine.currentStateEvent("m.room.server_acl", "")?.content ?? null;
  }

  /** A user's current membership and its event ID, or null if none. */
  membership(userId: string): { membership: string; eventId: string } | null {
    return this.engine.meta() ? this.engine.membershipOf(this.inRoom(userId)) : null;
  }

  /** Whether a user is currently joined (restricted joins of other rooms ask this). */
  isJoined(userId: string): boolean {
    return this.engine.meta() !== null && this.engine.membershipOf(this.inRoom(userId))?.membership === "join";
  }

  /** Device list copies (room/device-list-sharing.ts): the room's position if `remoteUserId` and one of our
   * users are joined now, "partial" while its state is partial, else null. */
  deviceListAnchor(remoteUserId: string): number | "partial" | null {
    return sharingAnchor(this.engine, remoteUserId);
  }

  /** Device list copies: whether `remoteUserId` and one of our users have been joined since `position`. */
  deviceListSharedSince(remoteUserId: string, position: number): boolean {
    return sharedSince(this.engine, remoteUserId, position);
  }

  /** The servers with a joined member (routing names), for checks of what a server may learn. */
  joinedServers(): string[] {
    return this.engine.meta() ? serversInRoom(this.engine) : [];
  }

  /** While the room is held with partial state, the servers the resident named in its send_join answer
   * (`servers_in_room`): they stand for the members not known yet, e.g. for our users' device list
   * updates (worker/device-lists.ts), as Synapse's `get_partial_state_servers_at`. Empty once complete. */
  partialStateServers(): string[] {
    return this.engine.meta() ? partialStateServers(this.engine).filter((s) => s !== this.env.SERVER_NAME) : [];
  }

  /** Users with a given current membership (e.g. "join"). */
  members(membership: string): string[] {
    // Callers look up accounts (User DOs, presence, device lists): this server's members as accounts.
    const ids = this.engine.keyIdentity();
    return this.engine.meta() ? this.engine.membersWith(membership).map((u) => ids.local(u)) : [];
  }

  /** GET /rooms/{roomId}/state: the state the user may see (403 otherwise), in the client format. */
  async stateForUser(account: Reader): Promise<Outcome<ClientEvent[]>> {
    const reader = this.readerInRoom(account);
    // The whole state includes the members a partial-state join lacks: wait for the resync, as Synapse's
    // `get_current_state_ids` does for a filter that may include remote members.
    await this.fullState();
    return outcomeOf(() => stateClientEvents(this.engine, visibleState(this.engine, reader.userId), reader));
  }

  /** GET /rooms/{roomId}/state/{type}/{stateKey}: one state event the user may see; null if there is none. */
  async stateEventForUser(account: Reader, type: string, stateKey: string): Promise<Outcome<ClientEvent | null>> {
    const reader = this.readerInRoom(account);
    // Another server's member may be missing from a partial state: wait for the resync (as Synapse's
    // StateFilter.must_await_full_state: only remote members' events wait).
    if (type === "m.room.member" && !this.engine.isLocalUser(stateKey)) await this.fullState();
    if (stateKey.startsWith("@")) stateKey = this.inRoom(stateKey);
    return outcomeOf(() => {
      const state = visibleState(this.engine, reader.userId);
      const eventId = state.get(`${type}\u0000${stateKey}`);
      return eventId === undefined ? null : (clientEvents(this.engine, [eventId], reader)[0] ?? null);
    });
  }

  /** Stored events in the client format (no visibility check: the caller decides who may see them). */
  clientEvents(eventIds: string[], reader?: Reader): ClientEvent[] {
    return clientEvents(this.engine, eventIds, reader && this.readerInRoom(reader));
  }

  /** A stored PDU (with its event ID), or null. */
  getPdu(eventId: string): IdentifiedPdu | null {
    return (this.engine.meta() && this.engine.events.pdu(eventId)) || null;
  }

  /** The state before and after a stored event (null for unknown events and outliers). */
  stateAtEvent(eventId: string): { before: StateEntry[]; after: StateEntry[] } | null {
    if (!this.engine.meta()) return null;
    const at = this.engine.stateAtEvent(eventId);
    return at ? { before: entries(at.before), after: entries(at.after) } : null;
  }

  /** Changes of the current state between two stream positions: ordering in (fromStream, toStream]. */
  stateDelta(fromStream: number, toStream: number): StateDeltaEntry[] {
    return this.engine.stateDelta(fromStream, toStream);
  }

  /** The current state as (type, state_key, event ID) entries. */
  currentState(): StateEntry[] {
    return this.engine.meta() ? entries(this.engine.currentState()) : [];
  }

  /** The room's latest stream ordering (0 for an unknown room). */
  currentStreamOrdering(): number {
    return this.engine.maxStreamOrdering();
  }

  /** The current state for the directory (worker/room-summary.ts), or null for an unknown room. */
  currentStateForDirectory(): { roomVersion: string; events: DirectoryStateEvent[] } | null {
    const meta = this.engine.meta();
    if (!meta) return null;
    const events: DirectoryStateEvent[] = [];
    for (const [key, eventId] of this.engine.currentState()) {
      const pdu = this.engine.events.pdu(eventId);
      if (!pdu) continue;
      events.push({
        event_id: eventId,
        type: pdu.type,
        state_key: splitStateKey(key)[1],
        sender: pdu.sender,
        origin_server_ts: pdu.origin_server_ts,
        content: pdu.content,
      });
    }
    return { roomVersion: meta.roomVersion, events };
  }

  // -------------------------------------------------------------------------------------------
  // Server administration (worker/admin/rooms.ts).

  /** Synapse admin API's room summary (room/admin.ts), or null for an unknown room. */
  adminSummary(): AdminRoomSummary | null {
    return adminRoomSummary(this.engine);
  }

  /** The `mxc://` URIs the room's events name (room/admin.ts). */
  adminMediaInRoom(): string[] {
    return mediaInRoom(this.engine);
  }

  /**
   * Synapse admin API "Delete Room" with `purge`: forgets the room entirely. Inside the write queue, after
   * the deliveries of earlier events (the members' leaves) finished; the DO is then an unknown room, as
   * if it had never existed. The D1 rows about the room are the caller's to delete.
   */
  purge(): Promise<Outcome<null>> {
    return this.serialised(async () => {
      while (this.draining) await this.draining;
      // The event index's waiting write must not land after the caller deleted the room's rows.
      await this.eventIndex.settled();
      await this.directory.settled();
      await this.ctx.storage.deleteAlarm();
      await this.ctx.storage.deleteAll();
      this.alarmPending = false;
      this.engine = new RoomEngine(this.ctx.storage, this.env);
      this.fanOut = new RoomFanOut(this.engine, this.ctx.storage);
      this.ephemeralState = undefined;
      return null;
    });
  }

  // -------------------------------------------------------------------------------------------
  // Sync reads and room ephemeral data (logic in room/sync-reads.ts and room/ephemeral.ts).

  private ephemeralState?: RoomEphemeral;
  private get ephemeral(): RoomEphemeral {
    return (this.ephemeralState ??= new RoomEphemeral(this.engine, this.env, this.ctx, () => this.fanOut.listeners()));
  }

  /** GET /sync: the room's part of a response (timeline, state, summary), one call per room. */
  syncRoom(request: RoomSyncRequest): RoomSyncResult {
    const result = roomSync(this.engine, this.readerInRoom(request));
    if (request.includeReceipts) result.receipts = this.ephemeral.publicReceipts();
    return result;
  }

  /** Simplified sliding sync (MSC4186): the room's part of a response (room/sliding-reads.ts). */
  slidingRoom(request: SlidingRoomRequest): SlidingRoomResult | null {
    return slidingRoom(this.engine, this.readerInRoom(request));
  }

  /** Sliding sync sticky events extension (MSC4354): the room's unexpired sticky events in a range. */
  slidingStickyEvents(request: SlidingStickyRequest): ClientEvent[] {
    return slidingStickyEvents(this.engine, this.readerInRoom(request));
  }

  /** Sliding sync receipts extension, for a room new to the connection: the room's public receipts. */
  syncRoomReceipts(): ReceiptUpdate[] {
    return this.ephemeral.publicReceipts();
  }

  /** Sliding sync list filters: the room's type and encryption as `userId` may know them. */
  roomFacts(userId: string): RoomFacts {
    return roomFacts(this.engine, this.inRoom(userId));
  }

  /** Sliding sync `spaces` filter: the space's children. */
  spaceChildren(): string[] {
    return spaceChildren(this.engine);
  }

  /** GET /sync `invite_state` / `knock_state` for a user. */
  strippedStateFor(userId: string): StrippedStateEvent[] {
    return strippedState(this.engine, this.inRoom(userId));
  }

  /** PUT /rooms/{roomId}/typing/{userId}: records and fans out to the joined local members. */
  setTyping(userId: string, typing: boolean, timeoutMs: number): Promise<Outcome<null>> {
    return outcomeOf(async () => {
      await this.ephemeral.setTyping(this.inRoom(userId), typing, timeoutMs);
      return null;
    });
  }

  /** POST /rooms/{roomId}/receipt: records and fans out; answers the receipt event's stream ordering. */
  setReceipt(receipt: ReceiptUpdate): Promise<Outcome<{ streamOrdering: number; applied: boolean }>> {
    return outcomeOf(() => this.ephemeral.setReceipt(this.readerInRoom(receipt)));
  }

  /** Users typing now. */
  typingUsers(): string[] {
    return this.ephemeral.typingUsers();
  }

  // -------------------------------------------------------------------------------------------
  // Client reads with history visibility (logic in room/timeline.ts, room/members.ts, room/relations.ts,
  // room/history-visibility.ts) and the old room's side of an upgrade (room/upgrade.ts).

  /** GET /rooms/{roomId}/messages. */
  async messages(account: Reader, request: MessagesRequest): Promise<Outcome<MessagesResult>> {
    const reader = this.readerInRoom(account);
    const first = await outcomeOf(() => messages(this.engine, reader, request));
    // Spec ("Backfilling"): a client paginating past the earliest event we hold of a room joined over
    // federation makes us ask the other servers for the history before it.
    if (!("ok" in first) || request.dir !== "b" || !first.ok.exhausted || !this.remote) return first;
    if (this.engine.backwardExtremities(1).length === 0) return first;
    const servers = serversInRoom(this.engine).filter((s) => s !== this.env.SERVER_NAME);
    const stored = await this.serialised(() => backfill(this.engine, servers, this.remote!));
    if (!("ok" in stored) || stored.ok === 0) return first;
    return outcomeOf(() => messages(this.engine, reader, request));
  }

  /** GET /rooms/{roomId}/context/{eventId}. */
  eventContext(account: Reader, request: ContextRequest): Promise<Outcome<ContextResult>> {
    const reader = this.readerInRoom(account);
    return outcomeOf(() => eventContext(this.engine, reader, request));
  }

  /** GET /rooms/{roomId}/event/{eventId} (404 for unknown and invisible events). */
  eventForReader(account: Reader, eventId: string): Promise<Outcome<ReadEvent>> {
    const reader = this.readerInRoom(account);
    return outcomeOf(() => eventForReader(this.engine, reader, eventId));
  }

  /** GET /rooms/{roomId}/timestamp_to_event. */
  timestampToEvent(account: Reader, ts: number, dir: "b" | "f"): Promise<Outcome<{ event_id: string; origin_server_ts: number } | null>> {
    const reader = this.readerInRoom(account);
    return outcomeOf(() => timestampToEvent(this.engine, reader, ts, dir));
  }

  /** POST /search, this room's part (room/search.ts). */
  search(reader: Reader, request: RoomSearchRequest): Promise<Outcome<RoomSearchResult>> {
    return outcomeOf(() => searchRoom(this.engine, this.readerInRoom(reader), request));
  }

  /** GET /rooms/{roomId}/members. */
  async roomMembers(account: Reader, request: MembersRequest): Promise<Outcome<ClientEvent[]>> {
    const reader = this.readerInRoom(account);
    await this.fullState();
    return outcomeOf(() => roomMembers(this.engine, reader, request));
  }

  /** GET /rooms/{roomId}/joined_members. */
  async joinedMembers(userId: string): Promise<Outcome<Record<string, JoinedMember>>> {
    await this.fullState();
    return outcomeOf(() => joinedMembers(this.engine, this.inRoom(userId)));
  }

  /**
   * Waits until a partial-state join's resync has finished, as Synapse's /members and /joined_members do
   * (Complement: "/members blocks until the resync completes"), so that a client never takes the partial
   * member list for the whole one. Bounded by FULL_STATE_WAIT_MS (Synapse waits without a bound): after it
   * the partial list is answered rather than holding the client's request for minutes.
   */
  private fullState(): Promise<void> {
    if (!isPartialState(this.engine)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, FULL_STATE_WAIT_MS);
      const waiters = this.fullStateWaiters;
      function done() {
        if (timer !== null) clearTimeout(timer);
        waiters.delete(done);
        resolve();
      }
      waiters.add(done);
    });
  }

  /** GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]] (404 for an invisible parent). */
  relations(account: Reader, request: RelationsRequest): Promise<Outcome<RelationsResult>> {
    const reader = this.readerInRoom(account);
    return outcomeOf(() => relationsForReader(this.engine, reader, request));
  }

  /** GET /rooms/{roomId}/threads. */
  threads(account: Reader, request: ThreadsRequest): Promise<Outcome<ThreadsResult>> {
    const reader = this.readerInRoom(account);
    return outcomeOf(() => threadsForReader(this.engine, reader, request));
  }

  /** POST /rooms/{roomId}/upgrade: checks the user's power and collects what the new room copies. */
  upgradeSource(userId: string, newVersion: string, additionalCreators: string[]): Promise<Outcome<UpgradeSource>> {
    return outcomeOf(() => upgradeSource(this.engine, this.inRoom(userId), newVersion, additionalCreators));
  }

  /** The room's directory aliases changed (D1 `room_aliases`): application services' alias namespaces are
   * matched against the new list from the next event on (room/appservice-outbound.ts). */
  aliasesChanged(): void {
    forgetRoomAliases(this.ctx);
  }

  /** Which of the application services `ids` are interested in this room (appservice/streams.ts). */
  appservicesInterested(ids: string[]): Promise<string[]> {
    return appservicesInterestedInRoom(this.ctx, this.engine, this.env, ids);
  }

  /** Resolves once the delivery running now (if any) has finished (tests, benchmarks). */
  async deliveriesSettled(): Promise<void> {
    while (this.draining) await this.draining;
  }

  /** Notifications not yet delivered (tests, diagnostics). */
  pendingNotifications(): { userId: string; notification: RoomEventNotification }[] {
    return this.fanOut.pending().map((e) => ({ userId: e.userId, notification: e.notification }));
  }

  /** Users whose User DOs are pushed every event (tests, diagnostics). */
  listeners(): string[] {
    return this.fanOut.listeners();
  }

  /**
   * Where a member's presence goes from this room, in one call (durable-objects/user/room-mates.ts): who
   * hears of it here (every joined member in a room of at most `maxMembers` joined members, only the
   * listeners, members whose users sync now, in a bigger one) and the other servers with joined members
   * (each gets one EDU). A user in 1,000 rooms who comes online asks each room once, not twice.
   */
  presenceTargets(maxMembers: number): { audience: string[]; servers: string[] } {
    if (!this.engine.meta()) return { audience: [], servers: [] };
    const ids = this.engine.keyIdentity();
    // A big room reads neither its member list nor its servers per presence change: the servers are kept
    // per change of the current state, the count is cached (docs/fan-out.md, "Big rooms").
    const version = this.engine.currentStateVersion;
    if (this.presenceServers?.version !== version) {
      const servers = new Set<string>();
      for (const member of this.engine.membersWith("join")) servers.add(serverNameOf(ids.local(member)));
      servers.delete(this.env.SERVER_NAME);
      this.presenceServers = { version, servers: [...servers] };
    }
    const audience = this.engine.memberCount("join") <= maxMembers ? this.engine.membersWith("join") : this.fanOut.listeners();
    return { audience: audience.map((u) => ids.local(u)), servers: this.presenceServers.servers };
  }
  private presenceServers: { version: number; servers: string[] } | undefined;
}

/** Synapse's answer to make_join/send_join/make_knock/send_knock for a room it holds only partially. */
function notFullyJoined(): { error: { status: number; errcode: string; error: string } } {
  return { error: { status: 404, errcode: "M_NOT_FOUND", error: "Unable to handle this request right now; this server is not fully joined." } };
}

/** The membership action a PUT /state/m.room.member/{userId} body stands for. */
function membershipActionFor(membership: unknown): MembershipAction {
  switch (membership) {
    case "join":
    case "invite":
    case "ban":
    case "knock":
      return membership;
    case "leave":
      // Another user's leave through the state API is a kick or an unban; the auth rules tell which.
      return "leave";
    default:
      throw badJson("Invalid membership");
  }
}

