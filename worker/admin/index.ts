// The server administration API: a Synapse-compatible subset under /_synapse/admin (README "Admin API"),
// for tools such as synapse-admin. Every endpoint but shared-secret registration is for admins only.
import { Hono } from "hono";
import type { AppEnv } from "../env.js";
import { adminDeviceRoutes } from "./devices.js";
import { adminMediaRoutes } from "./media.js";
import { adminRegistrationTokenRoutes } from "./registration-tokens.js";
import { adminReportRoutes } from "./reports.js";
import { adminRoomRoutes } from "./rooms.js";
import { adminServerNoticeRoutes } from "./server-notices.js";
import { adminUserRoutes } from "./users.js";
import { SERVER_SOFTWARE } from "../federation/version.js";

export const adminRoutes = new Hono<AppEnv>();
adminRoutes.route("/", adminUserRoutes);
adminRoutes.route("/", adminRoomRoutes);
adminRoutes.route("/", adminRegistrationTokenRoutes);
adminRoutes.route("/", adminReportRoutes);
adminRoutes.route("/", adminServerNoticeRoutes);
adminRoutes.route("/", adminMediaRoutes);
adminRoutes.route("/", adminDeviceRoutes);

// GET /_synapse/admin/v1/server_version: unauthenticated in Synapse too; admin tools read it at login.
adminRoutes.get("/_synapse/admin/v1/server_version", (c) => c.json({ server_version: `${SERVER_SOFTWARE.name} ${SERVER_SOFTWARE.version}` }));
