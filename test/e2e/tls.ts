// A throwaway certificate authority for tests that need TLS on loopback (federation: Synapse only talks
// to other servers over verified HTTPS). One CA signs one server certificate for 127.0.0.1 and localhost,
// which every local server (Myelin under `npm start`, Synapse) can share. The certificates are made by
// scripts/ca.mjs, the project's one CA helper (also used by scripts/synapse.mjs outside the tests).
// Recipe and tested facts: /work/shared/notes/federation-on-loopback.md §1-§3 (the IP SAN is required:
// Synapse and workerd both check it for IP-literal server names).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { makeCa } from "../../scripts/ca.mjs";

export interface TestCA {
  /** Folder holding every file below (ca.crt, ca.key, server.crt, server.key: what startSynapse's caDir expects). */
  dir: string;
  /** PEM paths: the CA certificate (give it to NODE_EXTRA_CA_CERTS, Synapse's federation_custom_ca_list). */
  caCert: string;
  /** The server key and certificate (SANs IP:127.0.0.1, DNS:localhost), for HTTPS_KEY/HTTPS_CERT. */
  serverKey: string;
  serverCert: string;
  /** The CA certificate's PEM text. */
  caPem: string;
  /** Deletes the folder. */
  remove(): void;
}

/** Makes a CA and a server certificate it signs, in a new temporary folder (about 0.2 s). */
export function makeTestCA(): TestCA {
  const dir = mkdtempSync(path.join(os.tmpdir(), "myelin-ca-"));
  const files = makeCa(dir);
  return {
    dir,
    caCert: files.caCert,
    serverKey: files.key,
    serverCert: files.cert,
    caPem: readFileSync(files.caCert, "utf8"),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * Makes Node's own TLS clients in this process (global fetch, and so matrix-js-sdk) trust the CA, besides
 * the usual roots. NODE_EXTRA_CA_CERTS would do the same but is read only when a process starts; child
 * processes (the server, Synapse) get the CA through their own settings instead. Needs Node 22.19+ (the
 * project's Node, as npm scripts run it).
 */
export function trustCA(ca: Pick<TestCA, "caPem">): void {
  if (typeof tls.setDefaultCACertificates !== "function") {
    throw new Error(`Node ${process.version} cannot add a CA at run time: run the tests with the project's Node 22 (npm test)`);
  }
  const current = tls.getCACertificates("default");
  if (!current.includes(ca.caPem)) tls.setDefaultCACertificates([...current, ca.caPem]);
}
