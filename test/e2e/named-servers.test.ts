// End-to-end: two servers named by host names that no resolver knows, side by side on loopback, as
// Complement's federation runs start them (scripts/complement/start-server.sh): plain HTTP on PORT for
// clients, HTTPS on HTTPS_PORT with a certificate for the server's name, and OUTBOUND_HOSTS_FILE naming
// where the other server is. The file is written after the first server started (Complement gives each
// server its port only when it starts it), so this also checks that the file is re-read.
import { appendFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueCert } from "../../scripts/ca.mjs";
import { parseHostsFile } from "../../scripts/start-network.mjs";
import { freePort, startServer, type RunningServer } from "./server.js";
import { makeTestCA, type TestCA } from "./tls.js";

let ca: TestCA;
let a: RunningServer;
let b: RunningServer;
let hostsFile: string;

async function named(name: string): Promise<RunningServer> {
  const { cert, key } = issueCert({ dir: ca.dir, caCert: ca.caCert, caKey: path.join(ca.dir, "ca.key") }, name);
  const httpsPort = await freePort();
  const server = await startServer({
    SERVER_NAME: name,
    HTTPS_KEY: key,
    HTTPS_CERT: cert,
    HTTPS_PORT: String(httpsPort),
    NODE_EXTRA_CA_CERTS: ca.caCert,
    OUTBOUND_HOSTS_FILE: hostsFile,
    // A port-less name is discovered through .well-known (then no SRV look-up is needed).
    WELL_KNOWN_SERVER: `${name}:8448`,
  });
  appendFileSync(hostsFile, `${name} 127.0.0.1:${httpsPort}\n`);
  return Object.assign(server, { httpsPort });
}

beforeAll(async () => {
  ca = makeTestCA();
  hostsFile = path.join(ca.dir, "hosts");
  writeFileSync(hostsFile, "# written by named-servers.test.ts\n");
  a = await named("a.myelin.test");
  b = await named("b.myelin.test");
}, 200_000);
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  ca?.remove();
});

async function register(server: RunningServer, localpart: string): Promise<{ user_id: string; access_token: string }> {
  const res = await fetch(`${server.baseUrl}/_matrix/client/v3/register`, {
    method: "POST",
    body: JSON.stringify({ username: localpart, password: "pw-named-servers", auth: { type: "m.login.dummy" } }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { user_id: string; access_token: string };
}

/** GET over TLS to 127.0.0.1:port, asking for `name` (SNI), trusting only `ca`. */
function tlsGet(port: number, name: string, urlPath: string): Promise<{ status: number; body: string; authorized: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: urlPath, servername: name, ca: [ca.caPem], agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode!, body, authorized: (res.socket as import("node:tls").TLSSocket).authorized }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("servers named by host names (HTTPS_PORT, OUTBOUND_HOSTS_FILE)", () => {
  it("serves plain HTTP on PORT and HTTPS with a certificate for its name on HTTPS_PORT", async () => {
    expect(a.baseUrl).toBe(`http://127.0.0.1:${a.port}`);
    expect((await fetch(`${a.baseUrl}/_matrix/client/versions`)).status).toBe(200);
    const port = (a as RunningServer & { httpsPort: number }).httpsPort;
    const res = await tlsGet(port, "a.myelin.test", "/_matrix/key/v2/server");
    expect(res).toMatchObject({ status: 200, authorized: true });
    expect((JSON.parse(res.body) as { server_name: string }).server_name).toBe("a.myelin.test");
  });

  it("reaches the other server by name: a profile of b's user read through a (federation query over TLS)", async () => {
    const bob = await register(b, "bob");
    const set = await fetch(`${b.baseUrl}/_matrix/client/v3/profile/${encodeURIComponent(bob.user_id)}/displayname`, {
      method: "PUT",
      headers: { authorization: `Bearer ${bob.access_token}` },
      body: JSON.stringify({ displayname: "Bob on B" }),
    });
    expect(set.status).toBe(200);
    expect(bob.user_id).toBe("@bob:b.myelin.test");
    const res = await fetch(`${a.baseUrl}/_matrix/client/v3/profile/${encodeURIComponent(bob.user_id)}/displayname`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ displayname: "Bob on B" });
    // A name the file does not list is not reached (no resolver knows it): 502, not a hang or a 500.
    const unknown = await fetch(`${a.baseUrl}/_matrix/client/v3/profile/${encodeURIComponent("@x:c.myelin.test")}`);
    expect(unknown.status).toBe(502);
  }, 60_000);
});

describe("parseHostsFile", () => {
  it("reads names, addresses with and without a port, IPv6, comments; a later line wins", () => {
    const hosts = parseHostsFile("# c\nhs1 127.0.0.1:8001\nHS2  10.0.0.2 # two\n\nv6 [::1]:9\nbad\nhs1 127.0.0.1:8002\n");
    expect([...hosts]).toEqual([
      ["hs1", { address: "127.0.0.1", port: 8002 }],
      ["hs2", { address: "10.0.0.2", port: null }],
      ["v6", { address: "::1", port: 9 }],
    ]);
  });
});
