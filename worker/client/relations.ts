// Client-Server API: event relationships and threads (spec: "Relationship types", "Aggregations of child
// events", "Threading"; data/api/client-server/relations.yaml, threads_list.yaml). The Room DO reads the
// relation columns and applies history visibility (durable-objects/room/relations.ts).
import { Hono, type Context } from "hono";
import { roomToken } from "../../durable-objects/notifications.js";
import { unwrap } from "../../durable-objects/user/outcome.js";
import { invalidParam } from "../../protocol/errors.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv } from "../env.js";
import { requireRoomId, roomStub } from "../room-store.js";
import { booleanParam, dirParam, limitParam, positionParam } from "../room-pagination.js";

export const relationsRoutes = new Hono<AppEnv>();

const V1 = "/_matrix/client/v1";

/** Synapse's default page sizes for /relations and /threads. */
const DEFAULT_RELATIONS_LIMIT = 5;
const DEFAULT_THREADS_LIMIT = 5;

async function getRelations(c: Context<AppEnv>) {
  const roomId = requireRoomId(c.req.param("roomId"));
  const { userId, deviceId } = requester(c);
  const fromRaw = c.req.query("from");
  const from = await positionParam(c, "from", userId, roomId);
  const to = await positionParam(c, "to", userId, roomId);
  const recurseGiven = c.req.query("recurse") !== undefined;
  const result = unwrap(
    await roomStub(c.env, roomId).relations(
      { userId, deviceId },
      {
        eventId: c.req.param("eventId")!,
        relType: c.req.param("relType"),
        eventType: c.req.param("eventType"),
        dir: dirParam(c, "b"),
        from,
        to,
        limit: limitParam(c, DEFAULT_RELATIONS_LIMIT),
        recurse: booleanParam(c, "recurse"),
      },
    ),
  );
  const body: Record<string, unknown> = { chunk: result.chunk };
  if (result.next !== undefined) body.next_batch = roomToken(result.next);
  if (fromRaw !== undefined && fromRaw !== "") body.prev_batch = fromRaw;
  // Spec: present exactly when the client supplied `recurse`.
  if (recurseGiven) body.recursion_depth = result.recursionDepth;
  return c.json(body);
}

// GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}
relationsRoutes.get(`${V1}/rooms/:roomId/relations/:eventId`, requireAuth, getRelations);
// GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}
relationsRoutes.get(`${V1}/rooms/:roomId/relations/:eventId/:relType`, requireAuth, getRelations);
// GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}
relationsRoutes.get(`${V1}/rooms/:roomId/relations/:eventId/:relType/:eventType`, requireAuth, getRelations);

// GET /_matrix/client/v1/rooms/{roomId}/threads
relationsRoutes.get(`${V1}/rooms/:roomId/threads`, requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const { userId, deviceId } = requester(c);
  const include = c.req.query("include") ?? "all";
  if (include !== "all" && include !== "participated") throw invalidParam("include must be 'all' or 'participated'");
  const from = await positionParam(c, "from", userId, roomId);
  const result = unwrap(
    await roomStub(c.env, roomId).threads({ userId, deviceId }, { include, from, limit: limitParam(c, DEFAULT_THREADS_LIMIT, 1) }),
  );
  const body: Record<string, unknown> = { chunk: result.chunk };
  if (result.next !== undefined) body.next_batch = roomToken(result.next);
  return c.json(body);
});
