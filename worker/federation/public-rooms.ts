// Server-Server API: the published room directory for other servers (spec: "Public Room Directory": GET
// and POST /_matrix/federation/v1/publicRooms; data/api/server-server/public_rooms.yaml), answered from the
// same listing as the client API (worker/client/public-rooms.ts), and the other direction: a client's
// /publicRooms?server=<other> asks that server (`remotePublicRooms`).
import { Hono } from "hono";
import { federationRequest } from "../../federation-client/request.js";
import { MatrixError, invalidParam } from "../../protocol/errors.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { listPublicRooms, parsePublicRoomsBody, type PublicRoomsQuery } from "../client/public-rooms.js";
import type { AppEnv, Env } from "../env.js";
import { intParam, readJsonObject } from "../http.js";
import { requestOrigin } from "./auth.js";

export const federationPublicRoomsRoutes = new Hono<AppEnv>();

// GET /_matrix/federation/v1/publicRooms
federationPublicRoomsRoutes.get("/_matrix/federation/v1/publicRooms", async (c) => {
  requestOrigin(c);
  const q: PublicRoomsQuery = { limit: intParam(c, "limit", 0, 0) };
  const since = c.req.query("since");
  if (since !== undefined) q.since = since;
  const all = c.req.query("include_all_networks");
  if (all !== undefined && all !== "true" && all !== "false") throw invalidParam("include_all_networks must be true or false");
  if (all === "true") q.includeAllNetworks = true;
  const network = c.req.query("third_party_instance_id");
  if (network !== undefined) q.thirdPartyInstanceId = network;
  return c.json(await listPublicRooms(c.env, q));
});

// POST /_matrix/federation/v1/publicRooms
federationPublicRoomsRoutes.post("/_matrix/federation/v1/publicRooms", async (c) => {
  requestOrigin(c);
  return c.json(await listPublicRooms(c.env, parsePublicRoomsBody(await readJsonObject(c, { canonical: false }))));
});

/** How long a client waits for another server's directory. */
const REMOTE_TIMEOUT_MS = 20_000;

/**
 * Another server's directory for a client (`server` of the client API): GET when the client sent no filter,
 * POST with the body otherwise, as Synapse does. An answer that is not a directory page, or none, is 502.
 */
export async function remotePublicRooms(env: Env, server: string, request: { query?: PublicRoomsQuery; body?: JsonObject }): Promise<JsonObject> {
  let path = "/_matrix/federation/v1/publicRooms";
  let response;
  if (request.body !== undefined) {
    response = await federationRequest(env, { destination: server, method: "POST", path, body: request.body, timeoutMs: REMOTE_TIMEOUT_MS });
  } else {
    const params = new URLSearchParams();
    if (request.query?.limit) params.set("limit", String(request.query.limit));
    if (request.query?.since) params.set("since", request.query.since);
    if (params.size > 0) path += `?${params.toString()}`;
    response = await federationRequest(env, { destination: server, method: "GET", path, timeoutMs: REMOTE_TIMEOUT_MS });
  }
  if (!response.ok) {
    // The other server's own refusal (e.g. its directory is not public over federation) is passed on.
    if (response.status !== null && response.status >= 400 && response.status < 500 && response.errcode) {
      throw new MatrixError(response.status, response.errcode, response.error);
    }
    throw new MatrixError(502, "M_UNKNOWN", `Failed to fetch the room directory of ${server}: ${response.error}`);
  }
  const body = response.body;
  if (!isJsonObject(body) || !Array.isArray(body.chunk)) throw new MatrixError(502, "M_UNKNOWN", `${server} did not answer with a room directory`);
  const out: JsonObject = { chunk: body.chunk.filter(isJsonObject) };
  if (typeof body.next_batch === "string") out.next_batch = body.next_batch;
  if (typeof body.prev_batch === "string") out.prev_batch = body.prev_batch;
  if (typeof body.total_room_count_estimate === "number") out.total_room_count_estimate = body.total_room_count_estimate;
  return out;
}
