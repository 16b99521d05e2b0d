// The Worker entry: builds the Hono app from one route module per spec area, turns every error into
// a Matrix error response, and exports the Durable Object classes.
import { Hono } from "hono";
import { cors } from "hono/cors";
import { MatrixError, fromRpcError, unrecognized } from "../protocol/errors.js";
import type { AppEnv } from "./env.js";
import { serverKeyRoutes } from "./federation/keys.js";
import { federationVersionRoutes } from "./federation/version.js";
import { versionsRoutes } from "./client/versions.js";
import { wellKnownRoutes } from "./well-known.js";

export { RoomDurableObject } from "../durable-objects/room.js";
export { UserDurableObject } from "../durable-objects/user.js";

export function buildApp(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  // Spec: Client-Server API, "Web Browser Clients": every response carries these CORS headers.
  app.use(
    "*",
    cors({
      origin: "*",
      allowMethods: ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"],
      allowHeaders: ["X-Requested-With", "Content-Type", "Authorization"],
    }),
  );

  app.route("/", wellKnownRoutes);
  app.route("/", versionsRoutes);
  app.route("/", serverKeyRoutes);
  app.route("/", federationVersionRoutes);

  app.notFound((c) => {
    const e = unrecognized("Unrecognized request");
    return c.json(e.toJSON(), 404);
  });

  app.onError((err, c) => {
    const e = fromRpcError(err);
    if (e instanceof MatrixError) {
      return c.json(e.toJSON(), e.status as 400);
    }
    console.error("unhandled error", e instanceof Error ? e.stack : e);
    return c.json({ errcode: "M_UNKNOWN", error: "Internal server error" }, 500);
  });

  return app;
}

const app = buildApp();
export default app;
