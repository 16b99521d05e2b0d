// Client-Server API: typing notifications, receipts and read markers (spec: "Typing Notifications",
// "Receipts", "Fully read markers"; data/api/client-server/typing.yaml, receipts.yaml, read_markers.yaml).
// The Room DO records them and fans them out to the members' User DOs (durable-objects/room/ephemeral.ts);
// the user's own read receipt also clears their unread counts in their User DO.
import { Hono, type Context } from "hono";
import { unwrap } from "../../durable-objects/room/outcome.js";
import type { ReceiptUpdate } from "../../durable-objects/notifications.js";
import { MatrixError, badJson, forbidden, invalidParam } from "../../protocol/errors.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { requireRoomId, roomStub } from "../room-store.js";
import { userStore } from "../user-store.js";

export const roomEphemeralRoutes = new Hono<AppEnv>();

const V = "/_matrix/client/:version{v3|r0}";

/** Synapse's default typing timeout when the client names none. */
const DEFAULT_TYPING_TIMEOUT_MS = 30_000;

const RECEIPT_TYPES = ["m.read", "m.read.private", "m.fully_read"];

// PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}
roomEphemeralRoutes.put(`${V}/rooms/:roomId/typing/:userId`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const { userId } = requester(c);
  if (c.req.param("userId") !== userId) throw forbidden("Cannot set another user's typing state");
  const body = await readJsonObject(c, { allowEmpty: false });
  if (typeof body.typing !== "boolean") throw badJson("typing must be a boolean");
  let timeout = DEFAULT_TYPING_TIMEOUT_MS;
  if (body.timeout !== undefined) {
    if (typeof body.timeout !== "number" || !Number.isSafeInteger(body.timeout) || body.timeout < 0) throw badJson("timeout must be a non-negative integer");
    timeout = body.timeout;
  }
  unwrap(await roomStub(c.env, roomId).setTyping(userId, body.typing, timeout));
  return c.json({});
});

/** Records one receipt of the requester (m.read / m.read.private through the room, m.fully_read as room
 * account data). */
async function sendReceipt(env: Env, userId: string, roomId: string, receiptType: string, eventId: string, threadId?: string): Promise<void> {
  if (receiptType === "m.fully_read") {
    // Spec: "Fully read markers": room account data `m.fully_read` of the user, who must be in the room.
    const membership = await roomStub(env, roomId).membership(userId);
    if (membership?.membership !== "join") throw forbidden(`User ${userId} not in room ${roomId}`);
    await userStore(env, userId).setAccountData(roomId, "m.fully_read", { event_id: eventId });
    return;
  }
  const receipt: ReceiptUpdate = { receiptType, userId, eventId, ts: Date.now() };
  if (threadId !== undefined) receipt.threadId = threadId;
  const { streamOrdering, applied } = unwrap(await roomStub(env, roomId).setReceipt(receipt));
  // A receipt older than the user's current one changes nothing (receipts only move forward).
  if (applied) await userStore(env, userId).onOwnReceipt(roomId, receipt, streamOrdering);
}

function eventIdParam(c: Context<AppEnv>): string {
  const eventId = c.req.param("eventId")!;
  if (!eventId.startsWith("$") || eventId.length > 255) throw invalidParam("Invalid event ID");
  return eventId;
}

// POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}
roomEphemeralRoutes.post(`${V}/rooms/:roomId/receipt/:receiptType/:eventId`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const { userId } = requester(c);
  const receiptType = c.req.param("receiptType");
  if (!RECEIPT_TYPES.includes(receiptType)) throw invalidParam(`Receipt type must be one of ${RECEIPT_TYPES.join(", ")}`);
  const eventId = eventIdParam(c);
  const body = await readJsonObject(c, { allowEmpty: true });
  let threadId: string | undefined;
  if (body.thread_id !== undefined) {
    // Spec (400): "It is not a string. It is empty. It is provided for an incompatible receipt type."
    if (typeof body.thread_id !== "string" || body.thread_id === "") throw invalidParam("thread_id field must be a non-empty string");
    if (receiptType === "m.fully_read") throw invalidParam("thread_id is not compatible with m.fully_read");
    threadId = body.thread_id;
  }
  await sendReceipt(c.env, userId, roomId, receiptType, eventId, threadId);
  return c.json({});
});

// POST /_matrix/client/v3/rooms/{roomId}/read_markers
roomEphemeralRoutes.post(`${V}/rooms/:roomId/read_markers`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const { userId } = requester(c);
  const body = await readJsonObject(c, { allowEmpty: true });
  const markers: [string, string][] = [];
  for (const type of RECEIPT_TYPES) {
    const value = body[type];
    if (value === undefined) continue;
    if (typeof value !== "string" || !value.startsWith("$")) throw new MatrixError(400, "M_INVALID_PARAM", `${type} must be an event ID`);
    markers.push([type, value]);
  }
  for (const [type, eventId] of markers) await sendReceipt(c.env, userId, roomId, type, eventId);
  return c.json({});
});
