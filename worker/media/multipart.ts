// multipart/mixed bodies of the federation media endpoints (spec: Server-Server API, "Content Repository",
// GET /_matrix/federation/v1/media/download/{mediaId}): a JSON part (currently always `{}`), then a part that
// is either the file (its own Content-Type and Content-Disposition) or a `Location` header to fetch it from.
// Both directions stream: the file part is never held whole.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A random boundary (RFC 2046 allows up to 70 characters; 32 hex digits never occur in a file by chance). */
export function newBoundary(): string {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The multipart body: JSON part, then the file part streamed from `file`. Also returns its total length
 * when the file's size is known. */
export function multipartBody(
  boundary: string,
  json: unknown,
  file: { body: ReadableStream<Uint8Array>; contentType: string; disposition: string; size: number },
): { body: ReadableStream<Uint8Array>; length: number } {
  const head = encoder.encode(
    `--${boundary}\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(json)}\r\n` +
      `--${boundary}\r\nContent-Type: ${file.contentType}\r\nContent-Disposition: ${file.disposition}\r\n\r\n`,
  );
  const tail = encoder.encode(`\r\n--${boundary}--\r\n`);
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  void (async () => {
    const writer = writable.getWriter();
    try {
      await writer.write(head);
      const reader = file.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        await writer.write(value);
      }
      await writer.write(tail);
      await writer.close();
    } catch (e) {
      await writer.abort(e).catch(() => {});
    }
  })();
  return { body: readable, length: head.byteLength + file.size + tail.byteLength };
}

/** The `boundary` parameter of a multipart Content-Type, or undefined. */
export function boundaryOf(contentType: string | null): string | undefined {
  if (!contentType || !/^\s*multipart\/mixed\s*;/i.test(contentType)) return undefined;
  const m = /;\s*boundary\s*=\s*(?:"([^"]{1,70})"|([^\s;]{1,70}))/i.exec(contentType);
  return m ? (m[1] ?? m[2]) : undefined;
}

export class MultipartError extends Error {}

/** Limit on the JSON part and on each part's headers: they are small; a peer sending megabytes is wrong. */
const MAX_SMALL_SECTION = 64 * 1024;

function indexOf(haystack: Uint8Array, needle: Uint8Array, from = 0): number {
  const first = needle[0];
  outer: for (let i = haystack.indexOf(first, from); i !== -1 && i <= haystack.length - needle.length; i = haystack.indexOf(first, i + 1)) {
    for (let j = 1; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Reads a byte stream with look-ahead. */
class Scanner {
  private buffer: Uint8Array = new Uint8Array(0);
  private done = false;
  constructor(private readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  private async more(): Promise<boolean> {
    if (this.done) return false;
    const { done, value } = await this.reader.read();
    if (done) {
      this.done = true;
      return false;
    }
    this.buffer = concat(this.buffer, value);
    return true;
  }

  /** Bytes up to `delimiter` (consumed, not returned); at most `limit` bytes are searched. */
  async until(delimiter: Uint8Array, limit = MAX_SMALL_SECTION): Promise<Uint8Array> {
    for (;;) {
      const at = indexOf(this.buffer, delimiter);
      if (at !== -1) {
        const out = this.buffer.slice(0, at);
        this.buffer = this.buffer.slice(at + delimiter.length);
        return out;
      }
      if (this.buffer.length > limit + delimiter.length) throw new MultipartError("multipart section too large");
      if (!(await this.more())) throw new MultipartError("multipart body ended early");
    }
  }

  /** Exactly `n` bytes. */
  async take(n: number): Promise<Uint8Array> {
    while (this.buffer.length < n) if (!(await this.more())) throw new MultipartError("multipart body ended early");
    const out = this.buffer.slice(0, n);
    this.buffer = this.buffer.slice(n);
    return out;
  }

  /** A stream of the bytes before `delimiter`; the delimiter is consumed when the stream ends. */
  streamUntil(delimiter: Uint8Array): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        for (;;) {
          const at = indexOf(this.buffer, delimiter);
          if (at !== -1) {
            if (at > 0) controller.enqueue(this.buffer.slice(0, at));
            this.buffer = this.buffer.slice(at + delimiter.length);
            controller.close();
            return;
          }
          // Everything but a possible start of the delimiter can go.
          const safe = this.buffer.length - (delimiter.length - 1);
          if (safe > 0) {
            controller.enqueue(this.buffer.slice(0, safe));
            this.buffer = this.buffer.slice(safe);
            return;
          }
          if (!(await this.more())) {
            controller.error(new MultipartError("multipart body ended inside the file part"));
            return;
          }
        }
      },
      cancel: (reason) => this.reader.cancel(reason),
    });
  }

  cancel(): Promise<void> {
    return this.reader.cancel().catch(() => {});
  }
}

function parseHeaders(bytes: Uint8Array): Map<string, string> {
  const headers = new Map<string, string>();
  for (const line of decoder.decode(bytes).split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return headers;
}

export interface FilePart {
  json: unknown;
  /** The second part's headers (lower-case names). */
  headers: Map<string, string>;
  /** The file, streaming; absent when the part is a `Location` redirect. */
  body?: ReadableStream<Uint8Array>;
  location?: string;
}

/** Reads the JSON part and the headers of the file part; the file itself is left to stream. */
export async function parseMediaMultipart(body: ReadableStream<Uint8Array>, boundary: string): Promise<FilePart> {
  const scanner = new Scanner(body.getReader());
  try {
    const dash = encoder.encode(`--${boundary}`);
    const delimiter = encoder.encode(`\r\n--${boundary}`);
    const headerEnd = encoder.encode("\r\n\r\n");
    // Preamble (usually empty) up to the first boundary, then the line end after it.
    await scanner.until(dash);
    await scanner.until(encoder.encode("\r\n"));
    const readPartHeaders = async () => {
      // A part without headers starts directly with the empty line.
      const start = await scanner.take(2);
      if (start[0] === 13 && start[1] === 10) return new Map<string, string>();
      return parseHeaders(concat(start, await scanner.until(headerEnd)));
    };
    await readPartHeaders();
    const jsonBytes = await scanner.until(delimiter);
    let json: unknown;
    try {
      json = JSON.parse(decoder.decode(jsonBytes));
    } catch {
      throw new MultipartError("the first part is not JSON");
    }
    const after = await scanner.take(2);
    if (after[0] === 45 && after[1] === 45) throw new MultipartError("no file part");
    if (!(after[0] === 13 && after[1] === 10)) {
      // Transport padding (RFC 2046 §5.1.1) before the line end.
      await scanner.until(encoder.encode("\r\n"), 1024);
    }
    const headers = await readPartHeaders();
    const location = headers.get("location");
    if (location !== undefined) {
      await scanner.cancel();
      return { json, headers, location };
    }
    return { json, headers, body: scanner.streamUntil(delimiter) };
  } catch (e) {
    await scanner.cancel();
    throw e;
  }
}
