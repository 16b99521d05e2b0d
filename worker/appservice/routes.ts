// Client-Server API endpoints for application services (spec: Application Service API, "Client-Server API
// Extensions": "Pinging the application service", MSC2659; "Third-party Networks"; "Application service
// room directories"). Errors as Synapse's (synapse/rest/client/appservice_ping.py, thirdparty.py,
// directory.py).
import { Hono, type Context } from "hono";
import { MatrixError, badJson, forbidden, invalidParam, missingParam, notFound } from "../../protocol/errors.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { appserviceById, appservices, noteServiceContact } from "./auth.js";
import type { Appservice } from "../../durable-objects/appservice/registry.js";

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

// ---------------------------------------------------------------------------------------------
// Third-party networks (spec: Client-Server API, "Third-party Networks"; Application Service API,
// "Third-party Networks"): answered by the services that declare the protocol. Instances get the ID
// `<service id>|<network_id>`, as Synapse's (ThirdPartyInstanceID). A service that does not answer is left
// out, as Synapse does.

const THIRDPARTY_TIMEOUT_MS = 10_000;

async function askService(service: Appservice, path: string): Promise<unknown> {
  const url = service.registration.url;
  if (url === null) return undefined;
  try {
    const res = await fetch(`${url}${path}`, {
      headers: { Authorization: `Bearer ${service.registration.hsToken}` },
      signal: AbortSignal.timeout(THIRDPARTY_TIMEOUT_MS),
    });
    if (res.status !== 200) return undefined;
    return (await res.json()) as unknown;
  } catch {
    return undefined;
  }
}

/** The protocol description merged from the services that declare `protocol`, or undefined. */
async function protocolDescription(env: AppEnv["Bindings"], protocol: string): Promise<Record<string, unknown> | undefined> {
  let merged: Record<string, unknown> | undefined;
  for (const service of await appservices(env)) {
    if (!service.hasProtocol(protocol)) continue;
    const answer = await askService(service, `/_matrix/app/v1/thirdparty/protocol/${encodeURIComponent(protocol)}`);
    if (typeof answer !== "object" || answer === null || Array.isArray(answer)) continue;
    const description = answer as Record<string, unknown>;
    const instances = Array.isArray(description.instances) ? description.instances : [];
    const named = instances
      .filter((i): i is Record<string, unknown> => typeof i === "object" && i !== null && !Array.isArray(i))
      .map((i) => ({ ...i, instance_id: `${service.id}|${typeof i.network_id === "string" ? i.network_id : ""}` }));
    if (!merged) merged = { ...description, instances: named };
    else (merged.instances as unknown[]).push(...named);
  }
  return merged;
}

// GET /_matrix/client/v3/thirdparty/protocols
appserviceRoutes.get("/_matrix/client/:version{v3|r0}/thirdparty/protocols", requireAuth, async (c) => {
  const protocols = new Set((await appservices(c.env)).flatMap((s) => s.registration.protocols));
  const out: Record<string, unknown> = {};
  for (const p of protocols) {
    const d = await protocolDescription(c.env, p);
    if (d) out[p] = d;
  }
  return c.json(out);
});

// GET /_matrix/client/v3/thirdparty/protocol/{protocol}
appserviceRoutes.get("/_matrix/client/:version{v3|r0}/thirdparty/protocol/:protocol", requireAuth, async (c) => {
  const d = await protocolDescription(c.env, c.req.param("protocol"));
  if (!d) throw notFound("No protocol found");
  return c.json(d);
});

/** Lists from every service that declares `protocol` (or every service with a protocol, when undefined). */
async function thirdPartyLookup(env: AppEnv["Bindings"], kind: "location" | "user", protocol: string | undefined, query: string): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const service of await appservices(env)) {
    if (protocol !== undefined ? !service.hasProtocol(protocol) : service.registration.protocols.length === 0) continue;
    const path = `/_matrix/app/v1/thirdparty/${kind}${protocol !== undefined ? `/${encodeURIComponent(protocol)}` : ""}${query}`;
    const answer = await askService(service, path);
    if (Array.isArray(answer)) out.push(...answer);
  }
  return out;
}

const queryString = (url: string) => {
  const i = url.indexOf("?");
  return i < 0 ? "" : url.slice(i);
};

// GET /_matrix/client/v3/thirdparty/location/{protocol}
appserviceRoutes.get("/_matrix/client/:version{v3|r0}/thirdparty/location/:protocol", requireAuth, async (c) =>
  c.json(await thirdPartyLookup(c.env, "location", c.req.param("protocol"), queryString(c.req.url))),
);
// GET /_matrix/client/v3/thirdparty/user/{protocol}
appserviceRoutes.get("/_matrix/client/:version{v3|r0}/thirdparty/user/:protocol", requireAuth, async (c) =>
  c.json(await thirdPartyLookup(c.env, "user", c.req.param("protocol"), queryString(c.req.url))),
);
// GET /_matrix/client/v3/thirdparty/location?alias=
appserviceRoutes.get("/_matrix/client/:version{v3|r0}/thirdparty/location", requireAuth, async (c) => {
  const alias = c.req.query("alias");
  if (alias === undefined) throw missingParam("Missing alias");
  return c.json(await thirdPartyLookup(c.env, "location", undefined, `?alias=${encodeURIComponent(alias)}`));
});
// GET /_matrix/client/v3/thirdparty/user?userid=
appserviceRoutes.get("/_matrix/client/:version{v3|r0}/thirdparty/user", requireAuth, async (c) => {
  const userid = c.req.query("userid");
  if (userid === undefined) throw missingParam("Missing userid");
  return c.json(await thirdPartyLookup(c.env, "user", undefined, `?userid=${encodeURIComponent(userid)}`));
});

// ---------------------------------------------------------------------------------------------
// PUT/DELETE /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId} (spec: Application Service
// API, "Application service room directories"): a service publishes rooms of its network's directory.

async function setNetworkVisibility(c: Context<AppEnv>, visibility: "public" | "private"): Promise<Response> {
  const me = requester(c);
  if (me.appserviceId === undefined) throw forbidden("Only appservices can edit the appservice published room list");
  const roomId = c.req.param("roomId")!;
  if (!roomId.startsWith("!")) throw invalidParam(`${roomId} is not a legal room ID`);
  const networkId = c.req.param("networkId")!;
  if (visibility === "private") {
    await c.env.DB.prepare("DELETE FROM appservice_room_list WHERE appservice_id = ? AND network_id = ? AND room_id = ?").bind(me.appserviceId, networkId, roomId).run();
  } else {
    await c.env.DB.prepare(
      "INSERT INTO appservice_room_list (appservice_id, network_id, room_id, visibility) VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET visibility = excluded.visibility",
    )
      .bind(me.appserviceId, networkId, roomId, visibility)
      .run();
  }
  return c.json({});
}

appserviceRoutes.put("/_matrix/client/:version{v3|r0}/directory/list/appservice/:networkId/:roomId", requireAuth, async (c) => {
  const body = await readJsonObject(c, { allowEmpty: true });
  const visibility = body.visibility ?? "public";
  if (visibility !== "public" && visibility !== "private") throw invalidParam("visibility must be 'public' or 'private'");
  return setNetworkVisibility(c, visibility);
});
appserviceRoutes.delete("/_matrix/client/:version{v3|r0}/directory/list/appservice/:networkId/:roomId", requireAuth, (c) => setNetworkVisibility(c, "private"));
