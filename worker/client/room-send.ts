// Client-Server API: sending events and reading state (spec: "Sending events to a room", "Getting events
// for a room" (state), "Redactions"; data/api/client-server/room_send.yaml, room_state.yaml, rooms.yaml,
// redaction.yaml). The Room DO checks and stores; it also decides who may read which state.
import { massagedTimestamp } from "../appservice/auth.js";
import { Hono, type Context } from "hono";
import { MatrixError, badJson, forbidden, notFound } from "../../protocol/errors.js";
import { PARTICIPATION_EVENT_TYPE } from "../../protocol/participation.js";
import { ownServerKey } from "../../durable-objects/room/key-identity.js";
import { signingKey } from "../server-identity.js";
import type { JsonObject } from "../../protocol/json.js";
import { requester, requireAuth } from "../auth.js";
import { validateCanonicalAlias } from "../directory-store.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { requireRoomId, roomStub } from "../room-store.js";
import { unwrap } from "../../durable-objects/room/outcome.js";
import { requestedDelay, scheduleDelayedEvent } from "./delayed-events.js";
import { requestedStickyDuration } from "./sticky-events.js";

export const roomSendRoutes = new Hono<AppEnv>();

const V = "/_matrix/client/:version{v3|r0}";

/** The state key of the state routes: absent or empty means "" (the routes without `{stateKey}`). */
const stateKeyParam = (c: Context<AppEnv>): string => c.req.param("stateKey") ?? "";

// PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}
roomSendRoutes.put(`${V}/rooms/:roomId/send/:eventType/:txnId`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const { userId, deviceId } = requester(c);
  const originServerTs = massagedTimestamp(c, requester(c));
  const content = await readJsonObject(c, { allowEmpty: false });
  // MSC4140: `?org.matrix.msc4140.delay=` schedules the event instead (worker/client/delayed-events.ts).
  const delay = requestedDelay(c);
  // MSC4354: `?org.matrix.msc4354.sticky_duration_ms=` makes it a sticky event (worker/client/sticky-events.ts).
  const stickyDurationMs = requestedStickyDuration(c);
  const sticky = stickyDurationMs !== undefined ? { stickyDurationMs } : {};
  if (delay !== undefined) {
    return c.json(await scheduleDelayedEvent(c, delay, { roomId, type: c.req.param("eventType"), content, txnId: c.req.param("txnId"), ...sticky }));
  }
  const result = unwrap(await roomStub(c.env, roomId).sendEvent({
    ...sticky,
    sender: userId,
    type: c.req.param("eventType"),
    content,
    originServerTs,
    txn: { deviceId, txnId: c.req.param("txnId") },
    redacts: c.req.param("eventType") === "m.room.redaction" && typeof content.redacts === "string" ? content.redacts : undefined,
  }));
  return c.json({ event_id: result.eventId });
});

async function putState(c: Context<AppEnv>) {
  const roomId = requireRoomId(c.req.param("roomId"));
  const type = c.req.param("eventType")!;
  const stateKey = stateKeyParam(c);
  const content = await readJsonObject(c, { allowEmpty: false });
  const delay = requestedDelay(c);
  if (delay !== undefined) return c.json(await scheduleDelayedEvent(c, delay, { roomId, type, stateKey, content }));
  // Spec: 400 M_BAD_ALIAS / M_INVALID_PARAM for canonical aliases that are invalid or point elsewhere.
  if (type === "m.room.canonical_alias" && stateKey === "") await validateCanonicalAlias(c.env, roomId, content);
  // MSC4345: this server's own participation (its key as state key) is the key controller's: a
  // self-revocation cuts the whole server out of the room for good, so only a server admin may send it
  // (the proposal: "Typically only the server admins ... will do this"; the rules let any localpart).
  if (type === PARTICIPATION_EVENT_TYPE && !requester(c).isAdmin && stateKey === ownServerKey(await signingKey(c.env))) {
    throw forbidden("Only a server admin may change this server's own participation");
  }
  const originServerTs = massagedTimestamp(c, requester(c));
  const result = unwrap(await roomStub(c.env, roomId).sendEvent({ sender: requester(c).userId, type, stateKey, content, originServerTs }));
  return c.json({ event_id: result.eventId });
}

// PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}
roomSendRoutes.put(`${V}/rooms/:roomId/state/:eventType/:stateKey{.+}`, requireAuth, putState);
roomSendRoutes.put(`${V}/rooms/:roomId/state/:eventType/`, requireAuth, putState);
roomSendRoutes.put(`${V}/rooms/:roomId/state/:eventType`, requireAuth, putState);

async function getState(c: Context<AppEnv>) {
  const roomId = requireRoomId(c.req.param("roomId"));
  const format = c.req.query("format") ?? "content";
  if (format !== "content" && format !== "event") throw new MatrixError(400, "M_INVALID_PARAM", "format must be 'content' or 'event'");
  const { userId, deviceId } = requester(c);
  const event = unwrap(await roomStub(c.env, roomId).stateEventForUser({ userId, deviceId }, c.req.param("eventType")!, stateKeyParam(c)));
  if (!event) throw notFound("Event not found.");
  // Typed loosely for c.json: Hono's JSON type check does not terminate on the recursive JSON types.
  const body: Record<string, unknown> = format === "event" ? { ...event } : event.content;
  return c.json(body);
}

// GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}
roomSendRoutes.get(`${V}/rooms/:roomId/state/:eventType/:stateKey{.+}`, requireAuth, getState);
roomSendRoutes.get(`${V}/rooms/:roomId/state/:eventType/`, requireAuth, getState);
roomSendRoutes.get(`${V}/rooms/:roomId/state/:eventType`, requireAuth, getState);

// GET /_matrix/client/v3/rooms/{roomId}/state
roomSendRoutes.get(`${V}/rooms/:roomId/state`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const { userId, deviceId } = requester(c);
  const events = unwrap(await roomStub(c.env, roomId).stateForUser({ userId, deviceId }));
  return c.json(events as unknown[]);
});

// PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}
roomSendRoutes.put(`${V}/rooms/:roomId/redact/:eventId/:txnId`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const { userId, deviceId } = requester(c);
  const body = await readJsonObject(c, { allowEmpty: true });
  const content: JsonObject = {};
  if (body.reason !== undefined) {
    if (typeof body.reason !== "string") throw badJson("'reason' must be a string");
    content.reason = body.reason;
  }
  // Other keys of the body are kept, as Synapse does (e.g. MSC extensions); `redacts` is the server's.
  for (const [k, v] of Object.entries(body)) if (k !== "reason" && k !== "redacts") content[k] = v;
  const result = unwrap(await roomStub(c.env, roomId).sendEvent({
    sender: userId,
    type: "m.room.redaction",
    content,
    redacts: c.req.param("eventId"),
    txn: { deviceId, txnId: c.req.param("txnId") },
  }));
  return c.json({ event_id: result.eventId });
});
