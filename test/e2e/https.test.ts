// End-to-end: `npm start` with HTTPS_KEY/HTTPS_CERT serves HTTPS only (issue 8 §1: Synapse federates only
// over verified TLS), with a certificate from a throwaway CA (test/e2e/tls.ts) for 127.0.0.1 and
// localhost. The key document must be fetched over TLS verified against that CA.
//
// The Worker's outbound fetch() trusts the CA given in NODE_EXTRA_CA_CERTS (startServer sets it): a second
// server with a certificate from the same CA is asked for its keys through the first one's notary
// endpoint, which fetches them over TLS.
import { request } from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type RunningServer } from "./server.js";
import { trustCA } from "./tls.js";

let server: RunningServer;
beforeAll(async () => {
  server = await startServer({}, { https: true });
});
afterAll(() => server?.stop());

/** GET over TLS with exactly the given CAs, reporting what the handshake saw. */
function tlsGet(url: string, ca: string[]): Promise<{ status: number; body: string; authorized: boolean; altNames: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => {
        const socket = res.socket as import("node:tls").TLSSocket;
        resolve({ status: res.statusCode!, body, authorized: socket.authorized, altNames: socket.getPeerCertificate().subjectaltname ?? "" });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

describe("HTTPS (HTTPS_KEY and HTTPS_CERT)", () => {
  it("serves the key document over TLS verified against the CA, at 127.0.0.1 and localhost", async () => {
    expect(server.baseUrl).toBe(`https://127.0.0.1:${server.port}`);
    for (const host of ["127.0.0.1", "localhost"]) {
      const res = await tlsGet(`https://${host}:${server.port}/_matrix/key/v2/server`, [server.ca!.caPem]);
      expect(res.status).toBe(200);
      expect(res.authorized).toBe(true);
      expect(res.altNames).toContain("IP Address:127.0.0.1");
      const doc = JSON.parse(res.body) as { server_name: string; verify_keys: Record<string, unknown> };
      expect(doc.server_name).toBe(server.serverName);
      expect(Object.keys(doc.verify_keys)).toHaveLength(1);
    }
  });

  it("is refused by a client that does not trust the CA, and does not answer plain HTTP", async () => {
    await expect(tlsGet(`${server.baseUrl}/_matrix/client/versions`, [])).rejects.toMatchObject({ code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" });
    await expect(fetch(`http://127.0.0.1:${server.port}/_matrix/client/versions`)).rejects.toThrow();
  });

  it("fetches another server's keys over TLS trusted through NODE_EXTRA_CA_CERTS (notary query)", async () => {
    const other = await startServer({}, { https: server.ca });
    try {
      const own = JSON.parse((await tlsGet(`${other.baseUrl}/_matrix/key/v2/server`, [server.ca!.caPem])).body) as { verify_keys: object };
      const res = await tlsGet(`${server.baseUrl}/_matrix/key/v2/query/${encodeURIComponent(other.serverName)}`, [server.ca!.caPem]);
      expect(res.status).toBe(200);
      const { server_keys } = JSON.parse(res.body) as {
        server_keys: { server_name: string; verify_keys: object; signatures: Record<string, unknown> }[];
      };
      expect(server_keys).toHaveLength(1);
      expect(server_keys[0]!.server_name).toBe(other.serverName);
      expect(server_keys[0]!.verify_keys).toEqual(own.verify_keys);
      expect(Object.keys(server_keys[0]!.signatures).sort()).toEqual([other.serverName, server.serverName].sort());
    } finally {
      await other.stop();
    }
  }, 120_000);

  it("serves Node's fetch (and so matrix-js-sdk) once the test process trusts the CA", async () => {
    trustCA(server.ca!);
    const res = await fetch(`${server.baseUrl}/_matrix/federation/v1/version`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { server: { name: string } }).server.name).toBeTruthy();
  });
});
