// Applying filters to events (spec: Client-Server API, "Filtering"; definitions/event_filter.yaml,
// room_event_filter.yaml, sync_filter.yaml). protocol/filter.ts validates a filter; this module answers
// "does this event pass" and "which fields of this event to keep" for /sync (and /messages).
import type { EventFilter, Filter, RoomEventFilter, RoomFilter } from "./filter.js";
import { isJsonObject, type JsonObject, type JsonValue } from "./json.js";
import { splitKeyPath } from "./push-rules.js";

/** What a filter looks at. `content` is only needed for `contains_url`. */
export interface FilterableEvent {
  type: string;
  sender?: string;
  roomId?: string;
  content?: JsonObject;
}

/** The default timeline limit of /sync when the filter names none (Synapse's and the spec examples'). */
export const DEFAULT_TIMELINE_LIMIT = 10;

/**
 * `types` / `not_types` patterns: `*` matches any sequence of characters, everything else is literal
 * (spec: EventFilter `types`).
 */
export function typeMatches(pattern: string, type: string): boolean {
  if (!pattern.includes("*")) return pattern === type;
  const parts = pattern.split("*");
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  if (!type.startsWith(first)) return false;
  let at = first.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const found = type.indexOf(parts[i]!, at);
    if (found < 0) return false;
    at = found + parts[i]!.length;
  }
  return type.length - last.length >= at && type.endsWith(last);
}

/** EventFilter semantics: a `not_*` match excludes even when the positive list includes. */
export function eventPasses(filter: EventFilter | undefined, event: FilterableEvent): boolean {
  if (!filter) return true;
  if (filter.not_types?.some((p) => typeMatches(p, event.type))) return false;
  if (filter.types && !filter.types.some((p) => typeMatches(p, event.type))) return false;
  if (event.sender !== undefined) {
    if (filter.not_senders?.includes(event.sender)) return false;
    if (filter.senders && !filter.senders.includes(event.sender)) return false;
  }
  return true;
}

/** RoomEventFilter: EventFilter plus `rooms` / `not_rooms` and `contains_url` (needs `content`). */
export function roomEventPasses(filter: RoomEventFilter | undefined, event: FilterableEvent): boolean {
  if (!filter) return true;
  if (!eventPasses(filter, event)) return false;
  if (event.roomId !== undefined && !roomPasses(filter, event.roomId)) return false;
  if (filter.contains_url !== undefined && event.content !== undefined) {
    // Spec: "If true, includes only events with a url key in their content. If false, excludes those events."
    const hasUrl = typeof event.content.url === "string";
    if (hasUrl !== filter.contains_url) return false;
  }
  return true;
}

/** Whether a filter needs the event content to decide (so the cheap metadata check is not the answer). */
export function needsContent(filter: RoomEventFilter | undefined): boolean {
  return filter?.contains_url !== undefined;
}

/** `rooms` / `not_rooms` of a RoomFilter or RoomEventFilter. */
export function roomPasses(filter: Pick<RoomFilter, "rooms" | "not_rooms"> | undefined, roomId: string): boolean {
  if (!filter) return true;
  if (filter.not_rooms?.includes(roomId)) return false;
  if (filter.rooms && !filter.rooms.includes(roomId)) return false;
  return true;
}

/** The `limit` of a filter, or the default. */
export function filterLimit(filter: EventFilter | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const limit = filter?.limit;
  return limit === undefined ? fallback : Math.min(limit, max);
}

/**
 * `event_fields` (spec: Filter `event_fields`, Appendices "Dot-separated property paths"): a copy of the
 * event with only the named paths. Paths that name nothing are skipped. `fields` undefined: the event as is.
 */
export function selectEventFields(event: JsonObject, fields: readonly string[] | undefined): JsonObject {
  if (fields === undefined) return event;
  const out: JsonObject = {};
  for (const field of fields) {
    const path = splitKeyPath(field);
    let src: JsonValue = event;
    let found = true;
    for (const part of path) {
      if (!isJsonObject(src) || !Object.hasOwn(src, part)) {
        found = false;
        break;
      }
      src = src[part]!;
    }
    if (!found) continue;
    let dst = out;
    for (let i = 0; i < path.length - 1; i++) {
      const part = path[i]!;
      const next = dst[part];
      if (isJsonObject(next)) dst = next;
      else {
        const created: JsonObject = {};
        dst[part] = created;
        dst = created;
      }
    }
    dst[path[path.length - 1]!] = src;
  }
  return out;
}

/** A parsed filter with its defaults resolved, the way /sync reads it. */
export interface SyncFilterView {
  eventFields?: string[];
  eventFormat: "client" | "federation";
  presence?: EventFilter;
  accountData?: EventFilter;
  room: RoomFilter;
  timeline: RoomEventFilter;
  state: RoomEventFilter;
  ephemeral: RoomEventFilter;
  roomAccountData: RoomEventFilter;
  timelineLimit: number;
  includeLeave: boolean;
  lazyLoadMembers: boolean;
  includeRedundantMembers: boolean;
  unreadThreadNotifications: boolean;
}

/** Resolves a parsed filter into what /sync needs. `maxLimit` caps the timeline limit. */
export function syncFilterView(filter: Filter, maxLimit = 1000): SyncFilterView {
  const room = filter.room ?? {};
  const timeline = room.timeline ?? {};
  const state = room.state ?? {};
  const view: SyncFilterView = {
    eventFormat: filter.event_format ?? "client",
    room,
    timeline,
    state,
    ephemeral: room.ephemeral ?? {},
    roomAccountData: room.account_data ?? {},
    timelineLimit: filterLimit(timeline, DEFAULT_TIMELINE_LIMIT, maxLimit),
    includeLeave: room.include_leave === true,
    // Spec: lazy-loading is only supported on the `state` filter of /sync.
    lazyLoadMembers: state.lazy_load_members === true,
    includeRedundantMembers: state.include_redundant_members === true,
    // Spec (Threading): the flag is read from the timeline filter of /sync.
    unreadThreadNotifications: timeline.unread_thread_notifications === true,
  };
  if (filter.event_fields !== undefined) view.eventFields = filter.event_fields;
  if (filter.presence !== undefined) view.presence = filter.presence;
  if (filter.account_data !== undefined) view.accountData = filter.account_data;
  return view;
}
