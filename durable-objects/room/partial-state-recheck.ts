// Events that arrived while a room was held with partial state, checked again once its state is whole
// (spec: Server-Server API, "Checks performed on receipt of a PDU", checks 4 and 5; MSC3902; Synapse's
// `FederationEventHandler.update_state_for_partial_state_event`, run for every partial-state event in
// stream order by `_sync_partial_state_room` before it recomputes the current state).
//
// While the room was partial, an event was authorised against the state we had: where a member's event was
// missing, the event's own auth events stood in for it (engine.checkAuth). So an event could be accepted
// wrongly (its sender had left, but the state that says so was not here yet: Complement msc3902 "State
// accepted incorrectly") or rejected wrongly (a kick accepted wrongly made its sender look absent: "State
// rejected incorrectly"). Once the resync has stored the whole state (room/partial-state.ts `apply`), each
// event from our join on is taken again in stream order, which is the DAG's order for events that are not
// backfilled history:
//   - the state before it is computed again from its prev events' states after (resolved when there are
//     several), which earlier steps of this walk have corrected already; our join's is the state the
//     resync fetched (its prev events are not in our timeline); another event after a gap (prev events
//     never fetched) keeps the state it was given, completed by `apply` (Synapse fetches it again);
//   - it is authorised again against its auth events and against that state, with no stand-ins: a rejected
//     event whose checks now pass is accepted, an accepted one that fails is rejected (as Synapse, both ways:
//     `_update_state_for_partial_state_event_txn` flips the rejection either way);
//   - its state groups and rejection are rewritten.
// When every event is done, and if any rejection changed, the forward extremities from our join on are
// found again (accepted events that nothing accepted follows: an event rejected now leaves them, its prev
// events may take its place); then the current state is set to the state after the forward extremities
// (Synapse: `update_current_state`), with state deltas for what changed. Soft failure is not checked again (Synapse
// does not either). The walk is bounded per step (RECHECK_PER_STEP events per invocation) and resumes from
// its cursor after a restart; the last step finishes in the same write-queue turn, so no event arrives
// unchecked between the last batch and the end of the partial state.
//
// Weaker than Synapse: a redaction accepted wrongly has already redacted its target, and that is not
// undone; clients that saw an event accepted wrongly are not told (the room's eager syncs showed nothing
// yet; lazy-loading syncs see the corrected current state only as of their next full state).
import { checkEventAgainstAuthEvents, checkEventAuth, thirdPartyInvitePublicKeys, verifyThirdPartyInviteSigned, type AuthStateLookup } from "../../protocol/auth-rules.js";
import { isJsonObject } from "../../protocol/json.js";
import { authEventIds, prevEventIds, stateKey, type IdentifiedPdu } from "../../protocol/pdu.js";
import type { RoomVersionRules } from "../../protocol/room-versions.js";
import type { RoomEngine } from "./engine.js";
import { diffStates } from "./state-groups.js";
import { sqlLimit } from "../sql-limit.js";

/** Events checked again per step (each is a few indexed reads and at most a state resolution). */
export const RECHECK_PER_STEP = 200;

const SCHEMA = `CREATE TABLE IF NOT EXISTS partial_state_recheck (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  join_event_id TEXT NOT NULL,
  from_ordering INTEGER NOT NULL,
  next_ordering INTEGER NOT NULL,
  flipped INTEGER NOT NULL DEFAULT 0
);`;

/** What one event's second check changed (for tests and logs). */
export interface RecheckedEvent {
  eventId: string;
  wasRejected: boolean;
  rejected: boolean;
}

/** Starts the walk at our join (the partial-state join whose resync just stored the whole state). */
export function beginRecheck(engine: RoomEngine, joinEventId: string): void {
  engine.sql.exec(SCHEMA);
  const from = engine.events.meta(joinEventId)?.streamOrdering ?? 0;
  engine.sql.exec("INSERT OR REPLACE INTO partial_state_recheck (id, join_event_id, from_ordering, next_ordering, flipped) VALUES (1, ?, ?, ?, 0)", joinEventId, from, from);
}

/** Forgets the walk (the room left partial state). */
export function endRecheck(engine: RoomEngine): void {
  engine.sql.exec(SCHEMA);
  engine.sql.exec("DELETE FROM partial_state_recheck");
}

/**
 * One bounded step of the walk, in the room's write queue. `stateAtJoin` gives the IDs of the whole state
 * before our join, as the resync fetched it (read only when the join's turn comes). Returns `done: true`
 * once every event up to the newest has been checked again and the current state set from the forward
 * extremities.
 */
export async function recheckStep(engine: RoomEngine, stateAtJoin: () => string[], limit = RECHECK_PER_STEP): Promise<{ done: boolean; changed: RecheckedEvent[] }> {
  const meta = engine.meta();
  if (!meta) return { done: true, changed: [] };
  engine.sql.exec(SCHEMA);
  const cursor = engine.sql
    .exec<{ join_event_id: string; from_ordering: number; next_ordering: number; flipped: number }>("SELECT join_event_id, from_ordering, next_ordering, flipped FROM partial_state_recheck WHERE id = 1")
    .toArray()[0];
  // A resync begun before this module existed: nothing recorded, nothing to walk.
  if (!cursor) return { done: true, changed: [] };
  const rows = engine.sql
    .exec<{ stream_ordering: number; event_id: string }>(
      `SELECT stream_ordering, event_id FROM events WHERE stream_ordering >= ? AND outlier = 0 ORDER BY stream_ordering LIMIT ${sqlLimit(limit)}`,
      cursor.next_ordering,
    )
    .toArray();
  // The async part (third-party invite signatures) first; the writes then run in one transaction.
  const verifiedKeys = new Map<string, Set<string>>();
  for (const { event_id } of rows) {
    const pdu = engine.events.pdu(event_id);
    if (pdu?.type === "m.room.member" && Object.hasOwn(pdu.content, "third_party_invite")) {
      verifiedKeys.set(event_id, await verifyThirdPartyInviteSigned(pdu, thirdPartyInviteKeys(engine, pdu)));
    }
  }
  const changed: RecheckedEvent[] = [];
  const done = rows.length < limit;
  const firstGroupId = (engine.sql.exec<{ m: number | null }>("SELECT MAX(id) AS m FROM state_groups").one().m ?? 0) + 1;
  try {
    engine.transaction(() => {
      for (const { event_id } of rows) {
        const whole = event_id === cursor.join_event_id ? stateAtJoin() : undefined;
        const change = recheckEvent(engine, meta.rules, meta.createEventId, event_id, verifiedKeys.get(event_id), whole);
        if (change) changed.push(change);
      }
      const flipped = cursor.flipped !== 0 || changed.some((c) => c.rejected !== c.wasRejected);
      if (rows.length > 0) engine.sql.exec("UPDATE partial_state_recheck SET next_ordering = ?, flipped = ? WHERE id = 1", rows.at(-1)!.stream_ordering + 1, flipped ? 1 : 0);
      if (done) {
        if (flipped) findForwardExtremities(engine, cursor.from_ordering);
        setCurrentStateFromExtremities(engine);
        engine.sql.exec("DELETE FROM partial_state_recheck");
      }
    });
  } catch (e) {
    engine.stateGroups.forgetFrom(firstGroupId);
    engine.forgetMeta();
    throw e;
  }
  return { done, changed };
}

/** The keys a third-party invite's `signed` may be signed with: from its auth events and the state before. */
function thirdPartyInviteKeys(engine: RoomEngine, event: IdentifiedPdu): string[] {
  const signed = isJsonObject(event.content.third_party_invite) ? event.content.third_party_invite.signed : undefined;
  const token = isJsonObject(signed) ? signed.token : undefined;
  if (typeof token !== "string") return [];
  const keys: string[] = [];
  for (const id of authEventIds(event)) {
    const e = engine.events.pdu(id);
    if (e?.type === "m.room.third_party_invite" && e.state_key === token) keys.push(...thirdPartyInvitePublicKeys(e));
  }
  const before = engine.events.meta(event.event_id)?.stateGroupBefore ?? null;
  const inviteId = engine.stateGroups.lookup(before, "m.room.third_party_invite", token);
  const invite = inviteId ? engine.events.pdu(inviteId) : undefined;
  if (invite) keys.push(...thirdPartyInvitePublicKeys(invite));
  return keys;
}

/** Checks one event again (see the header); writes what changed. Inside the step's transaction. `whole`:
 * for our join, the IDs of the whole state before it. */
function recheckEvent(
  engine: RoomEngine,
  rules: RoomVersionRules,
  createEventId: string | null,
  eventId: string,
  verifiedKeys: Set<string> | undefined,
  whole: string[] | undefined,
): RecheckedEvent | null {
  const m = engine.events.meta(eventId);
  const event = engine.events.pdu(eventId);
  if (!m || !event || m.outlier) return null;
  const isCreate = event.type === "m.room.create" && event.state_key === "";
  if (isCreate) return null;

  // The state before: from the prev events' states after, as the engine computes it for a new event.
  let before = m.stateGroupBefore;
  const prevs = prevEventIds(event).map((id) => engine.events.meta(id));
  if (whole) {
    // Our join: the state it was given lacked the members; what the whole state has beyond it is added (a
    // key set by the state we were given stays: the last ID of a key in the fetched list wins otherwise).
    const given = engine.stateGroups.load(m.stateGroupBefore);
    const missing = new Map<string, string>();
    for (const id of whole) {
      const e = engine.events.meta(id);
      if (!e || e.rejectedReason !== null || e.stateKey === null) continue;
      const key = stateKey(e.type, e.stateKey);
      if (!given.has(key)) missing.set(key, id);
    }
    if (missing.size > 0) before = engine.stateGroups.create(m.stateGroupBefore, missing);
  } else if (prevs.length > 0 && prevs.every((p) => p !== undefined && !p.outlier)) {
    const groups: number[] = [];
    for (const p of prevs) if (p!.stateGroupAfter !== null && !groups.includes(p!.stateGroupAfter)) groups.push(p!.stateGroupAfter);
    if (groups.length === 1) before = groups[0]!;
    else if (groups.length > 1) {
      const resolved = engine.resolveStates(groups.map((g) => engine.stateGroups.load(g)));
      const parent = groups[0]!;
      // The same resolution as the stored group: keep it (no new group for an unchanged state).
      const stored = m.stateGroupBefore !== null ? engine.stateGroups.load(m.stateGroupBefore) : null;
      before = stored && diffStates(stored, resolved).size === 0 ? m.stateGroupBefore : engine.stateGroups.create(parent, diffStates(engine.stateGroups.load(parent), resolved));
    }
  }

  // Checks 4 and 5 against the whole state: no stand-ins for missing members any more.
  const rejectedReason = authReason(engine, rules, createEventId, event, before, verifiedKeys);
  const wasRejected = m.rejectedReason !== null;
  const rejected = rejectedReason !== null;
  if (before === m.stateGroupBefore && rejected === wasRejected) return null;

  const isState = typeof event.state_key === "string";
  let after = before;
  if (isState && !rejected) {
    after = before === m.stateGroupBefore && m.stateGroupAfter !== m.stateGroupBefore ? m.stateGroupAfter : engine.stateGroups.create(before, new Map([[stateKey(event.type, event.state_key!), eventId]]));
  }
  const replacesState = isState ? (engine.stateGroups.lookup(before, event.type, event.state_key!) ?? null) : null;
  engine.sql.exec(
    "UPDATE events SET state_group_before = ?, state_group_after = ?, rejected_reason = ?, replaces_state = ? WHERE event_id = ?",
    before,
    after,
    rejected ? rejectedReason : null,
    replacesState,
    eventId,
  );
  // Only events clients may be shown are searchable (event-store.ts insert).
  if (rejected && !wasRejected) engine.events.search.remove(m.streamOrdering);
  else if (!rejected && wasRejected && !m.softFailed && m.redactedBecause === null) engine.events.search.add(m.streamOrdering, event.type, event.content);
  return { eventId, wasRejected, rejected };
}

/** Checks 4 (auth events) and 5 (the state before) of an event; the reason it fails, or null. */
function authReason(
  engine: RoomEngine,
  rules: RoomVersionRules,
  createEventId: string | null,
  event: IdentifiedPdu,
  before: number | null,
  verifiedKeys: Set<string> | undefined,
): string | null {
  const authEvents: IdentifiedPdu[] = [];
  for (const id of authEventIds(event)) {
    const e = engine.events.pdu(id);
    // Still unknown (the origin never gave it): it stays rejected, as when it arrived.
    if (!e) return `auth event ${id} is unknown`;
    authEvents.push(e);
  }
  const createEvent = rules.authorization.roomCreateEventIdAsRoomId && createEventId ? engine.events.pdu(createEventId) : undefined;
  const isRejected = (id: string) => engine.events.meta(id)?.rejectedReason != null;
  const options = { thirdPartyInviteVerifiedKeys: verifiedKeys };
  const byAuthEvents = checkEventAgainstAuthEvents(event, authEvents, rules, { ...options, createEvent, isRejected });
  if (!byAuthEvents.allowed) return byAuthEvents.reason;
  const lookup: AuthStateLookup = (type, sk) => {
    const id = engine.stateGroups.lookup(before, type, sk);
    return id === undefined ? undefined : engine.events.pdu(id);
  };
  const byState = checkEventAuth(event, rules, lookup, options);
  return byState.allowed ? null : byState.reason;
}

/**
 * The forward extremities after rejections changed: the accepted (not soft-failed) events from our join on
 * that no accepted event follows, directly or through rejected or soft-failed events (Synapse's
 * `_calculate_new_extremities` with `_get_prevs_before_rejected`: an event behind a rejected one that an
 * accepted one follows is no tip). Events before our join are backfilled history or outliers, never tips.
 */
function findForwardExtremities(engine: RoomEngine, fromOrdering: number): void {
  const live = "outlier = 0 AND rejected_reason IS NULL AND soft_failed = 0";
  const tips = engine.sql
    .exec<{ event_id: string }>(
      `WITH RECURSIVE followed(id) AS (
         SELECT x.prev_event_id FROM event_edges x JOIN events c ON c.event_id = x.event_id WHERE c.stream_ordering >= ? AND c.${live.replaceAll(" AND ", " AND c.")}
         UNION
         SELECT x.prev_event_id FROM followed f JOIN events r ON r.event_id = f.id AND r.outlier = 0 AND (r.rejected_reason IS NOT NULL OR r.soft_failed = 1)
           JOIN event_edges x ON x.event_id = r.event_id
       )
       SELECT event_id FROM events WHERE stream_ordering >= ? AND ${live} AND event_id NOT IN (SELECT id FROM followed)`,
      fromOrdering,
      fromOrdering,
    )
    .toArray()
    .map((r) => r.event_id);
  // None (everything since the join rejected, our join too): the extremities stay as they are.
  if (tips.length === 0) return;
  engine.sql.exec("DELETE FROM forward_extremities");
  for (const id of tips) engine.sql.exec("INSERT INTO forward_extremities (event_id) VALUES (?)", id);
}

/** The current state: the state after the forward extremities, resolved when there are several. */
function setCurrentStateFromExtremities(engine: RoomEngine): void {
  const groups: number[] = [];
  for (const id of engine.forwardExtremities()) {
    const g = engine.events.meta(id)?.stateGroupAfter ?? null;
    if (g !== null && !groups.includes(g)) groups.push(g);
  }
  if (groups.length === 0) return;
  let group = groups[0]!;
  if (groups.length > 1) {
    const resolved = engine.resolveStates(groups.map((g) => engine.stateGroups.load(g)));
    const current = engine.meta()?.currentStateGroup ?? null;
    const parent = current !== null && groups.includes(current) ? current : groups[0]!;
    const changes = diffStates(engine.stateGroups.load(parent), resolved);
    group = changes.size === 0 ? parent : engine.stateGroups.create(parent, changes);
  }
  engine.replaceCurrentState(group);
}
