// Filters (spec: Client-Server API, "Filtering"; schema data/api/client-server/definitions/sync_filter.yaml,
// event_filter.yaml, room_event_filter.yaml). `parseFilter` checks a client-supplied filter's structure
// and returns it typed; /sync, /messages and friends read the typed value. Unknown keys are allowed (the
// schemas do not forbid additional properties, and clients send experimental ones), known keys must have
// the documented type. Errors are M_BAD_JSON, as Synapse answers schema violations of a filter.
import { badJson } from "./errors.js";
import { isJsonObject, type JsonObject, type JsonValue } from "./json.js";

/** Spec "EventFilter": used for `presence` and `account_data`, and the base of RoomEventFilter. */
export interface EventFilter {
  /** The maximum number of events to return. The spec asks for > 0; 0 is accepted (see `parseFilter`). */
  limit?: number;
  types?: string[];
  not_types?: string[];
  senders?: string[];
  not_senders?: string[];
}

/** Spec "RoomEventFilter": `state`, `timeline`, `ephemeral` and room `account_data`. */
export interface RoomEventFilter extends EventFilter {
  rooms?: string[];
  not_rooms?: string[];
  contains_url?: boolean;
  lazy_load_members?: boolean;
  include_redundant_members?: boolean;
  unread_thread_notifications?: boolean;
}

/** Spec "RoomFilter". */
export interface RoomFilter {
  rooms?: string[];
  not_rooms?: string[];
  include_leave?: boolean;
  ephemeral?: RoomEventFilter;
  state?: RoomEventFilter;
  timeline?: RoomEventFilter;
  account_data?: RoomEventFilter;
}

/** Spec "Filter" (the body of POST /user/{userId}/filter, and inline `filter` of /sync). */
export interface Filter {
  event_fields?: string[];
  event_format?: "client" | "federation";
  presence?: EventFilter;
  account_data?: EventFilter;
  room?: RoomFilter;
}

/** Filter IDs handed out by this server are decimal integers; they never start with `{`, which is how
 * /sync tells an inline filter from a filter ID (spec: POST /user/{userId}/filter, `filter_id`). */
export const isFilterId = (s: string): boolean => /^[0-9]{1,15}$/.test(s);

type Path = string;

function stringArray(value: JsonValue, path: Path, check?: (s: string) => boolean, what = "string"): string[] {
  if (!Array.isArray(value)) throw badJson(`${path} must be an array`);
  for (const item of value) {
    if (typeof item !== "string" || (check && !check(item))) throw badJson(`${path} must contain only ${what}s`);
  }
  return value as string[];
}

// Spec: Appendices, "User Identifiers" / "Room IDs". Only the sigil is checked: filters may name remote
// users and rooms of any version (v12 room IDs have no server part), and a stricter check buys nothing.
const isUserIdLike = (s: string) => s.startsWith("@") && s.length > 1;
const isRoomIdLike = (s: string) => s.startsWith("!") && s.length > 1;

function boolean(value: JsonValue, path: Path): boolean {
  if (typeof value !== "boolean") throw badJson(`${path} must be a boolean`);
  return value;
}

function object(value: JsonValue, path: Path): JsonObject {
  if (!isJsonObject(value)) throw badJson(`${path} must be an object`);
  return value;
}

function eventFilterFields(obj: JsonObject, path: Path, out: EventFilter): void {
  if (obj.limit !== undefined) {
    const limit = obj.limit;
    // Negative or fractional limits are garbage. 0 is tolerated although the spec says "greater than 0":
    // some clients send it to ask for no events, and refusing the whole filter would break their sync.
    if (typeof limit !== "number" || !Number.isSafeInteger(limit) || limit < 0) {
      throw badJson(`${path}.limit must be a non-negative integer`);
    }
    out.limit = limit;
  }
  if (obj.types !== undefined) out.types = stringArray(obj.types, `${path}.types`);
  if (obj.not_types !== undefined) out.not_types = stringArray(obj.not_types, `${path}.not_types`);
  if (obj.senders !== undefined) out.senders = stringArray(obj.senders, `${path}.senders`, isUserIdLike, "user ID");
  if (obj.not_senders !== undefined) {
    out.not_senders = stringArray(obj.not_senders, `${path}.not_senders`, isUserIdLike, "user ID");
  }
}

function parseEventFilter(value: JsonValue, path: Path): EventFilter {
  const obj = object(value, path);
  const out: EventFilter = {};
  eventFilterFields(obj, path, out);
  return out;
}

export function parseRoomEventFilter(value: JsonValue, path: Path): RoomEventFilter {
  const obj = object(value, path);
  const out: RoomEventFilter = {};
  eventFilterFields(obj, path, out);
  if (obj.rooms !== undefined) out.rooms = stringArray(obj.rooms, `${path}.rooms`, isRoomIdLike, "room ID");
  if (obj.not_rooms !== undefined) out.not_rooms = stringArray(obj.not_rooms, `${path}.not_rooms`, isRoomIdLike, "room ID");
  for (const key of ["contains_url", "lazy_load_members", "include_redundant_members", "unread_thread_notifications"] as const) {
    if (obj[key] !== undefined) out[key] = boolean(obj[key], `${path}.${key}`);
  }
  return out;
}

function parseRoomFilter(value: JsonValue, path: Path): RoomFilter {
  const obj = object(value, path);
  const out: RoomFilter = {};
  if (obj.rooms !== undefined) out.rooms = stringArray(obj.rooms, `${path}.rooms`, isRoomIdLike, "room ID");
  if (obj.not_rooms !== undefined) out.not_rooms = stringArray(obj.not_rooms, `${path}.not_rooms`, isRoomIdLike, "room ID");
  if (obj.include_leave !== undefined) out.include_leave = boolean(obj.include_leave, `${path}.include_leave`);
  for (const key of ["ephemeral", "state", "timeline", "account_data"] as const) {
    if (obj[key] !== undefined) out[key] = parseRoomEventFilter(obj[key], `${path}.${key}`);
  }
  return out;
}

/**
 * Validates a filter definition and returns it typed. Throws M_BAD_JSON naming the first offending
 * field. The caller stores the original JSON (so unknown keys round-trip) and uses the typed value.
 */
export function parseFilter(value: JsonValue): Filter {
  const obj = object(value, "filter");
  const out: Filter = {};
  if (obj.event_fields !== undefined) {
    // Spec: Appendices, "Dot-separated property paths". Only the type is checked: a path that names
    // nothing simply selects nothing.
    out.event_fields = stringArray(obj.event_fields, "event_fields");
  }
  if (obj.event_format !== undefined) {
    if (obj.event_format !== "client" && obj.event_format !== "federation") {
      throw badJson("event_format must be 'client' or 'federation'");
    }
    out.event_format = obj.event_format;
  }
  if (obj.presence !== undefined) out.presence = parseEventFilter(obj.presence, "presence");
  if (obj.account_data !== undefined) out.account_data = parseEventFilter(obj.account_data, "account_data");
  if (obj.room !== undefined) out.room = parseRoomFilter(obj.room, "room");
  return out;
}
