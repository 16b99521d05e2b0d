// The authenticated origin of a federation request: set by the X-Matrix middleware (auth.ts) before any
// route runs; a route that finds none was reached without authentication, which is a 401.
import type { Context } from "hono";
import { MatrixError } from "../../protocol/errors.js";
import type { AppEnv } from "../env.js";

export function requestOrigin(c: Context<AppEnv>): string {
  const origin = c.get("origin");
  if (typeof origin !== "string" || origin === "") throw new MatrixError(401, "M_UNAUTHORIZED", "Missing or invalid X-Matrix authorization");
  return origin;
}
