// Client-Server API: Content repository (spec: "Content repository", data/api/client-server/
// authed-content-repo.yaml, content-repo.yaml). Uploads stream into R2 (worker/media/store.ts); downloads
// come from R2 with Synapse's safe-serving headers (worker/media/serve.ts); media of other servers is
// fetched over federation once and then served from R2 (worker/media/remote.ts).
//
// Authenticated media (MSC3916, spec v1.11) is served under /_matrix/client/v1/media. The legacy
// unauthenticated /_matrix/media/v3 download and thumbnail endpoints serve only media stored before
// MEDIA_LEGACY_FREEZE_TIME, as Synapse's `enable_authenticated_media` does (Synapse answers 404 for the rest).
import { Hono, type Context } from "hono";
import { MatrixError, forbidden, invalidParam, notFound, limitExceeded } from "../../protocol/errors.js";
import { requester, requireAuth } from "../auth.js";
import { rateLimit } from "../ratelimit.js";
import type { AppEnv, Env } from "../env.js";
import { RangeNotSatisfiable, fileResponse, parseRange, securityHeaders } from "../media/serve.js";
import {
  MEDIA_ID_PATTERN,
  contentKey,
  maxUploadSize,
  mediaRow,
  newMediaId,
  parseSize,
  storeContent,
  type MediaRow,
} from "../media/store.js";
import { fetchRemoteMedia } from "../media/remote.js";
import { thumbnailResponse } from "../media/thumbnail.js";
import { previewUrlResponse } from "../media/preview.js";

export const mediaRoutes = new Hono<AppEnv>();

/** Synapse's `max_pending_media_uploads`. */
const DEFAULT_MAX_PENDING_UPLOADS = 5;
/** Synapse's `unused_expiration_time` (24 h). */
const DEFAULT_UNUSED_EXPIRATION_MS = 24 * 60 * 60 * 1000;
/** Synapse's default and largest `timeout_ms` for a download of media not uploaded yet. */
const DEFAULT_WAIT_MS = 20_000;
const MAX_WAIT_MS = 60_000;
/** How often a waiting download looks whether the upload arrived. */
const WAIT_POLL_MS = 500;

const positiveInt = (raw: string | undefined, def: number) => {
  const n = raw === undefined || raw.trim() === "" ? NaN : Number(raw);
  return Number.isSafeInteger(n) && n >= 0 ? n : def;
};

/** Every media answer carries the safety headers, errors included (as Synapse's media resources). */
mediaRoutes.use("/_matrix/media/*", async (c, next) => {
  await next();
  securityHeaders(c.res.headers);
});
mediaRoutes.use("/_matrix/client/v1/media/*", async (c, next) => {
  await next();
  securityHeaders(c.res.headers);
});

// ---- configuration ----------------------------------------------------------------------------------

const config = (c: Context<AppEnv>) => c.json({ "m.upload.size": maxUploadSize(c.env) });
mediaRoutes.get("/_matrix/client/v1/media/config", requireAuth, config);
mediaRoutes.get("/_matrix/media/v3/config", requireAuth, config);
mediaRoutes.get("/_matrix/media/r0/config", requireAuth, config);

// ---- upload -----------------------------------------------------------------------------------------

/** The uploader's type; Synapse stores application/octet-stream when the request names none. */
function uploadContentType(c: Context<AppEnv>): string {
  const type = c.req.header("content-type")?.trim();
  return type === undefined || type === "" ? "application/octet-stream" : type;
}

function uploadFileName(c: Context<AppEnv>): string | null {
  const name = c.req.query("filename");
  return name === undefined || name === "" ? null : name;
}

/** Content-Length, if the request declares one (chunked bodies do not). Malformed is 400. */
function declaredLength(c: Context<AppEnv>): number | undefined {
  const raw = c.req.header("content-length");
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw.trim())) throw new MatrixError(400, "M_INVALID_PARAM", "Malformed Content-Length");
  return Number(raw.trim());
}

/**
 * A user's daily upload allowance (MEDIA_UPLOAD_LIMIT_PER_DAY, Synapse's `media_upload_limits`): uploads of the
 * last 24 h plus this one must fit: checked before storing with the declared size, and for a body without a
 * Content-Length again once it is stored (the file is deleted if it does not fit).
 */
async function checkUploadAllowance(env: Env, userId: string, adding: number): Promise<void> {
  const limit = parseSize(env.MEDIA_UPLOAD_LIMIT_PER_DAY);
  if (limit === undefined) return;
  const since = Date.now() - 24 * 60 * 60 * 1000;
  const row = await env.DB.prepare("SELECT coalesce(sum(size), 0) AS total FROM media WHERE user_id = ? AND uploaded_ts > ?")
    .bind(userId, since)
    .first<{ total: number }>();
  if ((row?.total ?? 0) + adding > limit) {
    throw new MatrixError(400, "M_RESOURCE_LIMIT_EXCEEDED", "You have exceeded your media upload limit", { limit_type: "media_upload" });
  }
}

/** Stores the request body as `mxc://SERVER_NAME/<mediaId>` and records it as uploaded by `userId`. */
async function receiveUpload(c: Context<AppEnv>, mediaId: string, userId: string, insert: boolean): Promise<void> {
  const env = c.env;
  const contentType = uploadContentType(c);
  const fileName = uploadFileName(c);
  const length = declaredLength(c);
  const max = maxUploadSize(env);
  if (length !== undefined && length > max) throw new MatrixError(413, "M_TOO_LARGE", `Upload is larger than the limit of ${max} bytes`);
  await checkUploadAllowance(env, userId, length ?? 0);
  const key = contentKey(env, env.SERVER_NAME, mediaId);
  const { size } = await storeContent(env.MEDIA, key, c.req.raw.body, length, max, contentType);
  if (length === undefined) {
    // A chunked body's size is known only now.
    try {
      await checkUploadAllowance(env, userId, size);
    } catch (e) {
      await env.MEDIA.delete(key);
      throw e;
    }
  }
  const now = Date.now();
  if (insert) {
    await env.DB.prepare(
      `INSERT INTO media (server_name, media_id, user_id, content_type, upload_name, size, created_ts, uploaded_ts)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    )
      .bind(env.SERVER_NAME, mediaId, userId, contentType, fileName, size, now, now)
      .run();
    return;
  }
  // An asynchronous upload: the row must still be pending (two concurrent PUTs: the second is refused).
  const updated = await env.DB.prepare(
    `UPDATE media SET content_type = ?, upload_name = ?, size = ?, uploaded_ts = ?, unused_expires_ts = NULL
      WHERE server_name = ? AND media_id = ? AND uploaded_ts IS NULL`,
  )
    .bind(contentType, fileName, size, now, env.SERVER_NAME, mediaId)
    .run();
  if (updated.meta.changes !== 1) throw cannotOverwrite();
}

const cannotOverwrite = () => new MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content");

async function upload(c: Context<AppEnv>) {
  const { userId } = requester(c);
  const mediaId = newMediaId();
  await receiveUpload(c, mediaId, userId, true);
  return c.json({ content_uri: `mxc://${c.env.SERVER_NAME}/${mediaId}` });
}
mediaRoutes.post("/_matrix/media/v3/upload", requireAuth, upload);
mediaRoutes.post("/_matrix/media/r0/upload", requireAuth, upload);

/** Spec: POST /_matrix/media/v1/create (v1.7): a media ID to upload to later, within `unused_expires_at`. */
mediaRoutes.post("/_matrix/media/v1/create", requireAuth, async (c) => {
  const { userId } = requester(c);
  const env = c.env;
  // Synapse's rc_media_create (10 per second, bursts of 50) per user, before the pending-ID count.
  await rateLimit(env, "RC_MEDIA_CREATE", userId);
  const now = Date.now();
  const maxPending = positiveInt(env.MEDIA_MAX_PENDING_UPLOADS, DEFAULT_MAX_PENDING_UPLOADS);
  const pending = await env.DB.prepare("SELECT count(*) AS n FROM media WHERE user_id = ? AND uploaded_ts IS NULL AND unused_expires_ts > ?")
    .bind(userId, now)
    .first<{ n: number }>();
  if ((pending?.n ?? 0) >= maxPending) {
    // Synapse: 429 M_LIMIT_EXCEEDED with the time until the oldest pending ID expires.
    const oldest = await env.DB.prepare("SELECT min(unused_expires_ts) AS t FROM media WHERE user_id = ? AND uploaded_ts IS NULL AND unused_expires_ts > ?")
      .bind(userId, now)
      .first<{ t: number }>();
    throw limitExceeded(Math.max(1, (oldest?.t ?? now) - now));
  }
  const expires = now + positiveInt(env.MEDIA_UNUSED_EXPIRATION_MS, DEFAULT_UNUSED_EXPIRATION_MS);
  const mediaId = newMediaId();
  await env.DB.prepare("INSERT INTO media (server_name, media_id, user_id, created_ts, unused_expires_ts) VALUES (?, ?, ?, ?, ?)")
    .bind(env.SERVER_NAME, mediaId, userId, now, expires)
    .run();
  return c.json({ content_uri: `mxc://${env.SERVER_NAME}/${mediaId}`, unused_expires_at: expires });
});

/** Spec: PUT /_matrix/media/v3/upload/{serverName}/{mediaId}: the content of a created ID, once, by its creator. */
mediaRoutes.put("/_matrix/media/v3/upload/:serverName/:mediaId", requireAuth, async (c) => {
  const { userId } = requester(c);
  const { serverName, mediaId } = c.req.param();
  const env = c.env;
  if (serverName !== env.SERVER_NAME) throw notFound("Cannot upload to media of another server");
  const row = MEDIA_ID_PATTERN.test(mediaId) ? await mediaRow(env, serverName, mediaId) : null;
  if (!row) throw notFound("Unknown media ID");
  if (row.user_id !== userId) throw forbidden("You may not upload to this media ID");
  if (row.uploaded_ts !== null) throw cannotOverwrite();
  if (row.unused_expires_ts !== null && row.unused_expires_ts <= Date.now()) throw notFound("Media ID has expired");
  await receiveUpload(c, mediaId, userId, false);
  return c.json({});
});

// ---- download ---------------------------------------------------------------------------------------

/** Synapse's `enable_authenticated_media` freeze: media created before this time stays on the legacy
 * endpoints. null: nothing does; Infinity: everything does ("off"). */
export function legacyFreezeTime(env: Pick<Env, "MEDIA_LEGACY_FREEZE_TIME">): number | null {
  const raw = env.MEDIA_LEGACY_FREEZE_TIME?.trim();
  if (raw === undefined || raw === "") return null;
  if (raw.toLowerCase() === "off") return Infinity;
  const t = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  if (Number.isNaN(t)) {
    console.warn("ignoring malformed MEDIA_LEGACY_FREEZE_TIME");
    return null;
  }
  return t;
}

function timeoutParam(c: Context<AppEnv>): number {
  const raw = c.req.query("timeout_ms");
  if (raw === undefined || raw === "") return DEFAULT_WAIT_MS;
  if (!/^\d+$/.test(raw)) throw invalidParam("timeout_ms must be a non-negative integer");
  return Math.min(Number(raw), MAX_WAIT_MS);
}

export interface MediaLocation {
  serverName: string;
  mediaId: string;
}

/**
 * The stored media a download or thumbnail request names: local media (waiting up to `timeout_ms` for an
 * asynchronous upload to arrive; spec: 504 M_NOT_YET_UPLOADED), or remote media from the R2 cache or fetched
 * over federation now. `legacy` applies the freeze and never fetches remote media for new.
 */
export async function resolveMedia(c: Context<AppEnv>, { legacy }: { legacy: boolean }): Promise<MediaRow> {
  const env = c.env;
  const { serverName, mediaId } = c.req.param() as unknown as MediaLocation;
  if (!MEDIA_ID_PATTERN.test(mediaId) || serverName === "") throw notFound("Not found");
  const timeoutMs = timeoutParam(c);
  let row = await mediaRow(env, serverName, mediaId);
  const local = serverName === env.SERVER_NAME;
  if (local) {
    const deadline = Date.now() + timeoutMs;
    while (row && row.uploaded_ts === null) {
      if (row.unused_expires_ts !== null && row.unused_expires_ts <= Date.now()) throw notFound("Not found");
      if (Date.now() >= deadline) throw new MatrixError(504, "M_NOT_YET_UPLOADED", "Media has not been uploaded yet");
      await new Promise((resolve) => setTimeout(resolve, Math.min(WAIT_POLL_MS, Math.max(0, deadline - Date.now()))));
      row = await mediaRow(env, serverName, mediaId);
    }
  } else if (!row || row.uploaded_ts === null) {
    // Synapse's legacy endpoints still fetch remote media with allow_remote; under a freeze anything
    // fetched now is newer than the freeze and would be refused below, so they fetch only without one
    // (MEDIA_LEGACY_FREEZE_TIME=off: Synapse's `enable_authenticated_media: false`).
    if ((legacy && legacyFreezeTime(env) !== Infinity) || c.req.query("allow_remote") === "false") throw notFound("Not found");
    row = await fetchRemoteMedia(env, serverName, mediaId, timeoutMs);
  }
  if (!row) throw notFound("Not found");
  // Synapse admin API "Quarantine media": quarantined files are not served.
  if (row.quarantined_by !== null) throw notFound("Not found");
  if (legacy) {
    const freeze = legacyFreezeTime(env);
    if (freeze === null || row.created_ts >= freeze) throw notFound("Not found");
  }
  return row;
}

/** Answers with the file (or the requested Range of it). */
export async function serveFile(c: Context<AppEnv>, row: MediaRow, fileName: string | undefined): Promise<Response> {
  const env = c.env;
  const size = row.size ?? 0;
  const contentType = row.content_type ?? "application/octet-stream";
  const head = c.req.method === "HEAD";
  let range;
  try {
    range = parseRange(c.req.header("range"), size);
  } catch (e) {
    if (e instanceof RangeNotSatisfiable) {
      const res = c.json(e.toJSON(), 416);
      res.headers.set("Content-Range", `bytes */${size}`);
      return res;
    }
    throw e;
  }
  const object = await env.MEDIA.get(contentKey(env, row.server_name, row.media_id), range ? { range } : undefined);
  if (!object) throw notFound("Media content is missing");
  return fileResponse(object, { contentType, fileName: fileName ?? row.upload_name, size }, range, head);
}

const download = (legacy: boolean) => async (c: Context<AppEnv>) => {
  const row = await resolveMedia(c, { legacy });
  return serveFile(c, row, c.req.param("fileName"));
};

mediaRoutes.get("/_matrix/client/v1/media/download/:serverName/:mediaId", requireAuth, download(false));
mediaRoutes.get("/_matrix/client/v1/media/download/:serverName/:mediaId/:fileName", requireAuth, download(false));
for (const prefix of ["/_matrix/media/v3/download", "/_matrix/media/r0/download"]) {
  mediaRoutes.get(`${prefix}/:serverName/:mediaId`, download(true));
  mediaRoutes.get(`${prefix}/:serverName/:mediaId/:fileName`, download(true));
}

// ---- thumbnails -------------------------------------------------------------------------------------

const thumbnail = (legacy: boolean) => async (c: Context<AppEnv>) => {
  const row = await resolveMedia(c, { legacy });
  return thumbnailResponse(c, row);
};
mediaRoutes.get("/_matrix/client/v1/media/thumbnail/:serverName/:mediaId", requireAuth, thumbnail(false));
mediaRoutes.get("/_matrix/media/v3/thumbnail/:serverName/:mediaId", thumbnail(true));
mediaRoutes.get("/_matrix/media/r0/thumbnail/:serverName/:mediaId", thumbnail(true));

// ---- URL previews -----------------------------------------------------------------------------------

mediaRoutes.get("/_matrix/client/v1/media/preview_url", requireAuth, (c) => previewUrlResponse(c, requester(c).userId));
mediaRoutes.get("/_matrix/media/v3/preview_url", requireAuth, (c) => previewUrlResponse(c, requester(c).userId));
