// The media repository's storage (spec: Client-Server API, "Content repository"): metadata rows in the D1
// `media` table, bytes in the R2 bucket MEDIA. Bodies are streamed into R2, never held whole: a Worker has
// 128 MB of memory and an upload may be as large as MAX_UPLOAD_SIZE.
import { MatrixError, tooLarge } from "../../protocol/errors.js";
import type { Env } from "../env.js";

/** Synapse's default `max_upload_size`. */
export const DEFAULT_MAX_UPLOAD_SIZE = 50 * 1024 * 1024;

/** One row of the `media` table. */
export interface MediaRow {
  server_name: string;
  media_id: string;
  user_id: string | null;
  content_type: string | null;
  upload_name: string | null;
  size: number | null;
  created_ts: number;
  uploaded_ts: number | null;
  unused_expires_ts: number | null;
  /** Set by an admin's quarantine (worker/admin/media.ts): the file is no longer served. */
  quarantined_by: string | null;
  safe_from_quarantine: number;
}

/** MAX_UPLOAD_SIZE in bytes: a number, optionally with a K, M or G suffix (powers of 1024, as Synapse). */
export function maxUploadSize(env: Pick<Env, "MAX_UPLOAD_SIZE">): number {
  return parseSize(env.MAX_UPLOAD_SIZE) ?? DEFAULT_MAX_UPLOAD_SIZE;
}

/** "50M" → 52428800; undefined for an unset or malformed value. */
export function parseSize(raw: string | undefined): number | undefined {
  if (raw === undefined || raw.trim() === "") return undefined;
  const m = /^\s*(\d+)\s*([kKmMgG]?)[bB]?\s*$/.exec(raw);
  if (!m) {
    console.warn(`ignoring malformed size ${JSON.stringify(raw)}`);
    return undefined;
  }
  const unit = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as "" | "k" | "m" | "g"];
  return Number(m[1]) * unit;
}

/** A new media ID: 24 letters (Synapse's `random_string(24)`), 140 bits of randomness. */
export function newMediaId(): string {
  const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  let id = "";
  // 256 = 4·52 + 48: the bias of `% 52` is below 1 in 5 per letter's choice of the first 48 letters; the
  // ID only has to be unguessable, which 24 such letters are by far.
  for (const b of bytes) id += letters[b % letters.length];
  return id;
}

/** Media IDs as the spec's grammar allows them (`[A-Za-z0-9_-]+`, "Matrix Content (mxc://) URIs"). */
export const MEDIA_ID_PATTERN = /^[A-Za-z0-9_-]{1,255}$/;

/** R2 key of a file's bytes. Local and remote media are kept apart so that a remote server cannot name
 * one of ours. */
export function contentKey(env: Pick<Env, "SERVER_NAME">, serverName: string, mediaId: string): string {
  return serverName === env.SERVER_NAME ? `local/${mediaId}` : `remote/${encodeURIComponent(serverName)}/${mediaId}`;
}

export async function mediaRow(env: Pick<Env, "DB">, serverName: string, mediaId: string): Promise<MediaRow | null> {
  return env.DB.prepare("SELECT * FROM media WHERE server_name = ? AND media_id = ?").bind(serverName, mediaId).first<MediaRow>();
}

/** Size of each part of an R2 multipart upload. R2 wants every part but the last to have the same size,
 * at least 5 MiB; 8 MiB parts bound what a streaming upload of unknown length holds in memory. */
const PART_SIZE = 8 * 1024 * 1024;

export interface StoredContent {
  size: number;
}

/**
 * Streams `body` into R2 under `key`. With a declared length (Content-Length) the bytes go straight through
 * (a FixedLengthStream checks the count, since R2 needs the length up front); without one (chunked bodies,
 * a part of a multipart federation answer) they go up as an R2 multipart upload in PART_SIZE parts.
 * More than `max` bytes is M_TOO_LARGE (413) and leaves nothing behind.
 */
export async function storeContent(
  bucket: R2Bucket,
  key: string,
  body: ReadableStream<Uint8Array> | null,
  declaredLength: number | undefined,
  max: number,
  contentType: string,
): Promise<StoredContent> {
  const httpMetadata = { contentType };
  if (body === null) {
    if (declaredLength !== undefined && declaredLength !== 0) throw new MatrixError(400, "M_BAD_JSON", "Missing body");
    await bucket.put(key, new Uint8Array(0), { httpMetadata });
    return { size: 0 };
  }
  if (declaredLength !== undefined) {
    if (declaredLength > max) {
      await body.cancel().catch(() => {});
      throw tooLarge(`Upload is larger than the limit of ${max} bytes`);
    }
    const fixed = new FixedLengthStream(declaredLength);
    const piping = body.pipeTo(fixed.writable).catch((e: unknown) => e);
    try {
      await bucket.put(key, fixed.readable, { httpMetadata });
    } catch (e) {
      await bucket.delete(key).catch(() => {});
      throw new MatrixError(400, "M_UNKNOWN", `Upload failed: the body did not match its Content-Length (${(e as Error).message})`);
    }
    const pipeError = await piping;
    if (pipeError) {
      await bucket.delete(key).catch(() => {});
      throw new MatrixError(400, "M_UNKNOWN", "Upload failed: the body ended early");
    }
    return { size: declaredLength };
  }
  return storeUnknownLength(bucket, key, body, max, httpMetadata);
}

async function storeUnknownLength(
  bucket: R2Bucket,
  key: string,
  body: ReadableStream<Uint8Array>,
  max: number,
  httpMetadata: R2HTTPMetadata,
): Promise<StoredContent> {
  const reader = body.getReader();
  let part = new Uint8Array(Math.min(PART_SIZE, max + 1));
  let filled = 0;
  let total = 0;
  let upload: R2MultipartUpload | undefined;
  const parts: R2UploadedPart[] = [];
  const flush = async () => {
    upload ??= await bucket.createMultipartUpload(key, { httpMetadata });
    parts.push(await upload.uploadPart(parts.length + 1, part.subarray(0, filled)));
    filled = 0;
  };
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > max) throw tooLarge(`Upload is larger than the limit of ${max} bytes`);
      let offset = 0;
      while (offset < value.byteLength) {
        if (part.byteLength < PART_SIZE && filled + (value.byteLength - offset) > part.byteLength) {
          // The first buffer was sized for small files; grow it to a full part.
          const bigger = new Uint8Array(PART_SIZE);
          bigger.set(part.subarray(0, filled));
          part = bigger;
        }
        const n = Math.min(value.byteLength - offset, part.byteLength - filled);
        part.set(value.subarray(offset, offset + n), filled);
        filled += n;
        offset += n;
        if (filled === PART_SIZE) await flush();
      }
    }
    if (upload === undefined) {
      await bucket.put(key, part.subarray(0, filled), { httpMetadata });
    } else {
      if (filled > 0) await flush();
      await upload.complete(parts);
    }
    return { size: total };
  } catch (e) {
    await reader.cancel().catch(() => {});
    await upload?.abort().catch(() => {});
    if (e instanceof MatrixError) throw e;
    throw new MatrixError(502, "M_UNKNOWN", `Storing the content failed: ${(e as Error).message}`);
  }
}
