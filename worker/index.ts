// The Worker entry: builds the Hono app from one route module per spec area, turns every error into
// a Matrix error response, and exports the Durable Object classes.
import { Hono, type Context } from "hono";
import { cors } from "hono/cors";
import { MatrixError, fromRpcError, unrecognized } from "../protocol/errors.js";
import type { AppEnv } from "./env.js";
import { serverKeyRoutes } from "./federation/keys.js";
import { federationVersionRoutes } from "./federation/version.js";
import { federationAuth, federationRoomAcl } from "./federation/auth.js";
import { federationMembershipRoutes } from "./federation/membership.js";
import { federationEventRoutes } from "./federation/events.js";
import { federationTransactionRoutes } from "./federation/transactions.js";
import { federationQueryRoutes } from "./federation/query.js";
import { accountKeyRoutes } from "./client/account-keys.js";
import { federationInviteRoutes } from "./federation/invites.js";
import { federationMediaRoutes } from "./federation/media.js";
import { federationUserKeysRoutes } from "./federation/user-keys.js";
import { federationPublicRoomsRoutes } from "./federation/public-rooms.js";
import { federationHierarchyRoutes } from "./federation/hierarchy.js";
import { openIdRoutes } from "./client/openid.js";
import { versionsRoutes } from "./client/versions.js";
import { profileRoutes } from "./client/profile.js";
import { accountDataRoutes } from "./client/account-data.js";
import { filterRoutes } from "./client/filter.js";
import { capabilitiesRoutes } from "./client/capabilities.js";
import { pushRulesRoutes } from "./client/push-rules.js";
import { pushersRoutes } from "./client/pushers.js";
import { userDirectoryRoutes } from "./client/user-directory.js";
import { wellKnownRoutes } from "./well-known.js";
import { registrationRoutes } from "./client/registration.js";
import { loginRoutes } from "./client/login.js";
import { logoutRoutes } from "./client/logout.js";
import { accountRoutes } from "./client/account.js";
import { deviceRoutes } from "./client/devices.js";
import { keysRoutes } from "./client/keys.js";
import { crossSigningRoutes } from "./client/cross-signing.js";
import { keyBackupRoutes } from "./client/key-backup.js";
import { toDeviceRoutes } from "./client/to-device.js";
import { adminRegisterRoutes } from "./admin/register.js";
import { adminRoutes } from "./admin/index.js";
import { allowedMethods, hasRoute } from "./method-not-allowed.js";
import { directoryRoutes } from "./client/directory.js";
import { publicRoomsRoutes } from "./client/public-rooms.js";
import { spaceHierarchyRoutes } from "./client/space-hierarchy.js";
import { roomsRoutes } from "./client/rooms.js";
import { roomMembershipRoutes } from "./client/room-membership.js";
import { roomSendRoutes } from "./client/room-send.js";
import { syncRoutes } from "./client/sync.js";
import { slidingSyncRoutes } from "./client/sliding-sync.js";
import { presenceRoutes } from "./client/presence.js";
import { roomEphemeralRoutes } from "./client/room-ephemeral.js";
import { roomMessagesRoutes } from "./client/room-messages.js";
import { roomMembersRoutes } from "./client/room-members.js";
import { relationsRoutes } from "./client/relations.js";
import { roomUpgradeRoutes } from "./client/room-upgrades.js";
import { reportingRoutes } from "./client/reporting.js";
import { mediaRoutes } from "./client/media.js";
import { appserviceRoutes } from "./appservice/routes.js";
import { voipRoutes } from "./client/voip.js";
import { delayedEventsRoutes } from "./client/delayed-events.js";
import { matrixRtcRoutes } from "./client/matrix-rtc.js";
import { searchRoutes } from "./client/search.js";
import { roomSummaryRoutes } from "./client/room-summary.js";

export { RoomDurableObject } from "../durable-objects/room.js";
export { UserDurableObject } from "../durable-objects/user.js";
export { DestinationDurableObject } from "../durable-objects/destination.js";
export { DelayedEventsDurableObject } from "../durable-objects/delayed-events.js";
export { AppserviceDurableObject } from "../durable-objects/appservice.js";

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

  // An unknown federation endpoint is 404 and a known one with the wrong method 405 (M_UNRECOGNIZED), before
  // any signature check (Complement's TestUnknownEndpoints; Synapse answers the same).
  app.use("/_matrix/federation/*", async (c, next) => {
    if (c.req.method !== "OPTIONS" && !hasRoute(app, c.req.path, c.req.method)) return unknownEndpoint(c);
    return next();
  });
  // Spec: Server-Server API, "Request Authentication": every federation request is X-Matrix signed.
  app.use("/_matrix/federation/*", federationAuth);
  // Spec: "Server Access Control Lists (ACLs)": the room endpoints refuse servers the room's ACL denies.
  app.use("/_matrix/federation/*", federationRoomAcl);

  app.route("/", wellKnownRoutes);
  app.route("/", versionsRoutes);
  app.route("/", profileRoutes);
  app.route("/", accountDataRoutes);
  app.route("/", filterRoutes);
  app.route("/", capabilitiesRoutes);
  app.route("/", pushRulesRoutes);
  app.route("/", pushersRoutes);
  app.route("/", userDirectoryRoutes);
  app.route("/", registrationRoutes);
  app.route("/", loginRoutes);
  app.route("/", logoutRoutes);
  app.route("/", accountRoutes);
  app.route("/", deviceRoutes);
  app.route("/", keysRoutes);
  app.route("/", crossSigningRoutes);
  app.route("/", keyBackupRoutes);
  app.route("/", toDeviceRoutes);
  app.route("/", adminRegisterRoutes);
  app.route("/", adminRoutes);
  app.route("/", directoryRoutes);
  app.route("/", publicRoomsRoutes);
  app.route("/", spaceHierarchyRoutes);
  app.route("/", roomsRoutes);
  app.route("/", roomMembershipRoutes);
  app.route("/", roomSendRoutes);
  app.route("/", syncRoutes);
  app.route("/", slidingSyncRoutes);
  app.route("/", presenceRoutes);
  app.route("/", roomEphemeralRoutes);
  app.route("/", roomMessagesRoutes);
  app.route("/", roomMembersRoutes);
  app.route("/", relationsRoutes);
  app.route("/", roomUpgradeRoutes);
  app.route("/", reportingRoutes);
  app.route("/", mediaRoutes);
  app.route("/", appserviceRoutes);
  app.route("/", searchRoutes);
  app.route("/", roomSummaryRoutes);
  app.route("/", serverKeyRoutes);
  app.route("/", federationVersionRoutes);
  app.route("/", federationMembershipRoutes);
  app.route("/", federationEventRoutes);
  app.route("/", federationTransactionRoutes);
  app.route("/", federationQueryRoutes);
  app.route("/", accountKeyRoutes);
  app.route("/", federationInviteRoutes);
  app.route("/", federationMediaRoutes);
  app.route("/", federationUserKeysRoutes);
  app.route("/", federationPublicRoomsRoutes);
  app.route("/", federationHierarchyRoutes);
  app.route("/", openIdRoutes);
  app.route("/", voipRoutes);
  app.route("/", delayedEventsRoutes);
  app.route("/", matrixRtcRoutes);

  // A known path with the wrong method is 405, an unknown path 404 (both M_UNRECOGNIZED).
  const unknownEndpoint = (c: Context<AppEnv>) => {
    const allowed = allowedMethods(app, c.req.path, c.req.method);
    if (allowed.length > 0) {
      return c.json(unrecognized("Unrecognized request: method not allowed", 405).toJSON(), 405, { Allow: allowed.join(", ") });
    }
    const e = unrecognized("Unrecognized request");
    return c.json(e.toJSON(), 404);
  };
  app.notFound(unknownEndpoint);

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
