// Server names (spec: Appendices, "Server Name"): `hostname [":" port]`, where the hostname is an IPv4
// literal, a bracketed IPv6 literal or a DNS name. Used by server discovery (an IP literal or an explicit
// port short-circuits the look-ups) and by server ACLs (ports are ignored, IP literals may be denied).

export interface ParsedServerName {
  /** The hostname as written: `1.2.3.4`, `[::1]`, `example.org`. */
  host: string;
  /** The explicit port, if the name has one. */
  port: number | null;
  /** Whether the hostname is an IPv4 or (bracketed) IPv6 literal. */
  ipLiteral: boolean;
}

const IPV4 = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;
// The grammar allows 1-5 digits (any value); a port must still be usable: 1..65535.
const PORT = /^\d{1,5}$/;
const DNS_NAME = /^[A-Za-z0-9.-]{1,255}$/;
// IPv6 text form: hex groups, colons, an optional embedded IPv4 tail. Checked loosely (as Synapse's
// grammar check does); the runtime's URL parser is the final judge when a request is made.
const IPV6 = /^[0-9A-Fa-f:.]{2,45}$/;

/** Parses a server name; null if it does not follow the grammar. */
export function parseServerName(name: string): ParsedServerName | null {
  if (typeof name !== "string" || name.length === 0 || name.length > 255) return null;
  let host: string;
  let portText: string | undefined;
  if (name.startsWith("[")) {
    const end = name.indexOf("]");
    if (end < 0) return null;
    host = name.slice(0, end + 1);
    const rest = name.slice(end + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) return null;
      portText = rest.slice(1);
    }
    if (!IPV6.test(host.slice(1, -1)) || !host.includes(":")) return null;
  } else {
    const colon = name.lastIndexOf(":");
    if (colon >= 0) {
      host = name.slice(0, colon);
      portText = name.slice(colon + 1);
    } else {
      host = name;
    }
    if (!DNS_NAME.test(host)) return null;
  }
  let port: number | null = null;
  if (portText !== undefined) {
    if (!PORT.test(portText)) return null;
    port = Number(portText);
    if (port < 1 || port > 65535) return null;
  }
  // The grammar's IPv4address is four groups of 1-3 digits; such a name is never a DNS name.
  const ipLiteral = host.startsWith("[") || IPV4.test(host);
  return { host, port, ipLiteral };
}

/** The hostname part of a server name, without the port (brackets kept for IPv6). */
export function hostnameOf(name: string): string {
  const parsed = parseServerName(name);
  if (parsed) return parsed.host;
  // Not a valid server name: strip a trailing `:digits` anyway so callers compare like with like.
  return name.replace(/:\d+$/, "");
}

/** Whether a string is a syntactically valid server name. */
export const isValidServerName = (name: string): boolean => parseServerName(name) !== null;
