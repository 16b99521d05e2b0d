// Client-Server API: reading a room's events (spec: "Getting events for a room": GET /messages, GET
// /event/{eventId}, GET /timestamp_to_event; "Event context"; data/api/client-server/message_pagination.yaml,
// rooms.yaml, event_context.yaml, room_event_by_timestamp.yaml). The Room DO decides what the user may see
// (history visibility, durable-objects/room/history-visibility.ts); these handlers parse and shape.
import { Hono } from "hono";
import { roomToken } from "../../durable-objects/notifications.js";
import { unwrap } from "../../durable-objects/user/outcome.js";
import { invalidParam, missingParam, notFound } from "../../protocol/errors.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv } from "../env.js";
import { requireRoomId, roomStub } from "../room-store.js";
import { dirParam, limitParam, positionParam, roomEventFilterParam } from "../room-pagination.js";

export const roomMessagesRoutes = new Hono<AppEnv>();

const V = "/_matrix/client/:version{v3|r0}";

/** The default page size of /messages and /context (spec: "Default: 10"). */
const DEFAULT_LIMIT = 10;

// GET /_matrix/client/v3/rooms/{roomId}/messages
roomMessagesRoutes.get(`${V}/rooms/:roomId/messages`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const { userId, deviceId } = requester(c);
  // `dir` is required by the spec; Synapse defaults it to forwards, and Complement (TestRoomForget) leaves it out.
  const dir = dirParam(c, "f");
  const from = await positionParam(c, "from", userId, roomId);
  const to = await positionParam(c, "to", userId, roomId);
  const limit = limitParam(c, DEFAULT_LIMIT);
  const filter = roomEventFilterParam(c);
  const result = unwrap(await roomStub(c.env, roomId).messages({ userId, deviceId }, { dir, from, to, limit, filter }));
  const body: Record<string, unknown> = { chunk: result.chunk, start: roomToken(result.start) };
  if (result.end !== undefined) body.end = roomToken(result.end);
  if (result.state !== undefined) body.state = result.state;
  return c.json(body);
});

// GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}
roomMessagesRoutes.get(`${V}/rooms/:roomId/context/:eventId`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const { userId, deviceId } = requester(c);
  const limit = limitParam(c, DEFAULT_LIMIT);
  const filter = roomEventFilterParam(c);
  const result = unwrap(await roomStub(c.env, roomId).eventContext({ userId, deviceId }, { eventId: c.req.param("eventId"), limit, filter }));
  const body: Record<string, unknown> = {
    start: roomToken(result.start),
    end: roomToken(result.end),
    events_before: result.events_before,
    event: result.event,
    events_after: result.events_after,
    state: result.state,
  };
  return c.json(body);
});

// GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}
roomMessagesRoutes.get(`${V}/rooms/:roomId/event/:eventId`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const { userId, deviceId } = requester(c);
  const event = unwrap(await roomStub(c.env, roomId).eventForReader({ userId, deviceId }, c.req.param("eventId")));
  const body: Record<string, unknown> = { ...event };
  return c.json(body);
});

// GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event
roomMessagesRoutes.get("/_matrix/client/v1/rooms/:roomId/timestamp_to_event", requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const { userId, deviceId } = requester(c);
  const rawTs = c.req.query("ts");
  if (rawTs === undefined || rawTs === "") throw missingParam("Missing ts parameter");
  if (!/^\d{1,16}$/.test(rawTs) || !Number.isSafeInteger(Number(rawTs))) throw invalidParam("ts must be a non-negative integer");
  const ts = Number(rawTs);
  const dir = dirParam(c);
  const found = unwrap(await roomStub(c.env, roomId).timestampToEvent({ userId, deviceId }, ts, dir));
  if (!found) throw notFound(`Unable to find event from ${ts} in ${dir === "f" ? "forward" : "backward"} direction`);
  return c.json(found);
});
