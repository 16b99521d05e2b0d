// State resolution v2 (room versions 2-11) and v2.1 (room version 12, MSC4297).
// Spec: content/rooms/fragments/v2-state-res.md ("State resolution" of room versions 2-11) and
// content/rooms/v12.md ("State resolution"). Pure code: events come from a callback so that the
// Room DO can back it with its SQLite storage.
//
// Where the prose leaves room for interpretation this follows what Synapse and ruma do, so that
// this server converges with them:
// - `m.room.create` counts as a power event (both implementations; the spec list omits it);
// - step 1 grows the power events by walking `auth_events` edges inside the full conflicted set,
//   and the topological ordering uses those direct edges;
// - in room version 12 the create event, which events no longer list (MSC4291), is an implicit auth
//   event of every other event: it is part of auth chains and of the auth events used for checks.
import { PARTICIPATION_EVENT_TYPE } from "./participation.js";
import { checkEventAuth, type AuthCheckOptions, type AuthStateLookup } from "./auth-rules.js";
import { isJsonObject, type JsonValue } from "./json.js";
import { authEventIds, stateKey, type IdentifiedPdu, type StateKey, type StateMap } from "./pdu.js";
import type { RoomVersionRules } from "./room-versions.js";

export interface StateResolutionInput {
  rules: RoomVersionRules;
  /** The states to resolve, e.g. the states after each `prev_event` of a new event. */
  stateSets: StateMap[];
  /** Any event of the room: state set entries and their auth chains. */
  getEvent(eventId: string): IdentifiedPdu | undefined;
  /** Events that failed authorization: never applied, never used as an auth event. */
  isRejected?(eventId: string): boolean;
  /** Optional cache hook: the auth chain of an event (without the event itself), as `authChainOf`
   * computes it. Used for the per-state-set auth chains of the auth difference. */
  authChain?(eventId: string): Set<string>;
  /** For `m.room.member` invites with `content.third_party_invite`: the public keys verified (ahead
   * of time, since Ed25519 is async) to have signed `content.third_party_invite.signed`, see
   * `verifyThirdPartyInviteSigned` in auth-rules.ts. Without it such invites fail the checks. */
  thirdPartyInviteVerifiedKeys?(eventId: string): ReadonlySet<string> | undefined;
}

const CREATE = "m.room.create";
const POWER_LEVELS = "m.room.power_levels";
const JOIN_RULES = "m.room.join_rules";
const MEMBER = "m.room.member";
const POWER_LEVELS_KEY = stateKey(POWER_LEVELS, "");

/**
 * Resolves `stateSets` into one state (spec: "State resolution", "Algorithm").
 * Events that `getEvent` cannot supply are left out of the conflicted part of the algorithm;
 * unconflicted entries are kept as they are (unless rejected).
 */
export function resolveState(input: StateResolutionInput): StateMap {
  const { rules, stateSets } = input;
  if (rules.stateResolution === "v1") {
    throw new Error(`state resolution v1 (room version ${rules.id}) is not supported`);
  }
  const graph = new EventGraph(input.getEvent, rules, input.isRejected, input.thirdPartyInviteVerifiedKeys);

  const split = splitStateSets(stateSets);
  const { conflicted } = split;
  // A rejected event never enters the result, nor the base state of v2.0's iterative checks.
  let unconflicted = split.unconflicted;
  if (input.isRejected !== undefined) {
    unconflicted = new Map();
    for (const [key, eventId] of split.unconflicted) if (!graph.isRejected(eventId)) unconflicted.set(key, eventId);
  }
  if (conflicted.size === 0) return unconflicted;

  // Full conflicted set: conflicted state set ∪ auth difference (∪ conflicted state subgraph in v2.1).
  const fullConflicted = new Set<string>(conflicted);
  for (const id of authDifference(graph, split.unconflicted, split.conflictedPerSet, input.authChain)) {
    fullConflicted.add(id);
  }
  if (rules.stateResolution === "v2.1") {
    for (const id of conflictedSubgraph(graph, conflicted)) fullConflicted.add(id);
  }
  for (const id of fullConflicted) if (graph.get(id) === undefined) fullConflicted.delete(id);

  // 1. Power events of the full conflicted set and their auth chains within it, in reverse
  //    topological power ordering.
  const powerEvents = reverseTopologicalPowerOrder(graph, fullConflicted);

  // 2. Iterative auth checks from the unconflicted state map (v2.0) or from an empty one (v2.1:
  //    the unconflicted state may hold events that only pass auth in one fork, MSC4297 problem A).
  const partial: StateMap = rules.stateResolution === "v2.1" ? new Map() : new Map(unconflicted);
  iterativeAuthChecks(graph, powerEvents, partial);

  // 3. The other events by mainline ordering based on the resolved power levels event.
  const powerEventSet = new Set(powerEvents);
  const others: string[] = [];
  for (const id of fullConflicted) if (!powerEventSet.has(id)) others.push(id);
  const sortedOthers = mainlineOrder(graph, others, partial.get(POWER_LEVELS_KEY));

  // 4. Iterative auth checks on top of the partially resolved state.
  const resolved = partial;
  iterativeAuthChecks(graph, sortedOthers, resolved);

  // 5. The unconflicted state map wins over whatever the checks produced.
  for (const [key, eventId] of unconflicted) resolved.set(key, eventId);
  return resolved;
}

/**
 * The auth chain of a set of events (spec: "Auth chain"): every event reachable through
 * `auth_events` (and, in room version 12, the implicit create event), not counting the given events
 * themselves unless one is in the auth chain of another. Missing events end the walk.
 */
export function authChainOf(
  eventIds: Iterable<string>,
  getEvent: (eventId: string) => IdentifiedPdu | undefined,
  rules: RoomVersionRules,
): Set<string> {
  return new EventGraph(getEvent, rules).authChainOfMany(eventIds);
}

/** The auth events of `pdu` as state resolution sees them: in room version 12 the create event
 * (derived from the room ID, MSC4291) is added to every other event's `auth_events`. */
export function effectiveAuthEventIds(pdu: IdentifiedPdu, rules: RoomVersionRules): string[] {
  const ids = authEventIds(pdu);
  if (rules.authorization.roomCreateEventIdAsRoomId && !isCreateEvent(pdu) && typeof pdu.room_id === "string") {
    const createId = createEventIdFromRoomId(pdu.room_id);
    if (createId !== undefined && !ids.includes(createId)) ids.push(createId);
  }
  return ids;
}

/** Room version 12: the room ID is the create event's ID with `!` instead of `$` (MSC4291). */
export function createEventIdFromRoomId(roomId: string): string | undefined {
  return roomId.startsWith("!") ? `$${roomId.slice(1)}` : undefined;
}

/** Spec "Power events": power levels, join rules, and kicks/bans (membership `leave`/`ban` sent by
 * someone else). The create event counts too, as in Synapse and ruma. With `serverParticipation`
 * (MSC4345, decision 8) every participation event does: it grants or removes the ability to send. */
export function isPowerEvent(pdu: IdentifiedPdu, rules?: RoomVersionRules): boolean {
  if (rules?.authorization.serverParticipation && pdu.type === PARTICIPATION_EVENT_TYPE && typeof pdu.state_key === "string") return true;
  if (pdu.state_key === "" && (pdu.type === POWER_LEVELS || pdu.type === JOIN_RULES || pdu.type === CREATE)) {
    return true;
  }
  if (pdu.type === MEMBER && typeof pdu.state_key === "string") {
    const membership = pdu.content.membership;
    return (membership === "leave" || membership === "ban") && pdu.sender !== pdu.state_key;
  }
  return false;
}

/**
 * The conflicted state subgraph of v2.1 (MSC4297): every event on an `auth_events` path from one
 * conflicted event to another, endpoints included. The conflicted events themselves are included.
 */
export function conflictedStateSubgraph(
  conflicted: Iterable<string>,
  getEvent: (eventId: string) => IdentifiedPdu | undefined,
  rules: RoomVersionRules,
): Set<string> {
  return conflictedSubgraph(new EventGraph(getEvent, rules), new Set(conflicted));
}

// ---------------------------------------------------------------------------------------------

function isCreateEvent(pdu: IdentifiedPdu): boolean {
  return pdu.type === CREATE && pdu.state_key === "";
}

function withoutDuplicates(ids: string[]): string[] {
  for (let i = 1; i < ids.length; i++) if (ids.indexOf(ids[i]!) < i) return [...new Set(ids)];
  return ids;
}

/** Memoised view of the event graph for one resolution. */
class EventGraph {
  private readonly events = new Map<string, IdentifiedPdu | null>();
  private readonly authIdsMemo = new Map<string, readonly string[]>();
  private readonly rejectedMemo = new Map<string, boolean>();
  private readonly powerLevelsParentMemo = new Map<string, string | null>();

  constructor(
    private readonly fetch: (eventId: string) => IdentifiedPdu | undefined,
    readonly rules: RoomVersionRules,
    private readonly rejected?: (eventId: string) => boolean,
    private readonly thirdPartyInviteKeys?: (eventId: string) => ReadonlySet<string> | undefined,
  ) {}

  authCheckOptions(eventId: string): AuthCheckOptions {
    const keys = this.thirdPartyInviteKeys?.(eventId);
    return keys === undefined ? {} : { thirdPartyInviteVerifiedKeys: keys };
  }

  get(eventId: string): IdentifiedPdu | undefined {
    let event = this.events.get(eventId);
    if (event === undefined) {
      event = this.fetch(eventId) ?? null;
      this.events.set(eventId, event);
    }
    return event ?? undefined;
  }

  isRejected(eventId: string): boolean {
    if (this.rejected === undefined) return false;
    let rejected = this.rejectedMemo.get(eventId);
    if (rejected === undefined) {
      rejected = this.rejected(eventId);
      this.rejectedMemo.set(eventId, rejected);
    }
    return rejected;
  }

  /** Deduplicated effective auth event IDs; empty for an unknown event. */
  authIds(eventId: string): readonly string[] {
    let ids = this.authIdsMemo.get(eventId);
    if (ids === undefined) {
      const event = this.get(eventId);
      ids = event === undefined ? [] : withoutDuplicates(effectiveAuthEventIds(event, this.rules));
      this.authIdsMemo.set(eventId, ids);
    }
    return ids;
  }

  /** The `m.room.power_levels` event among the auth events of `eventId` (spec: "Mainline ordering"). */
  powerLevelsParent(eventId: string): string | undefined {
    let parent = this.powerLevelsParentMemo.get(eventId);
    if (parent === undefined) {
      parent = null;
      for (const authId of this.authIds(eventId)) {
        const authEvent = this.get(authId);
        if (authEvent !== undefined && authEvent.type === POWER_LEVELS && authEvent.state_key === "") {
          parent = authId;
          break;
        }
      }
      this.powerLevelsParentMemo.set(eventId, parent);
    }
    return parent ?? undefined;
  }

  /** Union of the auth chains of `roots` by one walk with a shared visited set. Events for which
   * `stop` is true are neither added nor walked through. */
  authChainOfMany(roots: Iterable<string>, stop?: (eventId: string) => boolean): Set<string> {
    const chain = new Set<string>();
    const stack: string[] = [];
    for (const root of roots) for (const authId of this.authIds(root)) stack.push(authId);
    while (stack.length > 0) {
      const id = stack.pop()!;
      if (chain.has(id) || (stop !== undefined && stop(id))) continue;
      chain.add(id);
      for (const authId of this.authIds(id)) if (!chain.has(authId)) stack.push(authId);
    }
    return chain;
  }
}

interface SplitState {
  unconflicted: StateMap;
  /** The conflicted state set (event IDs). */
  conflicted: Set<string>;
  /** Per state set, its entries that are not in the unconflicted state map. */
  conflictedPerSet: string[][];
}

/** Spec "Unconflicted state map and conflicted state set": a key is unconflicted when every state
 * set has it with the same event; every other entry is conflicted. */
function splitStateSets(stateSets: readonly StateMap[]): SplitState {
  const unconflicted: StateMap = new Map();
  const conflicted = new Set<string>();
  const conflictedPerSet: string[][] = [];
  if (stateSets.length === 0) return { unconflicted, conflicted, conflictedPerSet };

  // Only keys of the smallest set can be present everywhere.
  let smallest = stateSets[0]!;
  for (const set of stateSets) if (set.size < smallest.size) smallest = set;
  for (const [key, eventId] of smallest) {
    if (stateSets.every((set) => set.get(key) === eventId)) unconflicted.set(key, eventId);
  }
  for (const set of stateSets) {
    const own: string[] = [];
    for (const [key, eventId] of set) {
      if (!unconflicted.has(key)) {
        own.push(eventId);
        conflicted.add(eventId);
      }
    }
    conflictedPerSet.push(own);
  }
  return { unconflicted, conflicted, conflictedPerSet };
}

/**
 * Spec "Auth difference": ∪Cᵢ − ∩Cᵢ where Cᵢ is the full auth chain of state set i.
 * Every Cᵢ is U ∪ Xᵢ, with U the auth chain of the unconflicted entries (shared by all sets) and Xᵢ
 * that of the set's other entries, so the difference is (∪Xᵢ − ∩Xᵢ) − U. This keeps the work
 * proportional to the conflicted part: U is only probed for the few candidates, and its walk stops
 * at events in ∩Xᵢ (an auth chain is closed under taking auth chains, so nothing below such an
 * event can be a candidate).
 */
function authDifference(
  graph: EventGraph,
  unconflicted: StateMap,
  conflictedPerSet: readonly string[][],
  authChainHook?: (eventId: string) => Set<string>,
): Set<string> {
  const setCount = conflictedPerSet.length;
  const counts = new Map<string, number>();
  for (const roots of conflictedPerSet) {
    let chain: Set<string>;
    if (authChainHook !== undefined) {
      chain = new Set<string>();
      for (const root of roots) for (const id of authChainHook(root)) chain.add(id);
    } else {
      chain = graph.authChainOfMany(roots);
    }
    for (const id of chain) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  const candidates = new Set<string>();
  for (const [id, count] of counts) if (count < setCount) candidates.add(id);
  if (candidates.size === 0 || unconflicted.size === 0) return candidates;

  const inEveryChain = (id: string): boolean => counts.get(id) === setCount;
  if (authChainHook !== undefined) {
    for (const root of unconflicted.values()) {
      const chain = authChainHook(root);
      if (chain.size < candidates.size) {
        for (const id of chain) candidates.delete(id);
      } else {
        for (const id of candidates) if (chain.has(id)) candidates.delete(id);
      }
      if (candidates.size === 0) break;
    }
    return candidates;
  }
  const shared = graph.authChainOfMany(unconflicted.values(), inEveryChain);
  for (const id of shared) candidates.delete(id);
  return candidates;
}

/**
 * v2.1 "Conflicted state subgraph": events reachable from a conflicted event through auth events
 * from which a conflicted event is reachable in turn. One memoised depth-first walk from the
 * conflicted events: `reaches(x)` is whether a conflicted event is reachable from x by at least one
 * edge.
 */
function conflictedSubgraph(graph: EventGraph, conflicted: ReadonlySet<string>): Set<string> {
  const reaches = new Map<string, boolean>();
  const onStack = new Set<string>();
  interface Frame {
    id: string;
    authIds: readonly string[];
    next: number;
    reaches: boolean;
  }
  for (const root of conflicted) {
    if (reaches.has(root)) continue;
    const stack: Frame[] = [{ id: root, authIds: graph.authIds(root), next: 0, reaches: false }];
    onStack.add(root);
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!;
      if (frame.next < frame.authIds.length) {
        const child = frame.authIds[frame.next++]!;
        if (conflicted.has(child)) frame.reaches = true;
        const known = reaches.get(child);
        if (known !== undefined) {
          if (known) frame.reaches = true;
        } else if (!onStack.has(child)) {
          onStack.add(child);
          stack.push({ id: child, authIds: graph.authIds(child), next: 0, reaches: false });
        }
        continue;
      }
      stack.pop();
      onStack.delete(frame.id);
      reaches.set(frame.id, frame.reaches);
      if (frame.reaches && stack.length > 0) stack[stack.length - 1]!.reaches = true;
    }
  }
  const subgraph = new Set<string>(conflicted);
  for (const [id, reachesConflicted] of reaches) if (reachesConflicted) subgraph.add(id);
  return subgraph;
}

/** Orders sort keys: smaller first. */
function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

interface PowerSortKey {
  id: string;
  powerLevel: number;
  ts: number;
}

/** Spec "Reverse topological power ordering": x < y if x's sender has the greater power level, then
 * the smaller origin_server_ts, then the smaller event ID. */
function comparePowerSortKeys(x: PowerSortKey, y: PowerSortKey): number {
  if (x.powerLevel !== y.powerLevel) return x.powerLevel > y.powerLevel ? -1 : 1;
  if (x.ts !== y.ts) return x.ts < y.ts ? -1 : 1;
  return compareIds(x.id, y.id);
}

/**
 * Step 1: the power events of the full conflicted set plus the events of their auth chains within
 * it, sorted by Kahn's algorithm taking at each step the smallest candidate. Edges are the
 * `auth_events` links between events of the full conflicted set (as Synapse and ruma do).
 */
function reverseTopologicalPowerOrder(graph: EventGraph, fullConflicted: ReadonlySet<string>): string[] {
  const edges = new Map<string, readonly string[]>();
  const stack: string[] = [];
  for (const id of fullConflicted) if (isPowerEvent(graph.get(id)!, graph.rules)) stack.push(id);
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (edges.has(id)) continue;
    const inSet = graph.authIds(id).filter((authId) => fullConflicted.has(authId));
    edges.set(id, inSet);
    for (const authId of inSet) if (!edges.has(authId)) stack.push(authId);
  }

  const remainingAuth = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  const heap = new MinHeap<PowerSortKey>(comparePowerSortKeys);
  const senderLevels = new SenderPowerLevels(graph);
  const keyOf = (id: string): PowerSortKey => ({
    id,
    powerLevel: senderLevels.of(id),
    ts: graph.get(id)!.origin_server_ts,
  });
  for (const [id, authIds] of edges) {
    remainingAuth.set(id, authIds.length);
    for (const authId of authIds) {
      const list = dependents.get(authId);
      if (list === undefined) dependents.set(authId, [id]);
      else list.push(id);
    }
    if (authIds.length === 0) heap.push(keyOf(id));
  }

  const sorted: string[] = [];
  for (let key = heap.pop(); key !== undefined; key = heap.pop()) {
    sorted.push(key.id);
    for (const dependent of dependents.get(key.id) ?? []) {
      const left = remainingAuth.get(dependent)! - 1;
      remainingAuth.set(dependent, left);
      if (left === 0) heap.push(keyOf(dependent));
    }
  }
  return sorted;
}

/**
 * The power level of an event's sender "when looking at their respective auth_events", for the
 * topological ordering only. Follows the auth rules' defaults: `users_default` (0) when the user is
 * not listed; without a power levels event the creator has 100 and everyone else 0; in room
 * version 12 the creators (create sender and `additional_creators`) rank above everyone.
 */
class SenderPowerLevels {
  private readonly memo = new Map<string, number>();
  constructor(private readonly graph: EventGraph) {}

  of(eventId: string): number {
    let level = this.memo.get(eventId);
    if (level === undefined) {
      level = this.compute(eventId);
      this.memo.set(eventId, level);
    }
    return level;
  }

  private compute(eventId: string): number {
    const { graph } = this;
    const { authorization } = graph.rules;
    const event = graph.get(eventId)!;
    let powerLevels: IdentifiedPdu | undefined;
    let create: IdentifiedPdu | undefined = isCreateEvent(event) ? event : undefined;
    for (const authId of graph.authIds(eventId)) {
      const authEvent = graph.get(authId);
      if (authEvent === undefined || authEvent.state_key !== "") continue;
      if (authEvent.type === POWER_LEVELS) powerLevels ??= authEvent;
      else if (authEvent.type === CREATE) create ??= authEvent;
    }
    if (create !== undefined && authorization.explicitlyPrivilegeRoomCreators && isCreator(create, event.sender, graph.rules)) {
      return Number.POSITIVE_INFINITY;
    }
    if (powerLevels !== undefined) {
      const users = powerLevels.content.users;
      const own = isJsonObject(users) ? toPowerLevel(users[event.sender], graph.rules) : undefined;
      return own ?? toPowerLevel(powerLevels.content.users_default, graph.rules) ?? 0;
    }
    return create !== undefined && isCreator(create, event.sender, graph.rules) ? 100 : 0;
  }
}

function isCreator(create: IdentifiedPdu, userId: string, rules: RoomVersionRules): boolean {
  if (rules.authorization.useRoomCreateSender) {
    if (create.sender === userId) return true;
  } else if (create.content.creator === userId) {
    return true;
  }
  if (rules.authorization.additionalRoomCreators) {
    const additional = create.content.additional_creators;
    return Array.isArray(additional) && additional.includes(userId);
  }
  return false;
}

/** A power level value: an integer, or before room version 10 also an integer-like string. */
function toPowerLevel(value: JsonValue | undefined, rules: RoomVersionRules): number | undefined {
  if (typeof value === "number") return Number.isInteger(value) ? value : undefined;
  if (typeof value === "string" && !rules.authorization.integerPowerLevels && /^\s*[+-]?\d+\s*$/.test(value)) {
    return Number.parseInt(value, 10);
  }
  return undefined;
}

/**
 * Spec "Iterative auth checks": each event, in order, is checked against the state built so far
 * (`state`, updated in place); for a key the state lacks, the event's own (non-rejected) auth event
 * of that key is used. Allowed events replace their key in the state; rejected events are skipped.
 */
function iterativeAuthChecks(graph: EventGraph, eventIds: readonly string[], state: StateMap): void {
  for (const eventId of eventIds) {
    if (graph.isRejected(eventId)) continue;
    const event = graph.get(eventId);
    if (event === undefined || typeof event.state_key !== "string") continue;

    const ownAuthEvents = new Map<StateKey, IdentifiedPdu>();
    for (const authId of graph.authIds(eventId)) {
      if (graph.isRejected(authId)) continue;
      const authEvent = graph.get(authId);
      if (authEvent !== undefined && typeof authEvent.state_key === "string") {
        ownAuthEvents.set(stateKey(authEvent.type, authEvent.state_key), authEvent);
      }
    }
    const lookup: AuthStateLookup = (type, key) => {
      const k = stateKey(type, key);
      const resolvedId = state.get(k);
      if (resolvedId !== undefined && !graph.isRejected(resolvedId)) {
        const resolved = graph.get(resolvedId);
        if (resolved !== undefined) return resolved;
      }
      return ownAuthEvents.get(k);
    };
    if (checkEventAuth(event, graph.rules, lookup, graph.authCheckOptions(eventId)).allowed) {
      state.set(stateKey(event.type, event.state_key), eventId);
    }
  }
}

interface MainlineSortKey {
  id: string;
  /** Index in the mainline (0 = the resolved power levels event); Infinity when not on it. */
  position: number;
  ts: number;
}

/**
 * Spec "Mainline ordering": the mainline of the resolved power levels event P is P and its chain of
 * power levels auth events. An event's position is the index of the first event of its own power
 * levels chain (excluding itself) that is on the mainline; x < y if x's position is greater, then
 * by origin_server_ts, then by event ID. Positions of intermediate power levels events are memoised.
 */
function mainlineOrder(graph: EventGraph, eventIds: readonly string[], powerLevelsId: string | undefined): string[] {
  if (eventIds.length === 0) return [];
  const mainline = new Map<string, number>();
  for (let p = powerLevelsId; p !== undefined && !mainline.has(p); p = graph.powerLevelsParent(p)) {
    mainline.set(p, mainline.size);
  }

  const positionMemo = new Map<string, number>();
  /** Position of the chain starting at power levels event `start` (start included). */
  const chainPosition = (start: string | undefined): number => {
    const path: string[] = [];
    const seen = new Set<string>();
    let position = Number.POSITIVE_INFINITY;
    for (let p = start; p !== undefined && !seen.has(p); p = graph.powerLevelsParent(p)) {
      const onMainline = mainline.get(p);
      if (onMainline !== undefined) {
        position = onMainline;
        break;
      }
      const memo = positionMemo.get(p);
      if (memo !== undefined) {
        position = memo;
        break;
      }
      seen.add(p);
      path.push(p);
    }
    for (const p of path) positionMemo.set(p, position);
    return position;
  };

  const keys: MainlineSortKey[] = eventIds.map((id) => ({
    id,
    position: chainPosition(graph.powerLevelsParent(id)),
    ts: graph.get(id)!.origin_server_ts,
  }));
  keys.sort((x, y) => {
    if (x.position !== y.position) return x.position > y.position ? -1 : 1;
    if (x.ts !== y.ts) return x.ts < y.ts ? -1 : 1;
    return compareIds(x.id, y.id);
  });
  return keys.map((k) => k.id);
}

/** Binary min-heap for Kahn's algorithm (also protocol/auth-chain.ts). */
export class MinHeap<T> {
  private readonly items: T[] = [];
  constructor(private readonly compare: (a: T, b: T) => number) {}

  push(item: T): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.compare(items[i]!, items[parent]!) >= 0) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): T | undefined {
    const items = this.items;
    if (items.length === 0) return undefined;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < items.length && this.compare(items[left]!, items[smallest]!) < 0) smallest = left;
        if (right < items.length && this.compare(items[right]!, items[smallest]!) < 0) smallest = right;
        if (smallest === i) break;
        [items[i], items[smallest]] = [items[smallest]!, items[i]!];
        i = smallest;
      }
    }
    return top;
  }
}
