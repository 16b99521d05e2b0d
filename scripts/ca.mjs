// A local certificate authority for tests on loopback: one CA and one server certificate that every
// local server (Myelin under wrangler dev, Synapse) presents. Synapse federates only over verified TLS,
// and both Synapse and workerd check the IP SAN when the peer is named by IP literal, so the server
// certificate carries IP:127.0.0.1 and DNS:localhost (see shared/notes/federation-on-loopback.md).
//
// makeCa(dir) writes dir/ca.crt, ca.key, server.crt, server.key (with openssl) unless they are already
// there, and returns their absolute paths. Clients trust the CA through NODE_EXTRA_CA_CERTS (Node and
// workerd under wrangler dev) or Synapse's federation_custom_ca_list.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";

function openssl(args, cwd) {
  const run = spawnSync("openssl", args, { cwd, encoding: "utf8" });
  if (run.error) throw new Error(`openssl could not be run (${run.error.message}); it is needed to make the test CA`);
  if (run.status !== 0) throw new Error(`openssl ${args[0]} failed:\n${run.stderr}`);
}

/**
 * @param {string} dir
 * @returns {{ dir: string, caCert: string, caKey: string, cert: string, key: string }}
 */
export function makeCa(dir) {
  dir = path.resolve(dir);
  const files = {
    dir,
    caCert: path.join(dir, "ca.crt"),
    caKey: path.join(dir, "ca.key"),
    cert: path.join(dir, "server.crt"),
    key: path.join(dir, "server.key"),
  };
  if ([files.caCert, files.caKey, files.cert, files.key].every((f) => existsSync(f))) return files;
  mkdirSync(dir, { recursive: true });
  openssl([
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
    "-subj", "/CN=Myelin test CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ], dir);
  openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], dir);
  writeFileSync(path.join(dir, "server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  openssl([
    "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
    "-out", "server.crt", "-days", "825", "-extfile", "server.ext",
  ], dir);
  for (const f of ["server.csr", "server.ext", "ca.srl"]) rmSync(path.join(dir, f), { force: true });
  return files;
}

/**
 * Issues a server certificate for `name` (and localhost, 127.0.0.1) signed by the CA in `ca` (from makeCa),
 * as `<name>.crt` and `<name>.key` in the CA's folder: for servers named by host name on loopback, found
 * through OUTBOUND_HOSTS_FILE.
 * @param {{ dir: string, caCert: string, caKey: string }} ca
 * @param {string} name
 * @returns {{ cert: string, key: string }}
 */
export function issueCert(ca, name) {
  if (!/^[A-Za-z0-9.-]+$/.test(name)) throw new Error(`not a host name: ${name}`);
  const files = { cert: path.join(ca.dir, `${name}.crt`), key: path.join(ca.dir, `${name}.key`) };
  openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", files.key, "-out", `${name}.csr`, "-subj", `/CN=${name}`], ca.dir);
  writeFileSync(path.join(ca.dir, `${name}.ext`), `subjectAltName=DNS:${name},DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n`);
  openssl([
    "x509", "-req", "-in", `${name}.csr`, "-CA", ca.caCert, "-CAkey", ca.caKey, "-CAcreateserial",
    "-out", files.cert, "-days", "825", "-extfile", `${name}.ext`,
  ], ca.dir);
  for (const f of [`${name}.csr`, `${name}.ext`, "ca.srl"]) rmSync(path.join(ca.dir, f), { force: true });
  return files;
}
