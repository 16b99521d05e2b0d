// Client-Server API: GET /sync (spec: "Syncing", data/api/client-server/sync.yaml; "Filtering"; the sync
// extensions of typing, receipts, presence, account data, to-device, end-to-end encryption and threading).
//
// The user's DO (durable-objects/user/sync.ts) decides what is new since the token and waits for news
// (long-poll); each room with news then answers its part (durable-objects/room/sync-reads.ts), one RPC per
// room, all in parallel; this file turns the pieces into the response.
import { Hono, type Context } from "hono";
import type { RoomSyncRequest, RoomSyncResult, SyncEvent } from "../../durable-objects/room/sync-reads.js";
import type { ReceiptUpdate } from "../../durable-objects/notifications.js";
import { roomToken } from "../../durable-objects/notifications.js";
import type { SyncPlan, SyncRoomPlan } from "../../durable-objects/user/sync.js";
import { parseSyncToken } from "../../durable-objects/user/sync-token.js";
import { MatrixError, invalidParam } from "../../protocol/errors.js";
import { eventPasses, needsContent, selectEventFields, syncFilterView, type SyncFilterView } from "../../protocol/event-filter.js";
import { isFilterId, parseFilter, type Filter } from "../../protocol/filter.js";
import type { JsonObject } from "../../protocol/json.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { roomStub } from "../room-store.js";
import { userStore } from "../user-store.js";

export const syncRoutes = new Hono<AppEnv>();

/** The longest long-poll honoured (clients ask for 30 s; a bigger value only ties up a connection). */
export const MAX_SYNC_TIMEOUT_MS = 5 * 60_000;
/** The largest timeline limit honoured per room. */
export const MAX_TIMELINE_LIMIT = 1000;

type Json = Record<string, unknown>;

function booleanParam(c: Context<AppEnv>, name: string): boolean {
  const raw = c.req.query(name);
  if (raw === undefined || raw === "" || raw === "false") return false;
  if (raw === "true") return true;
  throw invalidParam(`${name} must be 'true' or 'false'`);
}

/** The `filter` parameter: a filter ID (stored by POST /user/{userId}/filter) or inline JSON (spec: "by
 * whether the first character is a `{`"). */
async function resolveFilter(env: Env, userId: string, raw: string | undefined): Promise<Filter> {
  if (raw === undefined || raw === "") return {};
  if (raw.startsWith("{")) {
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      throw new MatrixError(400, "M_NOT_JSON", "filter is not valid JSON");
    }
    return parseFilter(value as JsonObject);
  }
  const stored = isFilterId(raw) ? await userStore(env, userId).getFilter(raw) : null;
  if (stored === null) throw invalidParam("No such filter");
  return parseFilter(JSON.parse(stored) as JsonObject);
}

// GET /_matrix/client/v3/sync
syncRoutes.get("/_matrix/client/:version{v3|r0}/sync", requireAuth, async (c) => {
  const { userId, deviceId } = requester(c);
  const sinceRaw = c.req.query("since");
  const since = sinceRaw === undefined || sinceRaw === "" ? null : parseSyncToken(sinceRaw);
  const timeoutRaw = c.req.query("timeout");
  let timeoutMs = 0;
  if (timeoutRaw !== undefined && timeoutRaw !== "") {
    if (!/^-?[0-9]{1,15}$/.test(timeoutRaw)) throw invalidParam("timeout must be an integer");
    timeoutMs = Math.min(Math.max(0, Number(timeoutRaw)), MAX_SYNC_TIMEOUT_MS);
  }
  const fullState = booleanParam(c, "full_state");
  // MSC4222 under its stable name, or its unstable one (matrix-js-sdk sends that and reads the answer under
  // the unstable key).
  const unstableStateAfter = booleanParam(c, "org.matrix.msc4222.use_state_after");
  const stateAfter = booleanParam(c, "use_state_after") || unstableStateAfter;
  const stateAfterKey = unstableStateAfter && !booleanParam(c, "use_state_after") ? "org.matrix.msc4222.state_after" : "state_after";
  const setPresence = c.req.query("set_presence") ?? "online";
  if (setPresence !== "online" && setPresence !== "offline" && setPresence !== "unavailable") {
    throw invalidParam("set_presence must be one of online, offline, unavailable");
  }
  const filter = syncFilterView(await resolveFilter(c.env, userId, c.req.query("filter")), MAX_TIMELINE_LIMIT);

  const user = userStore(c.env, userId);
  const plan = await user.sync({ userId, deviceId, since, timeoutMs, fullState, filter, setPresence });
  const body = await buildResponse(c.env, { userId, deviceId }, plan, filter, { fullState, stateAfter, stateAfterKey });
  if (filter.lazyLoadMembers && !filter.includeRedundantMembers) {
    // Remember which member events this device now has, so later responses do not repeat them. Awaited: the
    // client's next /sync must find it recorded.
    await user.recordLazyMembers(deviceId, lazyMembersOf(plan, body));
  }
  if (!plan.backgroundAfterResponse) return c.json(body);
  // The sync's background work (catch-ups of rooms without news, presence over many rooms: one Room DO call
  // and often one commit each) waits until this response has gone out (user/sync.ts ResponseGate): started
  // while the runtime still compressed and wrote a big body (3 MB for a user in 1,000 rooms), its calls
  // queued the body's writes behind them.
  c.header("content-type", "application/json");
  return c.body(
    afterSent(JSON.stringify(body), () => {
      const told = user.responseBuilt().catch(() => undefined);
      try {
        c.executionCtx.waitUntil(told);
      } catch {
        // No execution context (app.request in tests): the call runs on its own.
      }
    }),
  );
});

/** A body that calls `sent` once the runtime has read all of it (it has written the body out by its next
 * read), or when the client goes away. */
function afterSent(text: string, sent: () => void): ReadableStream<Uint8Array> {
  let chunk: Uint8Array | undefined = new TextEncoder().encode(text);
  let told = false;
  const tell = () => {
    if (!told) {
      told = true;
      sent();
    }
  };
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (chunk) {
          controller.enqueue(chunk);
          chunk = undefined;
          return;
        }
        controller.close();
        tell();
      },
      cancel: tell,
    },
    // Pulled only when the runtime reads: its second read comes once the first chunk is written out.
    { highWaterMark: 0 },
  );
}

interface ResponseOptions {
  fullState: boolean;
  stateAfter: boolean;
  /** The response key of the state after the timeline (`state_after`, or MSC4222's unstable name). */
  stateAfterKey?: string;
}

/** Turns a plan into the /sync response body, asking each room with a timeline for its part. */
export async function buildResponse(
  env: Env,
  who: { userId: string; deviceId: string },
  plan: SyncPlan,
  filter: SyncFilterView,
  options: ResponseOptions,
): Promise<Json> {
  const join: Json = {};
  const invite: Json = {};
  const knock: Json = {};
  const leave: Json = {};
  await Promise.all(
    plan.rooms.map(async (room) => {
      switch (room.section) {
        case "invite":
          invite[room.roomId] = { invite_state: { events: await roomStub(env, room.roomId).strippedStateFor(who.userId) } };
          return;
        case "knock":
          knock[room.roomId] = { knock_state: { events: await roomStub(env, room.roomId).strippedStateFor(who.userId) } };
          return;
        case "join":
          join[room.roomId] = await roomResponse(env, who, room, filter, options);
          return;
        case "leave":
          leave[room.roomId] = await roomResponse(env, who, room, filter, options);
          return;
      }
    }),
  );

  const body: Json = { next_batch: plan.nextBatch };
  const rooms: Json = {};
  if (Object.keys(join).length > 0) rooms.join = join;
  if (Object.keys(invite).length > 0) rooms.invite = invite;
  if (Object.keys(knock).length > 0) rooms.knock = knock;
  if (Object.keys(leave).length > 0) rooms.leave = leave;
  body.rooms = rooms;
  body.account_data = { events: plan.accountData.map((a) => ({ type: a.type, content: JSON.parse(a.content) as unknown })) };
  body.presence = {
    events: plan.presence.map((p) => {
      const content: Json = { presence: p.presence, last_active_ago: p.lastActiveAgo, currently_active: p.currentlyActive };
      if (p.statusMsg !== undefined) content.status_msg = p.statusMsg;
      return { type: "m.presence", sender: p.sender, content };
    }),
  };
  body.to_device = { events: plan.toDevice.map((e) => JSON.parse(e) as unknown) };
  if (plan.deviceLists) body.device_lists = plan.deviceLists;
  if (plan.oneTimeKeyCounts) body.device_one_time_keys_count = plan.oneTimeKeyCounts;
  if (plan.unusedFallbackKeyTypes) body.device_unused_fallback_key_types = plan.unusedFallbackKeyTypes;
  return body;
}

async function roomResponse(env: Env, who: { userId: string; deviceId: string }, room: SyncRoomPlan, filter: SyncFilterView, options: ResponseOptions): Promise<Json> {
  let result: RoomSyncResult | undefined;
  if (room.timeline) {
    const t = room.timeline;
    const request: RoomSyncRequest = {
      userId: who.userId,
      deviceId: who.deviceId,
      section: room.section === "leave" ? "leave" : "join",
      mode: t.mode,
      upto: t.upto,
      limit: filter.timelineLimit,
      timelineFilter: filter.timeline,
      stateFilter: filter.state,
      lazyLoadMembers: filter.lazyLoadMembers,
      fullState: options.fullState,
      stateAfter: options.stateAfter,
      eventFormat: filter.eventFormat,
      includeReceipts: room.roomReceipts === true,
    };
    if (t.mode === "exact") {
      request.orderings = t.orderings;
      request.limited = t.limited;
      request.sinceOrdering = t.sinceOrdering;
    }
    if (room.lazyMembersSent) request.lazyMembersSent = room.lazyMembersSent;
    // The part the waking push carried (room/pushed-sync-part.ts) answers a request without options it
    // was not built for; otherwise the room is asked.
    result = room.pushed !== undefined && pushedPartAnswers(request, room.pushed) ? pushedResult(request, room.pushed) : await roomStub(env, room.roomId).syncRoom(request);
  }

  const fields = (events: SyncEvent[]) => events.map((e) => selectEventFields(e as unknown as JsonObject, filter.eventFields));
  const out: Json = {};
  // A room joined since the token is always `limited` (Synapse: "Let's just set this to True for newly joined
  // rooms"): the client has none of its history and should paginate from prev_batch.
  const newlyJoined = room.timeline?.mode === "latest" && room.timeline.newlyJoined === true;
  const timeline: Json = { events: result ? fields(result.timeline.events) : [], limited: (result?.timeline.limited ?? false) || newlyJoined };
  if (result) timeline.prev_batch = result.timeline.prev_batch;
  else if (room.point !== undefined) timeline.prev_batch = roomToken(room.point);
  out.timeline = timeline;
  // MSC4222: `state_after` replaces `state` when the client asks for it.
  out[options.stateAfter ? (options.stateAfterKey ?? "state_after") : "state"] = { events: result ? fields(result.state) : [] };
  out.account_data = { events: room.accountData.map((a) => ({ type: a.type, content: JSON.parse(a.content) as unknown })) };
  if (room.section === "join") {
    if (result?.summary) out.summary = result.summary;
    const ephemeral: Json[] = [];
    if (room.typing !== undefined) ephemeral.push({ type: "m.typing", content: { user_ids: room.typing } });
    const receipts = [...(result?.receipts ?? []), ...(room.receipts ?? [])];
    if (receipts.length > 0) ephemeral.push({ type: "m.receipt", content: receiptContent(receipts) });
    out.ephemeral = { events: ephemeral };
    out.unread_notifications = room.unread ?? { notification_count: 0, highlight_count: 0 };
    if (room.unreadThreads) out.unread_thread_notifications = room.unreadThreads;
    // MSC4354: sticky events the timeline left out (worker/client/sticky-events.ts).
    if (result?.sticky) out.msc4354_sticky = { events: fields(result.sticky) };
  }
  return out;
}

/** Whether a pushed part (built for an exact timeline with no filter, full state, state_after or receipts,
 * in the client format; lazy-loading when it has the lazy state) is the room's answer to `request`; the
 * User DO has checked that the timeline plan is the one it was built for, and its type and sender filter
 * let every event through. */
function pushedPartAnswers(request: RoomSyncRequest, pushed: { lazyState?: string }): boolean {
  return (
    request.section === "join" &&
    request.mode === "exact" &&
    request.limited !== true &&
    (request.orderings?.length ?? 0) <= request.limit &&
    !request.fullState &&
    !request.stateAfter &&
    (!request.lazyLoadMembers || pushed.lazyState !== undefined) &&
    !request.includeReceipts &&
    request.eventFormat !== "federation" &&
    !needsContent(request.timelineFilter)
  );
}

/** The room's answer from a pushed part. With lazy-loading, the state is the part's lazy state without the
 * member events the device already has, through the state filter, as room/sync-reads.ts selects them. */
function pushedResult(request: RoomSyncRequest, pushed: { result: string; lazyState?: string }): RoomSyncResult {
  const result = withCurrentAges(JSON.parse(pushed.result) as RoomSyncResult);
  if (request.lazyLoadMembers && pushed.lazyState !== undefined) {
    const sent = request.lazyMembersSent ?? {};
    result.state = (JSON.parse(pushed.lazyState) as Json[]).filter(
      (e) =>
        typeof e.state_key === "string" &&
        e.event_id !== sent[e.state_key] &&
        (!request.stateFilter || eventPasses(request.stateFilter, { type: e.type as string, sender: e.sender as string })),
    ) as unknown as RoomSyncResult["state"];
  }
  return result;
}

/** `unsigned.age` of a part built a moment ago, as of now (spec: "the time in milliseconds that has
 * elapsed since the event was sent"). */
function withCurrentAges(result: RoomSyncResult): RoomSyncResult {
  const now = Date.now();
  for (const e of result.timeline.events as unknown as Json[]) {
    const unsigned = e.unsigned as Json | undefined;
    if (unsigned && typeof unsigned.age === "number" && typeof e.origin_server_ts === "number") unsigned.age = Math.max(0, now - e.origin_server_ts);
  }
  return result;
}

/** The member events a response carries per joined room (state and timeline), for the lazy-loading cache.
 * A room shown from scratch (no exact timeline plan) resets what the device had for it. */
function lazyMembersOf(plan: SyncPlan, body: Json): { roomId: string; members: Record<string, string>; reset: boolean }[] {
  const join = ((body.rooms as Json).join ?? {}) as Record<string, Json>;
  const out: { roomId: string; members: Record<string, string>; reset: boolean }[] = [];
  for (const room of plan.rooms) {
    const r = join[room.roomId];
    if (!r) continue;
    const members: Record<string, string> = {};
    const state = (r.state ?? r.state_after ?? r["org.matrix.msc4222.state_after"]) as { events: Json[] } | undefined;
    for (const e of [...(state?.events ?? []), ...((r.timeline as { events: Json[] }).events ?? [])]) {
      if (e.type === "m.room.member" && typeof e.state_key === "string" && typeof e.event_id === "string") members[e.state_key] = e.event_id;
    }
    out.push({ roomId: room.roomId, members, reset: room.timeline?.mode !== "exact" });
  }
  return out;
}

/** The content of an m.receipt event (spec: "Receipts"): event ID → receipt type → user → {ts, thread_id}. */
export function receiptContent(receipts: ReceiptUpdate[]): Json {
  const content: Record<string, Record<string, Record<string, Json>>> = {};
  // One receipt per (type, user, thread): the first one listed wins (the room's own over the User DO's copy).
  const seen = new Set<string>();
  for (const r of receipts) {
    const key = `${r.receiptType}\u0000${r.userId}\u0000${r.threadId ?? ""}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const byType = (content[r.eventId] ??= {});
    const byUser = (byType[r.receiptType] ??= {});
    // The format has room for one receipt per user, type and event: when a user's unthreaded and threaded
    // receipts name the same event, the unthreaded one is shown whatever the order (MSC4102, spec issue
    // 1727; Synapse and Complement TestThreadReceiptsInSyncMSC4102), as a client reading it as unthreaded
    // is never wrong about the main timeline.
    const shown = byUser[r.userId];
    if (shown !== undefined && shown.thread_id === undefined) continue;
    const data: Json = { ts: r.ts };
    if (r.threadId !== undefined) data.thread_id = r.threadId;
    byUser[r.userId] = data;
  }
  return content;
}
