// Test files reach Myelin over HTTPS: trust the stage's local CA in this worker, next to the usual roots
// (tls.setDefaultCACertificates, Node 22.19+; NODE_EXTRA_CA_CERTS would have to be set before Node starts).
import { readFileSync } from "node:fs";
import tls from "node:tls";
import { inject } from "vitest";

export function trustCa(caCertPath: string): void {
  if (typeof tls.setDefaultCACertificates !== "function") {
    throw new Error(`Node ${process.version} cannot add a CA at run time: run the tests with the project's Node 22 (npm test)`);
  }
  const ca = readFileSync(caCertPath, "utf8");
  const current = tls.getCACertificates("default");
  if (!current.includes(ca)) tls.setDefaultCACertificates([...current, ca]);
}

// As a setup file (inside a test worker): the CA made by global-setup.ts.
if (process.env.VITEST_WORKER_ID !== undefined) trustCa(inject("caCert"));
