#!/usr/bin/env node
// A real Synapse for federation tests and the side-by-side benchmark, installed and run by the project
// itself (the recipe is shared/notes/federation-on-loopback.md).
//
//   node scripts/synapse.mjs install        pip-installs the pinned Synapse into .synapse/ (idempotent)
//   node scripts/synapse.mjs start [opts]   runs one Synapse in the foreground until Ctrl-C
//       --port N          federation TLS port; the server name is localhost:N (default: a free port)
//       --client-port N   plain-HTTP client API (and federation) port (default: a free port)
//       --server-name S   default localhost:<port>
//       --data-dir D      state folder (default .synapse/data/<port>; kept)
//       --no-tls          no TLS listener (client API only: enough for benchmarks)
//
// Programmatic API (tests, benchmarks): ensureSynapse(), makeCa(dir), startSynapse(options),
// registerWithSharedSecret(baseUrl, secret, localpart, password, admin).
//
// Install: a venv in .synapse/venv (python3 -m venv). Where the venv module is missing (Debian without
// python3-venv), pip installs into .synapse/site (`pip install --target`) and Synapse runs with that on
// PYTHONPATH. SYNAPSE_PYTHON chooses the interpreter (default python3; Synapse needs 3.10 or newer).
import { spawn, spawnSync } from "node:child_process";
import { createHmac, generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, rmdirSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { makeCa } from "./ca.mjs";

export { makeCa };

/** The Synapse release the tests and the benchmark run against (tested: shared/notes/federation-on-loopback.md). */
export const SYNAPSE_VERSION = "1.163.2";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const home = path.join(root, ".synapse");
const venvDir = path.join(home, "venv");
const siteDir = path.join(home, "site");
const marker = (dir) => path.join(dir, `.installed-matrix-synapse-${SYNAPSE_VERSION}`);

/** How to run Python with Synapse importable. */
function installed() {
  if (existsSync(marker(venvDir))) return { python: path.join(venvDir, "bin", "python"), env: {} };
  if (existsSync(marker(siteDir))) return { python: basePython(), env: { PYTHONPATH: siteDir } };
  return null;
}

function basePython() {
  return process.env.SYNAPSE_PYTHON || "python3";
}

function run(cmd, args, what) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: "1" } });
  if (r.error) throw new Error(`${what}: ${cmd} could not be run (${r.error.message})`);
  return r.status === 0;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One installer at a time (tests and a benchmark may start together): a lock folder, stale after 10 min. */
async function withInstallLock(fn) {
  const lock = path.join(home, "install.lock");
  mkdirSync(home, { recursive: true });
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      try {
        if (Date.now() - statSync(lock).mtimeMs > 600_000) rmdirSync(lock);
      } catch {
        // released meanwhile
      }
      await sleep(500);
    }
  }
  try {
    return await fn();
  } finally {
    rmdirSync(lock);
  }
}

/**
 * Installs the pinned Synapse once; later calls return at once.
 * @returns {Promise<{ python: string, env: Record<string, string> }>}
 */
export async function ensureSynapse({ quiet = false } = {}) {
  const done = installed();
  if (done) return done;
  return withInstallLock(async () => {
    const again = installed();
    if (again) return again;
    const log = (m) => quiet || console.log(`[synapse] ${m}`);
    const py = basePython();
    const version = spawnSync(py, ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"], { encoding: "utf8" });
    if (version.status !== 0) throw new Error(`${py} is needed to run Synapse (set SYNAPSE_PYTHON to another interpreter)`);
    const [major, minor] = version.stdout.trim().split(".").map(Number);
    if (major < 3 || (major === 3 && minor < 10)) throw new Error(`Synapse ${SYNAPSE_VERSION} needs Python 3.10+, ${py} is ${version.stdout.trim()}`);
    const pipArgs = ["install", "--no-input", "--progress-bar", "off", "--quiet", `matrix-synapse==${SYNAPSE_VERSION}`];
    const started = Date.now();
    rmSync(venvDir, { recursive: true, force: true });
    log(`installing matrix-synapse ${SYNAPSE_VERSION} into ${path.relative(root, venvDir)} (about 30 s)`);
    if (run(py, ["-m", "venv", venvDir], "python3 -m venv")) {
      const venvPython = path.join(venvDir, "bin", "python");
      if (!run(venvPython, ["-m", "pip", ...pipArgs], "pip install")) throw new Error(`pip install matrix-synapse==${SYNAPSE_VERSION} failed`);
      writeFileSync(marker(venvDir), `${new Date().toISOString()}\n`);
    } else {
      // No venv module (Debian's python3-venv not installed): install beside the project instead.
      log(`python3 -m venv is not available; installing with pip --target ${path.relative(root, siteDir)}`);
      rmSync(venvDir, { recursive: true, force: true });
      rmSync(siteDir, { recursive: true, force: true });
      if (!run(py, ["-m", "pip", ...pipArgs, "--target", siteDir], "pip install --target")) {
        throw new Error(`pip install --target matrix-synapse==${SYNAPSE_VERSION} failed`);
      }
      writeFileSync(marker(siteDir), `${new Date().toISOString()}\n`);
    }
    log(`installed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return installed();
  });
}

/** A free TCP port on 127.0.0.1, chosen by the kernel. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/** A new signing key in Synapse's signing.key format: `ed25519 <version> <unpadded base64 seed>`. */
function newSigningKey() {
  const { privateKey } = generateKeyPairSync("ed25519");
  const der = privateKey.export({ format: "der", type: "pkcs8" });
  const seed = der.subarray(der.length - 32).toString("base64").replace(/=+$/, "");
  return `ed25519 a_${randomBytes(3).toString("hex")} ${seed}\n`;
}

/**
 * Rate limits so high that tests and benchmarks never meet them. Synapse ignores keys it doesn't know,
 * so this list may name limiters of other versions too.
 */
const NO_LIMIT = { per_second: 1_000_000, burst_count: 1_000_000 };
const rateLimitsOff = {
  rc_message: NO_LIMIT,
  rc_registration: NO_LIMIT,
  rc_registration_token_validity: NO_LIMIT,
  rc_login: { address: NO_LIMIT, account: NO_LIMIT, failed_attempts: NO_LIMIT },
  rc_admin_redaction: NO_LIMIT,
  rc_joins: { local: NO_LIMIT, remote: NO_LIMIT },
  rc_joins_per_room: NO_LIMIT,
  rc_3pid_validation: NO_LIMIT,
  rc_invites: { per_room: NO_LIMIT, per_user: NO_LIMIT, per_issuer: NO_LIMIT },
  rc_third_party_invite: NO_LIMIT,
  rc_room_creation: NO_LIMIT,
  rc_key_requests: NO_LIMIT,
  rc_presence: { per_user: NO_LIMIT },
  rc_delayed_event_mgmt: NO_LIMIT,
  rc_reports: NO_LIMIT,
  rc_media_create: NO_LIMIT,
  rc_profile: NO_LIMIT,
  rc_user_directory: NO_LIMIT,
  rc_federation: { window_size: 1000, sleep_limit: 1_000_000, sleep_delay: 1, reject_limit: 1_000_000, concurrent: 1_000_000 },
};

/**
 * Registers a user through Synapse's shared-secret admin API (`/_synapse/admin/v1/register`), which
 * Myelin serves too: a nonce, then HMAC-SHA1 over nonce\0user\0password\0admin|notadmin.
 * @returns {Promise<{ userId: string, accessToken: string, deviceId: string }>}
 */
export async function registerWithSharedSecret(baseUrl, secret, localpart, password, admin = false) {
  const url = `${baseUrl}/_synapse/admin/v1/register`;
  const nonceRes = await fetch(url);
  if (!nonceRes.ok) throw new Error(`GET ${url}: ${nonceRes.status} ${await nonceRes.text()}`);
  const { nonce } = await nonceRes.json();
  const mac = createHmac("sha1", secret)
    .update(`${nonce}\0${localpart}\0${password}\0${admin ? "admin" : "notadmin"}`)
    .digest("hex");
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ nonce, username: localpart, password, admin, mac }),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`POST ${url}: ${res.status} ${JSON.stringify(body)}`);
  return { userId: body.user_id, accessToken: body.access_token, deviceId: body.device_id };
}

/**
 * Starts one Synapse and waits until it answers /health.
 *
 * Listeners: with `caDir`, a TLS federation listener on `port` (the server name's port) using the CA's
 * server certificate, and Synapse trusts that CA for outbound federation; always a plain-HTTP listener
 * on `clientPort` serving the client API and federation. Config: a generated homeserver.yaml, then the
 * loopback overlay (listeners, TLS, no IP blocklist, no notary, short federation retries, no rate
 * limits), then `extraConfig` if given; Synapse merges `-c` files, later top-level keys win.
 *
 * @param {{ serverName?: string, port?: number, clientPort?: number, caDir?: string, dataDir?: string,
 *   extraConfig?: Record<string, unknown>, logLevel?: string, registrationSharedSecret?: string }} [options]
 */
export async function startSynapse(options = {}) {
  const { python, env } = await ensureSynapse();
  const port = options.port ?? (await freePort());
  const clientPort = options.clientPort ?? (await freePort());
  const serverName = options.serverName ?? `localhost:${port}`;
  const ownDataDir = !options.dataDir;
  const dataDir = path.resolve(options.dataDir ?? mkdtempSync(path.join(os.tmpdir(), "myelin-synapse-")));
  const secret = options.registrationSharedSecret ?? randomBytes(16).toString("hex");
  const ca = options.caDir ? makeCa(options.caDir) : null;
  mkdirSync(dataDir, { recursive: true });

  const file = (name) => path.join(dataDir, name);
  if (!existsSync(file("signing.key"))) writeFileSync(file("signing.key"), newSigningKey());
  // YAML is a superset of JSON, so the config files are written as JSON.
  const logConfig = {
    version: 1,
    formatters: { precise: { format: "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s" } },
    handlers: {
      file: { class: "logging.FileHandler", formatter: "precise", filename: file("homeserver.log"), encoding: "utf8" },
    },
    root: { level: options.logLevel ?? "INFO", handlers: ["file"] },
    disable_existing_loggers: false,
  };
  writeFileSync(file("log.yaml"), JSON.stringify(logConfig, null, 2));
  const homeserver = {
    server_name: serverName,
    pid_file: file("homeserver.pid"),
    report_stats: false,
    database: { name: "sqlite3", args: { database: file("homeserver.db") } },
    media_store_path: file("media_store"),
    signing_key_path: file("signing.key"),
    log_config: file("log.yaml"),
    enable_registration: false,
    registration_shared_secret: secret,
    macaroon_secret_key: randomBytes(24).toString("hex"),
    form_secret: randomBytes(24).toString("hex"),
  };
  const listeners = [
    { port: clientPort, bind_addresses: ["127.0.0.1"], type: "http", tls: false, x_forwarded: false,
      resources: [{ names: ["client", "federation"], compress: false }] },
  ];
  if (ca) {
    listeners.unshift({ port, bind_addresses: ["127.0.0.1"], type: "http", tls: true,
      resources: [{ names: ["federation"], compress: false }] });
  }
  const loopback = {
    listeners,
    ...(ca ? { tls_certificate_path: ca.cert, tls_private_key_path: ca.key, federation_custom_ca_list: [ca.caCert] } : {}),
    // Loopback is blocked by default; ip_range_whitelist does not unblock IP-literal server names.
    federation_ip_range_blacklist: [],
    trusted_key_servers: [],
    suppress_key_server_warning: true,
    // Don't back off a peer that restarts for 10 minutes (Synapse's default).
    federation: {
      client_timeout: "10s",
      max_long_retry_delay: "2s",
      max_long_retries: 3,
      destination_min_retry_interval: "2s",
      destination_max_retry_interval: "10s",
    },
    ...rateLimitsOff,
  };
  writeFileSync(file("homeserver.yaml"), JSON.stringify(homeserver, null, 2));
  writeFileSync(file("loopback.yaml"), JSON.stringify(loopback, null, 2));
  const configArgs = ["-c", file("homeserver.yaml"), "-c", file("loopback.yaml")];
  if (options.extraConfig) {
    writeFileSync(file("extra.yaml"), JSON.stringify(options.extraConfig, null, 2));
    configArgs.push("-c", file("extra.yaml"));
  }

  const out = openSync(file("stdout.log"), "a");
  const child = spawn(python, ["-m", "synapse.app.homeserver", ...configArgs], {
    cwd: dataDir,
    env: { ...process.env, ...env },
    stdio: ["ignore", out, out],
    detached: true,
  });
  const killGroup = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  // A test runner that dies must not leave Synapse behind.
  const onExit = () => killGroup("SIGKILL");
  process.once("exit", onExit);

  const baseUrl = `http://127.0.0.1:${clientPort}`;
  const tail = () => {
    const read = (f) => (existsSync(f) ? readFileSync(f, "utf8").split("\n").slice(-40).join("\n") : "");
    return `${read(file("stdout.log"))}\n${read(file("homeserver.log"))}`;
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      process.off("exit", onExit);
      throw new Error(`Synapse exited during start-up (${child.exitCode ?? child.signalCode}):\n${tail()}`);
    }
    try {
      const res = await fetch(`${baseUrl}/health`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      killGroup("SIGKILL");
      process.off("exit", onExit);
      throw new Error(`Synapse did not answer /health within 60 s:\n${tail()}`);
    }
    await sleep(100);
  }

  return {
    baseUrl,
    federationUrl: ca ? `https://127.0.0.1:${port}` : baseUrl,
    serverName,
    port,
    clientPort,
    dataDir,
    /** The Synapse process, leader of its own process group (CPU and memory figures in bench-join.mjs). */
    pid: child.pid,
    registrationSharedSecret: secret,
    /** @returns {Promise<{ userId: string, accessToken: string, deviceId: string }>} */
    registerUser: (localpart, password, admin = false) => registerWithSharedSecret(baseUrl, secret, localpart, password, admin),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        killGroup("SIGTERM");
        await Promise.race([exited, sleep(10_000)]);
        if (child.exitCode === null && child.signalCode === null) killGroup("SIGKILL");
      }
      process.off("exit", onExit);
      if (ownDataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// ---- command line ----

async function main(argv) {
  const [command, ...rest] = argv;
  if (command === "install") {
    await ensureSynapse();
    console.log(`[synapse] matrix-synapse ${SYNAPSE_VERSION} is installed in ${path.relative(root, home)}/`);
    return;
  }
  if (command === "start") {
    const opt = (name) => {
      const i = rest.indexOf(name);
      return i >= 0 ? rest[i + 1] : undefined;
    };
    const port = opt("--port") ? Number(opt("--port")) : await freePort();
    const tls = !rest.includes("--no-tls");
    const synapse = await startSynapse({
      port,
      clientPort: opt("--client-port") ? Number(opt("--client-port")) : undefined,
      serverName: opt("--server-name"),
      dataDir: opt("--data-dir") ?? path.join(home, "data", String(port)),
      caDir: tls ? path.join(home, "ca") : undefined,
    });
    console.log(`[synapse] ${synapse.serverName} running (state in ${synapse.dataDir})`);
    console.log(`[synapse]   client API      ${synapse.baseUrl}`);
    console.log(`[synapse]   federation      ${synapse.federationUrl}`);
    if (tls) console.log(`[synapse]   CA certificate  ${path.join(home, "ca", "ca.crt")}`);
    console.log(`[synapse]   shared secret   ${synapse.registrationSharedSecret} (/_synapse/admin/v1/register)`);
    console.log(`[synapse] logs in ${path.join(synapse.dataDir, "homeserver.log")}; Ctrl-C stops it`);
    const stop = async () => {
      await synapse.stop();
      process.exit(0);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    await new Promise(() => {});
  }
  console.error("usage: node scripts/synapse.mjs install | start [--port N] [--client-port N] [--server-name S] [--data-dir D] [--no-tls]");
  process.exit(2);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`[synapse] ${e.message}`);
    process.exit(1);
  });
}
