// Server-Server API: Content Repository (spec v1.11: GET /_matrix/federation/v1/media/download/{mediaId} and
// /thumbnail/{mediaId}). Other servers fetch our local media here, X-Matrix authenticated (the federationAuth
// middleware), as multipart/mixed: a JSON part (`{}`; reserved for linked media) and the file.
import { Hono, type Context } from "hono";
import { MatrixError, invalidParam, notFound } from "../../protocol/errors.js";
import type { AppEnv } from "../env.js";
import { multipartBody, newBoundary } from "../media/multipart.js";
import { contentDisposition } from "../media/serve.js";
import { MEDIA_ID_PATTERN, contentKey, mediaRow, type MediaRow } from "../media/store.js";
import { requestOrigin } from "./auth.js";
import { thumbnailForFederation } from "../media/thumbnail.js";

export const federationMediaRoutes = new Hono<AppEnv>();

/** Synapse's default and largest `timeout_ms` for media not uploaded yet. */
const DEFAULT_WAIT_MS = 20_000;
const MAX_WAIT_MS = 60_000;
const WAIT_POLL_MS = 500;

/** A local media row with content, waiting for an asynchronous upload up to `timeout_ms`. */
async function localMedia(c: Context<AppEnv>): Promise<MediaRow> {
  requestOrigin(c);
  const env = c.env;
  const mediaId = c.req.param("mediaId") ?? "";
  if (!MEDIA_ID_PATTERN.test(mediaId)) throw notFound("Not found");
  const raw = c.req.query("timeout_ms");
  if (raw !== undefined && raw !== "" && !/^\d+$/.test(raw)) throw invalidParam("timeout_ms must be a non-negative integer");
  const deadline = Date.now() + Math.min(raw ? Number(raw) : DEFAULT_WAIT_MS, MAX_WAIT_MS);
  let row = await mediaRow(env, env.SERVER_NAME, mediaId);
  while (row && row.uploaded_ts === null) {
    if (row.unused_expires_ts !== null && row.unused_expires_ts <= Date.now()) break;
    if (Date.now() >= deadline) throw new MatrixError(504, "M_NOT_YET_UPLOADED", "Media has not been uploaded yet");
    await new Promise((resolve) => setTimeout(resolve, Math.min(WAIT_POLL_MS, Math.max(0, deadline - Date.now()))));
    row = await mediaRow(env, env.SERVER_NAME, mediaId);
  }
  // Quarantined files are not served (worker/admin/media.ts).
  if (!row || row.uploaded_ts === null || row.quarantined_by !== null) throw notFound("Not found");
  return row;
}

/** The multipart answer for a file in R2. */
export function multipartResponse(file: { body: ReadableStream<Uint8Array>; contentType: string; fileName: string | null; size: number }): Response {
  const boundary = newBoundary();
  const { body, length } = multipartBody(boundary, {}, {
    body: file.body,
    contentType: file.contentType,
    disposition: contentDisposition(file.contentType, file.fileName),
    size: file.size,
  });
  return new Response(body, {
    status: 200,
    headers: { "Content-Type": `multipart/mixed; boundary=${boundary}`, "Content-Length": String(length) },
  });
}

federationMediaRoutes.get("/_matrix/federation/v1/media/download/:mediaId", async (c) => {
  const row = await localMedia(c);
  const object = await c.env.MEDIA.get(contentKey(c.env, row.server_name, row.media_id));
  if (!object) throw notFound("Media content is missing");
  return multipartResponse({ body: object.body, contentType: row.content_type ?? "application/octet-stream", fileName: row.upload_name, size: row.size ?? object.size });
});

federationMediaRoutes.get("/_matrix/federation/v1/media/thumbnail/:mediaId", async (c) => {
  const row = await localMedia(c);
  const thumb = await thumbnailForFederation(c, row);
  return multipartResponse({ ...thumb, fileName: null });
});
