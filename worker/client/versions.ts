// Client-Server API: server discovery of supported spec versions.
import { Hono } from "hono";
import type { AppEnv } from "../env.js";

export const SUPPORTED_SPEC_VERSIONS = ["v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15"];

export const versionsRoutes = new Hono<AppEnv>();

// GET /_matrix/client/versions
versionsRoutes.get("/_matrix/client/versions", (c) =>
  c.json({
    versions: SUPPORTED_SPEC_VERSIONS,
    unstable_features: {
      // MSC4140 delayed events (worker/client/delayed-events.ts).
      "org.matrix.msc4140": true,
      // MSC4143 MatrixRTC transport discovery (worker/client/matrix-rtc.ts).
      "org.matrix.msc4143": true,
      // MSC4186 simplified sliding sync (worker/client/sliding-sync.ts).
      "org.matrix.simplified_msc3575": true,
      // MSC4354 sticky events (worker/client/sticky-events.ts).
      "org.matrix.msc4354": true,
    },
  }),
);
