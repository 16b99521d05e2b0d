// URL previews (spec: Client-Server API, GET /_matrix/client/v1/media/preview_url). Not made yet.
import type { Context } from "hono";
import { MatrixError } from "../../protocol/errors.js";
import type { AppEnv } from "../env.js";

export async function previewUrlResponse(_c: Context<AppEnv>, _userId: string): Promise<Response> {
  throw new MatrixError(404, "M_UNRECOGNIZED", "URL previews are not available");
}
