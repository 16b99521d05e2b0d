// Request helpers shared by the route files: JSON bodies with Matrix errors, and small validators.
import type { Context } from "hono";
import { MatrixError, badJson, notJson, tooLarge } from "../protocol/errors.js";
import { isJsonObject, type JsonObject } from "../protocol/json.js";

/** Synapse's default `max_request_size` for non-media requests is larger; the spec caps PDUs at 64 KiB.
 * Client bodies above 1 MiB are refused before parsing. */
export const MAX_JSON_BODY_BYTES = 1024 * 1024;

/** Reads the body as a JSON object: M_NOT_JSON if it does not parse, M_BAD_JSON if it is not an object,
 * M_TOO_LARGE above the limit. An empty body is treated as `{}` (as Synapse does for e.g. /logout). */
export async function readJsonObject(c: Context, { allowEmpty = true } = {}): Promise<JsonObject> {
  const declared = Number(c.req.header("content-length") ?? "0");
  if (declared > MAX_JSON_BODY_BYTES) throw tooLarge();
  const text = await c.req.text();
  if (text.length > MAX_JSON_BODY_BYTES) throw tooLarge();
  if (text.trim() === "") {
    if (allowEmpty) return {};
    throw notJson();
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw notJson();
  }
  if (!isJsonObject(value)) throw badJson("Body must be a JSON object");
  return value;
}

/** Parses an optional integer query parameter, with bounds (M_INVALID_PARAM otherwise). */
export function intParam(c: Context, name: string, def: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = c.req.query(name);
  if (raw === undefined || raw === "") return def;
  if (!/^-?\d+$/.test(raw)) throw new MatrixError(400, "M_INVALID_PARAM", `${name} must be an integer`);
  const n = Number(raw);
  if (n < min || n > max) throw new MatrixError(400, "M_INVALID_PARAM", `${name} out of range`);
  return n;
}
