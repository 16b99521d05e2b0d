// Server-Server API: the EDUs of PUT /_matrix/federation/v1/send/{txnId} (spec: "Transactions", "EDUs";
// data/api/server-server/definitions/edu.yaml and the EDU sections: "Typing Notifications", "Receipts",
// "Send-to-device messaging", "Presence", "Device Management"). EDUs have no result in the answer: one
// that is malformed, names a user of another server than the sending one, or concerns a room we do not
// share is dropped (and logged), as Synapse does; it never fails the transaction.
import { serverNameOf } from "../../protocol/pdu.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { MatrixError } from "../../protocol/errors.js";
import { FEDERATION_TYPING_TIMEOUT_MS } from "../../durable-objects/room/ephemeral.js";
import type { ReceiptUpdate } from "../../durable-objects/notifications.js";
import type { Env } from "../env.js";
import { isValidRoomId } from "../directory-store.js";
import { roomStub } from "../room-store.js";
import { assertServerAllowedInRoom } from "./auth.js";
import { deliverToLocalDevices, type ToDeviceMessages } from "../client/to-device.js";
import { applyDeviceListUpdates, applySigningKeyUpdate } from "./device-list-updates.js";
import { applyPresence } from "./presence-edus.js";

/** Why an EDU was dropped (logged; tests read the log through the return value). */
export type EduVerdict = "applied" | `dropped: ${string}` | `ignored: ${string}`;

const isUserId = (v: unknown): v is string => typeof v === "string" && /^@[^:]+:.+$/.test(v) && v.length <= 255;

/** Applies the EDUs of one transaction from `origin`, in order per type. Returns a verdict per EDU. */
export async function receiveEdus(env: Env, origin: string, edus: unknown[]): Promise<EduVerdict[]> {
  const verdicts: EduVerdict[] = [];
  const deviceListUpdates: { index: number; content: JsonObject }[] = [];
  for (const [index, edu] of edus.entries()) {
    verdicts.push("applied");
    if (!isJsonObject(edu) || typeof edu.edu_type !== "string" || !isJsonObject(edu.content)) {
      verdicts[index] = "dropped: malformed";
      continue;
    }
    try {
      switch (edu.edu_type) {
        case "m.typing":
          verdicts[index] = await typing(env, origin, edu.content);
          break;
        case "m.receipt":
          verdicts[index] = await receipts(env, origin, edu.content);
          break;
        case "m.direct_to_device":
          verdicts[index] = await directToDevice(env, origin, edu.content);
          break;
        case "m.presence":
          verdicts[index] = await applyPresence(env, origin, edu.content);
          break;
        case "m.device_list_update":
          // Applied together below: several updates of one user in one transaction form a chain.
          deviceListUpdates.push({ index, content: edu.content });
          break;
        case "m.signing_key_update":
          verdicts[index] = await applySigningKeyUpdate(env, origin, edu.content);
          break;
        default:
          verdicts[index] = "dropped: unknown EDU type";
      }
    } catch (e) {
      // A Matrix error (ACL, unknown room) drops the EDU; anything else is a bug, logged, not a 500.
      verdicts[index] = `dropped: ${e instanceof MatrixError ? e.message : "internal error"}`;
      if (!(e instanceof MatrixError)) console.error("EDU failed", origin, edu.edu_type, e instanceof Error ? e.stack : e);
    }
  }
  if (deviceListUpdates.length > 0) {
    const results = await applyDeviceListUpdates(env, origin, deviceListUpdates.map((u) => u.content));
    deviceListUpdates.forEach((u, i) => (verdicts[u.index] = results[i]!));
  }
  const dropped = verdicts.map((v, i) => [i, v] as const).filter(([, v]) => v.startsWith("dropped"));
  if (dropped.length > 0) {
    const [i, v] = dropped[0]!;
    console.warn(`federation: ${dropped.length} of ${edus.length} EDUs from ${origin} dropped; first: #${i} ${String((edus[i] as { edu_type?: unknown })?.edu_type)} ${v}`);
  }
  return verdicts;
}

// Spec: "Typing Notifications": {room_id, user_id, typing}.
async function typing(env: Env, origin: string, content: JsonObject): Promise<EduVerdict> {
  const { room_id: roomId, user_id: userId, typing } = content;
  if (typeof roomId !== "string" || !isValidRoomId(roomId) || !isUserId(userId) || typeof typing !== "boolean") return "dropped: malformed";
  if (serverNameOf(userId) !== origin) return "dropped: user of another server";
  await assertServerAllowedInRoom(env, roomId, origin);
  const result = await roomStub(env, roomId).setTyping(userId, typing, FEDERATION_TYPING_TIMEOUT_MS);
  return "ok" in result ? "applied" : `dropped: ${result.error.error}`;
}

// Spec: "Receipts": {room_id: {receipt_type: {user_id: {event_ids: [...], data: {ts, thread_id?}}}}}.
async function receipts(env: Env, origin: string, content: JsonObject): Promise<EduVerdict> {
  const problems: string[] = [];
  for (const [roomId, byType] of Object.entries(content)) {
    if (!isValidRoomId(roomId) || !isJsonObject(byType)) {
      problems.push("malformed");
      continue;
    }
    try {
      await assertServerAllowedInRoom(env, roomId, origin);
    } catch (e) {
      problems.push(e instanceof Error ? e.message : "forbidden");
      continue;
    }
    for (const [receiptType, byUser] of Object.entries(byType)) {
      // Private receipts never cross servers; only the public read receipt is accepted (as Synapse).
      if (receiptType !== "m.read" || !isJsonObject(byUser)) {
        problems.push(`receipt type ${receiptType}`);
        continue;
      }
      for (const [userId, receipt] of Object.entries(byUser)) {
        if (!isUserId(userId) || !isJsonObject(receipt) || !Array.isArray(receipt.event_ids)) {
          problems.push("malformed");
          continue;
        }
        if (serverNameOf(userId) !== origin) {
          problems.push("user of another server");
          continue;
        }
        const data = isJsonObject(receipt.data) ? receipt.data : {};
        const ts = typeof data.ts === "number" && Number.isSafeInteger(data.ts) ? data.ts : Date.now();
        const threadId = typeof data.thread_id === "string" && data.thread_id !== "" ? data.thread_id : undefined;
        // Spec: the list "is generally expected to be a single event ID".
        for (const eventId of receipt.event_ids) {
          // Any non-empty ID up to 255 characters, as Synapse (Complement's msc3902 receipt names
          // "mytesteventid"); the room stores receipts for events it does not have (ephemeral.ts).
          if (typeof eventId !== "string" || eventId === "" || eventId.length > 255) {
            problems.push("malformed");
            continue;
          }
          const update: ReceiptUpdate = { receiptType, userId, eventId, ts };
          if (threadId !== undefined) update.threadId = threadId;
          const result = await roomStub(env, roomId).setReceipt(update);
          if ("error" in result) problems.push(result.error.error);
        }
      }
    }
  }
  return problems.length === 0 ? "applied" : `dropped: ${problems.join("; ")}`;
}

// Spec: "Send-to-device messaging": {sender, type, message_id, messages: {user_id: {device_id | "*": content}}}.
async function directToDevice(env: Env, origin: string, content: JsonObject): Promise<EduVerdict> {
  const { sender, type, message_id: messageId, messages } = content;
  if (!isUserId(sender) || typeof type !== "string" || type === "" || typeof messageId !== "string" || messageId === "" || !isJsonObject(messages)) {
    return "dropped: malformed";
  }
  if (serverNameOf(sender) !== origin) return "dropped: sender of another server";
  const local: ToDeviceMessages = {};
  for (const [recipient, byDevice] of Object.entries(messages)) {
    if (!isUserId(recipient) || serverNameOf(recipient) !== env.SERVER_NAME) continue;
    if (!isJsonObject(byDevice) || !Object.values(byDevice).every(isJsonObject)) continue;
    local[recipient] = byDevice as Record<string, JsonObject>;
  }
  await deliverToLocalDevices(env, messageId, sender, type, local, origin);
  return "applied";
}
