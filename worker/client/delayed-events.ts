// Delayed events (MSC4140, unstable prefix `org.matrix.msc4140`): `?org.matrix.msc4140.delay=<ms>` on
// PUT /rooms/{roomId}/send/... and PUT /rooms/{roomId}/state/... schedules the event instead of sending
// it (answering `{ "delay_id" }`), and the management endpoints below list, restart, cancel and send
// scheduled events. The events live in the owner's Delayed Events DO (durable-objects/delayed-events.ts),
// whose alarm sends them. Errors follow Synapse (synapse/handlers/delayed_events.py,
// synapse/rest/client/delayed_events.py), which is what matrix-js-sdk's MatrixRTC code reacts to.
import { Hono, type Context } from "hono";
import { CanonicalJsonError, canonicalJsonBytes } from "../../protocol/canonical-json.js";
import { MatrixError, badJson, invalidParam, missingParam, notFound, tooLarge } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import { unwrap } from "../../durable-objects/room/outcome.js";
import { delayIdOwner, type DelayedEventAction, type DelayedEventsDurableObject } from "../../durable-objects/delayed-events.js";
import { isLocalUserId, requester, requireAuth } from "../auth.js";
import { parseDurationMs } from "../config-duration.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { roomStub } from "../room-store.js";

export const delayedEventsRoutes = new Hono<AppEnv>();

/** The query parameter that makes a send or state PUT a delayed event. */
export const DELAY_PARAM = "org.matrix.msc4140.delay";
/** MAX_EVENT_DELAY's default: 24 hours (Synapse has no default; the issue and Element Call ask this). */
const DEFAULT_MAX_EVENT_DELAY_MS = 24 * 3600_000;
/** Synapse's `msc4140_max_delayed_events_per_user` default. */
const DEFAULT_MAX_DELAYED_EVENTS_PER_USER = 100;
/** The spec's PDU size limit; a delayed event's content above it could never be sent. */
const MAX_CONTENT_BYTES = 65536;

const PREFIX = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events";

export function maxEventDelayMs(env: Pick<Env, "MAX_EVENT_DELAY">): number {
  return parseDurationMs(env.MAX_EVENT_DELAY, DEFAULT_MAX_EVENT_DELAY_MS, "MAX_EVENT_DELAY");
}

export function maxDelayedEventsPerUser(env: Pick<Env, "MAX_DELAYED_EVENTS_PER_USER">): number {
  const raw = env.MAX_DELAYED_EVENTS_PER_USER;
  if (raw === undefined || raw.trim() === "") return DEFAULT_MAX_DELAYED_EVENTS_PER_USER;
  const n = Number(raw);
  return Number.isSafeInteger(n) && n >= 0 ? n : DEFAULT_MAX_DELAYED_EVENTS_PER_USER;
}

type DelayedEventsRpc = {
  schedule: DelayedEventsDurableObject["schedule"];
  list(...args: Parameters<DelayedEventsDurableObject["list"]>): Promise<ReturnType<DelayedEventsDurableObject["list"]>>;
  act: DelayedEventsDurableObject["act"];
  alarmTime: DelayedEventsDurableObject["alarmTime"];
};

/** The Delayed Events DO of `userId` (one per user). */
export function delayedEventsStub(env: Pick<Env, "DELAYED_EVENTS">, userId: string): DelayedEventsRpc {
  return env.DELAYED_EVENTS.get(env.DELAYED_EVENTS.idFromName(userId)) as unknown as DelayedEventsRpc;
}

/** The requested delay in ms, or undefined when the request is an ordinary send. */
export function requestedDelay(c: Context<AppEnv>): number | undefined {
  const raw = c.req.query(DELAY_PARAM);
  if (c.req.query("org.matrix.msc4140.parent_delay_id") !== undefined) {
    // Delegated ("parent") delays of earlier MSC4140 drafts: Synapse does not offer them either.
    throw invalidParam("org.matrix.msc4140.parent_delay_id is not supported");
  }
  if (raw === undefined) return undefined;
  if (!/^\d{1,16}$/.test(raw)) throw invalidParam(`${DELAY_PARAM} must be a non-negative integer of milliseconds`);
  const delay = Number(raw);
  const max = maxEventDelayMs(c.env);
  if (delay > max) {
    // Synapse's answer, which matrix-js-sdk's MembershipManager reads to retry with the allowed maximum.
    throw new MatrixError(400, "M_UNKNOWN", `The requested delay (${delay}ms) exceeds the allowed maximum (${max}ms)`, {
      "org.matrix.msc4140.errcode": "M_MAX_DELAY_EXCEEDED",
      "org.matrix.msc4140.max_delay": max,
    });
  }
  return delay;
}

/** Schedules `event` for the requester after `delayMs`; answers the delay ID. */
export async function scheduleDelayedEvent(
  c: Context<AppEnv>,
  delayMs: number,
  event: { roomId: string; type: string; stateKey?: string; content: JsonObject; txnId?: string; stickyDurationMs?: number },
): Promise<{ delay_id: string }> {
  const { userId, deviceId } = requester(c);
  if (event.type.length === 0 || new TextEncoder().encode(event.type).length > 255) throw invalidParam("Invalid event type");
  if (event.stateKey !== undefined && new TextEncoder().encode(event.stateKey).length > 255) throw invalidParam("State key too long");
  let bytes: number;
  try {
    bytes = canonicalJsonBytes(event.content).length;
  } catch (e) {
    if (e instanceof CanonicalJsonError) throw badJson(e.message);
    throw e;
  }
  if (bytes > MAX_CONTENT_BYTES) throw tooLarge("Event content too large");
  // Synapse looks up the room's version first: an unknown room is 404.
  if ((await roomStub(c.env, event.roomId).roomInfo()) === null) throw notFound("Unknown room");
  const { delayId } = unwrap(
    await delayedEventsStub(c.env, userId).schedule({
      userId,
      deviceId,
      txnId: event.txnId,
      roomId: event.roomId,
      type: event.type,
      stateKey: event.stateKey,
      content: event.content,
      stickyDurationMs: event.stickyDurationMs,
      delayMs,
      maxScheduled: maxDelayedEventsPerUser(c.env),
    }),
  );
  return { delay_id: delayId };
}

// GET /_matrix/client/unstable/org.matrix.msc4140/delayed_events
delayedEventsRoutes.get(PREFIX, requireAuth, async (c) => {
  const statuses = c.req.queries("status") ?? [];
  for (const s of statuses) if (s !== "scheduled" && s !== "finalised") throw invalidParam("status must be 'scheduled' or 'finalised'");
  const delayIds = c.req.queries("delay_id") ?? [];
  const all = statuses.length === 0;
  const result = await delayedEventsStub(c.env, requester(c).userId).list(
    { scheduled: all || statuses.includes("scheduled"), finalised: all || statuses.includes("finalised") },
    delayIds,
  );
  // Without a status, Synapse also answers the scheduled ones as `delayed_events` (the earlier revision).
  const body: Record<string, unknown> = { ...result };
  if (all) body.delayed_events = result.scheduled;
  return c.json(body);
});

async function act(c: Context<AppEnv>, delayId: string, action: DelayedEventAction) {
  // No access token needed: the delay ID is the capability (MSC4140's management endpoints).
  const owner = delayIdOwner(delayId);
  if (owner === undefined || !isLocalUserId(owner, c.env)) throw notFound("Delayed event not found");
  unwrap(await delayedEventsStub(c.env, owner).act(delayId, action));
  return c.json({});
}

// POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delay_id}/{cancel|restart|send}
delayedEventsRoutes.post(`${PREFIX}/:delayId/:action{cancel|restart|send}`, async (c) => {
  await readJsonObject(c, { allowEmpty: true });
  return act(c, c.req.param("delayId"), c.req.param("action") as DelayedEventAction);
});

// POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delay_id} with { "action": ... }
// (the earlier revision, which matrix-js-sdk falls back to)
delayedEventsRoutes.post(`${PREFIX}/:delayId`, async (c) => {
  const body = await readJsonObject(c, { allowEmpty: true });
  if (body.action === undefined) throw missingParam("'action' is missing");
  if (body.action !== "cancel" && body.action !== "restart" && body.action !== "send") {
    throw invalidParam("'action' is not one of 'cancel', 'restart', 'send'");
  }
  return act(c, c.req.param("delayId"), body.action);
});
