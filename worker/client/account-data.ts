// Client-Server API: Client Config, i.e. account data (spec: "Client Config",
// data/api/client-server/account-data.yaml), and Room Tagging (spec: "Room Tagging", tags.yaml), which is
// the room's `m.tag` account data. Stored in the user's Durable Object, where each write gets a stream
// position for /sync.
//
// Bodies here are any JSON a client keeps for itself, so floats are accepted (canonical: false), as
// Synapse does: a tag's `order` is a number in [0, 1] by the spec, and clients store floats in account
// data. Nothing here becomes part of a signed event.
import { Hono, type Context } from "hono";
import { MatrixError, invalidParam, notFound } from "../../protocol/errors.js";
import { isJsonObject } from "../../protocol/json.js";
import { requireAuth } from "../auth.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { jsonText, requireSelf, userStore } from "../user-store.js";
import { pushRulesContent } from "./push-rules.js";

/** Types the server manages through their own APIs; clients may not set them here (spec: PUT
 * account_data, 405 "This type of account data is controlled by the server"; Synapse refuses exactly
 * these two, with 405 M_BAD_JSON). */
const SERVER_MANAGED: Record<string, string> = {
  "m.fully_read": "Cannot set m.fully_read through this API. Use /rooms/{roomId}/read_markers",
  "m.push_rules": "Cannot set m.push_rules through this API. Use /pushrules",
};

const encoder = new TextEncoder();

/** Event types are limited to 255 bytes like every Matrix identifier (account data is delivered as
 * events in /sync). */
function accountDataType(c: Context<AppEnv>): string {
  const type = c.req.param("type")!;
  if (type === "" || encoder.encode(type).length > 255) throw invalidParam("Invalid account data type");
  return type;
}

/** Spec: "400 ... the given roomID is not a valid room ID (M_INVALID_PARAM)". Room IDs are `!` plus an
 * opaque part (v12 room IDs have no `:server`), at most 255 bytes. */
function roomIdParam(c: Context<AppEnv>): string {
  const roomId = c.req.param("roomId")!;
  if (!/^![^\s]+$/.test(roomId) || encoder.encode(roomId).length > 255) {
    throw invalidParam(`${roomId} is not a valid room ID`);
  }
  return roomId;
}

function refuseServerManaged(type: string): void {
  const message = SERVER_MANAGED[type];
  if (message !== undefined) throw new MatrixError(405, "M_BAD_JSON", message);
}

export const accountDataRoutes = new Hono<AppEnv>();
const U = "/_matrix/client/:version{v3|r0}/user/:userId";

// PUT /_matrix/client/v3/user/{userId}/account_data/{type}
accountDataRoutes.put(`${U}/account_data/:type`, requireAuth, async (c) => {
  const userId = requireSelf(c, c.req.param("userId"), "Cannot add account data for other users.");
  const type = accountDataType(c);
  refuseServerManaged(type);
  const content = await readJsonObject(c, { allowEmpty: false, canonical: false });
  await userStore(c.env, userId).setAccountData(null, type, content);
  return c.json({});
});

// GET /_matrix/client/v3/user/{userId}/account_data/{type}
accountDataRoutes.get(`${U}/account_data/:type`, requireAuth, async (c) => {
  const userId = requireSelf(c, c.req.param("userId"), "Cannot get account data for other users.");
  const type = accountDataType(c);
  if (type === "m.push_rules") {
    // The push rules are account data as far as clients can see (they arrive in /sync that way), but
    // are stored as a customisation of the defaults: answer the effective ruleset, as Synapse does.
    return c.json(await pushRulesContent(c.env, userId));
  }
  const content = await userStore(c.env, userId).getAccountData(null, type);
  if (content === null) throw notFound("Account data not found");
  return jsonText(c, content);
});

// PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
accountDataRoutes.put(`${U}/rooms/:roomId/account_data/:type`, requireAuth, async (c) => {
  const userId = requireSelf(c, c.req.param("userId"), "Cannot add account data for other users.");
  const roomId = roomIdParam(c);
  const type = accountDataType(c);
  refuseServerManaged(type);
  const content = await readJsonObject(c, { allowEmpty: false, canonical: false });
  await userStore(c.env, userId).setAccountData(roomId, type, content);
  return c.json({});
});

// GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
accountDataRoutes.get(`${U}/rooms/:roomId/account_data/:type`, requireAuth, async (c) => {
  const userId = requireSelf(c, c.req.param("userId"), "Cannot get account data for other users.");
  const roomId = roomIdParam(c);
  const type = accountDataType(c);
  const content = await userStore(c.env, userId).getAccountData(roomId, type);
  if (content === null) throw notFound("Room account data not found");
  return jsonText(c, content);
});

// GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags
accountDataRoutes.get(`${U}/rooms/:roomId/tags`, requireAuth, async (c) => {
  const userId = requireSelf(c, c.req.param("userId"), "Cannot get another user's tags");
  const roomId = roomIdParam(c);
  const stored = await userStore(c.env, userId).getAccountData(roomId, "m.tag");
  const parsed: unknown = stored === null ? null : JSON.parse(stored);
  const tags = isJsonObject(parsed) && isJsonObject(parsed.tags) ? parsed.tags : {};
  return c.json({ tags });
});

/** Tag names are at most 255 bytes (Synapse); the spec reserves the `m.` namespace, which clients use. */
function tagParam(c: Context<AppEnv>): string {
  const tag = c.req.param("tag")!;
  if (tag === "" || encoder.encode(tag).length > 255) throw invalidParam("Invalid tag");
  return tag;
}

// PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}
accountDataRoutes.put(`${U}/rooms/:roomId/tags/:tag`, requireAuth, async (c) => {
  const userId = requireSelf(c, c.req.param("userId"), "Cannot add tags for other users");
  const roomId = roomIdParam(c);
  const tag = tagParam(c);
  const content = await readJsonObject(c, { allowEmpty: false, canonical: false });
  // Spec: `order` is a number (Synapse refuses anything else with M_INVALID_PARAM).
  if (content.order !== undefined && typeof content.order !== "number") throw invalidParam("'order' must be a number");
  await userStore(c.env, userId).setRoomTag(roomId, tag, content);
  return c.json({});
});

// DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}: removing an absent tag is fine.
accountDataRoutes.delete(`${U}/rooms/:roomId/tags/:tag`, requireAuth, async (c) => {
  const userId = requireSelf(c, c.req.param("userId"), "Cannot remove tags for other users");
  const roomId = roomIdParam(c);
  await userStore(c.env, userId).setRoomTag(roomId, tagParam(c), null);
  return c.json({});
});
