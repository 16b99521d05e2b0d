// Client-Server API endpoints for application services (spec: Application Service API, "Client-Server API
// Extensions": "Pinging the application service", MSC2659). Errors as Synapse's
// (synapse/rest/client/appservice_ping.py).
import { Hono } from "hono";
import { MatrixError, badJson, forbidden } from "../../protocol/errors.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { appserviceById, noteServiceContact } from "./auth.js";

export const appserviceRoutes = new Hono<AppEnv>();

/** How long the service may take to answer a ping (Synapse: the HTTP client's default, here shorter). */
const PING_TIMEOUT_MS = 20_000;

// POST /_matrix/client/v1/appservice/{appserviceId}/ping
appserviceRoutes.post("/_matrix/client/v1/appservice/:appserviceId/ping", requireAuth, async (c) => {
  const id = c.req.param("appserviceId");
  const me = requester(c);
  if (me.appserviceId === undefined || me.appserviceId !== id) throw forbidden("Provided access token is not for this appservice");
  const service = await appserviceById(c.env, id);
  if (!service) throw forbidden("Provided access token is not for this appservice");
  const url = service.registration.url;
  if (url === null) throw new MatrixError(400, "M_URL_NOT_SET", "Application service URL is not set");
  const body = await readJsonObject(c, { allowEmpty: true });
  const ping: Record<string, string> = {};
  if (body.transaction_id !== undefined) {
    if (typeof body.transaction_id !== "string") throw badJson("transaction_id must be a string");
    ping.transaction_id = body.transaction_id;
  }
  const started = Date.now();
  let response: Response;
  try {
    response = await fetch(`${url}/_matrix/app/v1/ping`, {
      method: "POST",
      headers: { Authorization: `Bearer ${service.registration.hsToken}`, "Content-Type": "application/json" },
      body: JSON.stringify(ping),
      signal: AbortSignal.timeout(PING_TIMEOUT_MS),
    });
  } catch (e) {
    if (e instanceof Error && (e.name === "TimeoutError" || e.name === "AbortError")) {
      throw new MatrixError(504, "M_CONNECTION_TIMEOUT", "Connection to application service timed out");
    }
    throw new MatrixError(502, "M_CONNECTION_FAILED", "Failed to connect to the application service");
  }
  const text = await response.text().catch(() => "");
  if (!response.ok) {
    throw new MatrixError(502, "M_BAD_STATUS", "HTTP status error from the application service", { status: response.status, body: text.slice(0, 4096) });
  }
  // The service answered: whatever its queue holds goes now.
  noteServiceContact(c, id, 0);
  return c.json({ duration_ms: Date.now() - started });
});
