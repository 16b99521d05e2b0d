// Server-Server API: GET /_matrix/federation/v1/version. Spec: "Server implementation".
import { Hono } from "hono";
import type { AppEnv } from "../env.js";

export const SERVER_SOFTWARE = { name: "Myelin", version: "0.1.0" };

export const federationVersionRoutes = new Hono<AppEnv>();

// GET /_matrix/federation/v1/version
federationVersionRoutes.get("/_matrix/federation/v1/version", (c) => c.json({ server: SERVER_SOFTWARE }));
