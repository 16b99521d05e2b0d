// The one error type of the server. Thrown anywhere (worker, Durable Objects, protocol checks that
// face the client) and turned into `{"errcode","error"}` JSON in one place (worker/index.ts).
// Spec: Client-Server API, "Standard error response".
export class MatrixError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: string,
    message: string,
    /** Extra top-level fields, e.g. `retry_after_ms`, `soft_logout`, UIA `flows`. */
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "MatrixError";
  }

  toJSON(): Record<string, unknown> {
    return { errcode: this.errcode, error: this.message, ...this.extra };
  }
}

export const badJson = (message: string) => new MatrixError(400, "M_BAD_JSON", message);
export const notJson = (message = "Content not JSON.") => new MatrixError(400, "M_NOT_JSON", message);
export const forbidden = (message: string) => new MatrixError(403, "M_FORBIDDEN", message);
export const notFound = (message: string) => new MatrixError(404, "M_NOT_FOUND", message);
export const invalidParam = (message: string) => new MatrixError(400, "M_INVALID_PARAM", message);
export const missingParam = (message: string) => new MatrixError(400, "M_MISSING_PARAM", message);
export const unrecognized = (message = "Unrecognized request", status = 404) =>
  new MatrixError(status, "M_UNRECOGNIZED", message);
export const tooLarge = (message = "Request body too large") => new MatrixError(413, "M_TOO_LARGE", message);
export const limitExceeded = (retryAfterMs: number) =>
  new MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests", { retry_after_ms: retryAfterMs });

/**
 * Reconstructs a MatrixError that crossed a Durable Object RPC boundary (RPC preserves the message
 * but not the class). DOs throw via `toRpcError`, the worker calls `fromRpcError`.
 */
const RPC_MARKER = "MatrixError:";
export function toRpcError(e: MatrixError): Error {
  return new Error(RPC_MARKER + JSON.stringify({ status: e.status, ...e.toJSON() }));
}
export function fromRpcError(e: unknown): unknown {
  if (e instanceof Error && e.message.startsWith(RPC_MARKER)) {
    const { status, errcode, error, ...extra } = JSON.parse(e.message.slice(RPC_MARKER.length));
    return new MatrixError(status, errcode, error, extra);
  }
  return e;
}
