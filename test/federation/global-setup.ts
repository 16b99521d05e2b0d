// One local CA, one Synapse and one Myelin for the federation stage (recipe:
// shared/notes/federation-on-loopback.md). Synapse federates only over verified TLS, so Myelin is served
// over HTTPS with a certificate from the CA (scripts/start.mjs: HTTPS_KEY, HTTPS_CERT) and Synapse
// trusts that CA; Myelin's outbound fetches trust it through NODE_EXTRA_CA_CERTS, Node's through
// trust-ca.ts. Tests reach both through inject().
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { ensureSynapse, freePort, makeCa, startSynapse, type RunningSynapse } from "../../scripts/synapse.mjs";
import { startServer, type RunningServer } from "../e2e/server.js";
import { trustCa } from "./trust-ca.js";

export interface ServerInfo {
  /** Client API base URL (Myelin: https; Synapse: its plain-HTTP client listener). */
  baseUrl: string;
  serverName: string;
  registrationSharedSecret: string;
}

declare module "vitest" {
  export interface ProvidedContext {
    caCert: string;
    myelin: ServerInfo;
    synapse: ServerInfo;
    /** A port that was free when the stage started: no server answers there. */
    unusedPort: number;
  }
}

const MYELIN_SECRET = "federation-shared-secret";

export default async function setup(project: TestProject) {
  await ensureSynapse();
  const caDir = mkdtempSync(path.join(os.tmpdir(), "myelin-fed-ca-"));
  const ca = makeCa(caDir);
  trustCa(ca.caCert);
  const started = await Promise.allSettled([
    startSynapse({ caDir }),
    startServer({
      HTTPS_KEY: ca.key,
      HTTPS_CERT: ca.cert,
      NODE_EXTRA_CA_CERTS: ca.caCert,
      REGISTRATION_SHARED_SECRET: MYELIN_SECRET,
    }),
  ]);
  const [synapseResult, myelinResult] = started;
  const stopAll = async () => {
    await Promise.all([
      synapseResult.status === "fulfilled" ? synapseResult.value.stop() : undefined,
      myelinResult.status === "fulfilled" ? myelinResult.value.stop() : undefined,
    ]);
    rmSync(caDir, { recursive: true, force: true });
  };
  if (synapseResult.status === "rejected" || myelinResult.status === "rejected") {
    await stopAll();
    throw synapseResult.status === "rejected" ? synapseResult.reason : (myelinResult as PromiseRejectedResult).reason;
  }
  const synapse: RunningSynapse = synapseResult.value;
  const myelin: RunningServer = myelinResult.value;
  project.provide("caCert", ca.caCert);
  project.provide("unusedPort", await freePort());
  project.provide("synapse", {
    baseUrl: synapse.baseUrl,
    serverName: synapse.serverName,
    registrationSharedSecret: synapse.registrationSharedSecret,
  });
  project.provide("myelin", { baseUrl: myelin.baseUrl, serverName: myelin.serverName, registrationSharedSecret: MYELIN_SECRET });
  return stopAll;
}
