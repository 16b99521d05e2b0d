// Client-Server API: simplified sliding sync (MSC4186) at its unstable path
// `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`, the sync of Element X and every client
// built on matrix-rust-sdk. The request and response follow Synapse's SlidingSyncRestServlet
// (synapse/rest/client/sync.py), which those clients are written against.
//
// The User DO (durable-objects/user/sliding-sync.ts) keeps the connection, sorts the room list, decides
// which rooms the response carries and from which point, fills the extensions and waits for news
// (long-poll on the same stream as /sync); each room then answers its part
// (durable-objects/room/sliding-reads.ts), one RPC per room, all in parallel; this file validates the
// request and writes the JSON.
import { Hono } from "hono";
import type { SlidingPlan, SlidingRoomPlan } from "../../durable-objects/user/sliding-sync.js";
import { unwrap } from "../../durable-objects/user/outcome.js";
import type { ReceiptUpdate } from "../../durable-objects/notifications.js";
import { invalidParam } from "../../protocol/errors.js";
import { STICKY_EVENTS_EXTENSION, parseSlidingRequest } from "../../protocol/sliding-sync.js";
import type { ClientEvent } from "../../durable-objects/room/client-event.js";
import { requester, requireAuth } from "../auth.js";
import type { Env } from "../env.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { roomStub } from "../room-store.js";
import { userStore } from "../user-store.js";
import { MAX_SYNC_TIMEOUT_MS, receiptContent } from "./sync.js";

export const slidingSyncRoutes = new Hono<AppEnv>();

type Json = Record<string, unknown>;

/** A string that may come in the query (Synapse) or in the body (MSC4186's later revision). */
function param(query: string | undefined, body: unknown, name: string): string | undefined {
  if (query !== undefined) return query;
  if (body === undefined || body === null) return undefined;
  if (typeof body === "string") return body;
  if (typeof body === "number" && Number.isInteger(body)) return String(body);
  throw invalidParam(`${name} must be a string`);
}

// POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync
slidingSyncRoutes.post("/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", requireAuth, async (c) => {
  const { userId, deviceId } = requester(c);
  const raw = await readJsonObject(c);
  const body = parseSlidingRequest(raw, userId);
  const pos = param(c.req.query("pos"), raw.pos, "pos");
  const timeoutRaw = param(c.req.query("timeout"), raw.timeout, "timeout");
  let timeoutMs = 0;
  if (timeoutRaw !== undefined && timeoutRaw !== "") {
    if (!/^[0-9]{1,15}$/.test(timeoutRaw)) throw invalidParam("timeout must be a non-negative integer");
    timeoutMs = Math.min(Number(timeoutRaw), MAX_SYNC_TIMEOUT_MS);
  }
  const setPresence = param(c.req.query("set_presence"), raw.set_presence, "set_presence");
  if (setPresence !== undefined && setPresence !== "online" && setPresence !== "offline" && setPresence !== "unavailable") {
    throw invalidParam("set_presence must be one of online, offline, unavailable");
  }

  const plan = unwrap(
    await userStore(c.env, userId).slidingSyncPlan({ userId, deviceId, pos: pos === undefined || pos === "" ? null : pos, timeoutMs, setPresence: setPresence ?? "online", body }),
  );
  return c.json(await buildResponse(c.env, { userId, deviceId, connId: body.connId }, plan as SlidingPlan));
});

async function buildResponse(env: Env, who: { userId: string; deviceId: string; connId: string }, plan: SlidingPlan): Promise<Json> {
  const rooms: Json = {};
  const roomReceipts = new Map<string, ReceiptUpdate[]>();
  const lazyMembers: Record<string, string[]> = {};
  const sticky = new Map<string, ClientEvent[]>();
  await Promise.all([
    ...plan.rooms.map(async (room) => {
      rooms[room.roomId] = await roomResponse(env, who, room, roomReceipts, lazyMembers);
    }),
    ...(plan.extensions.stickyEvents?.rooms ?? []).map(async ({ roomId, after, upto }) => {
      const events = await roomStub(env, roomId).slidingStickyEvents({ userId: who.userId, deviceId: who.deviceId, after, upto });
      if (events.length > 0) sticky.set(roomId, events as ClientEvent[]);
    }),
  ]);
  // `$LAZY`: the connection remembers which members it was sent, before the client can build on `pos`.
  if (Object.keys(lazyMembers).length > 0) await userStore(env, who.userId).slidingLazyMembers(who.deviceId, who.connId, plan.pos, lazyMembers);
  const out: Json = { pos: plan.pos };
  if (Object.keys(plan.lists).length > 0) out.lists = plan.lists;
  out.rooms = rooms;
  out.extensions = extensionsResponse(plan, roomReceipts, rooms, who.userId);
  if (plan.extensions.stickyEvents) {
    // MSC4354 (Synapse's _serialise_sticky_events): events the room's timeline carries are left out here.
    const byRoom: Json = {};
    for (const [roomId, events] of sticky) {
      const inTimeline = new Set(((rooms[roomId] as Json | undefined)?.timeline as { event_id: string }[] | undefined)?.map((e) => e.event_id) ?? []);
      const left = events.filter((e) => !inTimeline.has(e.event_id));
      if (left.length > 0) byRoom[roomId] = { events: left };
    }
    (out.extensions as Json)[STICKY_EVENTS_EXTENSION] = { rooms: byRoom, next_batch: plan.extensions.stickyEvents.nextBatch };
  }
  return out;
}

async function roomResponse(
  env: Env,
  who: { userId: string; deviceId: string },
  room: SlidingRoomPlan,
  roomReceipts: Map<string, ReceiptUpdate[]>,
  lazyMembers: Record<string, string[]>,
): Promise<Json> {
  const out: Json = { notification_count: room.notificationCount, highlight_count: room.highlightCount, bump_stamp: room.bumpStamp, membership: room.membership };
  if (room.unreadThreads) out.unread_thread_notifications = room.unreadThreads;
  if (room.initial) out.initial = true;
  if (room.isDm) out.is_dm = true;
  const stub = roomStub(env, room.roomId);
  if (room.membership === "invite" || room.membership === "knock") {
    // MSC4186 "Invite/knock/rejections": only the stripped state the invite or knock carries.
    out.invite_state = await stub.strippedStateFor(who.userId);
    return out;
  }
  const request = {
    userId: who.userId,
    deviceId: who.deviceId,
    upto: room.upto,
    liveFrom: room.liveFrom,
    timelineLimit: room.timelineLimit,
    requiredState: room.requiredState,
    ...(room.sinceOrdering !== undefined ? { sinceOrdering: room.sinceOrdering } : {}),
    ...(room.expandTimeline ? { expandTimeline: true } : {}),
    ...(room.previousRequiredState ? { previousRequiredState: room.previousRequiredState } : {}),
    ...(room.lazySent ? { lazySent: room.lazySent } : {}),
  };
  const [result, receipts] = await Promise.all([stub.slidingRoom(request), room.roomReceipts ? stub.syncRoomReceipts() : Promise.resolve(null)]);
  if (receipts) roomReceipts.set(room.roomId, receipts);
  if (!result) return out;
  if (result.lazyMembers) lazyMembers[room.roomId] = result.lazyMembers;
  if (result.name !== undefined) out.name = result.name;
  if (result.avatar !== undefined) out.avatar = result.avatar;
  if (result.heroes && result.heroes.length > 0) out.heroes = result.heroes;
  if (room.expandTimeline) out.unstable_expanded_timeline = true;
  if (result.requiredState.length > 0) out.required_state = result.requiredState;
  if (result.timeline.length > 0) out.timeline = result.timeline;
  out.limited = result.limited;
  out.prev_batch = result.prevBatch;
  out.num_live = result.numLive;
  out.joined_count = result.joinedCount;
  out.invited_count = result.invitedCount;
  return out;
}

function extensionsResponse(plan: SlidingPlan, roomReceipts: Map<string, ReceiptUpdate[]>, rooms: Json, me: string): Json {
  const ext = plan.extensions;
  const out: Json = {};
  if (ext.toDevice) out.to_device = { next_batch: ext.toDevice.nextBatch, events: ext.toDevice.events.map((e) => JSON.parse(e) as unknown) };
  if (ext.e2ee) {
    const e2ee: Json = { device_one_time_keys_count: ext.e2ee.oneTimeKeyCounts, device_unused_fallback_key_types: ext.e2ee.unusedFallbackKeyTypes };
    if (ext.e2ee.deviceLists) e2ee.device_lists = ext.e2ee.deviceLists;
    out.e2ee = e2ee;
  }
  if (ext.accountData) {
    const event = (a: { type: string; content: string }) => ({ type: a.type, content: JSON.parse(a.content) as unknown });
    const byRoom: Json = {};
    for (const [roomId, list] of Object.entries(ext.accountData.rooms)) byRoom[roomId] = list.map(event);
    out.account_data = { global: ext.accountData.global.map(event), rooms: byRoom };
  }
  if (ext.receipts) {
    const byRoom: Json = {};
    const all = new Map<string, ReceiptUpdate[]>(Object.entries(ext.receipts.rooms));
    for (const [roomId, list] of roomReceipts) {
      // A room new to the connection: its receipts for the events the timeline shows, and the user's own
      // (Synapse: receipts of initial rooms).
      const timeline = new Set(((rooms[roomId] as Json | undefined)?.timeline as { event_id: string }[] | undefined)?.map((e) => e.event_id) ?? []);
      const wanted = list.filter((r) => timeline.has(r.eventId) || r.userId === me);
      all.set(roomId, [...wanted, ...(all.get(roomId) ?? [])]);
    }
    for (const [roomId, list] of all) if (list.length > 0) byRoom[roomId] = { type: "m.receipt", content: receiptContent(list) };
    out.receipts = { rooms: byRoom };
  }
  if (ext.typing) {
    const byRoom: Json = {};
    for (const [roomId, userIds] of Object.entries(ext.typing.rooms)) byRoom[roomId] = { type: "m.typing", content: { user_ids: userIds } };
    out.typing = { rooms: byRoom };
  }
  return out;
}
