// Serving media bytes safely, as Synapse does (synapse/media/_base.py `add_file_headers`, and the headers
// every media resource sets): a user's file is shown in the browser only for types that cannot run script,
// and even then inside a CSP sandbox.
import { MatrixError } from "../../protocol/errors.js";

/** Types a browser may show inline (Synapse's INLINE_CONTENT_TYPES; SVG is left out on purpose). */
export const INLINE_CONTENT_TYPES = new Set([
  "text/css",
  "text/plain",
  "text/csv",
  "application/json",
  "application/ld+json",
  "image/jpeg",
  "image/gif",
  "image/png",
  "image/apng",
  "image/webp",
  "image/avif",
  "video/mp4",
  "video/webm",
  "video/ogg",
  "video/quicktime",
  "audio/mp4",
  "audio/webm",
  "audio/aac",
  "audio/mpeg",
  "audio/ogg",
  "audio/wave",
  "audio/wav",
  "audio/x-wav",
  "audio/x-pn-wav",
  "audio/flac",
  "audio/x-flac",
]);

/** Text types that get `; charset=UTF-8` when they name no charset (Synapse's TEXT_CONTENT_TYPES). */
const TEXT_CONTENT_TYPES = new Set([
  "text/css",
  "text/csv",
  "text/html",
  "text/calendar",
  "text/plain",
  "text/javascript",
  "application/json",
  "application/ld+json",
  "application/rtf",
  "image/svg+xml",
  "text/xml",
]);

/** Synapse's media Content-Security-Policy: nothing in a served file may run or load anything. */
export const MEDIA_CSP =
  "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/** RFC 2616 separators: a file name containing one (or a control or non-ASCII character) is not a token. */
const SEPARATORS = new Set('()<>@,;:\\"/[]?={}'.split(""));

function isToken(name: string): boolean {
  for (const ch of name) {
    const code = ch.codePointAt(0)!;
    if (code >= 127 || code <= 32 || SEPARATORS.has(ch)) return false;
  }
  return true;
}

/** `inline` or `attachment`, with the file name as a token or as RFC 5987 `filename*` (Synapse's choice). */
export function contentDisposition(contentType: string, fileName: string | null | undefined): string {
  const base = contentType.toLowerCase().split(";", 1)[0].trim();
  let disposition = INLINE_CONTENT_TYPES.has(base) ? "inline" : "attachment";
  if (fileName) {
    disposition += isToken(fileName) ? `; filename=${fileName}` : `; filename*=utf-8''${encodeURIComponent(fileName)}`;
  }
  return disposition;
}

/** Headers every media answer carries, errors included (Synapse's media resources set them on all). */
export function securityHeaders(headers: Headers): Headers {
  headers.set("Content-Security-Policy", MEDIA_CSP);
  headers.set("X-Content-Type-Options", "nosniff");
  // MSC3916 clients load media from another origin (the web client's); Synapse's `set_corp_headers`.
  headers.set("Cross-Origin-Resource-Policy", "cross-origin");
  return headers;
}

/** The headers of a file answer: type, disposition, cache and crawler hints, and the safety headers. */
export function fileHeaders(contentType: string, fileName: string | null | undefined): Headers {
  const headers = securityHeaders(new Headers());
  const type = TEXT_CONTENT_TYPES.has(contentType.toLowerCase()) ? `${contentType}; charset=UTF-8` : contentType;
  headers.set("Content-Type", type);
  headers.set("Content-Disposition", contentDisposition(contentType, fileName));
  // Media never changes under its mxc:// URI.
  headers.set("Cache-Control", "public,max-age=86400,s-maxage=86400");
  headers.set("X-Robots-Tag", "noindex, nofollow, noarchive, noimageindex");
  headers.set("Accept-Ranges", "bytes");
  return headers;
}

export type ByteRange = { offset: number; length: number };

/**
 * A `Range: bytes=…` header against a file of `size` bytes (RFC 9110 §14.2): one range, or undefined to
 * send the whole file (no header, a unit other than bytes, several ranges — all allowed to be ignored).
 * An unsatisfiable range is 416. Audio and video players seek with it.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return undefined;
  const [, first, last] = m;
  if (first === "" && last === "") return undefined;
  let start: number;
  let end: number;
  if (first === "") {
    // Suffix range: the last N bytes.
    const n = Number(last);
    if (n === 0) throw rangeNotSatisfiable(size);
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(first);
    end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
    if (last !== "" && Number(last) < start) return undefined; // invalid: ignored (RFC 9110 §14.1.1)
  }
  if (start >= size) throw rangeNotSatisfiable(size);
  return { offset: start, length: end - start + 1 };
}

export class RangeNotSatisfiable extends MatrixError {
  constructor(readonly size: number) {
    super(416, "M_UNKNOWN", "Requested range not satisfiable");
  }
}
const rangeNotSatisfiable = (size: number) => new RangeNotSatisfiable(size);

/** A 200 or 206 answer with the object's body. */
export function fileResponse(
  object: R2ObjectBody,
  meta: { contentType: string; fileName: string | null | undefined; size: number },
  range: ByteRange | undefined,
  head: boolean,
): Response {
  const headers = fileHeaders(meta.contentType, meta.fileName);
  const body = head ? null : object.body;
  if (head) void object.body.cancel();
  if (range) {
    headers.set("Content-Range", `bytes ${range.offset}-${range.offset + range.length - 1}/${meta.size}`);
    headers.set("Content-Length", String(range.length));
    return new Response(body, { status: 206, headers });
  }
  headers.set("Content-Length", String(meta.size));
  return new Response(body, { status: 200, headers });
}
