// The storage side of the Room DO: room meta, current state, forward extremities, state groups, and the one
// entry point every event goes through, `persistEvent` (DESIGN.md, "Who owns what"; spec: Server-Server API,
// "Checks performed on receipt of a PDU"). Local events are built by build-event.ts and then persisted
// exactly like remote ones, so federation needs no second path.
//
// The engine does no locking: the Room DO serialises every write through one queue (room.ts), so the
// async checks of one event never interleave with another write.
import { CREATOR_IN_USERS, checkEventAgainstAuthEvents, checkEventAuth, hostingServerKey, redactionAllowedAtDelivery, redactsOf, thirdPartyInvitePublicKeys, verifyThirdPartyInviteSigned, type AuthStateLookup } from "../../protocol/auth-rules.js";
import { MatrixError, badJson, forbidden, tooLarge } from "../../protocol/errors.js";
import { eventIdFor, roomIdFromCreateEvent } from "../../protocol/event-hashes.js";
import { identifyPdu, serialisePdu, verifyReceivedPdu, type IdentifiedPdu as ReceivedPduId, type PduSerialisation } from "../../protocol/received-pdu.js";
import { MAX_PDU_BYTES, validatePduFormat } from "../../protocol/event-validation.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { authEventIds, prevEventIds, serverNameOf, splitStateKey, stateKey, type IdentifiedPdu, type Pdu, type StateKey, type StateMap } from "../../protocol/pdu.js";
import { redactPdu } from "../../protocol/redaction.js";
import { roomVersionRules, type RoomVersionRules } from "../../protocol/room-versions.js";
import { resolveState } from "../../protocol/state-res.js";
import { authOrder } from "../../protocol/auth-chain.js";
import type { Env } from "../../worker/env.js";
import type { RoomEventNotification } from "../notifications.js";
import { EventStore, type EventMeta } from "./event-store.js";
import { createRoomSchema, openRoomSchema } from "./schema.js";
import { ServerDomains } from "./server-domains.js";
import { StateGroupStore, diffStates, type ReadonlyStateMap, type StateChanges } from "./state-groups.js";
import { requiredSigningServers, verifyKeysForEvent } from "./verify-keys.js";
import { KeyIdentity, LocalAccounts } from "./key-identity.js";
import { recordTimelineGap } from "./timeline-gaps.js";
import { PARTICIPATION_EVENT_TYPE, serverKeyOfUser } from "../../protocol/participation.js";
import { sqlLimit } from "../sql-limit.js";

export interface RoomMeta {
  roomId: string;
  roomVersion: string;
  rules: RoomVersionRules;
  createEventId: string | null;
  currentStateGroup: number | null;
}

/** A client transaction: (user, device, txn ID). */
export interface TxnKey {
  userId: string;
  deviceId: string;
  txnId: string;
}

export interface PersistOptions {
  /** `local`: built by this server for a local client; a failed check is an error for the client and
   * nothing is stored. `federation`: received from another server; failed checks store the event as
   * rejected or soft-failed, as the spec requires. */
  origin: "local" | "federation";
  txn?: TxnKey;
  /** The state before the event, when its prev events are not stored (the join event of a room joined
   * over federation, or an event after a gap, with the state from /state_ids): the state the remote
   * server gave, whose events must already be stored (as outliers). */
  stateBefore?: ReadonlyStateMap;
  /** Backfilled history (spec: "Backfilling"): stored at this stream ordering, below the room's existing
   * events; it changes neither the forward extremities nor the current state, and notifies nobody. */
  backfillOrdering?: number;
  /** The event follows a hole in the DAG (prev events that could not be fetched): recorded with it, so
   * that an incremental /sync over it is limited to the events from here on (room/timeline-gaps.ts). */
  afterGap?: boolean;
}

export interface PersistResult {
  eventId: string;
  streamOrdering: number;
  rejectedReason: string | null;
  softFailed: boolean;
  /** The event was already stored; nothing changed. */
  duplicate: boolean;
  /** The event was accepted into the room: local members learn of it after the commit (room/fan-out.ts). */
  fanOut: boolean;
  /** Facts of a newly stored event, for the work after the commit without reading its row again (absent
   * on duplicates). */
  stored?: { type: string; stateKey: string | null; originServerTs: number };
}

/** One outbox row ready for delivery. */
export interface OutboxEntry {
  id: number;
  userId: string;
  notification: RoomEventNotification;
}

/** One entry of a state map as it crosses RPC. */
export interface StateEntry {
  type: string;
  stateKey: string;
  eventId: string;
}

/** One change of the current state (state_deltas row). `eventId` null: the key left the state. */
export interface StateDeltaEntry {
  streamOrdering: number;
  type: string;
  stateKey: string;
  eventId: string | null;
  prevEventId: string | null;
}

/** The per-event outcome of the checks before the commit. */
interface CheckedEvent {
  eventId: string;
  /** The wire form to store (the redacted form if the content hash did not match). */
  wire: Pdu;
  identified: IdentifiedPdu;
  rejectedReason: string | null;
  softFailed: boolean;
  /** The state group before the event, or a resolved (or given) state still to be stored as a group
   * (`resolvedFrom` null: a whole state, stored as a group without parent). */
  before: { group: number | null } | { resolvedFrom: number | null; changes: StateChanges; state: ReadonlyStateMap };
}

/** Thrown (as a MatrixError) when a create event is persisted into a DO that already holds a room: the
 * caller derives another room ID. */
export const ROOM_EXISTS_ERRCODE = "M_ROOM_IN_USE";

/** Outliers written per storage transaction (persistOutliers). */
const OUTLIER_CHUNK = 1000;

/** A room joined over federation starts its stream here, leaving the orderings below for history that
 * is backfilled later (positions stay positive: `t<N>` tokens and the User DO's bookkeeping assume so). */
export const REMOTE_ROOM_FIRST_ORDERING = 2 ** 40;

/** Thrown (as a 400 MatrixError) when an event's prev events are not stored and no state before it was
 * given: the federation path fetches the gap (get_missing_events, /state_ids) and tries again. */
export const MISSING_PREV_ERRCODE = "M_MISSING_PREV_EVENTS";

export class RoomEngine {
  readonly sql: SqlStorage;
  readonly stateGroups: StateGroupStore;
  readonly events: EventStore;
  /** MSC4345: the server domains verified for keys in this room (server-domains.ts). */
  readonly serverDomains: ServerDomains;
  private metaCache: RoomMeta | null | undefined;
  private schemaReady: boolean;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly env: Env,
  ) {
    this.sql = storage.sql;
    this.stateGroups = new StateGroupStore(this.sql);
    this.events = new EventStore(this.sql);
    this.serverDomains = new ServerDomains(this.sql);
    // Brings an existing room's schema up to date (new tables, new indexes) when its DDL changed.
    this.schemaReady = openRoomSchema(this.sql);
  }

  // -------------------------------------------------------------------------------------------
  // Room meta.

  /** The room this DO holds, or null if it holds none (an unknown room ID). */
  meta(): RoomMeta | null {
    if (this.metaCache !== undefined) return this.metaCache;
    if (!this.schemaReady) return null;
    const row = this.sql
      .exec<{ room_id: string; room_version: string; create_event_id: string | null; current_state_group: number | null }>(
        "SELECT room_id, room_version, create_event_id, current_state_group FROM room_meta WHERE id = 1",
      )
      .toArray()[0];
    if (!row || row.create_event_id === null) return (this.metaCache = null);
    const rules = roomVersionRules(row.room_version);
    if (!rules) throw new Error(`room ${row.room_id} has unknown room version ${row.room_version}`);
    this.metaCache = {
      roomId: row.room_id,
      roomVersion: row.room_version,
      rules,
      createEventId: row.create_event_id,
      currentStateGroup: row.current_state_group,
    };
    return this.metaCache;
  }

  /** Creates the schema and the meta row of a new room (before its create event is persisted). */
  private initialise(roomId: string, roomVersion: string): void {
    if (!this.schemaReady) {
      createRoomSchema(this.sql);
      this.schemaReady = true;
    }
    this.sql.exec(
      "INSERT INTO room_meta (id, room_id, room_version) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET room_id = excluded.room_id, room_version = excluded.room_version",
      roomId,
      roomVersion,
    );
    this.metaCache = undefined;
  }

  // -------------------------------------------------------------------------------------------
  // Current state.

  /** The current state event for (type, state_key). */
  currentStateEvent(type: string, sk: string): IdentifiedPdu | undefined {
    const id = this.currentStateEventId(type, sk);
    return id === undefined ? undefined : this.events.pdu(id);
  }

  currentStateEventId(type: string, sk: string): string | undefined {
    if (!this.schemaReady) return undefined;
    return this.sql
      .exec<{ event_id: string }>("SELECT event_id FROM current_state WHERE type = ? AND state_key = ?", type, sk)
      .toArray()[0]?.event_id;
  }

  /** The auth lookup over the current state. */
  readonly currentLookup: AuthStateLookup = (type, sk) => this.currentStateEvent(type, sk);

  /** The current state as a map (cached: it is the most read snapshot). */
  currentState(): ReadonlyStateMap {
    return this.stateGroups.load(this.meta()?.currentStateGroup ?? null);
  }

  /**
   * The current state for reads that rewind it with the state deltas (room/sync-reads.ts StateRewinder):
   * the current state group's map when it is cached, otherwise the `current_state` rows in one query (kept
   * until the current state changes). Both hold the same state: every change of the current group writes
   * its difference to `current_state` in the same transaction. A Room DO that just started (each room of
   * an initial /sync of a user in many rooms) has no cached group, and materialising one reads every group
   * of its base chain: two queries per group.
   */
  currentStateForReads(): ReadonlyStateMap {
    const meta = this.meta();
    if (!meta) return new Map();
    const cached = this.stateGroups.cached(meta.currentStateGroup);
    if (cached) return cached;
    if (this.currentRows?.version === this.stateVersion) return this.currentRows.state;
    const state = new Map<StateKey, string>();
    // The member rows come with what a sync asks next (the reader's membership, the member counts).
    const members = new Map<string, { membership: string; streamOrdering: number }>();
    const counts = new Map<string, number>();
    for (const r of this.sql.exec<{ type: string; state_key: string; event_id: string; stream_ordering: number; membership: string | null }>(
      "SELECT type, state_key, event_id, stream_ordering, membership FROM current_state",
    )) {
      state.set(stateKey(r.type, r.state_key), r.event_id);
      if (r.type === "m.room.member" && r.membership !== null) {
        members.set(r.state_key, { membership: r.membership, streamOrdering: r.stream_ordering });
        counts.set(r.membership, (counts.get(r.membership) ?? 0) + 1);
      }
    }
    this.currentRows = { version: this.stateVersion, state, members };
    // The same counts memberCount's query gives (members with a membership, by membership).
    if (this.memberCounts?.version !== this.stateVersion) this.memberCounts = { version: this.stateVersion, counts };
    return state;
  }
  private currentRows: { version: number; state: ReadonlyStateMap; members: ReadonlyMap<string, { membership: string; streamOrdering: number }> } | undefined;

  /**
   * A user's current membership and the stream ordering at which its `current_state` row was last set,
   * from the rows `currentStateForReads` read for the current state (null: no membership); undefined when
   * it did not read them (ask the storage). The row's ordering is that of the event whose persistence set
   * it: the member event's own, or a later one when state resolution picked the member event after a fork.
   */
  currentMembershipForReads(userId: string): { membership: string; streamOrdering: number } | null | undefined {
    if (this.currentRows?.version !== this.stateVersion) return undefined;
    return this.currentRows.members.get(userId) ?? null;
  }

  /** A user's current membership and its event, or null if the user has none. */
  membershipOf(userId: string): { membership: string; eventId: string } | null {
    if (!this.schemaReady) return null;
    const row = this.sql
      .exec<{ event_id: string; membership: string | null }>(
        "SELECT event_id, membership FROM current_state WHERE type = 'm.room.member' AND state_key = ?",
        userId,
      )
      .toArray()[0];
    return row && row.membership !== null ? { membership: row.membership, eventId: row.event_id } : null;
  }

  /**
   * Bumped on every write to `current_state` and on a rolled-back commit: a cheap key for values derived
   * from the current state (member counts below, the remote servers of room/outbound.ts), so that they are
   * not recounted over every member on each event of a big room.
   */
  get currentStateVersion(): number {
    return this.stateVersion;
  }
  private stateVersion = 0;
  private memberCounts: { version: number; counts: Map<string, number> } | undefined;

  /** How many members have the given current membership (counted once per change of the current state,
   * every membership in one query: a sync's summary asks for joined and invited members). */
  memberCount(membership: string): number {
    if (!this.schemaReady) return 0;
    if (this.memberCounts?.version !== this.stateVersion) {
      const counts = new Map<string, number>();
      for (const r of this.sql.exec<{ membership: string; n: number }>(
        "SELECT membership, COUNT(*) AS n FROM current_state WHERE type = 'm.room.member' AND membership IS NOT NULL GROUP BY membership",
      )) {
        counts.set(r.membership, r.n);
      }
      this.memberCounts = { version: this.stateVersion, counts };
    }
    return this.memberCounts.counts.get(membership) ?? 0;
  }

  /** Users with the given current membership. */
  membersWith(membership: string): string[] {
    if (!this.schemaReady) return [];
    return this.sql
      .exec<{ state_key: string }>("SELECT state_key FROM current_state WHERE type = 'm.room.member' AND membership = ?", membership)
      .toArray()
      .map((r) => r.state_key);
  }

  /** The auth lookup over a stored state group. */
  lookupInGroup(group: number | null): AuthStateLookup {
    return (type, sk) => {
      const id = this.stateGroups.lookup(group, type, sk);
      return id === undefined ? undefined : this.events.pdu(id);
    };
  }

  lookupInMap(state: ReadonlyStateMap): AuthStateLookup {
    return (type, sk) => {
      const id = state.get(stateKey(type, sk));
      return id === undefined ? undefined : this.events.pdu(id);
    };
  }

  forwardExtremities(): string[] {
    if (!this.schemaReady) return [];
    return this.sql.exec<{ event_id: string }>("SELECT event_id FROM forward_extremities").toArray().map((r) => r.event_id);
  }

  /** The highest stream ordering (0 before any event). */
  maxStreamOrdering(): number {
    if (!this.schemaReady) return 0;
    return this.sql.exec<{ m: number | null }>("SELECT MAX(stream_ordering) AS m FROM events").one().m ?? 0;
  }

  txnEventId(txn: TxnKey): string | undefined {
    if (!this.schemaReady) return undefined;
    return this.sql
      .exec<{ event_id: string }>("SELECT event_id FROM txn_ids WHERE user_id = ? AND device_id = ? AND txn_id = ?", txn.userId, txn.deviceId, txn.txnId)
      .toArray()[0]?.event_id;
  }

  /** The transaction ID a device sent an event with (for `unsigned.transaction_id`). */
  transactionIdOf(eventId: string, userId: string, deviceId: string): string | undefined {
    if (!this.schemaReady) return undefined;
    return this.sql
      .exec<{ txn_id: string }>("SELECT txn_id FROM txn_ids WHERE event_id = ? AND user_id = ? AND device_id = ?", eventId, userId, deviceId)
      .toArray()[0]?.txn_id;
  }

  // -------------------------------------------------------------------------------------------
  // State at events, state deltas.

  /** The state before and after a stored, non-outlier event. */
  stateAtEvent(eventId: string): { before: ReadonlyStateMap; after: ReadonlyStateMap } | null {
    const meta = this.events.meta(eventId);
    if (!meta || meta.outlier) return null;
    return { before: this.stateGroups.load(meta.stateGroupBefore), after: this.stateGroups.load(meta.stateGroupAfter) };
  }

  /** Changes of the current state with stream ordering in (fromStream, toStream], oldest first. */
  stateDelta(fromStream: number, toStream: number): StateDeltaEntry[] {
    if (!this.schemaReady) return [];
    return this.sql
      .exec<{ stream_ordering: number; type: string; state_key: string; event_id: string | null; prev_event_id: string | null }>(
        "SELECT stream_ordering, type, state_key, event_id, prev_event_id FROM state_deltas WHERE stream_ordering > ? AND stream_ordering <= ? ORDER BY stream_ordering, type, state_key",
        fromStream,
        toStream,
      )
      .toArray()
      .map((r) => ({ streamOrdering: r.stream_ordering, type: r.type, stateKey: r.state_key, eventId: r.event_id, prevEventId: r.prev_event_id }));
  }

  // -------------------------------------------------------------------------------------------
  // The entry point.

  /**
   * Checks and stores one event (spec: "Checks performed on receipt of a PDU"):
   *  1. format (event-validation), 2. signatures of the servers that must sign, 3. content hash,
   *  4. auth against its auth_events (rejected), 5. auth against the state before it (rejected),
   *  6. auth against the current state (soft-failed);
   * then, in one storage transaction: the event row, its edges, state groups, forward extremities,
   * current state and its delta log, redactions it applies or receives and the client transaction ID.
   * Nothing per member: the room's fan-out (room/fan-out.ts) reads the event after the commit. Returns
   * after the commit.
   *
   * A create event starts a new room: `roomId` must be the ID the DO is addressed by (v12: the one the
   * create event hashes to). Persisting a create event into a DO that holds a room fails with
   * M_ROOM_IN_USE.
   */
  async persistEvent(pdu: Pdu, options: PersistOptions, roomId?: string): Promise<PersistResult> {
    const isCreate = pdu.type === "m.room.create" && pdu.state_key === "";
    let meta = this.meta();
    let rules: RoomVersionRules;
    if (isCreate) {
      if (meta) {
        const existing = await this.eventIdOrNull(pdu, meta.rules);
        if (existing !== null && existing === meta.createEventId) return this.duplicateResult(existing);
        throw new MatrixError(400, ROOM_EXISTS_ERRCODE, "Room already exists");
      }
      const version = typeof pdu.content?.room_version === "string" ? pdu.content.room_version : "1";
      const r = roomVersionRules(version);
      if (!r) throw new MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", `Unsupported room version ${version}`);
      rules = r;
    } else {
      if (!meta) throw forbidden("Unknown room");
      rules = meta.rules;
    }

    // 1. Format.
    // One serialisation for the size and the content hash (protocol/received-pdu.ts).
    const serialised = serialisePdu(pdu);
    const format = validatePduFormat(pdu, rules, serialised.size);
    if (!format.ok) {
      if (format.reason.includes(`larger than ${MAX_PDU_BYTES}`)) throw tooLarge("Event is too large");
      throw badJson(`Invalid event: ${format.reason}`);
    }
    const identified = await identifyPdu(pdu, rules, serialised);
    const eventId = identified.eventId;

    if (isCreate) {
      const derived = await roomIdFromCreateEvent(pdu, rules);
      if (roomId === undefined || derived !== roomId) throw badJson("The create event does not define this room's ID");
      // The meta row exists from here on; it stays without create_event_id (an unknown room to every
      // reader) unless the create event commits below.
      this.initialise(roomId, rules.id);
      meta = { roomId, roomVersion: rules.id, rules, createEventId: null, currentStateGroup: null };
    } else if (pdu.room_id !== meta!.roomId) {
      throw badJson("Event is for another room");
    }
    const room = meta!;

    const existing = this.events.meta(eventId);
    // An event known only as an outlier (from a join's state or an auth chain) takes its place in the
    // timeline when it arrives with its prev events (or as backfilled history): the outlier row is
    // replaced in the commit below.
    if (existing && (!existing.outlier || existing.rejectedReason !== null)) return this.duplicateResult(eventId);

    // A local event was hashed and signed by this server a moment ago (room/build-event.ts, or our invite
    // with the invitee server's signature added, which no rule requires): checking our own signature again
    // was an Ed25519 verification and a content hash on every send, for nothing (issue 13).
    const verified = options.origin === "local" ? { ok: true as const, wire: pdu, identified: { ...pdu, event_id: eventId } as IdentifiedPdu } : await this.verifySignaturesAndHash(pdu, identified, rules);
    if (!verified.ok) throw forbidden(verified.reason);

    const checked = await this.checkAuth(verified.identified, verified.wire, rules, room, isCreate, options.stateBefore);
    // History is not checked against the present: soft failure only guards what happens now.
    if (options.backfillOrdering !== undefined) checked.softFailed = false;
    if (options.origin === "local") {
      if (checked.rejectedReason !== null) {
        if (checked.rejectedReason.endsWith(CREATOR_IN_USERS)) throw badJson(checked.rejectedReason);
        throw forbidden(checked.rejectedReason);
      }
      if (checked.softFailed) throw forbidden("Event is not allowed by the room's current state");
    }
    return this.commit(checked, room, isCreate, options);
  }

  /**
   * Checks 2 and 3 of "Checks performed on receipt of a PDU" for events from other servers: the signatures
   * of every server that must sign, then the content hash (a mismatch: the event is used in its redacted
   * form).
   */
  private async verifySignaturesAndHash(
    pdu: Pdu,
    received: ReceivedPduId,
    rules: RoomVersionRules,
  ): Promise<{ ok: true; wire: Pdu; identified: IdentifiedPdu } | { ok: false; reason: string }> {
    // protocol/received-pdu.ts, the code bench/signatures.bench.ts measures.
    const checked = await verifyReceivedPdu(pdu, received, rules, requiredSigningServers(pdu, rules), (server) => verifyKeysForEvent(this.env, pdu, server, rules));
    if (!checked.ok) return { ok: false, reason: `Event is not signed by ${checked.server}` };
    let wire = pdu;
    if (!checked.contentHashOk) wire = redactPdu(pdu, rules);
    return { ok: true, wire, identified: { ...wire, event_id: received.eventId } as IdentifiedPdu };
  }

  /**
   * Stores events without their place in the DAG (outliers: the state and auth chain of a room joined
   * over federation, the auth events of an event after a gap). Each is checked for format, signatures and
   * hash, and against its auth events, which must be stored or come earlier in `pdus` (the list is put in
   * auth order first). An event that fails is stored as rejected when its ID is known (so that events it
   * authorises are rejected too); one without a valid format or signature is dropped. Outliers get no
   * state group, are not forward extremities and notify nobody. Returns the IDs stored and those refused.
   */
  async persistOutliers(pdus: Pdu[]): Promise<{ stored: string[]; failed: { eventId: string | null; reason: string }[] }> {
    const room = this.meta() ?? this.pendingMeta();
    if (!room) throw forbidden("Unknown room");
    const rules = room.rules;
    const stored: string[] = [];
    const failed: { eventId: string | null; reason: string }[] = [];
    const byId = new Map<string, Pdu>();
    const receivedIds = new Map<string, ReceivedPduId>();
    for (const pdu of pdus) {
      const serialised = serialisePdu(pdu);
      if (validatePduFormat(pdu, rules, serialised.size).ok !== true) {
        failed.push({ eventId: null, reason: "invalid event format" });
        continue;
      }
      const id = await this.identifiedOrNull(pdu, rules, serialised);
      if (id === null) failed.push({ eventId: null, reason: "no event ID" });
      else {
        byId.set(id.eventId, pdu);
        receivedIds.set(id.eventId, id);
      }
    }
    // v12: the create event is an implicit auth event (found once: the batch may hold tens of thousands).
    const createId = room.createEventId ?? [...byId].find(([, p]) => p.type === "m.room.create" && p.state_key === "")?.[0];
    // Rows are written in chunks (one storage transaction each); until then the chunk's events are looked
    // up here, so that later events of the batch can be checked against earlier ones.
    const pending = new Map<string, { identified: IdentifiedPdu; wire: Pdu; rejectedReason: string | null }>();
    const pduOf = (id: string): IdentifiedPdu | undefined => pending.get(id)?.identified ?? this.events.pdu(id);
    // Stored events' rejection, read once per batch: the auth events of a big room's member events are
    // mostly the same few, and a stored event's rejection does not change while the batch is checked.
    const storedRejected = new Map<string, boolean>();
    const isRejected = (id: string): boolean => {
      const p = pending.get(id);
      if (p) return p.rejectedReason !== null;
      let rejected = storedRejected.get(id);
      if (rejected === undefined) storedRejected.set(id, (rejected = this.isRejected(id)));
      return rejected;
    };
    const flush = (): void => {
      if (pending.size === 0) return;
      this.storage.transactionSync(() => {
        let first = this.firstRemoteOrdering();
        for (const [eventId, row] of pending) {
          this.events.insert({
            streamOrdering: first,
            eventId,
            pdu: row.wire,
            rejectedReason: row.rejectedReason,
            softFailed: false,
            outlier: true,
            stateGroupBefore: null,
            stateGroupAfter: null,
            replacesState: null,
            redacts: null,
          });
          first = undefined;
          for (const auth of authEventIds(row.identified)) {
            this.sql.exec("INSERT OR IGNORE INTO auth_edges (event_id, auth_event_id) VALUES (?, ?)", eventId, auth);
          }
        }
      });
      pending.clear();
    };
    for (const eventId of authOrder(byId)) {
      if (pending.has(eventId) || this.events.has(eventId)) {
        stored.push(eventId);
        continue;
      }
      const pdu = byId.get(eventId)!;
      if (pdu.room_id !== undefined && pdu.room_id !== room.roomId) {
        failed.push({ eventId, reason: "event is for another room" });
        continue;
      }
      const verified = await this.verifySignaturesAndHash(pdu, receivedIds.get(eventId)!, rules);
      if (!verified.ok) {
        failed.push({ eventId, reason: verified.reason });
        continue;
      }
      const { identified, wire } = verified;
      let rejectedReason: string | null = null;
      const isCreate = identified.type === "m.room.create" && identified.state_key === "";
      if (isCreate) {
        const auth = checkEventAuth(identified, rules, () => undefined);
        if (!auth.allowed) rejectedReason = auth.reason;
        else if (rules.authorization.roomCreateEventIdAsRoomId && (await roomIdFromCreateEvent(wire, rules)) !== room.roomId) rejectedReason = "create event of another room";
      } else {
        const authEvents: IdentifiedPdu[] = [];
        for (const id of authEventIds(identified)) {
          const e = pduOf(id);
          if (!e) {
            rejectedReason = `auth event ${id} is unknown`;
            break;
          }
          authEvents.push(e);
        }
        if (rejectedReason === null) {
          const create = rules.authorization.roomCreateEventIdAsRoomId && createId !== undefined ? pduOf(createId) : undefined;
          const check = checkEventAgainstAuthEvents(identified, authEvents, rules, { createEvent: create, isRejected });
          if (!check.allowed) rejectedReason = check.reason;
        }
      }
      pending.set(eventId, { identified, wire, rejectedReason });
      if (pending.size >= OUTLIER_CHUNK) flush();
      if (rejectedReason === null) stored.push(eventId);
      else failed.push({ eventId, reason: rejectedReason });
    }
    flush();
    return { stored, failed };
  }

  /**
   * Starts a room that this server joins over federation: the meta row without a create event, until
   * `completeRemoteJoin` sets it (readers see no room before that).
   */
  beginRemoteRoom(roomId: string, roomVersion: string): void {
    const existing = this.meta();
    if (existing) throw new MatrixError(400, ROOM_EXISTS_ERRCODE, "Room already exists");
    if (!roomVersionRules(roomVersion)) throw new MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", `Unsupported room version ${roomVersion}`);
    this.initialise(roomId, roomVersion);
  }

  /**
   * Records a membership of a local user in a room this server is not in (an invite from another server,
   * or the local rejection of one): the event as an outlier and the stripped state to show. Creates the
   * room's meta without a create event if needed (readers still see no room). Returns the event's stream
   * ordering (the identity of its notification to the User DO).
   */
  storeOutOfBandMembership(roomId: string, roomVersion: string, pdu: Pdu, eventId: string, strippedState: JsonObject[]): number {
    if (!this.meta()) this.initialise(roomId, roomVersion);
    const userId = pdu.state_key ?? "";
    const membership = typeof pdu.content.membership === "string" ? pdu.content.membership : "leave";
    return this.storage.transactionSync(() => {
      let ordering = this.events.meta(eventId)?.streamOrdering;
      if (ordering === undefined) {
        ordering = this.events.insert({
          streamOrdering: this.firstRemoteOrdering(),
          eventId,
          pdu,
          rejectedReason: null,
          softFailed: false,
          outlier: true,
          stateGroupBefore: null,
          stateGroupAfter: null,
          replacesState: null,
          redacts: null,
        });
      }
      this.sql.exec(
        `INSERT INTO out_of_band_members (user_id, event_id, membership, stripped_state) VALUES (?, ?, ?, ?)
         ON CONFLICT (user_id) DO UPDATE SET event_id = excluded.event_id, membership = excluded.membership, stripped_state = excluded.stripped_state`,
        userId,
        eventId,
        membership,
        JSON.stringify(strippedState),
      );
      return ordering;
    });
  }

  /** A local user's out-of-band membership (see storeOutOfBandMembership), or null. */
  outOfBandMembership(userId: string): { eventId: string; membership: string; strippedState: JsonObject[] } | null {
    if (!this.schemaReady) return null;
    const row = this.sql
      .exec<{ event_id: string; membership: string; stripped_state: string }>("SELECT event_id, membership, stripped_state FROM out_of_band_members WHERE user_id = ?", userId)
      .toArray()[0];
    return row ? { eventId: row.event_id, membership: row.membership, strippedState: JSON.parse(row.stripped_state) as JsonObject[] } : null;
  }

  /** The room ID and version of a DO that holds meta (a room, or a room being joined or invited to). */
  roomIdentity(): { roomId: string; rules: RoomVersionRules } | null {
    const m = this.meta() ?? this.pendingMeta();
    return m ? { roomId: m.roomId, rules: m.rules } : null;
  }

  /** Checks 1-3 of a remote event outside the DAG (an invite to a room this server is not in). */
  async verifyRemoteEvent(pdu: Pdu, rules: RoomVersionRules): Promise<{ ok: true; eventId: string; wire: Pdu } | { ok: false; reason: string }> {
    const serialised = serialisePdu(pdu);
    const format = validatePduFormat(pdu, rules, serialised.size);
    if (!format.ok) return { ok: false, reason: `Invalid event: ${format.reason}` };
    const received = await this.identifiedOrNull(pdu, rules, serialised);
    if (received === null) return { ok: false, reason: "Invalid event" };
    const verified = await this.verifySignaturesAndHash(pdu, received, rules);
    return verified.ok ? { ok: true, eventId: received.eventId, wire: verified.wire } : verified;
  }

  /** Runs `fn` in one storage transaction (for modules that keep their own tables in the room's storage). */
  transaction<T>(fn: () => T): T {
    try {
      return this.storage.transactionSync(fn);
    } catch (e) {
      this.stateVersion += 1; // whatever it derived from the current state is void
      throw e;
    }
  }

  /**
   * Adds entries to the current state without an event of their own: the member events a partial-state
   * join left out, once the resync fetched them (room/partial-state.ts). A new state group derived from
   * the current one; current_state rows and state deltas at the latest stream position.
   *
   * The events from `fromOrdering` on (our join and what arrived during the resync) were given state
   * groups that lack those entries; each of their groups gets the entries it does not set itself, so that
   * the next event's state (computed from its prev events' groups) and history visibility see the whole
   * state too, as Synapse corrects partial-state events' state after its resync.
   */
  addToCurrentState(additions: ReadonlyMap<StateKey, string>, fromOrdering?: number): void {
    const meta = this.meta();
    if (!meta || additions.size === 0) return;
    const firstGroupId = (this.sql.exec<{ m: number | null }>("SELECT MAX(id) AS m FROM state_groups").one().m ?? 0) + 1;
    const at = this.maxStreamOrdering();
    // The entries were in the state all along (the state before our join lacked them only here): their
    // deltas sit just before the join, so that the state at any point from the join on (a sync showing the
    // room from its join, once the resync made it whole: user/partial-state-rooms.ts) has them.
    const deltaAt = fromOrdering !== undefined ? fromOrdering - 1 : at;
    try {
      this.storage.transactionSync(() => {
        if (fromOrdering !== undefined) this.completeStateGroups(additions, fromOrdering);
        const group = this.stateGroups.create(meta.currentStateGroup, additions);
        this.sql.exec("UPDATE room_meta SET current_state_group = ? WHERE id = 1", group);
        for (const [key, eventId] of additions) {
          const [type, sk] = splitStateKey(key);
          this.setCurrentStateRow(type, sk, eventId, at);
          this.sql.exec(
            "INSERT OR IGNORE INTO state_deltas (stream_ordering, type, state_key, event_id, prev_event_id) VALUES (?, ?, ?, ?, NULL)",
            deltaAt,
            type,
            sk,
            eventId,
          );
        }
      });
    } catch (e) {
      this.stateGroups.forgetFrom(firstGroupId);
      this.stateVersion += 1;
      throw e;
    } finally {
      this.metaCache = undefined;
    }
  }

  /**
   * Sets the current state to a stored state group: current_state rows, and state deltas at the latest
   * stream position for every key that changed (room/partial-state-recheck.ts, once the events of a
   * partial-state join were checked again against the whole state: Synapse's `update_current_state`).
   * Call inside a storage transaction. Returns how many keys changed.
   */
  replaceCurrentState(group: number): number {
    const meta = this.meta();
    if (!meta) return 0;
    const changes = diffStates(this.currentState(), this.stateGroups.load(group));
    const at = this.maxStreamOrdering();
    this.sql.exec("UPDATE room_meta SET current_state_group = ? WHERE id = 1", group);
    this.metaCache = undefined;
    for (const [key, eventId] of changes) {
      const [type, sk] = splitStateKey(key);
      // The latest position may hold the delta of the event there (the one now rejected, say): the row
      // becomes the net change at that position (from what was there before it).
      const earlier = this.sql.exec<{ prev_event_id: string | null }>("SELECT prev_event_id FROM state_deltas WHERE stream_ordering = ? AND type = ? AND state_key = ?", at, type, sk).toArray()[0];
      const prevId = earlier ? earlier.prev_event_id : (this.currentStateEventId(type, sk) ?? null);
      if (eventId === null) {
        this.stateVersion += 1;
        this.sql.exec("DELETE FROM current_state WHERE type = ? AND state_key = ?", type, sk);
      } else this.setCurrentStateRow(type, sk, eventId, at);
      this.sql.exec(
        "INSERT OR REPLACE INTO state_deltas (stream_ordering, type, state_key, event_id, prev_event_id) VALUES (?, ?, ?, ?, ?)",
        at,
        type,
        sk,
        eventId,
        prevId,
      );
    }
    return changes.size;
  }

  /** Drops the cached room meta and what was derived from the current state (after a rolled-back
   * transaction that changed them). */
  forgetMeta(): void {
    this.metaCache = undefined;
    this.stateVersion += 1;
  }

  /** addToCurrentState's correction of the state groups of events from `fromOrdering` on (one new group
   * per distinct old group: messages share their group, so this grows with state changes, not events). */
  private completeStateGroups(additions: ReadonlyMap<StateKey, string>, fromOrdering: number): void {
    const completed = new Map<number, number>();
    const complete = (group: number | null): number | null => {
      if (group === null) return null;
      let done = completed.get(group);
      if (done === undefined) {
        // One materialised read per group (cached), not one lookup per addition: a resync adds thousands.
        const state = this.stateGroups.load(group);
        const missing = new Map<StateKey, string>();
        for (const [key, eventId] of additions) if (!state.has(key)) missing.set(key, eventId);
        done = missing.size > 0 ? this.stateGroups.create(group, missing) : group;
        completed.set(group, done);
      }
      return done;
    };
    const rows = this.sql
      .exec<{ stream_ordering: number; state_group_before: number | null; state_group_after: number | null }>(
        "SELECT stream_ordering, state_group_before, state_group_after FROM events WHERE stream_ordering >= ? AND outlier = 0 AND state_group_before IS NOT NULL",
        fromOrdering,
      )
      .toArray();
    for (const r of rows) {
      const before = complete(r.state_group_before);
      const after = complete(r.state_group_after);
      if (before !== r.state_group_before || after !== r.state_group_after) {
        this.sql.exec("UPDATE events SET state_group_before = ?, state_group_after = ? WHERE stream_ordering = ?", before, after, r.stream_ordering);
      }
    }
  }

  /** Whether the room was joined with partial state and the resync has not finished (room/partial-state.ts
   * keeps the row; the table exists only in rooms that were joined that way). */
  inPartialState(): boolean {
    if (!this.schemaReady) return false;
    if (this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'partial_state'").toArray().length === 0) return false;
    return this.sql.exec("SELECT 1 FROM partial_state LIMIT 1").toArray().length > 0;
  }

  /** The explicit ordering of the first event of a room this server did not create (see
   * REMOTE_ROOM_FIRST_ORDERING); undefined once the room has events. */
  private firstRemoteOrdering(): number | undefined {
    return this.sql.exec("SELECT 1 FROM events LIMIT 1").toArray().length === 0 ? REMOTE_ROOM_FIRST_ORDERING : undefined;
  }

  /** The lowest stream ordering (backfill goes below it), or null before any event. */
  minStreamOrdering(): number | null {
    if (!this.schemaReady) return null;
    return this.sql.exec<{ m: number | null }>("SELECT MIN(stream_ordering) AS m FROM events").one().m;
  }

  /**
   * Backward extremities (spec: "Backfilling"): prev events of stored timeline events that are not stored
   * in the timeline themselves (absent, or only known as outliers). Where backfill continues from.
   */
  backwardExtremities(limit = 20): string[] {
    if (!this.schemaReady) return [];
    return this.sql
      .exec<{ id: string }>(
        `SELECT DISTINCT e.prev_event_id AS id FROM event_edges e JOIN events c ON c.event_id = e.event_id AND c.outlier = 0
         LEFT JOIN events p ON p.event_id = e.prev_event_id AND p.outlier = 0
         WHERE p.event_id IS NULL ORDER BY c.stream_ordering LIMIT ${sqlLimit(limit)}`,
      )
      .toArray()
      .map((r) => r.id);
  }

  /** The meta of a room being joined (begun, create event not yet set), for outlier checks. */
  private pendingMeta(): RoomMeta | null {
    if (!this.schemaReady) return null;
    const row = this.sql.exec<{ room_id: string; room_version: string }>("SELECT room_id, room_version FROM room_meta WHERE id = 1").toArray()[0];
    const rules = row ? roomVersionRules(row.room_version) : undefined;
    if (!row || !rules) return null;
    return { roomId: row.room_id, roomVersion: row.room_version, rules, createEventId: null, currentStateGroup: null };
  }

  /** Records the room's create event (stored as an outlier) once a remote join has its state. */
  setCreateEvent(createEventId: string | null): void {
    this.sql.exec("UPDATE room_meta SET create_event_id = ? WHERE id = 1", createEventId);
    this.metaCache = undefined;
  }

  /**
   * Persists the join event of a room joined over federation, on the state the resident server gave
   * (its events stored as outliers first). Meta must be set up (`beginRemoteRoom`, `setCreateEvent`).
   */
  async persistRemoteJoin(pdu: Pdu, stateBefore: ReadonlyStateMap): Promise<PersistResult> {
    return this.persistEvent(pdu, { origin: "federation", stateBefore });
  }

  private duplicateResult(eventId: string): PersistResult {
    const m = this.events.meta(eventId)!;
    return { eventId, streamOrdering: m.streamOrdering, rejectedReason: m.rejectedReason, softFailed: m.softFailed, duplicate: true, fanOut: false };
  }

  private async identifiedOrNull(pdu: Pdu, rules: RoomVersionRules, serialised?: PduSerialisation): Promise<ReceivedPduId | null> {
    try {
      return await identifyPdu(pdu, rules, serialised);
    } catch {
      return null;
    }
  }

  private async eventIdOrNull(pdu: Pdu, rules: RoomVersionRules): Promise<string | null> {
    try {
      return await eventIdFor(pdu, rules);
    } catch {
      return null;
    }
  }

  private isRejected = (eventId: string): boolean => {
    const m = this.events.meta(eventId);
    return m !== undefined && m.rejectedReason !== null;
  };

  /** Checks 4-6 (auth events, state before, current state). */
  private async checkAuth(
    event: IdentifiedPdu,
    wire: Pdu,
    rules: RoomVersionRules,
    room: RoomMeta,
    isCreate: boolean,
    stateBefore?: ReadonlyStateMap,
  ): Promise<CheckedEvent> {
    const result: CheckedEvent = { eventId: event.event_id, wire, identified: event, rejectedReason: null, softFailed: false, before: { group: null } };
    if (isCreate) {
      const auth = checkEventAuth(event, rules, () => undefined);
      if (!auth.allowed) result.rejectedReason = auth.reason;
      return result;
    }

    // 4. Against the auth events. Missing auth events would be fetched over federation; until then the
    // event is rejected.
    const authEvents: IdentifiedPdu[] = [];
    for (const id of authEventIds(event)) {
      const e = this.events.pdu(id);
      if (!e) {
        result.rejectedReason = `auth event ${id} is unknown`;
        return result;
      }
      authEvents.push(e);
    }
    const createEvent = rules.authorization.roomCreateEventIdAsRoomId && room.createEventId ? this.events.pdu(room.createEventId) : undefined;

    // Third-party invites: verify the signatures of `signed` against the candidate keys first (async).
    let verifiedKeys: Set<string> | undefined;
    const tpiKeys = (lookup: AuthStateLookup): string[] => {
      const signed = isJsonObject(event.content.third_party_invite) ? event.content.third_party_invite.signed : undefined;
      const token = isJsonObject(signed) ? signed.token : undefined;
      const invite = typeof token === "string" ? lookup("m.room.third_party_invite", token) : undefined;
      return invite ? thirdPartyInvitePublicKeys(invite) : [];
    };

    // 5. The state before the event: the state after its one prev event, or the resolution of the states
    // after its prev events.
    const prevs = prevEventIds(event);
    const groups: number[] = [];
    if (!stateBefore) {
      for (const id of prevs) {
        const m = this.events.meta(id);
        if (!m || m.outlier) throw new MatrixError(400, MISSING_PREV_ERRCODE, `prev event ${id} is unknown`);
        const g = m.stateGroupAfter;
        if (g !== null && !groups.includes(g)) groups.push(g);
      }
    }
    let beforeLookup: AuthStateLookup;
    let currentLookup: AuthStateLookup = this.currentLookup;
    if (stateBefore) {
      result.before = { resolvedFrom: null, changes: stateBefore, state: stateBefore };
      beforeLookup = this.lookupInMap(stateBefore);
      // A gap in the DAG (the state before came from another server): the event will be a forward
      // extremity beside ours, so it is soft-failed against the resolution of the current state and its own
      // state, as Synapse's `_check_for_soft_fail` does for an event with missing prev events (a member
      // whose join we never saw is in it; a ban we know of still wins, state res v2).
      if (room.currentStateGroup !== null) currentLookup = this.lookupInMap(this.resolveStates([this.currentState(), stateBefore]));
    } else if (groups.length <= 1) {
      const group = groups[0] ?? null;
      result.before = { group };
      beforeLookup = this.lookupInGroup(group);
    } else {
      const state = this.resolve(groups, rules);
      const parent = groups[0]!;
      result.before = { resolvedFrom: parent, changes: diffStates(this.stateGroups.load(parent), state), state };
      beforeLookup = this.lookupInMap(state);
    }

    const partial = this.inPartialState();
    if (partial) {
      // A room joined with partial state lacks most member events, and may hold some wrongly (an event
      // accepted against too little state; room/partial-state-recheck.ts corrects them after the resync).
      // So the state the event is authorised against is the state before it resolved with the event's own
      // auth events, as Synapse's `_check_event_auth` does while partial: a member missing from our state
      // is taken from them, and a conflict (a member wrongly kicked here, whose auth events still show
      // them joined) is settled by state resolution. The current state only fills in missing members.
      const claimed = new Map<StateKey, string>();
      for (const e of authEvents) if (typeof e.state_key === "string") claimed.set(stateKey(e.type, e.state_key), e.event_id);
      if (createEvent && !claimed.has(stateKey("m.room.create", ""))) claimed.set(stateKey("m.room.create", ""), createEvent.event_id);
      const before = "group" in result.before ? this.stateGroups.load(result.before.group) : result.before.state;
      beforeLookup = this.lookupInMap(this.resolveStates([before, claimed]));
      const fromAuth = authLookupOf(authEvents, createEvent);
      const current = currentLookup;
      currentLookup = (type, sk) => current(type, sk) ?? (type === "m.room.member" ? fromAuth(type, sk) : undefined);
    }
    if (event.type === "m.room.member" && Object.hasOwn(event.content, "third_party_invite")) {
      const keys = [...tpiKeys(authLookupOf(authEvents, createEvent)), ...tpiKeys(beforeLookup), ...tpiKeys(currentLookup)];
      verifiedKeys = await verifyThirdPartyInviteSigned(event, keys);
    }
    const authOptions = { thirdPartyInviteVerifiedKeys: verifiedKeys };

    const byAuthEvents = checkEventAgainstAuthEvents(event, authEvents, rules, { ...authOptions, createEvent, isRejected: this.isRejected });
    if (!byAuthEvents.allowed) {
      result.rejectedReason = byAuthEvents.reason;
      return result;
    }
    const byStateBefore = checkEventAuth(event, rules, beforeLookup, authOptions);
    if (!byStateBefore.allowed) {
      result.rejectedReason = byStateBefore.reason;
      return result;
    }

    // 6. Soft fail against the current state, when that differs from the state before. A room joined over
    // federation has no current state before its join event: nothing to soft-fail against. Nor does a room
    // held with partial state, as Synapse's `_check_for_soft_fail`: its current members may be missing or
    // wrong until the resync.
    const current = room.currentStateGroup;
    if (current !== null && !partial && (!("group" in result.before) || result.before.group !== current)) {
      const byCurrent = checkEventAuth(event, rules, currentLookup, authOptions);
      if (!byCurrent.allowed) result.softFailed = true;
    }
    return result;
  }

  /** State resolution over state maps (the states after an event's prev events when some of them came
   * from another server: room/federation-inbound.ts). */
  resolveStates(states: ReadonlyStateMap[]): ReadonlyStateMap {
    const rules = this.meta()!.rules;
    return resolveState({ rules, stateSets: states.map((s) => s as StateMap), getEvent: (id) => this.events.pdu(id), isRejected: this.isRejected });
  }

  /** State resolution over stored groups (spec: the room version's state resolution algorithm). */
  private resolve(groups: number[], rules: RoomVersionRules): ReadonlyStateMap {
    const stateSets = groups.map((g) => this.stateGroups.load(g) as StateMap);
    return resolveState({ rules, stateSets, getEvent: (id) => this.events.pdu(id), isRejected: this.isRejected });
  }

  /** The storage transaction of `persistEvent`. */
  private commit(checked: CheckedEvent, room: RoomMeta, isCreate: boolean, options: PersistOptions): PersistResult {
    const { eventId, wire, identified: event, rejectedReason, softFailed } = checked;
    const rules = room.rules;
    const accepted = rejectedReason === null && !softFailed;
    const isState = typeof event.state_key === "string";
    const firstGroupId = (this.sql.exec<{ m: number | null }>("SELECT MAX(id) AS m FROM state_groups").one().m ?? 0) + 1;

    try {
      return this.storage.transactionSync(() => {
        // State before (a resolved state becomes a group derived from the first prev's group).
        let groupBefore: number | null;
        if ("group" in checked.before) groupBefore = checked.before.group;
        else groupBefore = this.stateGroups.create(checked.before.resolvedFrom, checked.before.changes);

        let groupAfter = groupBefore;
        let replacesState: string | null = null;
        if (isState) {
          replacesState = this.stateGroups.lookup(groupBefore, event.type, event.state_key!) ?? null;
          if (rejectedReason === null) {
            groupAfter = this.stateGroups.create(groupBefore, new Map([[stateKey(event.type, event.state_key!), eventId]]));
          }
        }

        const redacts = event.type === "m.room.redaction" ? (redactsOf(event, rules) ?? null) : null;
        if (this.events.meta(eventId)?.outlier) {
          this.sql.exec("DELETE FROM events WHERE event_id = ?", eventId);
          this.events.forget(eventId);
        }
        const streamOrdering = this.events.insert({
          streamOrdering: options.backfillOrdering,
          eventId,
          pdu: wire,
          rejectedReason,
          softFailed,
          outlier: false,
          stateGroupBefore: groupBefore,
          stateGroupAfter: groupAfter,
          replacesState,
          redacts,
        });
        for (const prev of prevEventIds(event)) {
          this.sql.exec("INSERT OR IGNORE INTO event_edges (event_id, prev_event_id) VALUES (?, ?)", eventId, prev);
        }
        for (const auth of authEventIds(event)) {
          this.sql.exec("INSERT OR IGNORE INTO auth_edges (event_id, auth_event_id) VALUES (?, ?)", eventId, auth);
        }

        if (isCreate) {
          this.sql.exec("UPDATE room_meta SET create_event_id = ? WHERE id = 1", eventId);
        }

        if (accepted && options.backfillOrdering !== undefined) {
          // History: only redactions apply; the present (extremities, current state) stays as it is.
          if (redacts !== null) this.applyRedactionOf(event, groupBefore, rules);
          this.applyEarlierRedactions(event, rules);
        } else if (accepted) {
          this.updateForwardExtremities(eventId, prevEventIds(event));
          this.updateCurrentState(streamOrdering, event, groupBefore, groupAfter, rules);
          if (redacts !== null) this.applyRedactionOf(event, groupBefore, rules);
          this.applyEarlierRedactions(event, rules);
        }
        if (accepted && options.afterGap && options.backfillOrdering === undefined) recordTimelineGap(this.sql, streamOrdering);
        if (options.txn) {
          const { userId, deviceId, txnId } = options.txn;
          this.sql.exec("INSERT INTO txn_ids (user_id, device_id, txn_id, event_id) VALUES (?, ?, ?, ?)", userId, deviceId, txnId, eventId);
        }
        const stored = { type: event.type, stateKey: isState ? event.state_key! : null, originServerTs: event.origin_server_ts };
        return { eventId, streamOrdering, rejectedReason, softFailed, duplicate: false, fanOut: accepted && options.backfillOrdering === undefined, stored };
      });
    } catch (e) {
      // The transaction rolled back: forget in-memory state derived from it.
      this.stateGroups.forgetFrom(firstGroupId);
      this.metaCache = undefined;
      this.stateVersion += 1;
      this.events.forget(eventId);
      throw e;
    } finally {
      this.metaCache = undefined;
    }
  }

  private updateForwardExtremities(eventId: string, prevs: string[]): void {
    for (const prev of prevs) this.sql.exec("DELETE FROM forward_extremities WHERE event_id = ?", prev);
    // An event whose successor is already known (it arrived late) is no extremity.
    const hasChild = this.sql
      .exec("SELECT 1 FROM event_edges e JOIN events ev ON ev.event_id = e.event_id WHERE e.prev_event_id = ? AND ev.rejected_reason IS NULL AND ev.soft_failed = 0 LIMIT 1", eventId)
      .toArray().length > 0;
    if (!hasChild) this.sql.exec("INSERT OR IGNORE INTO forward_extremities (event_id) VALUES (?)", eventId);
  }

  /**
   * The current state is the state after the forward extremities (resolved when there are several).
   * Writes current_state and the state_deltas log for every key that changed.
   */
  private updateCurrentState(streamOrdering: number, event: IdentifiedPdu, groupBefore: number | null, groupAfter: number | null, rules: RoomVersionRules): void {
    const oldGroup = this.sql.exec<{ g: number | null }>("SELECT current_state_group AS g FROM room_meta WHERE id = 1").one().g;
    const extremities = this.forwardExtremities();
    let newGroup: number | null;
    let changes: Map<StateKey, string | null>;
    if (extremities.length === 1 && extremities[0] === event.event_id) {
      newGroup = groupAfter;
      if (oldGroup === groupBefore) {
        // The usual case (an event on the only extremity): the change is the event's own key, if any.
        changes = new Map();
        if (groupAfter !== groupBefore) changes.set(stateKey(event.type, event.state_key!), event.event_id);
      } else {
        changes = diffStates(this.stateGroups.load(oldGroup), this.stateGroups.load(newGroup));
      }
    } else {
      const groups: number[] = [];
      for (const id of extremities) {
        const g = this.events.meta(id)?.stateGroupAfter ?? null;
        if (g !== null && !groups.includes(g)) groups.push(g);
      }
      if (groups.length === 1) newGroup = groups[0]!;
      else {
        const resolved = this.resolve(groups, rules);
        const parent = groupAfter !== null && groups.includes(groupAfter) ? groupAfter : groups[0]!;
        newGroup = this.stateGroups.create(parent, diffStates(this.stateGroups.load(parent), resolved));
      }
      changes = diffStates(this.stateGroups.load(oldGroup), this.stateGroups.load(newGroup));
    }
    this.sql.exec("UPDATE room_meta SET current_state_group = ? WHERE id = 1", newGroup);
    for (const [key, newId] of changes) {
      const [type, sk] = splitStateKey(key);
      const prevId = this.currentStateEventId(type, sk) ?? null;
      if (newId === null) {
        this.stateVersion += 1;
        this.sql.exec("DELETE FROM current_state WHERE type = ? AND state_key = ?", type, sk);
      } else {
        this.setCurrentStateRow(type, sk, newId, streamOrdering);
      }
      this.sql.exec(
        "INSERT INTO state_deltas (stream_ordering, type, state_key, event_id, prev_event_id) VALUES (?, ?, ?, ?, ?)",
        streamOrdering,
        type,
        sk,
        newId,
        prevId,
      );
    }
  }

  /** One current_state row (member rows carry their membership, for member lists in one indexed query). */
  private setCurrentStateRow(type: string, sk: string, eventId: string, streamOrdering: number): void {
    this.stateVersion += 1;
    const membership = type === "m.room.member" ? membershipContent(this.events.pdu(eventId)) : null;
    this.sql.exec(
      `INSERT INTO current_state (type, state_key, event_id, stream_ordering, membership) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (type, state_key) DO UPDATE SET event_id = excluded.event_id, stream_ordering = excluded.stream_ordering, membership = excluded.membership`,
      type,
      sk,
      eventId,
      streamOrdering,
      membership,
    );
  }

  /**
   * Applies a redaction to its target if the target is known and the redaction may apply (room v3+
   * "Handling redactions": checked when applied, against the state before the redaction).
   */
  private applyRedactionOf(redaction: IdentifiedPdu, groupBefore: number | null, rules: RoomVersionRules): void {
    const targetId = redactsOf(redaction, rules);
    if (targetId === undefined) return;
    const targetMeta = this.events.meta(targetId);
    const target = this.events.pdu(targetId);
    if (!targetMeta || !target || targetMeta.redactedBecause !== null || targetMeta.rejectedReason !== null) return;
    if (!redactionAllowedAtDelivery(redaction, target, this.lookupInGroup(groupBefore), rules)) return;
    this.events.applyRedaction(targetId, redactPdu(wireForm(target, rules), rules), redaction.event_id);
  }

  /** An event that arrives after a redaction of it is stored redacted right away. */
  private applyEarlierRedactions(event: IdentifiedPdu, rules: RoomVersionRules): void {
    const rows = this.sql
      .exec<{ event_id: string; state_group_before: number | null }>(
        "SELECT event_id, state_group_before FROM events WHERE redacts = ? AND rejected_reason IS NULL AND soft_failed = 0 AND event_id != ? ORDER BY stream_ordering",
        event.event_id,
        event.event_id,
      )
      .toArray();
    for (const row of rows) {
      const redaction = this.events.pdu(row.event_id);
      const m = this.events.meta(event.event_id);
      if (!redaction || !m || m.redactedBecause !== null) return;
      if (!redactionAllowedAtDelivery(redaction, event, this.lookupInGroup(row.state_group_before), rules)) continue;
      this.events.applyRedaction(event.event_id, redactPdu(wireForm(event, rules), rules), redaction.event_id);
      return;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Outbox: deliveries that failed and wait for the alarm (room/fan-out.ts decides who is told what;
  // durable-objects/notifications.ts is the contract).

  isLocalUser(userId: string): boolean {
    if (userId.startsWith("@") && serverNameOf(userId) === this.env.SERVER_NAME) return true;
    return this.ownServerKey !== undefined && this.keyIdentity().isLocal(userId);
  }

  /**
   * The server name a member's server is reached at: the server part of the user ID, or in MSC4345
   * rooms, where that is a server key, the `unverified_domain` of the key's current participation (its
   * routing information; "" when the key has none), and this server for its own key.
   */
  routingServerOf(userId: string): string {
    if (this.ownServerKey === undefined) return serverNameOf(userId); // not an MSC4345 room
    const ids = this.keyIdentity();
    if (!ids.active) return serverNameOf(userId);
    // MSC4348: an account is reached through the server its membership names.
    const rules = (this.meta() ?? this.pendingMeta())?.rules;
    const key = rules?.eventFormat.accountKeyIdentity ? hostingServerKey(userId, this.currentLookup, rules) : serverKeyOfUser(userId);
    if (key === undefined) return serverNameOf(userId);
    if (key === this.ownServerKey) return this.env.SERVER_NAME;
    const domain = this.currentStateEvent(PARTICIPATION_EVENT_TYPE, key)?.content.unverified_domain;
    return typeof domain === "string" ? domain : "";
  }

  /** This server's key in MSC4345 rooms; set by the Room DO before it serves such a room. */
  ownServerKey: string | undefined;

  /** MSC4348 rooms: the local accounts' keys this room has loaded (room/key-identity.ts). */
  readonly localAccounts = new LocalAccounts();

  /** The ID translation of MSC4345 rooms (room/key-identity.ts); the identity in other rooms. */
  keyIdentity(): KeyIdentity {
    const rules = (this.meta() ?? this.pendingMeta())?.rules;
    const hostOf = (userId: string) => (rules ? hostingServerKey(userId, this.currentLookup, rules) : undefined);
    return new KeyIdentity(this.env.SERVER_NAME, this.ownServerKey, rules, (key) => this.serverDomains.domainOf(key), this.localAccounts, hostOf);
  }

  /** Outbox rows (the given IDs, or the oldest `limit`), oldest first. */
  outbox(ids?: number[], limit = 500): OutboxEntry[] {
    const meta = this.meta();
    if (!meta) return [];
    type Row = { id: number; user_id: string; stream_ordering: number };
    const rows: Row[] = ids
      ? ids.flatMap((id) => this.sql.exec<Row>("SELECT id, user_id, stream_ordering FROM outbox WHERE id = ?", id).toArray())
      : this.sql.exec<Row>(`SELECT id, user_id, stream_ordering FROM outbox ORDER BY id LIMIT ${sqlLimit(limit)}`).toArray();
    const out: OutboxEntry[] = [];
    for (const r of rows) {
      const m = this.events.metaAt(r.stream_ordering);
      if (!m) continue;
      out.push({ id: r.id, userId: r.user_id, notification: notificationOf(meta.roomId, m) });
    }
    return out;
  }

  outboxSize(): number {
    if (!this.schemaReady) return 0;
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM outbox").one().n;
  }

  deleteOutbox(ids: number[]): void {
    for (const id of ids) this.sql.exec("DELETE FROM outbox WHERE id = ?", id);
  }

  markOutboxAttempt(ids: number[]): void {
    for (const id of ids) this.sql.exec("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", id);
  }

  // -------------------------------------------------------------------------------------------
  // Forget (POST /rooms/{roomId}/forget): per-user, not a room event.

  setForgotten(userId: string, forgotten: boolean): void {
    if (forgotten) this.sql.exec("INSERT OR IGNORE INTO forgotten (user_id) VALUES (?)", userId);
    else this.sql.exec("DELETE FROM forgotten WHERE user_id = ?", userId);
  }

  isForgotten(userId: string): boolean {
    if (!this.schemaReady) return false;
    return this.sql.exec("SELECT 1 FROM forgotten WHERE user_id = ?", userId).toArray().length > 0;
  }

  /** Meta of a stored event. */
  eventMeta(eventId: string): EventMeta | undefined {
    return this.schemaReady ? this.events.meta(eventId) : undefined;
  }
}

function membershipContent(pdu: IdentifiedPdu | undefined): string | null {
  const m = pdu?.content.membership;
  return typeof m === "string" ? m : null;
}

function authLookupOf(authEvents: IdentifiedPdu[], createEvent: IdentifiedPdu | undefined): AuthStateLookup {
  const all = createEvent ? [createEvent, ...authEvents] : authEvents;
  return (type, sk) => all.find((e) => e.type === type && e.state_key === sk);
}

/** The form of a stored event that hashes and redaction see: without `event_id` from v3 on. */
export function wireForm(pdu: IdentifiedPdu, rules: RoomVersionRules): Pdu {
  if (rules.eventFormat.eventIdInPdu) return pdu;
  const { event_id: _id, ...rest } = pdu;
  return rest as Pdu;
}

export function notificationOf(roomId: string, m: EventMeta): RoomEventNotification {
  const n: RoomEventNotification = { roomId, streamOrdering: m.streamOrdering, eventId: m.eventId, type: m.type, sender: m.sender, ts: m.originServerTs };
  if (m.stateKey !== null) n.stateKey = m.stateKey;
  if (m.membership !== null) n.membership = m.membership;
  return n;
}
