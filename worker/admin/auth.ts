// Who may use the server administration API (Synapse's admin API under /_synapse/admin): users with the
// admin flag (D1 `users.admin`, set by shared-secret registration or by another admin). Everyone else gets
// 403 M_FORBIDDEN, as Synapse's `assert_requester_is_admin` answers.
import type { MiddlewareHandler } from "hono";
import { MatrixError, forbidden } from "../../protocol/errors.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv } from "../env.js";

/** requireAuth, then the admin check. Sets the requester read by `requester(c)`. */
export const requireAdmin: MiddlewareHandler<AppEnv> = async (c, next) => {
  await requireAuth(c, async () => {
    if (!requester(c).isAdmin) throw forbidden("You are not a server admin");
    await next();
  });
};

/** Synapse's `parse_boolean`: "true" or "false"; anything else is 400 M_INVALID_PARAM. */
export function boolQuery(value: string | undefined, name: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (value === "true") return true;
  if (value === "false") return false;
  throw new MatrixError(400, "M_INVALID_PARAM", `Boolean query parameter '${name}' must be one of ['true', 'false']`);
}

/** `from` and `limit` as Synapse's admin list endpoints read them: non-negative integers. */
export function pageQuery(from: string | undefined, limit: string | undefined, defaultLimit = 100): { from: number; limit: number } {
  const read = (raw: string | undefined, name: string, def: number): number => {
    if (raw === undefined || raw === "") return def;
    if (!/^\d{1,15}$/.test(raw)) throw new MatrixError(400, "M_INVALID_PARAM", `Query parameter ${name} must be a string representing a positive integer.`);
    return Number(raw);
  };
  return { from: read(from, "from", 0), limit: read(limit, "limit", defaultLimit) };
}

/** `dir`: `f` (default) or `b`. */
export function dirQuery(value: string | undefined, def: "f" | "b" = "f"): "f" | "b" {
  if (value === undefined || value === "") return def;
  if (value === "f" || value === "b") return value;
  throw new MatrixError(400, "M_INVALID_PARAM", "Unknown direction: dir must be one of ['b', 'f']");
}

/** A LIKE pattern matching `text` anywhere, with its wildcards escaped (use with `ESCAPE '\\'`). */
export function containsPattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`;
}
