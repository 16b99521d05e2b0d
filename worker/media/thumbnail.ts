// Thumbnails (spec: Client-Server API, GET /_matrix/client/v1/media/thumbnail). Not made yet: answered as
// Synapse answers media it cannot thumbnail.
import type { Context } from "hono";
import { MatrixError } from "../../protocol/errors.js";
import type { AppEnv } from "../env.js";
import type { MediaRow } from "./store.js";

export async function thumbnailResponse(_c: Context<AppEnv>, _row: MediaRow): Promise<Response> {
  throw new MatrixError(400, "M_UNKNOWN", "Cannot thumbnail this media");
}

export async function thumbnailForFederation(
  _c: Context<AppEnv>,
  _row: MediaRow,
): Promise<{ body: ReadableStream<Uint8Array>; contentType: string; size: number }> {
  throw new MatrixError(400, "M_UNKNOWN", "Cannot thumbnail this media");
}
