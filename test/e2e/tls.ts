// A throwaway certificate authority for tests that need TLS on loopback (federation: Synapse only talks
// to other servers over verified HTTPS). One CA signs one server certificate for 127.0.0.1 and localhost,
// which every local server (Myelin under `npm start`, Synapse) can share. Recipe and tested facts:
// /work/shared/notes/federation-on-loopback.md §1-§3 (the IP SAN is required: Synapse and workerd both
// check it for IP-literal server names).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";

export interface TestCA {
  /** Folder holding every file below. */
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

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** Makes a CA and a server certificate it signs, in a new temporary folder (about 0.2 s). */
export function makeTestCA(): TestCA {
  const dir = mkdtempSync(path.join(os.tmpdir(), "myelin-ca-"));
  openssl(
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=Myelin test CA",
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
    dir,
  );
  openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"], dir);
  writeFileSync(path.join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  openssl(
    ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf"],
    dir,
  );
  const caCert = path.join(dir, "ca.crt");
  return {
    dir,
    caCert,
    serverKey: path.join(dir, "server.key"),
    serverCert: path.join(dir, "server.crt"),
    caPem: readFileSync(caCert, "utf8"),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * Makes Node's own TLS clients in this process (global fetch, and so matrix-js-sdk) trust the CA, besides
 * the usual roots. NODE_EXTRA_CA_CERTS would do the same but is read only when a process starts; child
 * processes (the server, Synapse) get the CA through their own settings instead.
 */
export function trustCA(ca: TestCA): void {
  const current = tls.getCACertificates("default");
  if (!current.includes(ca.caPem)) tls.setDefaultCACertificates([...current, ca.caPem]);
}
