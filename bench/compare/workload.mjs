// The client workload of `npm run bench:compare` (issue 13 §4): the same plain-fetch requests against
// Myelin and Synapse, so that both servers see identical traffic. Each scenario runs once per "run" on
// one server with its own fresh users and rooms, and returns its samples; scripts/bench-compare.mjs
// rotates the servers (A, B, B, A) and combines the runs.
//
// A server here is { name, baseUrl, register(localpart, password) → { userId, accessToken } }.

const PASSWORD = "bench-password-1";

/** Sync filter for the wake and incremental figures: the room timeline only, so that presence or
 * account data of the other user does not end a long-poll early on one server and not the other. */
const TIMELINE_ONLY = JSON.stringify({
  presence: { types: [] },
  account_data: { types: [] },
  room: { ephemeral: { types: [] }, account_data: { types: [] }, timeline: { limit: 10 } },
});

/** `Connection: close` on every request (bench-compare --connection-close): no keep-alive reuse. */
export const options = { connectionClose: false };

/** Requests sent again because a reused keep-alive connection was closed before any answer, per base URL. */
export const retries = new Map();

/** fetch, sent again when a reused keep-alive connection was closed under it before any answer (the
 * keep-alive race: every request here is idempotent, sends carry a transaction ID). */
async function fetchOnce(url, init) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fetch(url, init);
    } catch (e) {
      // The retry may land on another reused connection that is closing too: up to 3 tries.
      if (attempt === 3 || !["UND_ERR_SOCKET", "ECONNRESET"].includes(e.cause?.code)) throw e;
      const origin = new URL(url).origin;
      retries.set(origin, (retries.get(origin) ?? 0) + 1);
    }
  }
}

const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let txnCounter = 0;

class Client {
  constructor(baseUrl, userId, accessToken) {
    this.baseUrl = baseUrl;
    this.userId = userId;
    this.accessToken = accessToken;
  }

  async request(method, path, body) {
    const res = await fetchOnce(`${this.baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.accessToken}`,
        ...(body ? { "content-type": "application/json" } : {}),
        ...(options.connectionClose ? { connection: "close" } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path} → ${res.status} ${text.slice(0, 300)}`);
    return JSON.parse(text);
  }

  createRoom(body = {}) {
    return this.request("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", ...body }).then((r) => r.room_id);
  }

  join(roomId) {
    return this.request("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {});
  }

  send(roomId, body) {
    const txn = `b${process.pid}.${++txnCounter}`;
    return this.request("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txn}`, {
      msgtype: "m.text",
      body,
    }).then((r) => r.event_id);
  }

  sync(params = {}) {
    const query = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]));
    return this.request("GET", `/_matrix/client/v3/sync?${query}`);
  }
}

async function user(server, localpart) {
  const { userId, accessToken } = await server.register(localpart, PASSWORD);
  return new Client(server.baseUrl, userId, accessToken);
}

/** A second device of the same user: a new access token, so no server can answer from a per-device cache. */
async function login(client) {
  const res = await fetchOnce(`${client.baseUrl}/_matrix/client/v3/login`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(options.connectionClose ? { connection: "close" } : {}) },
    body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user: client.userId }, password: PASSWORD }),
  });
  if (!res.ok) throw new Error(`login ${client.userId} → ${res.status} ${await res.text()}`);
  const body = await res.json();
  return new Client(client.baseUrl, client.userId, body.access_token);
}

/** Runs `fn(i)` for i in [0, n) with at most `width` at a time. */
async function pool(n, width, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, width) }, async () => {
    while (next < n) await fn(next++);
  }));
}

function roomHasEvent(sync, roomId, eventId) {
  return (sync.rooms?.join?.[roomId]?.timeline?.events ?? []).some((e) => e.event_id === eventId);
}

/** Two users in one room: user A sends 100 messages one after another; the time of each PUT. */
export async function sendLatency(server, tag) {
  const a = await user(server, `${tag}a`);
  const b = await user(server, `${tag}b`);
  const room = await a.createRoom();
  await b.join(room);
  for (let i = 0; i < 5; i++) await a.send(room, `warm-up ${i}`);
  const samples = [];
  for (let i = 0; i < 100; i++) {
    const t = now();
    await a.send(room, `message ${i}`);
    samples.push(now() - t);
  }
  return samples;
}

/** B long-polls /sync; A sends; the time from the start of A's send to B's /sync returning the event. */
export async function syncWakeLatency(server, tag, { samples: count = 50 } = {}) {
  const a = await user(server, `${tag}a`);
  const b = await user(server, `${tag}b`);
  const room = await a.createRoom();
  await b.join(room);
  await a.send(room, "warm-up");
  let since = (await b.sync({ filter: TIMELINE_ONLY })).next_batch;
  const samples = [];
  for (let i = 0; i < count; i++) {
    let sent = null;
    let t0 = 0;
    const poll = (async () => {
      for (;;) {
        const r = await b.sync({ since, timeout: 30_000, filter: TIMELINE_ONLY });
        const returned = now();
        since = r.next_batch;
        const eventId = await sent;
        if (eventId && roomHasEvent(r, room, eventId)) return returned;
        // Woken by something else: keep polling.
      }
    })();
    // Let the long-poll reach the server and park before A sends (a benchmark, not a test: a pause is fine).
    await sleep(100);
    t0 = now();
    sent = a.send(room, `wake ${i}`);
    await sent;
    samples.push((await poll) - t0);
  }
  return samples;
}

/** 8 users send 50 messages each, at the same time, into one shared room (`rooms` = 1) or one room
 * each (`rooms` = 8); events per second over the whole burst. */
export async function sendThroughput(server, tag, { rooms, senders = 8, perSender = 50 }) {
  const users = [];
  for (let i = 0; i < senders; i++) users.push(await user(server, `${tag}u${i}`));
  const roomIds = [];
  for (let r = 0; r < rooms; r++) roomIds.push(await users[r].createRoom());
  for (let i = 0; i < senders; i++) {
    const room = roomIds[i % rooms];
    if (i >= rooms) await users[i].join(room);
    await users[i].send(room, "warm-up");
  }
  const t = now();
  // Every sender stops at its first error, and the run ends only when all have stopped, so that no
  // request of a failed run overlaps the next run.
  const results = await Promise.allSettled(users.map(async (u, i) => {
    for (let m = 0; m < perSender; m++) await u.send(roomIds[i % rooms], `burst ${m}`);
  }));
  const seconds = (now() - t) / 1000;
  const failure = results.find((r) => r.status === "rejected");
  if (failure) throw failure.reason;
  return [(senders * perSender) / seconds];
}

/** One user in 50 rooms with 20 messages each (built once per server, untimed). */
export async function buildManyRooms(server, tag, { rooms = 50, messages = 20 } = {}) {
  const owner = await user(server, `${tag}owner`);
  const reader = await user(server, `${tag}reader`);
  await pool(rooms, 8, async (r) => {
    const room = await owner.createRoom({ name: `room ${r}` });
    await reader.join(room);
    for (let m = 0; m < messages; m++) await owner.send(room, `room ${r} message ${m}`);
  });
  return reader;
}

/** Initial /sync (no since, default filter) of the user from buildManyRooms, each from a fresh login. */
export async function initialSync(reader, { samples: count = 5 } = {}) {
  const samples = [];
  for (let i = 0; i < count; i++) {
    const device = await login(reader);
    const t = now();
    const r = await device.sync();
    samples.push(now() - t);
    const joined = Object.keys(r.rooms?.join ?? {}).length;
    if (joined < 50) throw new Error(`initial sync listed ${joined} joined rooms, expected 50`);
  }
  return samples;
}

/** Incremental /sync (timeout 0) right after A's send committed: one new event. */
export async function incrementalSync(server, tag, { samples: count = 30 } = {}) {
  const a = await user(server, `${tag}a`);
  const b = await user(server, `${tag}b`);
  const room = await a.createRoom();
  await b.join(room);
  let since = (await b.sync({ filter: TIMELINE_ONLY })).next_batch;
  const samples = [];
  for (let i = 0; i < count; i++) {
    const eventId = await a.send(room, `new ${i}`);
    const t = now();
    const r = await b.sync({ since, timeout: 0, filter: TIMELINE_ONLY });
    samples.push(now() - t);
    since = r.next_batch;
    if (!roomHasEvent(r, room, eventId)) {
      // The event was not yet visible to sync: take it and keep the sample out of the figure.
      samples.pop();
      since = (await b.sync({ since, timeout: 10_000, filter: TIMELINE_ONLY })).next_batch;
    }
  }
  return samples;
}

// -------------------------------------------------------------------------------------------------
// Delayed events (MSC4140, issue 17 §4).

const UNSTABLE_DELAYED = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events";

/**
 * How late delayed events are sent: 1,000 events from 10 users (100 each, the per-user default of both
 * servers), each in its own room, due at times spread evenly over one minute that starts 2 minutes after
 * the run (time to schedule them all on a loaded machine; events sent before they were listed are left
 * out and counted). The due time of each is the server's own (`running_since + delay` from its list of
 * scheduled events). An observer joined to all the rooms receives the events through a /sync long-poll.
 *
 * Each sample is { late, delivery, seen } in ms:
 * - `late`: sent − due, where "sent" is when the server created the event, read from the event itself as
 *   (time the observer received it) − `unsigned.age`. Both servers count `age` from the event's creation:
 *   Myelin stamps origin_server_ts when it sends, Synapse keeps the creation time in `age_ts` (its
 *   origin_server_ts is the due time, so it cannot be used). This is the figure issue 17 asks for.
 * - `delivery`: received − sent (= `unsigned.age` on arrival): how long the event took to reach the
 *   long-polling observer, which gets up to 1,000 events in a minute from 10 rooms in one /sync.
 * - `seen`: received − due, both together (the only figure earlier runs printed: "the /sync observer").
 */
export async function delayedLateness(server, tag, { users: userCount = 10, perUser = 100, spreadMs = 60_000, leadMs = 120_000 } = {}) {
  const users = [];
  for (let u = 0; u < userCount; u++) {
    const c = await user(server, `${tag}u${u}`);
    users.push({ client: c, room: await c.createRoom() });
  }
  const observer = await user(server, `${tag}obs`);
  for (const { room } of users) await observer.join(room);
  const filter = JSON.stringify({ presence: { types: [] }, account_data: { types: [] }, room: { ephemeral: { types: [] }, timeline: { limit: 200, types: ["m.room.message"] } } });
  let since = (await observer.sync({ filter })).next_batch;
  const received = new Map();
  let observing = true;
  let observerError;
  const observed = (async () => {
    while (observing) {
      const res = await observer.sync({ filter, since, timeout: 5000 });
      const at = Date.now();
      since = res.next_batch;
      for (const room of Object.values(res.rooms?.join ?? {})) {
        for (const e of room.timeline?.events ?? []) {
          if (typeof e.content?.body !== "string" || received.has(e.content.body)) continue;
          const age = typeof e.unsigned?.age === "number" ? e.unsigned.age : NaN;
          received.set(e.content.body, { at, sent: at - age });
        }
      }
    }
  })().catch((e) => {
    // Ends the run (as failed) instead of the whole benchmark: the other figures still run.
    observerError = e;
    observing = false;
  });

  const total = userCount * perUser;
  const start = Date.now() + leadMs;
  await pool(total, 8, async (i) => {
    const { client, room } = users[i % userCount];
    const dueAt = start + Math.floor((spreadMs * i) / total);
    const delay = Math.max(1000, dueAt - Date.now());
    const txn = `d${process.pid}.${++txnCounter}`;
    await client.request("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/${txn}?org.matrix.msc4140.delay=${delay}`, {
      msgtype: "m.text",
      body: `delayed ${i}`,
    });
  });
  console.log(`[bench:compare] delayed: ${total} scheduled on ${server.name} in ${((Date.now() - (start - leadMs)) / 1000).toFixed(1)} s`);
  // The server's due time of each event, by body.
  const due = new Map();
  for (const { client } of users) {
    const list = await client.request("GET", `${UNSTABLE_DELAYED}?status=scheduled`).catch(() => client.request("GET", UNSTABLE_DELAYED));
    for (const e of list.scheduled ?? list.delayed_events ?? []) due.set(e.content.body, e.running_since + e.delay);
  }
  if (due.size < total) console.log(`[bench:compare] delayed: ${total - due.size} events were sent before they could be listed; left out`);
  // Until every listed event arrived, or 2 minutes after the last was due.
  const giveUp = start + spreadMs + 120_000;
  while (observing && [...due.keys()].some((body) => !received.has(body)) && Date.now() < giveUp) await sleep(500);
  observing = false;
  await observed;
  if (observerError) throw observerError;
  const samples = [];
  for (const [body, dueTs] of due) {
    const r = received.get(body);
    if (r) samples.push({ late: r.sent - dueTs, delivery: r.at - r.sent, seen: r.at - dueTs });
  }
  if (samples.some((x) => Number.isNaN(x.late))) console.log(`[bench:compare] delayed: events without unsigned.age on ${server.name}`);
  if (samples.length < due.size) console.log(`[bench:compare] delayed: ${due.size - samples.length} events not received within 2 minutes of the last due time`);
  return samples;
}

/** The cost of a restart request (what a call member sends every few seconds): 200 restarts of one
 * scheduled event, one after another. The unstable per-action endpoint, or the older action-in-body one
 * where a server does not have it (as matrix-js-sdk falls back). */
export async function delayedRestart(server, tag, { count = 200 } = {}) {
  const a = await user(server, `${tag}a`);
  const room = await a.createRoom();
  const { delay_id: delayId } = await a.request(
    "PUT",
    `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/state/org.matrix.msc3401.call.member/${encodeURIComponent(`_${a.userId}_BENCH_m.call`)}?org.matrix.msc4140.delay=3600000`,
    {},
  );
  const id = encodeURIComponent(delayId);
  let restart = () => a.request("POST", `${UNSTABLE_DELAYED}/${id}/restart`, {});
  try {
    await restart();
  } catch {
    restart = () => a.request("POST", `${UNSTABLE_DELAYED}/${id}`, { action: "restart" });
    await restart();
  }
  const samples = [];
  for (let i = 0; i < count; i++) {
    const t = now();
    await restart();
    samples.push(now() - t);
  }
  return samples;
}

// ---- application services (issue 16): the time from a client's send to the service receiving the event ----
// `server.appservice` is { who, asToken, prefix, bridge } (scripts/bench-compare.mjs; the listener is
// bench/compare/appservice-listener.mjs). A room becomes the service's when one of its users joins it.

async function bridgedRoom(server, owner, tag) {
  const { asToken, prefix } = server.appservice;
  const service = new Client(server.baseUrl, null, asToken);
  const puppet = await service.request("POST", "/_matrix/client/v3/register", { type: "m.login.application_service", username: `${prefix}${tag}`, inhibit_login: true });
  const room = await owner.createRoom();
  await service.request("POST", `/_matrix/client/v3/join/${encodeURIComponent(room)}?user_id=${encodeURIComponent(puppet.user_id)}`, {});
  return room;
}

/** One user sends 100 messages one after another, each after the service received the one before: the time
 * from the start of each send to its arrival at the service. */
export async function appserviceLatency(server, tag) {
  const { bridge, who } = server.appservice;
  const a = await user(server, `${tag}a`);
  const room = await bridgedRoom(server, a, tag);
  for (let i = 0; i < 5; i++) {
    const marker = `${tag} warm-up ${i}`;
    await a.send(room, marker);
    await bridge.waitFor(who, marker);
  }
  const samples = [];
  for (let i = 0; i < 100; i++) {
    const marker = `${tag} latency ${i}`;
    const t = now();
    await a.send(room, marker);
    samples.push((await bridge.waitFor(who, marker)) - t);
  }
  return samples;
}

/** 8 users in one bridged room each send 50 messages as fast as their sends return: events per second
 * delivered to the service, from the first send to the last arrival. */
export async function appserviceThroughput(server, tag, { senders = 8, perSender = 50 } = {}) {
  const { bridge, who } = server.appservice;
  const users = [];
  for (let i = 0; i < senders; i++) users.push(await user(server, `${tag}u${i}`));
  const room = await bridgedRoom(server, users[0], tag);
  for (let i = 0; i < senders; i++) {
    if (i > 0) await users[i].join(room);
    const marker = `${tag} warm-up ${i}`;
    await users[i].send(room, marker);
    await bridge.waitFor(who, marker);
  }
  const markers = [];
  const t = now();
  const results = await Promise.allSettled(users.map(async (u, i) => {
    for (let m = 0; m < perSender; m++) {
      const marker = `${tag} burst ${i}.${m}`;
      markers.push(marker);
      await u.send(room, marker);
    }
  }));
  const failure = results.find((r) => r.status === "rejected");
  if (failure) throw failure.reason;
  const arrivals = await Promise.all(markers.map((m) => bridge.waitFor(who, m)));
  return [markers.length / ((Math.max(...arrivals) - t) / 1000)];
}
