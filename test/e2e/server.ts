// Starts the real server the way `npm start` does (scripts/start.mjs: D1 migrations, then the Worker in
// workerd under Miniflare) on a free port with a fresh state folder, and stops it afterwards.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { makeTestCA, type TestCA } from "./tls.js";

export interface RunningServer {
  /** `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` when started with `https`. */
  baseUrl: string;
  serverName: string;
  port: number;
  dataDir: string;
  /** The CA that signed the server's certificate (HTTPS only). */
  ca?: TestCA;
  /** Everything the server printed so far. */
  log(): string;
  stop(): Promise<void>;
}

export interface ServerOptions {
  /**
   * Serve HTTPS with a certificate for 127.0.0.1 and localhost: `true` makes a throwaway CA (removed on
   * stop), or pass a CA to share with other servers (Synapse). The server's outbound fetches trust the CA
   * too (NODE_EXTRA_CA_CERTS). Node's fetch in the test process does not until `trustCA(server.ca)`.
   */
  https?: boolean | TestCA;
  /** Reuse a state folder (e.g. to restart a server); it is then not deleted on stop. */
  dataDir?: string;
  /** A fixed port instead of a free one. */
  port?: number;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

function killGroup(child: ChildProcess): void {
  try {
    process.kill(-child.pid!, "SIGKILL");
  } catch {
    // the group is gone already
  }
}

export async function startServer(extraEnv: Record<string, string> = {}, options: ServerOptions = {}): Promise<RunningServer> {
  const port = options.port ?? (await freePort());
  const inspectorPort = await freePort();
  const dataDir = options.dataDir ?? mkdtempSync(path.join(os.tmpdir(), "myelin-e2e-"));
  const ca = options.https === true ? makeTestCA() : options.https || undefined;
  const tlsEnv: Record<string, string> = ca ? { HTTPS_KEY: ca.serverKey, HTTPS_CERT: ca.serverCert, NODE_EXTRA_CA_CERTS: ca.caCert } : {};
  const root = path.resolve(import.meta.dirname, "../..");
  const child: ChildProcess = spawn(process.execPath, [path.join(root, "scripts/start.mjs")], {
    cwd: root,
    env: { ...process.env, PORT: String(port), DATA_DIR: dataDir, INSPECTOR_PORT: String(inspectorPort), ...tlsEnv, ...extraEnv },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let log = "";
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start within 90 s:\n${log}`)), 90_000);
    child.stdout?.on("data", (d) => {
      log += d;
      if (log.includes("[myelin] ready at ")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr?.on("data", (d) => (log += d));
    child.once("exit", () => {
      clearTimeout(timer);
      reject(new Error(`server exited early:\n${log}`));
    });
  });
  const removeOwned = () => {
    if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    if (options.https === true) ca?.remove();
  };
  try {
    await ready;
  } catch (e) {
    killGroup(child);
    removeOwned();
    throw e;
  }
  return {
    baseUrl: `${ca ? "https" : "http"}://127.0.0.1:${port}`,
    serverName: extraEnv.SERVER_NAME ?? `localhost:${port}`,
    port,
    dataDir,
    ca,
    log: () => log,
    async stop() {
      // start.mjs disposes Miniflare (and so workerd) on SIGTERM; whatever is left of its process group
      // after that is killed.
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      }
      killGroup(child);
      removeOwned();
    },
  };
}
