// A small client for the federation tests: the same plain requests to Myelin and to Synapse (no SDK, so
// both servers see identical calls), and a bounded wait for something to arrive over federation.
import { expect } from "vitest";
import { registerWithSharedSecret } from "../../scripts/synapse.mjs";

export interface Server {
  baseUrl: string;
  serverName: string;
  registrationSharedSecret: string;
}

export interface User {
  userId: string;
  accessToken: string;
  server: Server;
}

let counter = 0;
/** Registers a fresh user (shared-secret registration works on both servers). */
export async function newUser(server: Server, prefix: string): Promise<User> {
  counter += 1;
  const localpart = `${prefix}${counter}x${Math.random().toString(36).slice(2, 8)}`;
  const r = (await registerWithSharedSecret(server.baseUrl, server.registrationSharedSecret, localpart, "pw-federation-1")) as { userId: string; accessToken: string };
  return { userId: r.userId, accessToken: r.accessToken, server };
}

export interface Answer {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

export async function call(user: User, method: string, path: string, body?: unknown): Promise<Answer> {
  const res = await fetch(`${user.server.baseUrl}/_matrix/client/v3${path}`, {
    method,
    headers: { Authorization: `Bearer ${user.accessToken}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed };
}

export const enc = encodeURIComponent;

let txn = 0;
export async function sendText(user: User, roomId: string, body: string): Promise<string> {
  const res = await call(user, "PUT", `/rooms/${enc(roomId)}/send/m.room.message/f${Date.now()}-${++txn}`, { msgtype: "m.text", body });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.event_id as string;
}

export async function createRoom(user: User, body: Record<string, unknown>): Promise<string> {
  const res = await call(user, "POST", "/createRoom", body);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.room_id as string;
}

export async function join(user: User, roomIdOrAlias: string, via: string[] = []): Promise<Answer> {
  const q = via.length ? `?${via.map((s) => `via=${enc(s)}`).join("&")}` : "";
  return call(user, "POST", `/join/${enc(roomIdOrAlias)}${q}`, {});
}

/** The message bodies of a room's timeline as `user` sees it, oldest first (paginating back fully). */
export async function messageBodies(user: User, roomId: string, limit = 200): Promise<string[]> {
  const out: string[] = [];
  let from: string | undefined;
  for (let page = 0; page < 20; page++) {
    const res = await call(user, "GET", `/rooms/${enc(roomId)}/messages?dir=b&limit=${Math.min(limit, 100)}${from ? `&from=${enc(from)}` : ""}`);
    if (res.status !== 200) return out;
    for (const e of res.body.chunk as { type: string; content: { body?: string } }[]) if (e.type === "m.room.message" && typeof e.content.body === "string") out.unshift(e.content.body);
    if (!res.body.end || (res.body.chunk as unknown[]).length === 0) break;
    from = res.body.end;
  }
  return out;
}

export async function membership(user: User, roomId: string, userId: string): Promise<string | undefined> {
  const res = await call(user, "GET", `/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`);
  return res.status === 200 ? (res.body.membership as string) : undefined;
}

/** The room's current state as (type, state_key) -> event ID, as `user` sees it. */
export async function stateIds(user: User, roomId: string): Promise<Map<string, string>> {
  const res = await call(user, "GET", `/rooms/${enc(roomId)}/state`);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return new Map((res.body as { type: string; state_key: string; event_id: string }[]).map((e) => [`${e.type}|${e.state_key}`, e.event_id]));
}

/**
 * Waits until `check` returns a value that is not undefined/false (federation is asynchronous), polling
 * every 200 ms for at most `ms`; fails with `what` otherwise. A bound on waiting, not a timing assertion.
 */
export async function eventually<T>(what: string, check: () => Promise<T | undefined | false>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
