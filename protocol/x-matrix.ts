// Request authentication between servers (spec: Server-Server API, "Authentication" → "Request
// Authentication"): the method, target, origin, destination and body of a request are wrapped in a
// JSON object, signed with the origin's key, and sent as `Authorization: X-Matrix origin=…,destination=…,
// key=…,sig=…`. Pure: building the object to sign, formatting and parsing the header.
import type { JsonObject, JsonValue } from "./json.js";

export interface RequestToSign {
  method: string;
  /** The request target as sent: path starting with `/_matrix/`, plus `?query` if any (still encoded). */
  uri: string;
  origin: string;
  destination: string;
  /** The JSON-parsed request body, if the request has one. */
  content?: JsonValue;
}

/** The JSON object whose signature goes into the header (spec: "Step 1 sign JSON"). */
export function requestJsonToSign(request: RequestToSign): JsonObject {
  const json: JsonObject = {
    method: request.method.toUpperCase(),
    uri: request.uri,
    origin: request.origin,
    destination: request.destination,
  };
  if (request.content !== undefined) json.content = request.content;
  return json;
}

export interface XMatrixAuth {
  origin: string;
  /** Absent in requests from servers older than spec v1.3 (recipients should accept that). */
  destination?: string;
  /** The key ID, e.g. `ed25519:abc`. */
  key: string;
  /** Unpadded base64 signature. */
  sig: string;
}

// RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function formatValue(value: string): string {
  // Senders should avoid backslashes and always quote (as the spec's example and Synapse do);
  // a quote or backslash inside a value is escaped so that the header stays parseable.
  return '"' + value.replace(/[\\"]/g, (c) => "\\" + c) + '"';
}

/** The `Authorization` header value for one signature. Lower-case names, one space, no spaces around commas. */
export function formatXMatrixHeader(auth: XMatrixAuth): string {
  const params = [`origin=${formatValue(auth.origin)}`];
  if (auth.destination !== undefined) params.push(`destination=${formatValue(auth.destination)}`);
  params.push(`key=${formatValue(auth.key)}`, `sig=${formatValue(auth.sig)}`);
  return "X-Matrix " + params.join(",");
}

/**
 * Parses an `Authorization` header with the X-Matrix scheme (RFC 9110 §11.4 as the spec summarises it):
 * the scheme (case-insensitive), one or more spaces, then comma-separated `name=value` parameters with
 * optional spaces/tabs around the commas; names are case-insensitive; values are tokens or quoted strings
 * with backslash escapes; colons (and, as in Synapse, any other non-separator) are allowed in unquoted
 * values; unknown parameters are ignored. Returns null for anything that is not a well-formed X-Matrix header with origin, key and sig.
 */
export function parseXMatrixHeader(header: string | null | undefined): XMatrixAuth | null {
  if (typeof header !== "string") return null;
  const m = /^X-Matrix +/i.exec(header);
  if (!m) return null;
  const text = header.slice(m[0].length);
  const params = new Map<string, string>();
  let i = 0;
  const skipWs = () => {
    while (i < text.length && (text[i] === " " || text[i] === "\t")) i++;
  };
  skipWs();
  while (i < text.length) {
    // name
    const nameStart = i;
    while (i < text.length && text[i] !== "=" && text[i] !== "," && text[i] !== " " && text[i] !== "\t") i++;
    const name = text.slice(nameStart, i).toLowerCase();
    if (!TOKEN.test(name)) return null;
    skipWs();
    if (text[i] !== "=") return null;
    i++;
    skipWs();
    // value
    let value: string;
    if (text[i] === '"') {
      i++;
      value = "";
      let closed = false;
      while (i < text.length) {
        const c = text[i]!;
        if (c === "\\") {
          if (i + 1 >= text.length) return null;
          value += text[i + 1];
          i += 2;
        } else if (c === '"') {
          i++;
          closed = true;
          break;
        } else {
          value += c;
          i++;
        }
      }
      if (!closed) return null;
    } else {
      const valueStart = i;
      while (i < text.length && text[i] !== "," && text[i] !== " " && text[i] !== "\t") i++;
      value = text.slice(valueStart, i);
      // The spec wants tokens here (plus colons, for older servers); Synapse accepts any unquoted run
      // without a comma, so a sender's unquoted base64 (`+`, `/`) passes there. Follow Synapse, but refuse
      // quotes and backslashes, which only make sense in a quoted string.
      if (value === "" || /["\\]/.test(value)) return null;
    }
    // A repeated parameter makes the header ambiguous.
    if (params.has(name)) return null;
    params.set(name, value);
    skipWs();
    if (i >= text.length) break;
    if (text[i] !== ",") return null;
    i++;
    skipWs();
  }
  const origin = params.get("origin");
  const key = params.get("key");
  const sig = params.get("sig");
  if (!origin || !key || !sig) return null;
  const destination = params.get("destination");
  return destination === undefined ? { origin, key, sig } : { origin, destination, key, sig };
}
