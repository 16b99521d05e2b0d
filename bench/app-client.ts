// A client for benchmarks that calls the Worker's fetch handler directly, and seeding inside a Room DO.
// Not through the test pool's `exports.default.fetch` (test/workers/helpers.ts `api`): measured, every
// request through that binding made the following ones slower (GET /versions: 3 ms fresh, 156 ms after
// 500 requests; vitest.pool-fix.ts has since removed the cause), which would swamp the figures. The
// handler itself answers /versions in 0.1 ms either way.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { RoomEngine } from "../durable-objects/room/engine.js";
import { createLocalEvent } from "../durable-objects/room/local-events.js";
import app from "../worker/index.js";

export const V3 = "/_matrix/client/v3";
export const SERVER = "bench.local";

const ctx = { waitUntil: (p: Promise<unknown>) => void p.catch(() => undefined), passThroughOnException() {}, props: {} } as unknown as ExecutionContext;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function api(method: string, path: string, options: { token?: string; body?: unknown } = {}): Promise<{ status: number; body: any }> {
  const headers = new Headers();
  if (options.token !== undefined) headers.set("Authorization", `Bearer ${options.token}`);
  let body: string | undefined;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers.set("Content-Type", "application/json");
  }
  const res = await app.fetch(new Request(`https://${SERVER}${path}`, { method, headers, body }), env, ctx);
  const text = await res.text();
  return { status: res.status, body: text === "" ? null : JSON.parse(text) };
}

export interface RegisteredUser {
  user_id: string;
  access_token: string;
  device_id: string;
}

let users = 0;
export const uniqueLocalpart = (prefix: string) => `${prefix}-${crypto.randomUUID().slice(0, 8)}-${++users}`;

/** Registers a user through the m.login.dummy flow. */
export async function registerUser(localpart: string): Promise<RegisteredUser> {
  const request = { username: localpart, password: `password-${localpart}` };
  let res = await api("POST", `${V3}/register`, { body: request });
  if (res.status === 401) res = await api("POST", `${V3}/register`, { body: { ...request, auth: { type: "m.login.dummy", session: res.body.session } } });
  if (res.status !== 200) throw new Error(`register: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as RegisteredUser;
}

export async function createRoom(user: RegisteredUser, body: Record<string, unknown> = {}): Promise<string> {
  const res = await api("POST", `${V3}/createRoom`, { token: user.access_token, body });
  if (res.status !== 200) throw new Error(`createRoom: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.room_id as string;
}

export async function joinRoom(user: RegisteredUser, roomId: string): Promise<void> {
  const res = await api("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/join`, { token: user.access_token, body: {} });
  if (res.status !== 200) throw new Error(`join: ${res.status} ${JSON.stringify(res.body)}`);
}

let txn = 0;
export async function send(user: RegisteredUser, roomId: string, body: string): Promise<string> {
  const res = await api("PUT", `${V3}/rooms/${encodeURIComponent(roomId)}/send/m.room.message/f${++txn}-${Date.now()}`, {
    token: user.access_token,
    body: { msgtype: "m.text", body },
  });
  if (res.status !== 200) throw new Error(`send: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.event_id as string;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type SyncBody = any;

export async function sync(user: RegisteredUser, query = ""): Promise<SyncBody> {
  const res = await api("GET", `${V3}/sync${query}`, { token: user.access_token });
  if (res.status !== 200) throw new Error(`sync: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Median latency of GET /versions: what a request costs the harness before any server work. */
export async function harnessBaseline(): Promise<number> {
  const t: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await api("GET", "/_matrix/client/versions");
    t.push(performance.now() - t0);
  }
  return t.sort((a, b) => a - b)[2]!;
}

export const roomDo = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
export const userDo = (userId: string) => env.USERS.get(env.USERS.idFromName(userId));
export const engineOf = (instance: unknown) => (instance as { engine: RoomEngine }).engine;

/**
 * Persists `n` events made by `make(i)` inside the room's DO through the one entry point (built, signed,
 * checked), then marks them as handed out: the seeded members are users of this server without User DOs
 * worth waking, and what is measured afterwards is the room as it stands. Returns the seconds taken.
 */
export async function seed(
  roomId: string,
  n: number,
  make: (i: number) => { type: string; stateKey?: string; sender: string; content: Record<string, unknown> },
): Promise<number> {
  const start = performance.now();
  const CHUNK = 5000;
  for (let done = 0; done < n; done += CHUNK) {
    await runInDurableObject(roomDo(roomId), async (instance) => {
      const engine = engineOf(instance);
      for (let i = done; i < Math.min(n, done + CHUNK); i++) await createLocalEvent(engine, env, make(i) as never);
      engine.sql.exec("UPDATE fan_out SET delivered_upto = (SELECT MAX(stream_ordering) FROM events) WHERE id = 1");
    });
  }
  return (performance.now() - start) / 1000;
}

/**
 * Waits until the storage writes of a seeding have reached the disk: workerd flushes a DO's committed
 * writes in the background, and until that backlog is gone every request of the process waits on it
 * (measured: ~11 s after 15,000 seeded events). Returns the seconds waited.
 */
export async function settle(roomId: string): Promise<number> {
  const start = performance.now();
  let quick = 0;
  while (quick < 3 && performance.now() - start < 600_000) {
    const t = performance.now();
    await roomDo(roomId).roomInfo();
    quick = performance.now() - t < 20 ? quick + 1 : 0;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return (performance.now() - start) / 1000;
}

/** Runs `fn` over `items` with at most `n` at once. */
export async function inParallel<T, R>(items: T[], n: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}
