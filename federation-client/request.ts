// Outbound federation requests (spec: Server-Server API, "Request Authentication"): every request to
// another server is signed with this server's key (X-Matrix, with `destination`), sent to where server
// discovery says the destination lives, and answered as a value: network errors, timeouts, HTTP errors
// and bad JSON become `{ ok: false }`, never an exception. Retries and back-off belong to the caller
// (the Destination DO for transactions).
import { canonicalJson, canonicalJsonBytes } from "../protocol/canonical-json.js";
import { isJsonObject, type JsonObject } from "../protocol/json.js";
import { signBytes } from "../protocol/signing.js";
import { formatXMatrixHeader, requestJsonToSign } from "../protocol/x-matrix.js";
import type { Env } from "../worker/env.js";
import { signingKey } from "../worker/server-identity.js";
import { federationAllowed } from "./config.js";
import { resolveServer } from "./discovery.js";
import { outboundFetch } from "./outbound-fetch.js";

export type FederationResponse =
  | { ok: true; status: number; body: unknown }
  /** status null: no HTTP answer (network error, timeout, refused by configuration: errcode M_FORBIDDEN). */
  | { ok: false; status: number | null; errcode?: string; error: string };

export interface FederationRequest {
  /** The server name of the receiving server (before delegation). */
  destination: string;
  method: "GET" | "PUT" | "POST" | "DELETE";
  /** Path starting with `/_matrix/`, including the query string, already percent-encoded. */
  path: string;
  /** JSON body (PUT and POST always have one; `{}` if nothing else). Checked at run time: a value that is
   * not Matrix JSON (floats, undefined, functions) is answered `M_BAD_JSON` without a request. */
  body?: JsonObject | Record<string, unknown>;
  /** Default 60 s (Synapse's federation client timeout). */
  timeoutMs?: number;
}

type RequestEnv = Pick<
  Env,
  "DB" | "SERVER_NAME" | "SIGNING_KEY" | "FEDERATION_ENABLED" | "FEDERATION_DOMAIN_ALLOWLIST" | "FEDERATION_DOH_URL" | "FEDERATION_TEST_FETCHER"
>;

const DEFAULT_TIMEOUT_MS = 60_000;
/** Responses larger than this are refused (Synapse's limit for most federation responses is 100 MiB). */
const MAX_RESPONSE_BYTES = 100 * 1024 * 1024;

/** The `Authorization` header for a request from this server. */
export async function signRequest(
  env: Pick<Env, "DB" | "SERVER_NAME" | "SIGNING_KEY">,
  request: { method: string; path: string; destination: string; body?: JsonObject },
): Promise<string> {
  const key = await signingKey(env);
  const json = requestJsonToSign({ method: request.method, uri: request.path, origin: env.SERVER_NAME, destination: request.destination, content: request.body });
  const sig = await signBytes(key, canonicalJsonBytes(json));
  return formatXMatrixHeader({ origin: env.SERVER_NAME, destination: request.destination, key: key.keyId, sig });
}

export async function federationRequest(env: RequestEnv, request: FederationRequest): Promise<FederationResponse> {
  const sent = await sendSigned(env, request, "application/json");
  if (!sent.ok) return sent;
  try {
    return await readResponse(sent.response, request.destination);
  } finally {
    sent.clearTimer();
  }
}

/**
 * The same signed request, answered with the raw Response for bodies that are not JSON (the federation
 * media endpoints answer multipart/mixed; spec: Server-Server API, "Content Repository"). The caller reads
 * (or cancels) the body and checks the status; failures before an HTTP answer are values as above.
 */
export async function federationRawRequest(
  env: RequestEnv,
  request: FederationRequest,
): Promise<{ ok: true; response: Response } | { ok: false; status: null; errcode?: string; error: string }> {
  const sent = await sendSigned(env, request, "*/*");
  if (!sent.ok) return sent;
  const { response, clearTimer } = sent;
  if (!response.body) {
    clearTimer();
    return { ok: true, response };
  }
  // The timeout covers reading the body too; its timer is cleared once the body has been read.
  const body = response.body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({ flush: clearTimer }));
  return { ok: true, response: new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers }) };
}

async function sendSigned(
  env: RequestEnv,
  request: FederationRequest,
  accept: string,
): Promise<{ ok: true; response: Response; clearTimer: () => void } | { ok: false; status: null; errcode?: string; error: string }> {
  const { destination, method, path } = request;
  if (!federationAllowed(env, destination)) {
    return { ok: false, status: null, errcode: "M_FORBIDDEN", error: `Federation with ${destination} is not allowed by this server's configuration` };
  }
  if (!path.startsWith("/")) return { ok: false, status: null, errcode: "M_INVALID_PARAM", error: "path must start with /" };
  let bodyText: string | undefined;
  if (request.body !== undefined) {
    try {
      bodyText = canonicalJson(request.body);
    } catch (e) {
      return { ok: false, status: null, errcode: "M_BAD_JSON", error: `request body is not valid Matrix JSON: ${(e as Error).message}` };
    }
  }
  let authorization: string;
  let target: { url: string; host: string };
  try {
    authorization = await signRequest(env, { method, path, destination, body: request.body as JsonObject | undefined });
    target = await resolveServer(env, destination);
  } catch (e) {
    return { ok: false, status: null, error: `cannot reach ${destination}: ${(e as Error).message}` };
  }

  const headers = new Headers({ Authorization: authorization, Accept: accept, "User-Agent": "Myelin" });
  if (bodyText !== undefined) headers.set("Content-Type", "application/json");
  // The spec's Host header. A Worker's fetch derives Host from the URL; where discovery asks for another one
  // (SRV targets; the hostname without the default port) it is set here. Cloudflare honours a Host of another
  // hostname only within the Worker's zone and miniflare replaces it with the URL's host, so a peer behind SRV
  // may see the target's name; Synapse does not check Host (shared/notes/federation-on-loopback.md §3).
  if (target.host !== new URL(target.url).host) headers.set("Host", target.host);

  // A timer cleared once the answer is read (AbortSignal.timeout would keep the calling Durable Object
  // referenced for the whole timeout, even after the answer: it could not be evicted).
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException("timed out", "TimeoutError")), request.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  try {
    const response = await outboundFetch(env)(
      new Request(target.url + path, {
        method,
        headers,
        body: bodyText,
        // Federation answers are not redirected; a 3xx is an error like any other non-2xx.
        redirect: "manual",
        signal: controller.signal,
      }),
    );
    return { ok: true, response, clearTimer: () => clearTimeout(timer) };
  } catch (e) {
    clearTimeout(timer);
    const timedOut = controller.signal.aborted || (e instanceof Error && (e.name === "TimeoutError" || e.name === "AbortError"));
    return { ok: false, status: null, error: timedOut ? `request to ${destination} timed out` : `request to ${destination} failed: ${(e as Error).message}` };
  }
}

async function readResponse(res: Response, destination: string): Promise<FederationResponse> {
  let text: string;
  try {
    const length = Number(res.headers.get("Content-Length") ?? "0");
    if (length > MAX_RESPONSE_BYTES) {
      await res.body?.cancel();
      return { ok: false, status: res.status, error: `response from ${destination} is too large` };
    }
    text = await res.text();
  } catch (e) {
    return { ok: false, status: null, error: `reading the response of ${destination} failed: ${(e as Error).message}` };
  }
  let body: unknown;
  let parsed = false;
  try {
    body = JSON.parse(text);
    parsed = true;
  } catch {
    // handled below
  }
  if (res.status >= 200 && res.status < 300) {
    if (!parsed) return { ok: false, status: res.status, errcode: "M_NOT_JSON", error: `response from ${destination} is not JSON` };
    return { ok: true, status: res.status, body };
  }
  if (parsed && isJsonObject(body)) {
    const errcode = typeof body.errcode === "string" ? body.errcode : undefined;
    const error = typeof body.error === "string" ? body.error : `HTTP ${res.status} from ${destination}`;
    return errcode === undefined ? { ok: false, status: res.status, error } : { ok: false, status: res.status, errcode, error };
  }
  return { ok: false, status: res.status, error: `HTTP ${res.status} from ${destination}` };
}

/** GET convenience. */
export const federationGet = (env: RequestEnv, destination: string, path: string, timeoutMs?: number) =>
  federationRequest(env, { destination, method: "GET", path, timeoutMs });

/** PUT convenience (a body is required). */
export const federationPut = (env: RequestEnv, destination: string, path: string, body: FederationRequest["body"] & object, timeoutMs?: number) =>
  federationRequest(env, { destination, method: "PUT", path, body, timeoutMs });

/** POST convenience (a body is required). */
export const federationPost = (env: RequestEnv, destination: string, path: string, body: FederationRequest["body"] & object, timeoutMs?: number) =>
  federationRequest(env, { destination, method: "POST", path, body, timeoutMs });
