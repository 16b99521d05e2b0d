// Media of other servers (spec: Client-Server API, "Content repository": a server asked for
// `mxc://<other server>/<id>` fetches it from that server). Fetched once over federation
// (GET /_matrix/federation/v1/media/download/{mediaId}, spec v1.11, multipart), falling back to the legacy
// GET /_matrix/media/v3/download for servers that predate it (as Synapse does when the new endpoint is
// unrecognised), streamed into R2 and recorded in D1; later requests are served from R2.
import { MatrixError, notFound } from "../../protocol/errors.js";
import { federationRawRequest } from "../../federation-client/request.js";
import { outboundFetch } from "../../federation-client/outbound-fetch.js";
import type { Env } from "../env.js";
import { MultipartError, boundaryOf, parseMediaMultipart } from "./multipart.js";
import { contentKey, maxUploadSize, mediaRow, storeContent, type MediaRow } from "./store.js";

/** How long a remote download may take in all, body included (the request's abort signal covers both). */
const REMOTE_FETCH_TIMEOUT_MS = 5 * 60_000;

/** Server names as the spec's grammar allows them (hostname or IP literal, optional port). */
const SERVER_NAME_PATTERN = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,255})(?::\d{1,5})?$/;

const remoteFailed = (serverName: string, why: string) => new MatrixError(502, "M_UNKNOWN", `Failed to fetch remote media from ${serverName}: ${why}`);

/** The file name of a Content-Disposition header (`filename*=utf-8''…` preferred, as Synapse). */
export function fileNameOf(disposition: string | null | undefined): string | null {
  if (!disposition) return null;
  const star = /filename\*\s*=\s*utf-8''([^;\s]+)/i.exec(disposition);
  if (star) {
    try {
      return decodeURIComponent(star[1]);
    } catch {
      // not valid percent-encoded UTF-8: try the plain name
    }
  }
  const plain = /filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/i.exec(disposition);
  if (!plain) return null;
  const name = plain[1] !== undefined ? plain[1].replace(/\\(.)/g, "$1") : plain[2];
  // eslint-disable-next-line no-control-regex
  return /^[\x20-\x7e]+$/.test(name) ? name : null;
}

/** Whether an answer means "this endpoint does not exist here" (an older server), not "no such media". */
async function unrecognised(res: Response): Promise<boolean> {
  if (res.status !== 404 && res.status !== 405 && res.status !== 400) return false;
  if (res.status === 405) return true;
  const text = await res.text().catch(() => "");
  try {
    return (JSON.parse(text) as { errcode?: unknown }).errcode === "M_UNRECOGNIZED";
  } catch {
    // A plain 404 page from something in front of an old server.
    return res.status === 404;
  }
}

interface Fetched {
  body: ReadableStream<Uint8Array>;
  contentType: string;
  fileName: string | null;
  length: number | undefined;
}

function declared(res: Response): number | undefined {
  const raw = res.headers.get("content-length");
  return raw !== null && /^\d+$/.test(raw) ? Number(raw) : undefined;
}

async function fetchFromLocation(env: Env, serverName: string, location: string): Promise<Fetched> {
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    throw remoteFailed(serverName, "bad Location");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw remoteFailed(serverName, "bad Location");
  const res = await outboundFetch(env)(new Request(url, { redirect: "follow", signal: AbortSignal.timeout(REMOTE_FETCH_TIMEOUT_MS) })).catch((e: Error) => {
    throw remoteFailed(serverName, e.message);
  });
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw remoteFailed(serverName, `HTTP ${res.status} from the Location`);
  }
  return { body: res.body, contentType: res.headers.get("content-type") ?? "application/octet-stream", fileName: fileNameOf(res.headers.get("content-disposition")), length: declared(res) };
}

async function fetchFederation(env: Env, serverName: string, mediaId: string, timeoutMs: number): Promise<Fetched | "unrecognised"> {
  const sent = await federationRawRequest(env, {
    destination: serverName,
    method: "GET",
    path: `/_matrix/federation/v1/media/download/${encodeURIComponent(mediaId)}?timeout_ms=${timeoutMs}`,
    timeoutMs: REMOTE_FETCH_TIMEOUT_MS,
  });
  if (!sent.ok) throw remoteFailed(serverName, sent.error);
  const res = sent.response;
  if (!res.ok) {
    if (await unrecognised(res)) return "unrecognised";
    await res.body?.cancel().catch(() => {});
    if (res.status === 404) throw notFound("Remote media not found");
    throw remoteFailed(serverName, `HTTP ${res.status}`);
  }
  const boundary = boundaryOf(res.headers.get("content-type"));
  if (!boundary || !res.body) {
    await res.body?.cancel().catch(() => {});
    throw remoteFailed(serverName, "the answer is not multipart/mixed");
  }
  try {
    const part = await parseMediaMultipart(res.body, boundary);
    if (part.location !== undefined) return fetchFromLocation(env, serverName, part.location);
    return {
      body: part.body!,
      contentType: part.headers.get("content-type") ?? "application/octet-stream",
      fileName: fileNameOf(part.headers.get("content-disposition")),
      length: undefined,
    };
  } catch (e) {
    if (e instanceof MultipartError) throw remoteFailed(serverName, e.message);
    throw e;
  }
}

async function fetchLegacy(env: Env, serverName: string, mediaId: string, timeoutMs: number): Promise<Fetched> {
  const sent = await federationRawRequest(env, {
    destination: serverName,
    method: "GET",
    path: `/_matrix/media/v3/download/${encodeURIComponent(serverName)}/${encodeURIComponent(mediaId)}?allow_remote=false&timeout_ms=${timeoutMs}`,
    timeoutMs: REMOTE_FETCH_TIMEOUT_MS,
  });
  if (!sent.ok) throw remoteFailed(serverName, sent.error);
  const res = sent.response;
  if (!res.ok || !res.body) {
    await res.body?.cancel().catch(() => {});
    if (res.status === 404) throw notFound("Remote media not found");
    throw remoteFailed(serverName, `HTTP ${res.status}`);
  }
  return { body: res.body, contentType: res.headers.get("content-type") ?? "application/octet-stream", fileName: fileNameOf(res.headers.get("content-disposition")), length: declared(res) };
}

/**
 * Fetches `mxc://serverName/mediaId`, stores it in R2 and D1, and returns its row. Refuses files above
 * MAX_UPLOAD_SIZE (as Synapse's `max_upload_size` applies to remote media too).
 */
export async function fetchRemoteMedia(env: Env, serverName: string, mediaId: string, timeoutMs: number): Promise<MediaRow> {
  if (!SERVER_NAME_PATTERN.test(serverName)) throw notFound("Not found");
  let fetched = await fetchFederation(env, serverName, mediaId, timeoutMs);
  if (fetched === "unrecognised") fetched = await fetchLegacy(env, serverName, mediaId, timeoutMs);
  const contentType = fetched.contentType.trim() === "" ? "application/octet-stream" : fetched.contentType;
  const key = contentKey(env, serverName, mediaId);
  let size: number;
  try {
    ({ size } = await storeContent(env.MEDIA, key, fetched.body, fetched.length, maxUploadSize(env), contentType));
  } catch (e) {
    if (e instanceof MatrixError && e.errcode === "M_TOO_LARGE") throw new MatrixError(502, "M_TOO_LARGE", "Remote media is larger than this server's limit");
    if (e instanceof MatrixError) throw remoteFailed(serverName, e.message);
    throw e;
  }
  const now = Date.now();
  await env.DB.prepare(
    `INSERT INTO media (server_name, media_id, user_id, content_type, upload_name, size, created_ts, uploaded_ts)
     VALUES (?, ?, NULL, ?, ?, ?, ?, ?)
     ON CONFLICT (server_name, media_id) DO UPDATE SET content_type = excluded.content_type, upload_name = excluded.upload_name,
       size = excluded.size, uploaded_ts = excluded.uploaded_ts`,
  )
    .bind(serverName, mediaId, contentType, fetched.fileName, size, now, now)
    .run();
  return (await mediaRow(env, serverName, mediaId))!;
}
