// End-to-end: bursts of concurrent requests against a fresh server started as `npm start` does (issue 13 §1).
// `wrangler dev`'s ProxyWorker turned one failed request in a burst into a fatal error and the port closed;
// `npm start` now serves through Miniflare directly. Each burst mixes sends into one room, /sync long-polls
// with small timeouts, other reads, and requests the client aborts half-way. Afterwards the server must
// still answer, no request may have failed with a 5xx or a network error, and every send that was
// acknowledged (200 with an event_id) must be readable through /messages and /event.
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type RunningServer } from "./server.js";

const BURSTS = 20;
const BURST_SIZE = 200;
const SENDERS = 6;

interface User {
  userId: string;
  token: string;
  since: string;
}

let server: RunningServer;
afterAll(() => server?.stop());
beforeAll(async () => {
  server = await startServer();
});

// Requests go through node:http with keep-alive connections that the client closes after 1 s idle.
// workerd closes idle connections after 5 s, and under load its event loop can take seconds to read a
// request that arrives on a connection shortly before that: the connection then closes with the request
// unanswered. That is the HTTP/1.1 keep-alive race (seen here with Node's fetch, which keeps idle
// connections for 4 s, as ECONNRESET on reused connections only). Clients retry such requests, browsers
// by themselves, Node as its documentation advises (`reusedSocket`); so does this test, once, and counts
// it. A server that dies or drops requests on fresh connections still fails the test.
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, timeout: 1000 });
afterAll(() => agent.destroy());
let retriedOnReusedConnection = 0;

interface Reply {
  status: number;
  text: string;
}

type Init = { method?: string; token?: string; json?: unknown; abortAfterMs?: number };

/**
 * One request. `abortAfterMs` makes the client give up after that long: it closes the connection,
 * after sending only the first half of the body if there is one.
 */
async function api(path: string, init: Init = {}): Promise<Reply> {
  try {
    return await attempt(path, init);
  } catch (e) {
    const { reused, error } = e as { reused: boolean; error: Error & { code?: string } };
    if (!reused || error.code !== "ECONNRESET" || init.abortAfterMs !== undefined) throw error;
    retriedOnReusedConnection++;
    return attempt(path, init).catch((again: { error: Error }) => {
      throw again.error;
    });
  }
}

function attempt(path: string, init: Init): Promise<Reply> {
  const url = new URL(path, server.baseUrl);
  const body = init.json === undefined ? undefined : Buffer.from(JSON.stringify(init.json));
  const headers: Record<string, string | number> = {};
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  if (body) Object.assign(headers, { "content-type": "application/json", "content-length": body.length });
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request(
      { agent, host: url.hostname, port: url.port, path: url.pathname + url.search, method: init.method ?? "GET", headers },
      (res) => {
        answered = true;
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode!, text }));
        res.on("error", (error) => reject({ reused: false, error }));
      },
    );
    req.on("error", (error) => reject({ reused: req.reusedSocket && !answered, error }));
    if (init.abortAfterMs === undefined) {
      req.end(body);
      return;
    }
    if (body) req.write(body.subarray(0, body.length >> 1));
    else req.end();
    setTimeout(() => req.destroy(new Error("aborted by the client")), init.abortAfterMs);
  });
}

async function apiJson<T>(path: string, init: Parameters<typeof api>[1] = {}): Promise<T> {
  const res = await api(path, init);
  if (res.status !== 200) throw new Error(`${init.method ?? "GET"} ${path}: ${res.status} ${res.text}`);
  return JSON.parse(res.text) as T;
}

async function register(name: string): Promise<User> {
  const username = `${name}${Math.floor(Math.random() * 1e9).toString(36)}`;
  const password = `pw-${username}`;
  const first = await api("/_matrix/client/v3/register", { method: "POST", json: { username, password } });
  const { session } = JSON.parse(first.text) as { session: string };
  const reg = await apiJson<{ user_id: string; access_token: string }>("/_matrix/client/v3/register", {
    method: "POST",
    json: { username, password, auth: { type: "m.login.dummy", session } },
  });
  return { userId: reg.user_id, token: reg.access_token, since: "" };
}


describe("bursts of concurrent requests", () => {
  it(`survives ${BURSTS} bursts of ${BURST_SIZE} requests and keeps every acknowledged event`, async () => {
    const users: User[] = [];
    for (let i = 0; i < SENDERS; i++) users.push(await register(`burst${i}`));
    const owner = users[0]!;
    const { room_id: roomId } = await apiJson<{ room_id: string }>("/_matrix/client/v3/createRoom", {
      method: "POST",
      token: owner.token,
      json: { preset: "public_chat", name: "burst" },
    });
    const room = encodeURIComponent(roomId);
    for (const u of users.slice(1)) await apiJson(`/_matrix/client/v3/join/${room}`, { method: "POST", token: u.token, json: {} });
    for (const u of users) u.since = (await apiJson<{ next_batch: string }>("/_matrix/client/v3/sync?timeout=0", { token: u.token })).next_batch;

    const acknowledged: string[] = [];
    const statuses = new Map<number, number>();
    const failures: string[] = [];
    let aborted = 0;
    let txn = 0;

    /** One request of the mix; `i` picks the kind, so every burst has the same proportions. */
    function request(i: number): { path: string; method: string; token: string; json?: unknown } {
      const u = users[i % users.length]!;
      const kind = i % 10;
      if (kind < 4) {
        const path = `/_matrix/client/v3/rooms/${room}/send/m.room.message/b${Date.now()}.${txn++}`;
        return { path, method: "PUT", token: u.token, json: { msgtype: "m.text", body: `burst ${i}` } };
      }
      const since = encodeURIComponent(u.since);
      const paths = [
        `/_matrix/client/v3/sync?timeout=${50 + (i % 5) * 100}&since=${since}`,
        `/_matrix/client/v3/sync?timeout=${(i % 3) * 100}&since=${since}`,
        "/_matrix/client/versions",
        "/_matrix/client/v3/account/whoami",
        `/_matrix/client/v3/rooms/${room}/messages?dir=b&limit=20`,
        `/_matrix/client/v3/rooms/${room}/joined_members`,
      ];
      return { path: paths[kind - 4]!, method: "GET", token: u.token };
    }

    for (let burst = 0; burst < BURSTS; burst++) {
      await Promise.all(
        Array.from({ length: BURST_SIZE }, async (_, i) => {
          const { path, ...init } = request(i + burst);
          // Every fifth request is abandoned by the client after 0-30 ms, mostly while the server works on it.
          const abortAfterMs = i % 5 === 2 ? (i * 7) % 31 : undefined;
          try {
            const res = await api(path, { ...init, abortAfterMs });
            statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
            if (init.method === "PUT" && res.status === 200) acknowledged.push((JSON.parse(res.text) as { event_id: string }).event_id);
            if (res.status >= 500) failures.push(`${res.status} ${init.method} ${path}: ${res.text.slice(0, 200)}`);
          } catch (e) {
            if (abortAfterMs !== undefined && (e as Error).message === "aborted by the client") aborted++;
            else failures.push(`${init.method} ${path}: ${String(e)}`);
          }
        }),
      );
      expect(failures, `burst ${burst}; server log:\n${server.log().slice(-3000)}`).toEqual([]);
    }

    console.log(`${acknowledged.length} sends acknowledged, ${aborted} requests abandoned, ${retriedOnReusedConnection} retried after a reset of a reused connection; statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    // The server still answers, and the mix really ran: sends, aborts and reads all happened.
    expect((await api("/_matrix/client/versions")).status).toBe(200);
    expect(acknowledged.length).toBeGreaterThan(BURSTS * 50);
    expect(aborted).toBeGreaterThan(0);
    expect([...statuses.keys()].every((s) => s < 500)).toBe(true);

    // Every acknowledged event is in the room's history...
    const history = new Set<string>();
    let from = "";
    for (;;) {
      const page = await apiJson<{ chunk: { event_id: string }[]; end?: string }>(
        `/_matrix/client/v3/rooms/${room}/messages?dir=b&limit=1000${from ? `&from=${encodeURIComponent(from)}` : ""}`,
        { token: owner.token },
      );
      for (const ev of page.chunk) history.add(ev.event_id);
      if (!page.end || page.chunk.length === 0) break;
      from = page.end;
    }
    expect(acknowledged.filter((id) => !history.has(id))).toEqual([]);
    // ...and readable one by one (every 10th, to keep the test short).
    for (let i = 0; i < acknowledged.length; i += 10) {
      const id = acknowledged[i]!;
      const ev = await apiJson<{ event_id: string }>(`/_matrix/client/v3/rooms/${room}/event/${encodeURIComponent(id)}`, { token: owner.token });
      expect(ev.event_id).toBe(id);
    }
  }, 120_000);
});
