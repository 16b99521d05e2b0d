// Helpers for the federation tests: the remote homeservers are played by test/workers/remote-homeserver.mjs
// (an auxiliary worker, bound as FEDERATION_TEST_FETCHER), an implementation independent of Myelin's.
import { env, exports } from "cloudflare:workers";
import type { Env } from "../../worker/env.js";

export const testEnv = env as unknown as Env;
const remote = testEnv.FEDERATION_TEST_FETCHER!;
const worker = (exports as unknown as { default: { fetch(request: Request): Promise<Response> } }).default;

export const SERVER_NAME = "test.local";

/** A server name no other test uses (several tests share one D1 per file). */
export function uniqueServer(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}.remote.test`;
}

export async function remoteControl<T = any>(path: string, body?: unknown): Promise<T> {
  const res = await remote.fetch(`https://control.test${path}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) });
  return (await res.json()) as T;
}

/** The X-Matrix header a remote server computes for a request to `destination`. */
export async function remoteAuthorization(req: { name: string; method: string; uri: string; destination?: string; content?: unknown; version?: number }) {
  return remoteControl<{ authorization: string; keyId: string; publicKey: string; seed: string }>("/_test/sign", {
    destination: SERVER_NAME,
    ...req,
  });
}

export async function counter(key: string): Promise<number> {
  return (await remoteControl<Record<string, number>>("/_test/counters"))[key] ?? 0;
}

export interface Answer {
  status: number;
  body: any;
  text: string;
  headers: Headers;
}

/** Sends a request to Myelin (the Worker under test) as it arrives from the network. */
export async function inbound(method: string, uri: string, init: { authorization?: string; body?: string } = {}): Promise<Answer> {
  const headers = new Headers();
  if (init.authorization !== undefined) headers.set("Authorization", init.authorization);
  if (init.body !== undefined) headers.set("Content-Type", "application/json");
  const res = await worker.fetch(new Request(`https://${SERVER_NAME}${uri}`, { method, headers, body: init.body }));
  const text = await res.text();
  let body: any = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body, text, headers: res.headers };
}

/** A request signed by remote server `name` (its own implementation) and sent to Myelin. */
export async function signedInbound(name: string, method: string, uri: string, content?: unknown): Promise<Answer> {
  const { authorization } = await remoteAuthorization({ name, method, uri, content });
  return inbound(method, uri, { authorization, body: content === undefined ? undefined : JSON.stringify(content) });
}
