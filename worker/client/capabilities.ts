// Client-Server API: Capabilities negotiation (spec: "Capabilities negotiation",
// data/api/client-server/capabilities.yaml).
import { Hono } from "hono";
import { ROOM_VERSIONS } from "../../protocol/room-versions.js";
import { requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { defaultRoomVersion } from "../room-version-setting.js";

/** The capabilities every user of this server has. Room versions come from protocol/room-versions.ts,
 * so adding a version there advertises it here. */
export function capabilities(env: Pick<Env, "DEFAULT_ROOM_VERSION">): Record<string, unknown> {
  const available: Record<string, "stable" | "unstable"> = {};
  for (const [id, rules] of ROOM_VERSIONS) available[id] = rules.stable ? "stable" : "unstable";
  return {
    "m.change_password": { enabled: true },
    "m.room_versions": { default: defaultRoomVersion(env), available },
    "m.set_displayname": { enabled: true },
    "m.set_avatar_url": { enabled: true },
    // No third-party identifiers (email, phone) on this server.
    "m.3pid_changes": { enabled: false },
  };
}

export const capabilitiesRoutes = new Hono<AppEnv>();

// GET /_matrix/client/v3/capabilities
capabilitiesRoutes.get("/_matrix/client/:version{v3|r0}/capabilities", requireAuth, (c) => c.json({ capabilities: capabilities(c.env) }));
