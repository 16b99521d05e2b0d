// End-to-end: `npm start` with HTTPS_KEY/HTTPS_CERT serves HTTPS only (issue 8 §1: Synapse federates only
// over verified TLS), with a certificate from a throwaway CA (test/e2e/tls.ts) for 127.0.0.1 and
// localhost. The key document must be fetched over TLS verified against that CA.
//
// Not tested here: that the Worker's own outbound fetch() trusts the CA given in NODE_EXTRA_CA_CERTS
// (startServer sets it). No route makes an outbound fetch yet; it belongs in the first test that calls a
// remote server (the key notary or the Synapse federation harness). Checked by hand on 2026-12-05 with a
// probe route: fetch("https://127.0.0.1:<own port>/_matrix/federation/v1/version") returned 200 with
// NODE_EXTRA_CA_CERTS set and failed ("TLS peer's certificate is not trusted") without it.
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

  it("serves Node's fetch (and so matrix-js-sdk) once the test process trusts the CA", async () => {
    trustCA(server.ca!);
    const res = await fetch(`${server.baseUrl}/_matrix/federation/v1/version`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { server: { name: string } }).server.name).toBeTruthy();
  });
});
