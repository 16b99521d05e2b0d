// Synapse admin API: media (Synapse docs/admin_api/media_admin_api.md and the user media endpoints of
// user_admin_api.md). Metadata rows are in D1 `media`, bytes and thumbnails in R2 (worker/media/store.ts);
// a quarantined file keeps its row with `quarantined_by` set and is no longer served (worker/client/media.ts,
// worker/federation/media.ts). The media of a room are the `mxc://` URIs its events name (Room DO).
import { Hono, type Context } from "hono";
import { MatrixError, notFound } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import { localpartOf, requester } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { requireRoomId, roomStub } from "../room-store.js";
import { MEDIA_ID_PATTERN, contentKey, type MediaRow } from "../media/store.js";
import { containsPattern, dirQuery, pageQuery, requireAdmin } from "./auth.js";

export const adminMediaRoutes = new Hono<AppEnv>();

const ORDER_COLUMNS: Record<string, string> = {
  media_id: "media_id",
  upload_name: "upload_name",
  created_ts: "created_ts",
  last_access_ts: "created_ts", // access times are not kept
  media_length: "size",
  media_type: "content_type",
  quarantined_by: "quarantined_by",
  safe_from_quarantine: "safe_from_quarantine",
};

function mediaJson(row: MediaRow): JsonObject {
  return {
    media_id: row.media_id,
    media_type: row.content_type,
    media_length: row.size,
    upload_name: row.upload_name,
    created_ts: row.created_ts,
    last_access_ts: null,
    quarantined_by: row.quarantined_by,
    safe_from_quarantine: row.safe_from_quarantine !== 0,
  };
}

function localUserParam(c: Context<AppEnv>): string {
  const userId = c.req.param("userId") ?? "";
  if (localpartOf(userId, c.env) === undefined) throw new MatrixError(400, "M_UNKNOWN", "Can only look up local users");
  return userId;
}

async function requireUser(env: Env, userId: string): Promise<void> {
  if (!(await env.DB.prepare("SELECT 1 FROM users WHERE user_id = ?").bind(userId).first())) throw notFound("Unknown user");
}

/** One page of a user's uploads, as the list and the delete read it. */
async function userMediaPage(c: Context<AppEnv>, userId: string): Promise<{ rows: MediaRow[]; total: number; next?: number }> {
  const { from, limit } = pageQuery(c.req.query("from"), c.req.query("limit"));
  const orderBy = c.req.query("order_by") ?? "created_ts";
  const column = ORDER_COLUMNS[orderBy];
  if (column === undefined) throw new MatrixError(400, "M_INVALID_PARAM", `Unknown value for order_by: ${orderBy}`);
  const dir = dirQuery(c.req.query("dir")) === "b" ? "DESC" : "ASC";
  const where = "server_name = ? AND user_id = ?";
  const rows = (
    await c.env.DB.prepare(`SELECT * FROM media WHERE ${where} ORDER BY ${column} ${dir}, media_id ASC LIMIT ? OFFSET ?`)
      .bind(c.env.SERVER_NAME, userId, limit, from)
      .all<MediaRow>()
  ).results;
  const total = (await c.env.DB.prepare(`SELECT count(*) AS n FROM media WHERE ${where}`).bind(c.env.SERVER_NAME, userId).first<{ n: number }>())?.n ?? 0;
  return { rows, total, next: from + rows.length < total ? from + rows.length : undefined };
}

/** Deletes local files: their bytes and thumbnails in R2, then their rows. Returns the media IDs deleted. */
async function deleteLocalMedia(env: Env, mediaIds: string[]): Promise<string[]> {
  const deleted: string[] = [];
  for (const mediaId of mediaIds) {
    const key = contentKey(env, env.SERVER_NAME, mediaId);
    const keys = [key];
    let cursor: string | undefined;
    do {
      const listed = await env.MEDIA.list({ prefix: `thumbnail/${key}/`, cursor });
      keys.push(...listed.objects.map((o) => o.key));
      cursor = listed.truncated ? listed.cursor : undefined;
    } while (cursor !== undefined);
    await env.MEDIA.delete(keys);
    await env.DB.prepare("DELETE FROM media WHERE server_name = ? AND media_id = ?").bind(env.SERVER_NAME, mediaId).run();
    deleted.push(mediaId);
  }
  return deleted;
}

// GET /_synapse/admin/v1/users/{userId}/media
adminMediaRoutes.get("/_synapse/admin/v1/users/:userId/media", requireAdmin, async (c) => {
  const userId = localUserParam(c);
  await requireUser(c.env, userId);
  const page = await userMediaPage(c, userId);
  const body: JsonObject = { media: page.rows.map(mediaJson), total: page.total };
  if (page.next !== undefined) body.next_token = page.next;
  return c.json(body);
});

// DELETE /_synapse/admin/v1/users/{userId}/media: deletes the page the same parameters would list.
adminMediaRoutes.delete("/_synapse/admin/v1/users/:userId/media", requireAdmin, async (c) => {
  const userId = localUserParam(c);
  await requireUser(c.env, userId);
  const page = await userMediaPage(c, userId);
  const deleted = await deleteLocalMedia(c.env, page.rows.map((r) => r.media_id));
  return c.json({ deleted_media: deleted, total: deleted.length });
});

function mediaParams(c: Context<AppEnv>): { serverName: string; mediaId: string } {
  const serverName = c.req.param("serverName") ?? "";
  const mediaId = c.req.param("mediaId") ?? "";
  if (!MEDIA_ID_PATTERN.test(mediaId)) throw notFound("Unknown media");
  return { serverName, mediaId };
}

// DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}
adminMediaRoutes.delete("/_synapse/admin/v1/media/:serverName/:mediaId", requireAdmin, async (c) => {
  const { serverName, mediaId } = mediaParams(c);
  if (serverName !== c.env.SERVER_NAME) throw new MatrixError(400, "M_UNKNOWN", "Can only delete local media");
  const row = await c.env.DB.prepare("SELECT 1 FROM media WHERE server_name = ? AND media_id = ?").bind(serverName, mediaId).first();
  if (!row) throw notFound("Unknown media");
  const deleted = await deleteLocalMedia(c.env, [mediaId]);
  return c.json({ deleted_media: deleted, total: deleted.length });
});

// POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId} (also applies to protected files: an
// explicit quarantine of one file wins, as in Synapse).
adminMediaRoutes.post("/_synapse/admin/v1/media/quarantine/:serverName/:mediaId", requireAdmin, async (c) => {
  const { serverName, mediaId } = mediaParams(c);
  await c.env.DB.prepare("UPDATE media SET quarantined_by = ? WHERE server_name = ? AND media_id = ?").bind(requester(c).userId, serverName, mediaId).run();
  return c.json({});
});

// POST /_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}
adminMediaRoutes.post("/_synapse/admin/v1/media/unquarantine/:serverName/:mediaId", requireAdmin, async (c) => {
  const { serverName, mediaId } = mediaParams(c);
  await c.env.DB.prepare("UPDATE media SET quarantined_by = NULL WHERE server_name = ? AND media_id = ?").bind(serverName, mediaId).run();
  return c.json({});
});

// POST /_synapse/admin/v1/media/protect/{mediaId}: a local file that room and user quarantines skip.
adminMediaRoutes.post("/_synapse/admin/v1/media/protect/:mediaId", requireAdmin, async (c) => {
  const mediaId = c.req.param("mediaId");
  await c.env.DB.prepare("UPDATE media SET safe_from_quarantine = 1 WHERE server_name = ? AND media_id = ?").bind(c.env.SERVER_NAME, mediaId).run();
  return c.json({});
});

// POST /_synapse/admin/v1/media/unprotect/{mediaId}
adminMediaRoutes.post("/_synapse/admin/v1/media/unprotect/:mediaId", requireAdmin, async (c) => {
  const mediaId = c.req.param("mediaId");
  await c.env.DB.prepare("UPDATE media SET safe_from_quarantine = 0 WHERE server_name = ? AND media_id = ?").bind(c.env.SERVER_NAME, mediaId).run();
  return c.json({});
});

// POST /_synapse/admin/v1/user/{userId}/media/quarantine
adminMediaRoutes.post("/_synapse/admin/v1/user/:userId/media/quarantine", requireAdmin, async (c) => {
  const userId = localUserParam(c);
  const result = await c.env.DB.prepare(
    "UPDATE media SET quarantined_by = ? WHERE server_name = ? AND user_id = ? AND safe_from_quarantine = 0 AND quarantined_by IS NULL",
  )
    .bind(requester(c).userId, c.env.SERVER_NAME, userId)
    .run();
  return c.json({ num_quarantined: result.meta.changes ?? 0 });
});

/** The room's `mxc://` URIs split into (server name, media ID). */
async function roomMedia(env: Env, roomId: string): Promise<{ serverName: string; mediaId: string; uri: string }[]> {
  const room = roomStub(env, roomId);
  if ((await room.roomInfo()) === null) throw notFound("Room not found");
  const out = [];
  for (const uri of await room.adminMediaInRoom()) {
    const m = /^mxc:\/\/([^/]+)\/([A-Za-z0-9_-]+)$/.exec(uri);
    if (m) out.push({ serverName: m[1]!, mediaId: m[2]!, uri });
  }
  return out;
}

// GET /_synapse/admin/v1/room/{roomId}/media
adminMediaRoutes.get("/_synapse/admin/v1/room/:roomId/media", requireAdmin, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const media = await roomMedia(c.env, roomId);
  return c.json({
    local: media.filter((m) => m.serverName === c.env.SERVER_NAME).map((m) => m.uri),
    remote: media.filter((m) => m.serverName !== c.env.SERVER_NAME).map((m) => m.uri),
  });
});

// POST /_synapse/admin/v1/room/{roomId}/media/quarantine: local files and cached remote copies.
adminMediaRoutes.post("/_synapse/admin/v1/room/:roomId/media/quarantine", requireAdmin, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const media = await roomMedia(c.env, roomId);
  const admin = requester(c).userId;
  let count = 0;
  for (let i = 0; i < media.length; i += 50) {
    const results = await c.env.DB.batch(
      media.slice(i, i + 50).map((m) =>
        c.env.DB.prepare("UPDATE media SET quarantined_by = ? WHERE server_name = ? AND media_id = ? AND safe_from_quarantine = 0 AND quarantined_by IS NULL").bind(
          admin,
          m.serverName,
          m.mediaId,
        ),
      ),
    );
    for (const r of results) count += r.meta.changes ?? 0;
  }
  return c.json({ num_quarantined: count });
});

// GET /_synapse/admin/v1/statistics/users/media (Synapse docs/admin_api/statistics.md): local uploads per
// user, with `from`, `limit`, `order_by` (user_id, displayname, media_length, media_count), `dir`,
// `from_ts`, `until_ts` (upload times, ms) and `search_term` (user ID or display name contains).
adminMediaRoutes.get("/_synapse/admin/v1/statistics/users/media", requireAdmin, async (c) => {
  const { from, limit } = pageQuery(c.req.query("from"), c.req.query("limit"));
  const orderBy = c.req.query("order_by") ?? "user_id";
  const column = { user_id: "m.user_id", displayname: "u.displayname", media_length: "media_length", media_count: "media_count" }[orderBy];
  if (column === undefined) throw new MatrixError(400, "M_INVALID_PARAM", `Unknown value for order_by: ${orderBy}`);
  const dir = dirQuery(c.req.query("dir")) === "b" ? "DESC" : "ASC";
  const ts = (name: string): number | undefined => {
    const raw = c.req.query(name);
    if (raw === undefined || raw === "") return undefined;
    if (!/^\d{1,15}$/.test(raw)) throw new MatrixError(400, "M_INVALID_PARAM", `Query parameter ${name} must be a string representing a positive integer.`);
    return Number(raw);
  };
  const fromTs = ts("from_ts");
  const untilTs = ts("until_ts");
  if (fromTs !== undefined && untilTs !== undefined && untilTs < fromTs) throw new MatrixError(400, "M_INVALID_PARAM", "Query parameter until_ts must be greater than from_ts.");
  const where = ["m.server_name = ?", "m.user_id IS NOT NULL", "m.uploaded_ts IS NOT NULL"];
  const params: unknown[] = [c.env.SERVER_NAME];
  if (fromTs !== undefined) (where.push("m.created_ts >= ?"), params.push(fromTs));
  if (untilTs !== undefined) (where.push("m.created_ts <= ?"), params.push(untilTs));
  const search = c.req.query("search_term");
  if (search !== undefined) {
    if (search === "") throw new MatrixError(400, "M_INVALID_PARAM", "Query parameter search_term cannot be an empty string.");
    where.push("(m.user_id LIKE ? ESCAPE '\\' OR u.displayname LIKE ? ESCAPE '\\')");
    params.push(containsPattern(search), containsPattern(search));
  }
  const base = `FROM media m LEFT JOIN users u ON u.user_id = m.user_id WHERE ${where.join(" AND ")}`;
  const rows = (
    await c.env.DB.prepare(
      `SELECT m.user_id AS user_id, u.displayname AS displayname, count(*) AS media_count, coalesce(sum(m.size), 0) AS media_length ${base}
        GROUP BY m.user_id ORDER BY ${column} ${dir}, m.user_id ASC LIMIT ? OFFSET ?`,
    )
      .bind(...params, limit, from)
      .all<{ user_id: string; displayname: string | null; media_count: number; media_length: number }>()
  ).results;
  const total = (await c.env.DB.prepare(`SELECT count(DISTINCT m.user_id) AS n ${base}`).bind(...params).first<{ n: number }>())?.n ?? 0;
  const body: JsonObject = { users: rows, total };
  if (from + rows.length < total) body.next_token = from + rows.length;
  return c.json(body as JsonObject);
});
