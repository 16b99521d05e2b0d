// Helpers for the workerd integration tests: call the Worker's fetch handler and register users.
// @cloudflare/vitest-pool-workers (0.13+) isolates storage per test *file*: the tests of one file share
// D1 and Durable Objects, so use a unique localpart per test (see `uniqueLocalpart`).
import { exports } from "cloudflare:workers";

/** The Worker's default export (its `fetch` handler), as the test pool exposes it. */
const worker = (exports as unknown as { default: { fetch(request: Request): Promise<Response> } }).default;

export const SERVER_NAME = "test.local";

export interface ApiResponse {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  headers: Headers;
}

export interface ApiOptions {
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** Serialised as JSON unless it is already a string (sent verbatim, e.g. to test M_NOT_JSON). */
  body?: unknown;
  /** Extra request headers (e.g. `CF-Connecting-IP` for rate-limit tests). */
  headers?: Record<string, string>;
}

/** Sends a request to the Worker and parses the JSON answer (body is null if the answer is not JSON). */
export async function api(method: string, path: string, options: ApiOptions = {}): Promise<ApiResponse> {
  const headers = new Headers(options.headers);
  if (options.token !== undefined) headers.set("Authorization", `Bearer ${options.token}`);
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
    if (!headers.has("Content-Type")) headers.set("Content-Type", "application/json");
  }
  const res = await worker.fetch(new Request(`https://${SERVER_NAME}${path}`, { method, headers, body }));
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text === "" ? null : JSON.parse(text);
  } catch {
    parsed = null;
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

let counter = 0;
/** A localpart no other test uses: `<prefix>-<random>-<n>` (valid under the spec's localpart rules). */
export function uniqueLocalpart(prefix = "user"): string {
  counter += 1;
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}-${counter}`;
}

export interface RegisteredUser {
  user_id: string;
  access_token: string;
  device_id: string;
  refresh_token?: string;
  expires_in_ms?: number;
}

/**
 * Registers `localpart` through POST /_matrix/client/v3/register, completing user-interactive auth
 * with m.login.dummy (and m.login.registration_token when `registrationToken` is given).
 * The password defaults to `password-<localpart>`.
 */
export async function registerUser(
  localpart: string,
  password?: string,
  options: { refreshToken?: boolean; deviceId?: string; registrationToken?: string; initialDeviceDisplayName?: string } = {},
): Promise<RegisteredUser> {
  const request: Record<string, unknown> = { username: localpart, password: password ?? `password-${localpart}` };
  if (options.refreshToken) request.refresh_token = true;
  if (options.deviceId !== undefined) request.device_id = options.deviceId;
  if (options.initialDeviceDisplayName !== undefined) request.initial_device_display_name = options.initialDeviceDisplayName;

  let res = await api("POST", "/_matrix/client/v3/register", { body: request });
  for (let step = 0; res.status === 401 && step < 3; step++) {
    const session: string = res.body.session;
    const completed: string[] = res.body.completed ?? [];
    const flow: string[] = res.body.flows[0].stages;
    const next = flow.find((s) => !completed.includes(s));
    let auth: Record<string, unknown>;
    if (next === "m.login.registration_token") {
      if (options.registrationToken === undefined) throw new Error("registration requires a token");
      auth = { type: next, token: options.registrationToken, session };
    } else {
      auth = { type: "m.login.dummy", session };
    }
    res = await api("POST", "/_matrix/client/v3/register", { body: { ...request, auth } });
  }
  if (res.status !== 200) throw new Error(`registerUser(${localpart}) failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as RegisteredUser;
}

/** Logs in with m.login.password and returns the raw response. */
export function login(user: string, password: string, extra: Record<string, unknown> = {}): Promise<ApiResponse> {
  return api("POST", "/_matrix/client/v3/login", {
    body: { type: "m.login.password", identifier: { type: "m.id.user", user }, password, ...extra },
  });
}
