// Server Access Control Lists (spec: Client-Server API, "Server Access Control Lists (ACLs) for rooms",
// the `m.room.server_acl` event; Server-Server API, "Server Access Control Lists (ACLs)"). Pure: whether
// an ACL's content lets a server take part in a room.
import type { JsonObject } from "./json.js";
import { parseServerName } from "./server-name.js";

/** A glob (spec: Appendices, "Glob-style matching"): `*` is zero or more characters, `?` exactly one.
 * ACL globs are case-insensitive. */
export function globToRegExp(glob: string): RegExp {
  let source = "";
  for (const c of glob) {
    if (c === "*") source += ".*";
    else if (c === "?") source += ".";
    else source += c.replace(/[.+^${}()|[\]\\/-]/g, "\\$&");
  }
  return new RegExp(`^${source}$`, "is");
}

function globs(value: unknown): RegExp[] {
  // A list that is not a list, or entries that are not strings, are ignored (as Synapse does).
  if (!Array.isArray(value)) return [];
  return value.filter((v): v is string => typeof v === "string").map(globToRegExp);
}

/**
 * Whether `serverName` is allowed by an ACL's content (null: no ACL in the room, everyone is allowed).
 * The spec's order: an IP literal is denied if `allow_ip_literals` is `false`; then `deny` wins; then
 * `allow`; otherwise deny. The port is never considered.
 */
export function serverAllowedByAcl(content: JsonObject | null | undefined, serverName: string): boolean {
  if (!content) return true;
  const parsed = parseServerName(serverName);
  const host = parsed ? parsed.host : serverName.replace(/:\d+$/, "");
  // "Defaults to true if missing or otherwise not a boolean."
  const allowIpLiterals = content.allow_ip_literals === false ? false : true;
  if (!allowIpLiterals && parsed?.ipLiteral) return false;
  if (globs(content.deny).some((re) => re.test(host))) return false;
  return globs(content.allow).some((re) => re.test(host));
}
