// Network helpers of `npm start` (scripts/start.mjs) for running several servers side by side on one
// machine, as Complement's federation tests do (scripts/complement/):
//
// - httpsFront: serves HTTPS on a second port (HTTPS_PORT) in front of the plain-HTTP listener, so that
//   one server has a plain client API (what Complement's clients use) and a TLS federation port (what
//   other homeservers must use: servers federate over verified TLS only).
// - hostsOverride: an /etc/hosts for the Worker's outbound fetches (OUTBOUND_HOSTS_FILE). Complement names
//   its servers hs1, hs2 and itself host.docker.internal, names no resolver knows here, and gives each
//   server a port only when it starts; the file maps those names to loopback addresses and is re-read
//   when it changes, so servers started later are found. TLS still checks the certificate against the
//   name in the URL (SNI), so the override changes where a connection goes, never whom it trusts.
import { readFileSync, statSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";

/**
 * Listens on `httpsPort` with the given key and certificate and forwards each decrypted connection, byte
 * for byte, to the plain-HTTP listener at `host:port`.
 * @returns {Promise<import("node:tls").Server>}
 */
export function httpsFront({ key, cert, host, httpsPort, port }) {
  const server = tls.createServer({ key, cert }, (socket) => {
    const upstream = net.connect(port, host);
    socket.pipe(upstream).pipe(socket);
    socket.on("error", () => upstream.destroy());
    upstream.on("error", () => socket.destroy());
    socket.on("close", () => upstream.destroy());
    upstream.on("close", () => socket.destroy());
  });
  // A failed handshake (a client that does not trust the certificate) is the client's problem.
  server.on("tlsClientError", () => {});
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(httpsPort, host, () => resolve(server));
  });
}

/**
 * Parses a hosts file: one `NAME ADDRESS` per line, ADDRESS an IP (the URL's port is kept) or `IP:PORT`
 * (every port of NAME goes there); `#` starts a comment; a later line for a name wins.
 * @param {string} text
 * @returns {Map<string, { address: string, port: number | null }>}
 */
export function parseHostsFile(text) {
  const hosts = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") continue;
    const [name, target] = line.split(/\s+/);
    if (!name || !target) continue;
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:]+)(?::(\d+))?$/.exec(target);
    if (!m) continue;
    const address = m[1].replace(/^\[|\]$/g, "");
    hosts.set(name.toLowerCase(), { address, port: m[2] ? Number(m[2]) : null });
  }
  return hosts;
}

/**
 * A Miniflare outbound service (`outboundService`: every fetch the Worker makes) that connects to the
 * address the hosts file names for a URL's hostname, keeping the URL, the Host header and the TLS server
 * name; other hostnames are fetched as they are.
 * @param {string} file
 */
export async function hostsOverride(file) {
  const { Agent, buildConnector, fetch } = await import("undici");
  let cached = { mtimeMs: -1, hosts: new Map() };
  const lookup = (hostname) => {
    try {
      const { mtimeMs } = statSync(file);
      if (mtimeMs !== cached.mtimeMs) cached = { mtimeMs, hosts: parseHostsFile(readFileSync(file, "utf8")) };
    } catch {
      cached = { mtimeMs: -1, hosts: new Map() };
    }
    return cached.hosts.get(hostname.toLowerCase());
  };
  const connect = buildConnector({});
  const dispatcher = new Agent({
    connect(options, callback) {
      const target = lookup(options.hostname);
      if (!target) return connect(options, callback);
      const port = target.port ?? options.port;
      // The certificate is checked against the name in the URL, not the address connected to.
      const servername = net.isIP(options.hostname) ? undefined : options.hostname;
      return connect({ ...options, hostname: target.address, host: `${target.address}:${port}`, port, servername }, callback);
    },
  });
  return (request) =>
    fetch(request.url, {
      method: request.method,
      headers: request.headers,
      body: request.body,
      duplex: "half",
      redirect: request.redirect,
      dispatcher,
    });
}
