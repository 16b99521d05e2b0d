// One local CA, one Synapse and one Myelin for the federation stage (recipe:
// shared/notes/federation-on-loopback.md). Synapse federates only over verified TLS, so Myelin is served
// over HTTPS with a certificate from the CA (startServer's `https`: HTTPS_KEY, HTTPS_CERT) and Synapse
// serves its federation port with the same certificate and trusts the CA; Myelin's outbound fetches
// trust it through NODE_EXTRA_CA_CERTS, this process through trustCA and the test workers through
// trust-ca.ts. Tests reach both servers through inject().
import type { TestProject } from "vitest/node";
import { ensureSynapse, freePort, startSynapse, type RunningSynapse } from "../../scripts/synapse.mjs";
import { startServer, type RunningServer } from "../e2e/server.js";
import { makeTestCA, trustCA } from "../e2e/tls.js";

export interface ServerInfo {
  /** Client API base URL (Myelin: https; Synapse: its plain-HTTP client listener). */
  baseUrl: string;
  serverName: string;
  registrationSharedSecret: string;
}

declare module "vitest" {
  export interface ProvidedContext {
    caPem: string;
    /** The CA's folder (ca.crt, server.crt, server.key): tests start more servers with it. */
    caDir: string;
    myelin: ServerInfo;
    synapse: ServerInfo;
    /** A port that was free when the stage started: no server answers there. */
    unusedPort: number;
  }
}

const MYELIN_SECRET = "federation-shared-secret";

export default async function setup(project: TestProject) {
  await ensureSynapse();
  const ca = makeTestCA();
  trustCA(ca);
  const started = await Promise.allSettled([
    // bcrypt_rounds 4: tests register many users; Synapse's default 12 rounds cost ~0.3 s each.
    // msc4354_enabled: sticky events (test/federation/sticky-events.test.ts).
    startSynapse({ caDir: ca.dir, extraConfig: { bcrypt_rounds: 4, experimental_features: { msc4354_enabled: true } } }),
    startServer({ REGISTRATION_SHARED_SECRET: MYELIN_SECRET }, { https: ca }),
  ]);
  const [synapseResult, myelinResult] = started;
  const stopAll = async () => {
    await Promise.all([
      synapseResult.status === "fulfilled" ? synapseResult.value.stop() : undefined,
      myelinResult.status === "fulfilled" ? myelinResult.value.stop() : undefined,
    ]);
    ca.remove();
  };
  if (synapseResult.status === "rejected" || myelinResult.status === "rejected") {
    await stopAll();
    throw synapseResult.status === "rejected" ? synapseResult.reason : (myelinResult as PromiseRejectedResult).reason;
  }
  const synapse: RunningSynapse = synapseResult.value;
  const myelin: RunningServer = myelinResult.value;
  project.provide("caPem", ca.caPem);
  project.provide("caDir", ca.dir);
  project.provide("unusedPort", await freePort());
  project.provide("synapse", {
    baseUrl: synapse.baseUrl,
    serverName: synapse.serverName,
    registrationSharedSecret: synapse.registrationSharedSecret,
  });
  project.provide("myelin", { baseUrl: myelin.baseUrl, serverName: myelin.serverName, registrationSharedSecret: MYELIN_SECRET });
  return stopAll;
}
