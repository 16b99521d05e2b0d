// Server-Server API: reading a room's events and state (spec: "Retrieving events", "Backfilling and
// retrieving missing events", "Room State"; data/api/server-server/events.yaml, event_auth.yaml,
// backfill.yaml). The Room DO checks that the origin is in the room and applies history visibility.
import { Hono } from "hono";
import { unwrap } from "../../durable-objects/room/outcome.js";
import { invalidParam, missingParam, notFound } from "../../protocol/errors.js";
import { roomOfEvent } from "../../durable-objects/room/event-index.js";
import type { AppEnv } from "../env.js";
import { intParam, readJsonObject } from "../http.js";
import { requireRoomId, roomStub } from "../room-store.js";
import { assertServerAllowedInRoom, requestOrigin } from "./auth.js";

export const federationEventRoutes = new Hono<AppEnv>();

function requireEventId(value: string | undefined, name = "event_id"): string {
  if (value === undefined || value === "") throw missingParam(`Missing ${name}`);
  if (!value.startsWith("$") || value.length > 255) throw invalidParam(`Invalid ${name}`);
  return value;
}

function stringList(value: unknown, name: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) throw invalidParam(`${name} must be a list of event IDs`);
  return value as string[];
}

// GET /_matrix/federation/v1/state/{roomId}?event_id=
federationEventRoutes.get("/_matrix/federation/v1/state/:roomId", async (c) => {
  const origin = requestOrigin(c);
  const roomId = requireRoomId(c.req.param("roomId"));
  const eventId = requireEventId(c.req.query("event_id"));
  const state = unwrap(await roomStub(c.env, roomId).stateForServer(origin, eventId));
  return c.json(state);
});

// GET /_matrix/federation/v1/state_ids/{roomId}?event_id=
federationEventRoutes.get("/_matrix/federation/v1/state_ids/:roomId", async (c) => {
  const origin = requestOrigin(c);
  const roomId = requireRoomId(c.req.param("roomId"));
  const eventId = requireEventId(c.req.query("event_id"));
  return c.json(unwrap(await roomStub(c.env, roomId).stateIdsForServer(origin, eventId)));
});

// GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}
federationEventRoutes.get("/_matrix/federation/v1/event_auth/:roomId/:eventId", async (c) => {
  const origin = requestOrigin(c);
  const roomId = requireRoomId(c.req.param("roomId"));
  const eventId = requireEventId(c.req.param("eventId"), "eventId");
  return c.json(unwrap(await roomStub(c.env, roomId).eventAuthForServer(origin, eventId)));
});

// GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit=
federationEventRoutes.get("/_matrix/federation/v1/backfill/:roomId", async (c) => {
  const origin = requestOrigin(c);
  const roomId = requireRoomId(c.req.param("roomId"));
  const from = c.req.queries("v") ?? [];
  if (from.length === 0) throw missingParam("Missing v");
  for (const id of from) requireEventId(id, "v");
  const limit = intParam(c, "limit", 10, 0, 10_000);
  const pdus = unwrap(await roomStub(c.env, roomId).backfillForServer(origin, from, limit));
  return c.json({ origin: c.env.SERVER_NAME, origin_server_ts: Date.now(), pdus });
});

// POST /_matrix/federation/v1/get_missing_events/{roomId}
federationEventRoutes.post("/_matrix/federation/v1/get_missing_events/:roomId", async (c) => {
  const origin = requestOrigin(c);
  const roomId = requireRoomId(c.req.param("roomId"));
  const body = await readJsonObject(c, { allowEmpty: false, canonical: false });
  const earliest = stringList(body.earliest_events ?? [], "earliest_events");
  const latest = stringList(body.latest_events, "latest_events");
  const limit = body.limit === undefined ? 10 : body.limit;
  const minDepth = body.min_depth === undefined ? 0 : body.min_depth;
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 0) throw invalidParam("limit must be a non-negative integer");
  if (typeof minDepth !== "number" || !Number.isInteger(minDepth)) throw invalidParam("min_depth must be an integer");
  const events = unwrap(await roomStub(c.env, roomId).missingEventsForServer(origin, { earliest, latest, limit, minDepth }));
  return c.json({ events });
});

// GET /_matrix/federation/v1/event/{eventId}
federationEventRoutes.get("/_matrix/federation/v1/event/:eventId", async (c) => {
  const origin = requestOrigin(c);
  const eventId = requireEventId(c.req.param("eventId"), "eventId");
  // The path names no room: the D1 index written by the Room DOs (durable-objects/room/event-index.ts).
  const roomId = await roomOfEvent(c.env.DB, eventId);
  if (!roomId) throw notFound("Event not found");
  // The ACL middleware cannot see the room here: check it now.
  await assertServerAllowedInRoom(c.env, roomId, origin);
  const pdu = unwrap(await roomStub(c.env, roomId).eventForServer(origin, eventId));
  return c.json({ origin: c.env.SERVER_NAME, origin_server_ts: Date.now(), pdus: [pdu] });
});
