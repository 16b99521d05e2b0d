// Server-Server API: queries (spec: "Querying for information": directory and profile;
// data/api/server-server/query.yaml). Answered from D1 for our own users and aliases only.
import { Hono } from "hono";
import { invalidParam, missingParam, notFound } from "../../protocol/errors.js";
import { parseRoomAlias, resolveRoomAlias } from "../directory-store.js";
import type { AppEnv } from "../env.js";
import { isLocalUserId } from "../auth.js";
import { isValidUserId } from "../../protocol/auth-rules.js";
import { localProfile } from "../client/profile.js";
import { requestOrigin } from "./auth.js";

export const federationQueryRoutes = new Hono<AppEnv>();

// GET /_matrix/federation/v1/query/directory?room_alias=
federationQueryRoutes.get("/_matrix/federation/v1/query/directory", async (c) => {
  requestOrigin(c);
  const alias = c.req.query("room_alias");
  if (alias === undefined) throw missingParam("Missing room_alias");
  if (!parseRoomAlias(alias)) throw invalidParam("Invalid room alias");
  const resolved = await resolveRoomAlias(c.env, alias);
  if (!resolved) throw notFound("Room alias not found");
  return c.json({ room_id: resolved.roomId, servers: resolved.servers });
});

// GET /_matrix/federation/v1/query/profile?user_id=&field=
federationQueryRoutes.get("/_matrix/federation/v1/query/profile", async (c) => {
  requestOrigin(c);
  const userId = c.req.query("user_id");
  if (userId === undefined) throw missingParam("Missing user_id");
  if (!isValidUserId(userId) || !isLocalUserId(userId, c.env)) throw invalidParam("User is not local to this server");
  const field = c.req.query("field");
  if (field !== undefined && field !== "displayname" && field !== "avatar_url") throw invalidParam("Unknown profile field");
  const profile = await localProfile(c.env, userId);
  if (!profile) throw notFound("Profile was not found");
  const out: Record<string, string> = {};
  if ((field === undefined || field === "displayname") && profile.displayname !== undefined) out.displayname = profile.displayname;
  if ((field === undefined || field === "avatar_url") && profile.avatar_url !== undefined) out.avatar_url = profile.avatar_url;
  return c.json(out);
});
