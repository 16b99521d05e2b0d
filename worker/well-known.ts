// Server discovery: /.well-known/matrix/server (federation delegation) and /.well-known/matrix/client.
// Spec: Server-Server API "Resolving server names"; Client-Server API "Server Discovery".
import { Hono } from "hono";
import type { AppEnv } from "./env.js";
import { rtcTransports } from "./client/matrix-rtc.js";

export const wellKnownRoutes = new Hono<AppEnv>();

// GET /.well-known/matrix/server
wellKnownRoutes.get("/.well-known/matrix/server", (c) => {
  // Delegation target, e.g. `matrix.example.com:443`; without one, the server name itself.
  const target = c.env.WELL_KNOWN_SERVER || c.env.SERVER_NAME;
  return c.json({ "m.server": target });
});

// GET /.well-known/matrix/client
wellKnownRoutes.get("/.well-known/matrix/client", (c) => {
  const baseUrl = c.env.WELL_KNOWN_CLIENT || new URL(c.req.url).origin;
  const body: Record<string, unknown> = { "m.homeserver": { base_url: baseUrl } };
  // MSC4143: the MatrixRTC (group call) transports, for clients that look here (worker/client/matrix-rtc.ts).
  const foci = rtcTransports(c.env);
  if (foci.length > 0) body["org.matrix.msc4143.rtc_foci"] = foci;
  return c.json(body);
});
