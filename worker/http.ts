// Request helpers shared by the route files: JSON bodies with Matrix errors, and small validators.
import type { Context } from "hono";
import { MatrixError, badJson, notJson, tooLarge } from "../protocol/errors.js";
import { isJsonObject, type JsonObject } from "../protocol/json.js";
import { jsonTextProblem, type JsonTextProblem } from "../protocol/json-text.js";

/** Synapse's default `max_request_size` for non-media requests is larger; the spec caps PDUs at 64 KiB.
 * Client bodies above 1 MiB are refused before parsing. */
export const MAX_JSON_BODY_BYTES = 1024 * 1024;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

export interface ReadJsonOptions {
  /** An empty body is `{}` (as Synapse does for e.g. /logout); otherwise M_NOT_JSON. */
  allowEmpty?: boolean;
  /** Refuse what canonical JSON cannot encode: floats and integers beyond ±(2^53−1) (M_BAD_JSON), lone
   * surrogates (M_NOT_JSON). On for client bodies: whatever a client sends may end up in a signed event
   * or be served back in one. Federation bodies turn it off: a transaction holding one PDU from a room
   * version that allowed floats is checked PDU by PDU, not refused whole. */
  canonical?: boolean;
}

/** Reads the body as a JSON object: M_NOT_JSON if it is not UTF-8 or does not parse (or nests deeper than
 * MAX_JSON_DEPTH, or has a lone surrogate), M_BAD_JSON if it is not an object or has numbers canonical
 * JSON refuses, M_TOO_LARGE above the limit. Synapse answers the same codes (its parser raises
 * M_NOT_JSON for undecodable or too deeply nested bodies; `validate_canonicaljson` M_BAD_JSON). */
export async function readJsonObject(
  c: Context,
  { allowEmpty = true, canonical = true }: ReadJsonOptions = {},
): Promise<JsonObject> {
  const declared = Number(c.req.header("content-length") ?? "0");
  if (declared > MAX_JSON_BODY_BYTES) throw tooLarge();
  const bytes = await c.req.arrayBuffer();
  if (bytes.byteLength > MAX_JSON_BODY_BYTES) throw tooLarge();
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw notJson("Content not JSON: not UTF-8");
  }
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
  const problem = jsonTextProblem(text, { canonical });
  if (problem) throw jsonTextError(problem);
  if (!isJsonObject(value)) throw badJson("Body must be a JSON object");
  return value;
}

/** The Matrix error for a JSON text problem (see protocol/json-text.ts). */
export function jsonTextError(problem: JsonTextProblem): MatrixError {
  switch (problem.kind) {
    case "too_deep":
      return notJson("Content not JSON: nested too deeply");
    case "lone_surrogate":
      return notJson("Content not JSON: a string has a lone UTF-16 surrogate");
    case "float":
      return badJson("Bad JSON value: float");
    case "integer_out_of_range":
      return badJson("JSON integer out of range");
  }
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
