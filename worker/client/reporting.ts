// Client-Server API: Reporting content (spec: "Reporting content"; data/api/client-server/report_content.yaml,
// report_user.yaml). Reports are stored in D1 (`reports` and `user_reports`, schema/d1.ts) for the server's
// administrators.
import { drizzle } from "drizzle-orm/d1";
import { Hono } from "hono";
import { unwrap } from "../../durable-objects/user/outcome.js";
import { isValidUserId } from "../../protocol/auth-rules.js";
import { badJson, invalidParam, missingParam, notFound } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import { serverNameOf } from "../../protocol/pdu.js";
import { reports, userReports } from "../../schema/d1.js";
import { getUser } from "../accounts.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { requireRoomId, roomStub } from "../room-store.js";

export const reportingRoutes = new Hono<AppEnv>();

const V = "/_matrix/client/:version{v3|r0}";

/** Reasons are free text; Synapse keeps them whole, this bound only stops abuse of the table. */
const MAX_REASON_LENGTH = 10_000;

function reasonOf(body: JsonObject, required: boolean): string | null {
  const reason = body.reason;
  if (reason === undefined || reason === null) {
    if (required) throw missingParam("Missing reason");
    return null;
  }
  if (typeof reason !== "string") throw badJson("'reason' must be a string");
  if (reason.length > MAX_REASON_LENGTH) throw badJson(`'reason' is longer than ${MAX_REASON_LENGTH} characters`);
  return reason;
}

async function storeReport(env: Env, reporter: string, roomId: string, eventId: string | null, reason: string | null): Promise<void> {
  await drizzle(env.DB).insert(reports).values({ reporter, roomId, eventId, reason, receivedTs: Date.now() });
}

// POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}
reportingRoutes.post(`${V}/rooms/:roomId/report/:eventId`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const eventId = c.req.param("eventId");
  const { userId, deviceId } = requester(c);
  const body = await readJsonObject(c, { allowEmpty: true });
  const reason = reasonOf(body, false);
  // `score` was removed in v1.18; older clients still send it: ignored.
  const room = roomStub(c.env, roomId);
  // Spec: "The caller must be joined to the room to report it"; 404 for unknown or invisible events, and
  // for events the caller is not joined to see.
  const membership = await room.membership(userId);
  if (membership?.membership !== "join") throw notFound("The event was not found or you are not joined to the room.");
  unwrap(await room.eventForReader({ userId, deviceId }, eventId));
  await storeReport(c.env, userId, roomId, eventId, reason);
  return c.json({});
});

// POST /_matrix/client/v3/rooms/{roomId}/report
reportingRoutes.post(`${V}/rooms/:roomId/report`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const body = await readJsonObject(c, { allowEmpty: false });
  const reason = reasonOf(body, true);
  // The caller need not be in the room; an unknown room is 404 (spec).
  if ((await roomStub(c.env, roomId).roomInfo()) === null) throw notFound("Room not found");
  await storeReport(c.env, requester(c).userId, roomId, null, reason);
  return c.json({});
});

/** Synapse's bound on a user report's reason (`ReportsHandler.report_user`). */
const MAX_USER_REPORT_REASON_LENGTH = 1000;

// POST /_matrix/client/v3/users/{userId}/report
reportingRoutes.post("/_matrix/client/v3/users/:userId/report", requireAuth, async (c) => {
  const target = c.req.param("userId");
  if (!isValidUserId(target)) throw invalidParam(`${target} is not a valid user ID`);
  const body = await readJsonObject(c, { allowEmpty: false });
  // `reason` is required (spec); Synapse validates the body as a model, so a missing or non-string reason
  // is M_BAD_JSON, as is one of more than 1000 characters.
  if (typeof body.reason !== "string") throw badJson("'reason' must be a string");
  if (body.reason.length > MAX_USER_REPORT_REASON_LENGTH) throw badJson(`Reason must be less than ${MAX_USER_REPORT_REASON_LENGTH} characters`);
  // Spec: the server may answer 404 for an unknown user "or if the server chose not to reveal" it; as
  // Synapse does, reports of users of other servers and of unknown users are accepted and dropped, so the
  // endpoint does not tell which users exist.
  if (serverNameOf(target) !== c.env.SERVER_NAME || (await getUser(c.env, target)) === undefined) return c.json({});
  await drizzle(c.env.DB)
    .insert(userReports)
    .values({ reporter: requester(c).userId, targetUserId: target, reason: body.reason, receivedTs: Date.now() });
  return c.json({});
});
