// Myelin as a child process, started exactly as `npm start` starts it (scripts/start.mjs), for the
// side-by-side benchmarks (bench-compare.mjs, bench-join.mjs). The test suites have their own TypeScript
// twin in test/e2e/server.ts.
import { spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "./synapse.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The client rate limits Myelin has (RC_*), all off: benchmarks measure the server, not its limiter. */
export const RATE_LIMITS_OFF = Object.fromEntries(
  ["RC_LOGIN_ADDRESS", "RC_LOGIN_ACCOUNT", "RC_LOGIN_FAILED_ATTEMPTS", "RC_REGISTRATION", "RC_REGISTRATION_TOKEN_VALIDITY"].map((k) => [k, "off"]),
);

/**
 * Starts Myelin on a free port with fresh state in a temporary folder and waits for start.mjs's
 * "ready at" line (printed once the D1 migrations are applied).
 *
 * @param {{ secret: string, ca?: { cert: string, key: string, caCert: string }, env?: Record<string, string>, dataDir?: string, port?: number }} options
 *   `ca` (from scripts/ca.mjs's makeCa): serve HTTPS with its server certificate and trust the CA for
 *   outbound federation, as federation with Synapse needs. `dataDir` and `port`: restart a server on the
 *   state it left (then `stop` keeps the folder; the caller removes it).
 * @returns {Promise<{ baseUrl: string, serverName: string, pid: number, logFile: string, stop(): Promise<void> }>}
 */
export async function startMyelin({ secret, ca, env = {}, dataDir: givenDataDir, port: givenPort }) {
  const port = givenPort ?? (await freePort());
  const dataDir = givenDataDir ?? mkdtempSync(path.join(os.tmpdir(), "myelin-bench-"));
  const tls = ca ? { HTTPS_KEY: ca.key, HTTPS_CERT: ca.cert, NODE_EXTRA_CA_CERTS: ca.caCert } : {};
  const child = spawn(process.execPath, [path.join(root, "scripts", "start.mjs")], {
    cwd: root,
    env: {
      ...process.env,
      // wrangler's config reader needs the project's Node 22 (node_modules/.bin/node) under an older node.
      PATH: `${path.join(root, "node_modules", ".bin")}${path.delimiter}${process.env.PATH}`,
      PORT: String(port),
      INSPECTOR_PORT: String(await freePort()),
      DATA_DIR: dataDir,
      REGISTRATION_SHARED_SECRET: secret,
      ...RATE_LIMITS_OFF,
      ...tls,
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let log = "";
  const logFile = path.join(os.tmpdir(), `myelin-bench-${port}.log`);
  const logStream = createWriteStream(logFile);
  child.stdout.on("data", (d) => (log.length < 100_000 && (log += d), logStream.write(d)));
  child.stderr.on("data", (d) => (log.length < 100_000 && (log += d), logStream.write(d)));
  const kill = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // gone
    }
  };
  process.once("exit", () => kill("SIGKILL"));
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`Myelin exited during start-up:\n${log}`);
    if (log.includes("[myelin] ready at ")) break;
    if (Date.now() > deadline) {
      kill("SIGKILL");
      throw new Error(`Myelin did not start within 120 s:\n${log}`);
    }
    await sleep(250);
  }
  return {
    baseUrl: `${ca ? "https" : "http"}://127.0.0.1:${port}`,
    serverName: env.SERVER_NAME ?? `localhost:${port}`,
    pid: child.pid,
    port,
    dataDir,
    logFile,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        kill("SIGTERM");
        await Promise.race([exited, sleep(5000)]);
        if (child.exitCode === null) kill("SIGKILL");
      }
      if (givenDataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
