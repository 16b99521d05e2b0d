// Simplified sliding sync (MSC4186, unstable `/_matrix/client/unstable/org.matrix.simplified_msc3575/sync`):
// the request body as the clients that use it send it (matrix-rust-sdk, Element X), its validation, and
// the room configs (`timeline_limit`, `required_state`) with the rules that combine them. Pure: no I/O.
//
// The request format is the one Synapse serves at the unstable path (synapse/rest/client/sync.py,
// SlidingSyncRestServlet; synapse/types/rest/client SlidingSyncBody): `ranges` (a list of [start, end]),
// `required_state` as [type, state_key] pairs with the wildcard `*` and the special state keys `$LAZY` and
// `$ME`, the filter `is_invite`; the MSC's later renames (`range`, `is_invited`) are accepted too.
import { MatrixError, invalidParam } from "./errors.js";
import { isJsonObject, type JsonObject } from "./json.js";

/** Most lists one request may define (MSC4186: "Max lists: 100"). */
export const MAX_LISTS = 100;
/** Most ranges one list may have. */
export const MAX_RANGES = 100;
/** Most room subscriptions one request may hold. */
export const MAX_SUBSCRIPTIONS = 1000;
/** Most `required_state` entries one room config may hold. */
export const MAX_REQUIRED_STATE = 1000;
/** Largest range index accepted: a 32-bit signed integer, as Synapse's `StrictInt` ranges in practice. */
export const MAX_RANGE_INDEX = 2 ** 31 - 1;
/** Largest `timeline_limit` honoured (larger values are capped, as /sync caps its filter's limit). */
export const MAX_SLIDING_TIMELINE_LIMIT = 1000;
/** Longest opaque identifier (list keys, `conn_id`): the spec's grammar allows 255 characters. */
const MAX_ID_LENGTH = 255;

/** Event types that make a room "active" for sorting and `bump_stamp` (MSC4186, `bump_stamp`; Synapse's
 * DEFAULT_BUMP_EVENT_TYPES). */
export const BUMP_EVENT_TYPES: ReadonlySet<string> = new Set([
  "m.room.create",
  "m.room.message",
  "m.room.encrypted",
  "m.sticker",
  "m.call.invite",
  "m.poll.start",
  "m.beacon_info",
]);

export const WILDCARD = "*";
/** `required_state` state key: the members needed to render the timeline (its senders). */
export const LAZY = "$LAZY";
/** `required_state` state key: the requesting user's own ID. */
export const ME = "$ME";

/**
 * A room config's `required_state`, normalised: for each type (or `*`), the state keys wanted (`*` for
 * all; `$ME` already replaced by the user's ID), and whether members are lazy-loaded (`m.room.member`
 * with `$LAZY`). Plain JSON so it crosses RPC and is stored with a connection.
 */
export interface RequiredState {
  /** type → sorted state keys; the type `*` matches every type, the state key `*` every key. */
  entries: Record<string, string[]>;
  lazyMembers: boolean;
}

export interface RoomConfig {
  timelineLimit: number;
  requiredState: RequiredState;
}

export interface SlidingFilters {
  isDm?: boolean;
  isEncrypted?: boolean;
  isInvite?: boolean;
  /** `room_types`: null stands for rooms without a type. */
  roomTypes?: (string | null)[];
  notRoomTypes?: (string | null)[];
  spaces?: string[];
  tags?: string[];
  notTags?: string[];
}

export interface SlidingList extends RoomConfig {
  /** Inclusive [start, end] pairs; absent: the whole list. */
  ranges?: [number, number][];
  filters: SlidingFilters;
}

export interface ExtensionScope {
  /** List keys, or `*` for every list (Synapse's default). */
  lists: string[];
  /** Subscribed room IDs, or `*` for every subscription (the default). */
  rooms: string[];
}

export interface SlidingExtensions {
  toDevice?: { since?: string; limit: number };
  e2ee?: true;
  accountData?: ExtensionScope;
  receipts?: ExtensionScope;
  typing?: ExtensionScope;
  /** MSC4354 sticky events (`org.matrix.msc4354.sticky_events`, Synapse's name): its own `since`. */
  stickyEvents?: { since?: number; limit: number };
}

/** The sticky events extension's key in requests and responses (Synapse; matrix-js-sdk). */
export const STICKY_EVENTS_EXTENSION = "org.matrix.msc4354.sticky_events";
/** Most sticky events the extension carries per room (Synapse's StickyEvent.MAX_EVENTS_IN_SYNC). */
export const MAX_STICKY_EVENTS_IN_SYNC = 100;

/** The sticky events extension's tokens, `sticky_<N>` as Synapse's SlidingSyncStickyEventsToken (N: here
 * a position of the user's stream). */
export const stickyToken = (position: number): string => `sticky_${position}`;

export function parseStickyToken(text: string): number | null {
  const m = /^sticky_([0-9]{1,15})$/.exec(text);
  return m ? Number(m[1]) : null;
}

export interface SlidingRequest {
  connId: string;
  lists: Record<string, SlidingList>;
  roomSubscriptions: Record<string, RoomConfig>;
  extensions: SlidingExtensions;
}

const fail = (message: string) => invalidParam(message);

function opaqueId(value: unknown, what: string): string {
  if (typeof value !== "string") throw fail(`${what} must be a string`);
  if (value.length > MAX_ID_LENGTH) throw fail(`${what} is too long`);
  return value;
}

function bool(value: unknown, what: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "boolean") throw fail(`${what} must be a boolean`);
  return value;
}

function nonNegativeInt(value: unknown, what: string, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) throw fail(`${what} must be a non-negative integer`);
  if (value > max) throw fail(`${what} is too large`);
  return value;
}

function stringList(value: unknown, what: string, max = 1000): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || value.length > max || !value.every((v) => typeof v === "string")) throw fail(`${what} must be a list of strings`);
  return value as string[];
}

function roomTypeList(value: unknown, what: string): (string | null)[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || value.length > 100 || !value.every((v) => typeof v === "string" || v === null)) {
    throw fail(`${what} must be a list of strings or nulls`);
  }
  return value as (string | null)[];
}

/** Parses `required_state`: `[[type, state_key], ...]` (Synapse's format), or MSC4186's newer
 * `{include: [{type?, state_key?}], exclude, lazy_members}` with its `include` only. */
export function parseRequiredState(value: unknown, me: string, what = "required_state"): RequiredState {
  const pairs: [string, string][] = [];
  let lazyMembers = false;
  if (Array.isArray(value)) {
    if (value.length > MAX_REQUIRED_STATE) throw fail(`${what} has too many entries`);
    for (const entry of value) {
      if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== "string" || typeof entry[1] !== "string") {
        throw fail(`${what} entries must be [type, state_key] pairs of strings`);
      }
      pairs.push([entry[0], entry[1]]);
    }
  } else if (isJsonObject(value)) {
    const include = value.include ?? [];
    if (!Array.isArray(include) || include.length > MAX_REQUIRED_STATE) throw fail(`${what}.include must be a list`);
    for (const e of include) {
      if (!isJsonObject(e)) throw fail(`${what}.include entries must be objects`);
      const type = e.type ?? WILDCARD;
      const key = e.state_key ?? WILDCARD;
      if (typeof type !== "string" || typeof key !== "string") throw fail(`${what}.include entries must have string fields`);
      pairs.push([type, key]);
    }
    lazyMembers = bool(value.lazy_members, `${what}.lazy_members`) ?? false;
  } else if (value === undefined || value === null) {
    // Synapse requires it; rust-sdk always sends it. Absent: no state.
  } else throw fail(`${what} must be a list of [type, state_key] pairs`);

  const entries: Record<string, Set<string>> = {};
  for (const [type, rawKey] of pairs) {
    if (type === "m.room.member" && rawKey === LAZY) {
      lazyMembers = true;
      continue;
    }
    const key = rawKey === ME ? me : rawKey;
    (entries[type] ??= new Set()).add(key);
  }
  return normalise(entries, lazyMembers);
}

function normalise(entries: Record<string, Iterable<string>>, lazyMembers: boolean): RequiredState {
  const out: Record<string, string[]> = {};
  for (const type of Object.keys(entries).sort()) {
    const keys = [...new Set(entries[type])].sort();
    // A wildcard state key covers every other key of the type.
    out[type] = keys.includes(WILDCARD) ? [WILDCARD] : keys;
  }
  return { entries: out, lazyMembers };
}

/** Whether the state event (type, state_key) is wanted by a required_state (lazy members aside). */
export function wantsState(rs: RequiredState, type: string, stateKey: string): boolean {
  for (const t of [type, WILDCARD]) {
    const keys = rs.entries[t];
    if (keys && (keys.includes(WILDCARD) || keys.includes(stateKey))) return true;
  }
  return false;
}


/**
 * Whether a room config needs a room's full state, so that a room joined with partial state (members
 * omitted, MSC3706) is left out of the list or subscription until its resync completes. As Synapse's
 * `RoomSyncConfig.must_await_full_state`: a partial state has every state event except other servers'
 * memberships, so only these need it: `["*", "*"]`; the wildcard type with another server's user ID as
 * state key; an `m.room.member` entry naming another server's user. Lazy-loaded members (`$LAZY`) do not
 * (the timeline's senders are in its events' auth events), nor does `["m.room.member", "*"]`: Synapse's
 * loop answers false on it (also when another server's user is listed beside it, which our normalised
 * form, where `*` covers the type's other keys, always gives).
 */
export function mustAwaitFullState(rs: RequiredState, isMine: (userId: string) => boolean): boolean {
  const anyType = rs.entries[WILDCARD];
  if (anyType?.includes(WILDCARD)) return true;
  const otherServersUser = (key: string) => key.startsWith("@") && key.includes(":") && !isMine(key);
  if (anyType?.some(otherServersUser)) return true;
  const members = rs.entries["m.room.member"];
  if (!members || members.includes(WILDCARD)) return false;
  return members.some(otherServersUser);
}
/** Whether `rs` wants everything `old` wants (so changing from `old` to `rs` sends no new state). */
export function requiredStateCovers(rs: RequiredState, old: RequiredState): boolean {
  if (old.lazyMembers && !rs.lazyMembers) return false;
  for (const [type, keys] of Object.entries(old.entries)) {
    for (const key of keys) {
      if (type === WILDCARD) {
        const mine = rs.entries[WILDCARD];
        if (!mine || !(mine.includes(WILDCARD) || mine.includes(key))) return false;
      } else if (key === WILDCARD) {
        if (!(rs.entries[type]?.includes(WILDCARD) || rs.entries[WILDCARD]?.includes(WILDCARD))) return false;
      } else if (!wantsState(rs, type, key)) return false;
    }
  }
  return true;
}

/** State keys per type remembered beyond those requested (effectiveRequiredState). */
export const MAX_REMEMBERED_STATE_KEYS = 100;

/**
 * The required_state a connection remembers a room was sent with, after sending it with `request` when it
 * had been sent with `old` (Synapse's `_required_state_changes`): a state key the client removed from its
 * request stays remembered (the client still has that state) until the state changes, so that adding it
 * back sends nothing unless it changed in between. Wildcard and `$LAZY` changes are not remembered: the
 * request replaces the old config. `changed(type, stateKey)`: whether that state changed since `old` was
 * sent.
 */
export function effectiveRequiredState(old: RequiredState, request: RequiredState, changed: (type: string, stateKey: string) => boolean): RequiredState {
  const oldWild = old.entries[WILDCARD] ?? [];
  const newWild = request.entries[WILDCARD] ?? [];
  if (oldWild.includes(WILDCARD) || oldWild.join("\u0000") !== newWild.join("\u0000")) return request;
  const entries: Record<string, string[]> = {};
  for (const type of new Set([...Object.keys(old.entries), ...Object.keys(request.entries)])) {
    const oldKeys = old.entries[type] ?? [];
    const newKeys = request.entries[type] ?? [];
    if (type === WILDCARD || oldKeys.includes(WILDCARD) || newKeys.includes(WILDCARD)) {
      if (newKeys.length > 0) entries[type] = newKeys;
      continue;
    }
    // At most MAX_REMEMBERED_STATE_KEYS per type (Synapse's MAX_NUMBER_PREVIOUS_STATE_KEYS_TO_REMEMBER).
    const kept = oldKeys.filter((k) => !newKeys.includes(k) && !changed(type, k)).slice(0, Math.max(0, MAX_REMEMBERED_STATE_KEYS - newKeys.length));
    const keys = [...newKeys, ...kept];
    if (keys.length > 0) entries[type] = keys;
  }
  return normalise(entries, request.lazyMembers);
}

/** MSC4186 "Combining room configs": the maximum timeline limit and the union of required_state. */
export function combineConfigs(a: RoomConfig, b: RoomConfig): RoomConfig {
  const entries: Record<string, string[]> = {};
  for (const rs of [a.requiredState, b.requiredState]) for (const [t, keys] of Object.entries(rs.entries)) entries[t] = [...(entries[t] ?? []), ...keys];
  return {
    timelineLimit: Math.max(a.timelineLimit, b.timelineLimit),
    requiredState: normalise(entries, a.requiredState.lazyMembers || b.requiredState.lazyMembers),
  };
}

/** A stable text of a required_state (for comparing the config a room was last sent with). */
export function requiredStateKey(rs: RequiredState): string {
  return JSON.stringify(rs);
}

function roomConfig(value: JsonObject, me: string, what: string): RoomConfig {
  const rawLimit = value.timeline_limit ?? 0;
  const timelineLimit = Math.min(nonNegativeInt(rawLimit, `${what}.timeline_limit`, Number.MAX_SAFE_INTEGER), MAX_SLIDING_TIMELINE_LIMIT);
  return { timelineLimit, requiredState: parseRequiredState(value.required_state, me, `${what}.required_state`) };
}

function parseRange(value: unknown, what: string): [number, number] {
  if (!Array.isArray(value) || value.length !== 2) throw fail(`${what} must be a [start, end] pair`);
  const start = nonNegativeInt(value[0], `${what} start`, MAX_RANGE_INDEX);
  const end = nonNegativeInt(value[1], `${what} end`, MAX_RANGE_INDEX);
  if (end < start) throw fail(`${what}: end is before start`);
  return [start, end];
}

function parseFilters(value: unknown, what: string): SlidingFilters {
  if (value === undefined || value === null) return {};
  if (!isJsonObject(value)) throw fail(`${what} must be an object`);
  const f: SlidingFilters = {};
  const isDm = bool(value.is_dm, `${what}.is_dm`);
  if (isDm !== undefined) f.isDm = isDm;
  const isEncrypted = bool(value.is_encrypted, `${what}.is_encrypted`);
  if (isEncrypted !== undefined) f.isEncrypted = isEncrypted;
  const isInvite = bool(value.is_invite ?? value.is_invited, `${what}.is_invite`);
  if (isInvite !== undefined) f.isInvite = isInvite;
  const roomTypes = roomTypeList(value.room_types, `${what}.room_types`);
  if (roomTypes) f.roomTypes = roomTypes;
  const notRoomTypes = roomTypeList(value.not_room_types, `${what}.not_room_types`);
  if (notRoomTypes) f.notRoomTypes = notRoomTypes;
  const spaces = stringList(value.spaces, `${what}.spaces`, 100);
  if (spaces) f.spaces = spaces;
  const tags = stringList(value.tags, `${what}.tags`, 100);
  if (tags) f.tags = tags;
  const notTags = stringList(value.not_tags, `${what}.not_tags`, 100);
  if (notTags) f.notTags = notTags;
  return f;
}

function parseScope(value: JsonObject, what: string): ExtensionScope {
  return {
    lists: stringList(value.lists, `${what}.lists`) ?? [WILDCARD],
    rooms: stringList(value.rooms, `${what}.rooms`, MAX_SUBSCRIPTIONS) ?? [WILDCARD],
  };
}

/** Whether an extension's `enabled` asks for it (Synapse: absent means off). */
function enabled(value: unknown, what: string): value is JsonObject {
  if (value === undefined || value === null) return false;
  if (!isJsonObject(value)) throw fail(`${what} must be an object`);
  return bool(value.enabled, `${what}.enabled`) === true;
}

const ROOM_ID = /^![^:]*:.+$|^![A-Za-z0-9+/_-]{43}$/;

/** Validates a request body; throws MatrixError (400) for anything malformed. `me`: the requesting user
 * (for `$ME`). */
export function parseSlidingRequest(body: JsonObject, me: string): SlidingRequest {
  const connId = body.conn_id === undefined || body.conn_id === null ? "" : opaqueId(body.conn_id, "conn_id");

  const lists: Record<string, SlidingList> = {};
  if (body.lists !== undefined && body.lists !== null) {
    if (!isJsonObject(body.lists)) throw fail("lists must be an object");
    const keys = Object.keys(body.lists);
    if (keys.length > MAX_LISTS) throw fail(`at most ${MAX_LISTS} lists`);
    for (const key of keys) {
      opaqueId(key, "list key");
      if (key === "" || key === WILDCARD) throw fail(`'${key}' is not a valid list key`);
      const raw = body.lists[key];
      const what = `lists.${key}`;
      if (!isJsonObject(raw)) throw fail(`${what} must be an object`);
      const list: SlidingList = { ...roomConfig(raw, me, what), filters: parseFilters(raw.filters, `${what}.filters`) };
      if (raw.ranges !== undefined && raw.ranges !== null) {
        if (!Array.isArray(raw.ranges) || raw.ranges.length > MAX_RANGES) throw fail(`${what}.ranges must be a list of at most ${MAX_RANGES} ranges`);
        list.ranges = raw.ranges.map((r, i) => parseRange(r, `${what}.ranges[${i}]`));
      } else if (raw.range !== undefined && raw.range !== null) {
        list.ranges = [parseRange(raw.range, `${what}.range`)];
      }
      lists[key] = list;
    }
  }

  const roomSubscriptions: Record<string, RoomConfig> = {};
  if (body.room_subscriptions !== undefined && body.room_subscriptions !== null) {
    if (!isJsonObject(body.room_subscriptions)) throw fail("room_subscriptions must be an object");
    const ids = Object.keys(body.room_subscriptions);
    if (ids.length > MAX_SUBSCRIPTIONS) throw fail(`at most ${MAX_SUBSCRIPTIONS} room subscriptions`);
    for (const roomId of ids) {
      if (roomId.length > 255 || !ROOM_ID.test(roomId)) throw fail(`${roomId.slice(0, 80)} is not a room ID`);
      const raw = body.room_subscriptions[roomId];
      if (!isJsonObject(raw)) throw fail(`room_subscriptions.${roomId} must be an object`);
      roomSubscriptions[roomId] = roomConfig(raw, me, `room_subscriptions.${roomId}`);
    }
  }

  const extensions: SlidingExtensions = {};
  const ext = body.extensions;
  if (ext !== undefined && ext !== null) {
    if (!isJsonObject(ext)) throw fail("extensions must be an object");
    if (enabled(ext.to_device, "extensions.to_device")) {
      const since = ext.to_device.since;
      if (since !== undefined && since !== null && (typeof since !== "string" || !/^[0-9]{1,15}$/.test(since))) {
        throw fail("extensions.to_device.since is not a to-device token");
      }
      const limit = ext.to_device.limit === undefined || ext.to_device.limit === null ? 100 : nonNegativeInt(ext.to_device.limit, "extensions.to_device.limit", Number.MAX_SAFE_INTEGER);
      extensions.toDevice = { limit: Math.max(1, Math.min(limit, 1000)) };
      if (typeof since === "string") extensions.toDevice.since = since;
    }
    if (enabled(ext.e2ee, "extensions.e2ee")) extensions.e2ee = true;
    if (enabled(ext.account_data, "extensions.account_data")) extensions.accountData = parseScope(ext.account_data, "extensions.account_data");
    if (enabled(ext.receipts, "extensions.receipts")) extensions.receipts = parseScope(ext.receipts, "extensions.receipts");
    if (enabled(ext.typing, "extensions.typing")) extensions.typing = parseScope(ext.typing, "extensions.typing");
    const sticky = ext[STICKY_EVENTS_EXTENSION];
    if (enabled(sticky, `extensions.${STICKY_EVENTS_EXTENSION}`)) {
      const what = `extensions.${STICKY_EVENTS_EXTENSION}`;
      const limit = sticky.limit === undefined || sticky.limit === null ? MAX_STICKY_EVENTS_IN_SYNC : nonNegativeInt(sticky.limit, `${what}.limit`, Number.MAX_SAFE_INTEGER);
      extensions.stickyEvents = { limit: Math.min(limit, MAX_STICKY_EVENTS_IN_SYNC) };
      if (sticky.since !== undefined && sticky.since !== null) {
        const since = typeof sticky.since === "string" ? parseStickyToken(sticky.since) : null;
        if (since === null) throw fail(`${what}.since is not a sticky events token`);
        extensions.stickyEvents.since = since;
      }
    }
  }
  return { connId, lists, roomSubscriptions, extensions };
}

/** The error for a `pos` the server does not know (any more): the client starts a new connection. */
export function unknownPos(): MatrixError {
  return new MatrixError(400, "M_UNKNOWN_POS", "Unknown position");
}

/** `pos` tokens: `<connection position id>`, opaque to clients. */
export function parsePos(text: string): number | null {
  const m = /^([0-9]{1,15})$/.exec(text);
  return m ? Number(m[1]) : null;
}

/** The rooms an extension covers (Synapse: find_relevant_room_ids_for_extension): those of the named
 * lists (in range) and the named subscriptions. */
export function extensionRooms(scope: ExtensionScope, listRooms: Record<string, string[]>, subscribed: Iterable<string>): Set<string> {
  const out = new Set<string>();
  const subs = new Set(subscribed);
  for (const r of scope.rooms) {
    if (r === WILDCARD) {
      for (const s of subs) out.add(s);
      break;
    }
    if (subs.has(r)) out.add(r);
  }
  for (const key of scope.lists) {
    if (key === WILDCARD) {
      for (const ids of Object.values(listRooms)) for (const id of ids) out.add(id);
      break;
    }
    for (const id of listRooms[key] ?? []) out.add(id);
  }
  return out;
}
