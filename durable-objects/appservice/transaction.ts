// The body of one transaction to an application service (spec: Application Service API, "Pushing events",
// PUT /_matrix/app/v1/transactions/{txnId}), built from the rows of the service's queue, with the fields of
// the MSCs encrypted bridges rely on, named as Synapse sends them (synapse/appservice/api.py `push_bulk`):
//
//   events                                  the room events (client format)
//   ephemeral, de.sorunome.msc2409.ephemeral  typing, receipts, presence (MSC2409; `receive_ephemeral`)
//   de.sorunome.msc2409.to_device           to-device messages for the service's users, each with
//                                           `to_user_id` and `to_device_id` (MSC4203, split from MSC2409 but
//                                           keeping its prefix); present, maybe empty, for ephemeral services
//   org.matrix.msc3202.device_lists         {changed, left}: users whose device lists the service tracks
//   org.matrix.msc3202.device_one_time_keys_count (and the older `..._key_counts`)
//                                           user → device → algorithm → unclaimed one-time keys
//   org.matrix.msc3202.device_unused_fallback_key_types  user → device → [algorithm]
// The last three only for registrations with `org.matrix.msc3202: true` (MSC3202).
//
// All of them travel through the one queue (durable-objects/appservice.ts, the Destination DO's queue): room
// events as its PDUs, everything else as its EDUs, told apart by `eduType`: an ephemeral event keeps its
// event type (`m.typing`, `m.receipt`, `m.presence`), to-device messages and device list changes use the two
// kinds below (no Matrix event type is a bare word without a dot).
import type { StoredRegistration } from "../../protocol/appservice-registration.js";
import type { OutgoingTransaction, QueuedEdu } from "../destination/queue.js";

/** A to-device message for a service's user: content is `{to_user_id, to_device_id, type, sender, content}`. */
export const TO_DEVICE_KIND = "to_device";
/** A device list change: content is `{user_id, kind: "changed"|"left"}`; the latest per user wins. */
export const DEVICE_LIST_KIND = "device_list";

/** MSC3202's key counts for the users of one transaction (see appservice/key-counts.ts). */
export interface TransactionKeyCounts {
  oneTimeKeys: Record<string, Record<string, Record<string, number>>>;
  unusedFallbackKeyTypes: Record<string, Record<string, string[]>>;
}

export function toDeviceRow(toUserId: string, toDeviceId: string, sender: string, type: string, contentJson: string): QueuedEdu {
  // The content is JSON text already; spliced in rather than parsed and serialised again.
  const head = JSON.stringify({ to_user_id: toUserId, to_device_id: toDeviceId, type, sender });
  return { eduType: TO_DEVICE_KIND, content: `${head.slice(0, -1)},"content":${contentJson}}` };
}

export function deviceListRow(userId: string, kind: "changed" | "left"): QueuedEdu {
  // A waiting change of the same user is replaced: only the latest says whether to track them.
  return { eduType: DEVICE_LIST_KIND, content: JSON.stringify({ user_id: userId, kind }), dedupeKey: `device_list:${userId}` };
}

/** The parts of a transaction, parsed from its rows. */
export interface TransactionParts {
  events: Record<string, unknown>[];
  ephemeral: Record<string, unknown>[];
  toDevice: Record<string, unknown>[];
  deviceLists: { changed: string[]; left: string[] };
}

export function transactionParts(txn: OutgoingTransaction): TransactionParts {
  const events = txn.pdus.map((p) => JSON.parse(p.json) as Record<string, unknown>);
  const ephemeral: Record<string, unknown>[] = [];
  const toDevice: Record<string, unknown>[] = [];
  // In queue order, a later change of a user overrides an earlier one (Synapse merges its summaries so).
  const lists = new Map<string, "changed" | "left">();
  for (const edu of txn.edus) {
    const content = JSON.parse(edu.content) as Record<string, unknown>;
    if (edu.eduType === TO_DEVICE_KIND) toDevice.push(content);
    else if (edu.eduType === DEVICE_LIST_KIND) {
      if (typeof content.user_id === "string") {
        lists.delete(content.user_id);
        lists.set(content.user_id, content.kind === "left" ? "left" : "changed");
      }
    } else ephemeral.push(content);
  }
  const deviceLists = { changed: [] as string[], left: [] as string[] };
  for (const [userId, kind] of lists) deviceLists[kind].push(userId);
  return { events, ephemeral, toDevice, deviceLists };
}

/**
 * The users whose key counts go with a transaction (Synapse `_compute_msc3202_otk_counts_and_fallback_keys`):
 * the service's sender, its users in the rooms of the transaction's events and ephemeral events (the caller
 * looks them up, `usersInRooms`), and the recipients of its to-device messages.
 */
export function keyCountRooms(parts: TransactionParts): string[] {
  const rooms = new Set<string>();
  for (const e of parts.events) if (typeof e.room_id === "string") rooms.add(e.room_id);
  for (const e of parts.ephemeral) if (typeof e.room_id === "string") rooms.add(e.room_id);
  return [...rooms];
}

export function toDeviceRecipients(parts: TransactionParts): string[] {
  return [...new Set(parts.toDevice.map((m) => m.to_user_id).filter((u): u is string => typeof u === "string"))];
}

/** The JSON body of PUT /transactions/{txnId}. */
export function transactionBody(registration: StoredRegistration, parts: TransactionParts, keys: TransactionKeyCounts | null): Record<string, unknown> {
  const body: Record<string, unknown> = { events: parts.events };
  if (registration.receiveEphemeral) {
    // The stable name and MSC2409's (which matrix-appservice-bridge and older bridges read). Synapse sends
    // each for its own registration flag; the registration here reads both flags as one.
    body.ephemeral = parts.ephemeral;
    body["de.sorunome.msc2409.ephemeral"] = parts.ephemeral;
    body["de.sorunome.msc2409.to_device"] = parts.toDevice;
  }
  if (registration.msc3202) {
    // Synapse leaves out empty maps and an empty device list summary.
    if (keys && Object.keys(keys.oneTimeKeys).length > 0) {
      body["org.matrix.msc3202.device_one_time_key_counts"] = keys.oneTimeKeys;
      body["org.matrix.msc3202.device_one_time_keys_count"] = keys.oneTimeKeys;
    }
    if (keys && Object.keys(keys.unusedFallbackKeyTypes).length > 0) {
      body["org.matrix.msc3202.device_unused_fallback_key_types"] = keys.unusedFallbackKeyTypes;
    }
    if (parts.deviceLists.changed.length + parts.deviceLists.left.length > 0) {
      body["org.matrix.msc3202.device_lists"] = parts.deviceLists;
    }
  }
  return body;
}
