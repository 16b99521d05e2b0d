#!/usr/bin/env node
// `npm start`: runs the whole homeserver locally in workerd with persistent D1 and Durable Object state.
// Applies pending D1 migrations before it reports ready, so a fresh checkout needs no extra step.
//
// The Worker runs under Miniflare directly, not `wrangler dev`: wrangler 4.124's dev ProxyWorker turns one
// failed request under concurrent load into a fatal error and closes the port (issue 13 §1;
// cloudflare/workers-sdk#15317, #4562), and newer wrangler cannot be used with vitest-pool-workers 0.23.
// wrangler still does what it does well: it reads wrangler.toml (bindings, compatibility date and flags,
// SQLite-backed Durable Objects; one source of truth) and bundles worker/index.ts as `wrangler deploy`
// would; that build is cached until its inputs change. D1 migrations are applied here with wrangler's
// bookkeeping (applyMigrations). State lives where `wrangler dev --persist-to DATA_DIR` kept it
// (DATA_DIR/v3/{d1,do}), so folders from before this change are still read.
//
// Environment:
//   PORT (8008), HOST (127.0.0.1), SERVER_NAME (localhost:<PORT>), DATA_DIR (.data/<PORT>),
//   INSPECTOR_PORT (<PORT>+20000; Chrome DevTools for the Worker),
//   LOG_REQUESTS=1: print a line per request (method, path, status, time); off by default (see below).
//   HTTPS_KEY and HTTPS_CERT: paths of a PEM key and certificate; when both are set the server speaks
//   HTTPS only (federation needs TLS: Synapse never federates over plain HTTP).
//   HTTPS_PORT: with HTTPS_KEY and HTTPS_CERT, PORT stays plain HTTP and HTTPS is served on HTTPS_PORT
//   too (scripts/start-network.mjs; Complement's federation runs use it).
//   OUTBOUND_HOSTS_FILE: tests only; a hosts file (`NAME ADDRESS[:PORT]` per line, re-read when it
//   changes) that the Worker's outbound fetches resolve through first (scripts/start-network.mjs).
//   NODE_EXTRA_CA_CERTS: a PEM file of extra CAs that the Worker's outbound fetch() trusts (Miniflare
//   reads it when it is loaded and adds it to workerd's `internet` service).
//   Worker settings: every variable named in WORKER_VARS below is passed to the Worker as a var.
//   APPSERVICE_CONFIG_FILES: comma-separated application service registration files (Synapse's
//   `app_service_config_files`), checked before anything starts and stored in D1 once it is ready.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Environment variables passed through to the Worker (worker/env.ts `Env`) when set. A name ending in
 * `*` passes every variable with that prefix. Add new settings here.
 */
const WORKER_VARS = [
  "SIGNING_KEY",
  "ENABLE_REGISTRATION",
  "REGISTRATION_SHARED_SECRET",
  "WELL_KNOWN_SERVER",
  "WELL_KNOWN_CLIENT",
  "RC_*",
  "FEDERATION_*",
  "TURN_*",
  "MAX_UPLOAD_SIZE",
  "MAX_EVENT_DELAY",
  "DEFAULT_ROOM_VERSION",
  "MATRIX_RTC_*",
  "MAX_DELAYED_EVENTS_PER_USER",
  "MEDIA_*",
  "URL_PREVIEW_*",
  "SERVER_NOTICES_*",
  "PUSH_*",
  "USER_DIRECTORY_*",
];

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const port = Number(process.env.PORT || "8008");
const host = process.env.HOST || "127.0.0.1";
const serverName = process.env.SERVER_NAME || `localhost:${port}`;
const dataDir = path.resolve(root, process.env.DATA_DIR || path.join(".data", String(port)));
const inspectorPort = Number(process.env.INSPECTOR_PORT || port + 20000);
const wrangler = path.join(root, "node_modules", ".bin", "wrangler");
const wranglerEnv = { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" };
const log = (line) => console.log(`[myelin] ${line}`);

// Settings that `Env` (worker/env.ts) declares as strings, and bindings it declares otherwise (a
// variable such as FEDERATION_TEST_FETCHER must not turn a binding into a string).
const envTs = readFileSync(path.join(root, "worker", "env.ts"), "utf8");
const envFields = [...envTs.matchAll(/^\s+([A-Z][A-Z0-9_]*)\??: ([A-Za-z<>]+)/gm)].map(([, name, type]) => ({ name, type }));
const notStrings = new Set(envFields.filter((f) => f.type !== "string").map((f) => f.name));
const listed = (name) => !notStrings.has(name) && WORKER_VARS.some((p) => (p.endsWith("*") ? name.startsWith(p.slice(0, -1)) : name === p));
const vars = { ENABLE_REGISTRATION: "true" };
for (const [name, value] of Object.entries(process.env)) {
  if (listed(name) && value !== "") vars[name] = value;
}
vars.SERVER_NAME = serverName;
// A reminder for whoever adds a setting to the Worker: one not covered by WORKER_VARS would silently
// never reach it locally.
for (const { name, type } of envFields) {
  if (type === "string" && name !== "SERVER_NAME" && !listed(name)) console.warn(`[myelin] worker/env.ts declares ${name}; add it to WORKER_VARS in scripts/start.mjs`);
}

let mf;
let stopping = false;
const children = new Set();
const temporaryDirs = [];

function fail(message) {
  console.error(`[myelin] ${message}`);
  cleanUp();
  process.exit(1);
}

function cleanUp() {
  for (const child of children) child.kill("SIGTERM");
}

/** Stops workerd (Miniflare) and any wrangler still running, then exits. */
async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  log("stopping");
  const timer = setTimeout(() => process.exit(1), 5000);
  try {
    await mf?.dispose();
  } finally {
    clearTimeout(timer);
    cleanUp();
    process.exit(code);
  }
}
// Miniflare has signal handlers of its own too: on SIGINT/SIGTERM it stops workerd and exits (130/143).
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => void stop());
process.on("exit", () => {
  for (const dir of temporaryDirs) rmSync(dir, { recursive: true, force: true });
});

// Application service registrations: a broken one stops the start here, naming the file and the field.
let appserviceEntries = [];
{
  const { configFilesFrom, readRegistrationFiles, RegistrationError } = await import("./appservice-registrations.mjs");
  try {
    appserviceEntries = readRegistrationFiles(configFilesFrom(process.env.APPSERVICE_CONFIG_FILES).map((f) => path.resolve(f)));
  } catch (e) {
    if (e instanceof RegistrationError) fail(`APPSERVICE_CONFIG_FILES: ${e.message}`);
    throw e;
  }
}

// HTTPS: both PEM files, read now so that a wrong path fails before anything starts.
let https = {};
if (process.env.HTTPS_KEY || process.env.HTTPS_CERT) {
  if (!process.env.HTTPS_KEY || !process.env.HTTPS_CERT) fail("HTTPS_KEY and HTTPS_CERT must be set together");
  try {
    https = { httpsKey: readFileSync(process.env.HTTPS_KEY, "utf8"), httpsCert: readFileSync(process.env.HTTPS_CERT, "utf8") };
  } catch (e) {
    fail(`cannot read HTTPS_KEY or HTTPS_CERT: ${e.message}`);
  }
}
// HTTPS_PORT: HTTPS beside plain HTTP on PORT, through a TLS front started once the server is ready.
const httpsPort = process.env.HTTPS_PORT ? Number(process.env.HTTPS_PORT) : null;
let httpsFrontOptions = null;
if (httpsPort !== null) {
  if (!Number.isInteger(httpsPort) || httpsPort <= 0 || httpsPort > 65535) fail(`HTTPS_PORT is not a port: ${process.env.HTTPS_PORT}`);
  if (!https.httpsKey) fail("HTTPS_PORT needs HTTPS_KEY and HTTPS_CERT");
  httpsFrontOptions = { key: https.httpsKey, cert: https.httpsCert, host, httpsPort, port };
  https = {};
}
// OUTBOUND_HOSTS_FILE: the Worker's outbound fetches go through a Node handler that reads it.
const outboundService = process.env.OUTBOUND_HOSTS_FILE
  ? await (await import("./start-network.mjs")).hostsOverride(path.resolve(process.env.OUTBOUND_HOSTS_FILE))
  : undefined;

/**
 * Applies the D1 migrations that are not applied yet, the way `wrangler d1 migrations apply DB --local`
 * does (same bookkeeping table, so state folders migrated by either stay consistent): each file's
 * statements and its row in the migrations table in one batch. Done in this process through the binding
 * because a second wrangler process costs seconds. The port is open meanwhile; "ready" follows.
 */
async function applyMigrations({ table, files }) {
  const quoted = `"${table.replace(/"/g, '""')}"`;
  const db = await mf.getD1Database("DB");
  await db.exec(`CREATE TABLE IF NOT EXISTS ${quoted}(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL);`);
  const applied = new Set((await db.prepare(`SELECT name FROM ${quoted}`).all()).results.map((r) => r.name));
  for (const { name, statements } of files) {
    if (applied.has(name)) continue;
    await db.batch([...statements.map((q) => db.prepare(q)), db.prepare(`INSERT INTO ${quoted} (name) VALUES (?)`).bind(name)]);
    log(`applied D1 migration ${name}`);
  }
}

/**
 * Runs start-up work that talks to D1 through Miniflare's proxy, again when workerd dropped the proxy's
 * connection. With a state folder whose migrations are known applied, workerd listens on PORT while this
 * runs, so a client's requests can keep workerd busy; a reused keep-alive connection it closed meanwhile
 * fails with "other side closed", and a start that died of that would take the whole server down. The
 * work is idempotent (CREATE IF NOT EXISTS, a migration and its record in one batch, upserts).
 */
async function retryingDropped(work) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (e) {
      const dropped = /fetch failed|other side closed|ECONNRESET|socket hang up/i.test(`${e?.message} ${e?.cause?.message ?? ""}`);
      if (!dropped || attempt >= 5) throw e;
      log(`D1 proxy connection dropped during start-up (attempt ${attempt}); trying again`);
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}

/** Runs wrangler; its output is shown only when it fails. */
function runWrangler(args, what) {
  return new Promise((resolve) => {
    const child = spawn(wrangler, args, { cwd: root, env: wranglerEnv, stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    let output = "";
    child.stdout?.on("data", (d) => (output += d));
    child.stderr?.on("data", (d) => (output += d));
    child.on("exit", (code) => {
      children.delete(child);
      if (stopping) return;
      if (code !== 0) fail(`${what} failed:\n${output}`);
      resolve();
    });
  });
}

log(`server name ${serverName}, port ${port}, state in ${dataDir}`);

// The build: the bundle, the Worker's Miniflare options from wrangler.toml, and the migrations split into
// statements. wrangler takes seconds to load (20 MB of JS), so a build is kept in node_modules/.cache and
// reused while none of its inputs changed: the files esbuild read for the bundle, wrangler.toml, the
// files wrangler reads vars from, the migrations and package-lock.json.
const cacheRoot = path.join(root, "node_modules", ".cache", "myelin-start");
const fixedInputs = ["wrangler.toml", ".dev.vars", ".env", "package-lock.json"];

function inputsKey(inputs, migrationsDir) {
  const hash = createHash("sha256");
  const migrations = existsSync(migrationsDir) ? readdirSync(migrationsDir).filter((f) => f.endsWith(".sql")).sort() : [];
  for (const file of [...fixedInputs, ...inputs, ...migrations.map((f) => path.join(migrationsDir, f))]) {
    const abs = path.resolve(root, file);
    hash.update(`${file}\0${existsSync(abs) ? readFileSync(abs) : "(absent)"}\0`);
  }
  return hash.digest("hex").slice(0, 32);
}

function cachedBuild() {
  try {
    const latest = JSON.parse(readFileSync(path.join(cacheRoot, "latest.json"), "utf8"));
    const dir = path.join(cacheRoot, inputsKey(latest.inputs, path.resolve(root, latest.migrationsDir)));
    return { ...JSON.parse(readFileSync(path.join(dir, "build.json"), "utf8")), script: path.join(dir, "index.js") };
  } catch {
    return null;
  }
}

async function freshBuild() {
  const outDir = mkdtempSync(path.join(os.tmpdir(), "myelin-bundle-"));
  temporaryDirs.push(outDir);
  const bundled = runWrangler(["deploy", "--dry-run", "--outdir", outDir, "--metafile", path.join(outDir, "meta.json")], "bundling worker/index.ts");
  const { unstable_getMiniflareWorkerOptions, unstable_readConfig, unstable_splitSqlQuery } = await import("wrangler");
  const config = unstable_readConfig({ config: path.join(root, "wrangler.toml") });
  // Bindings, compatibility date and flags. The module rules are for wrangler's bundler, done by then.
  const { modulesRules: _rules, ...workerOptions } = unstable_getMiniflareWorkerOptions(config).workerOptions;
  const d1 = config.d1_databases.find((d) => d.binding === "DB");
  const migrationsDir = d1.migrations_dir ?? "migrations";
  const sqlFiles = readdirSync(path.resolve(root, migrationsDir)).filter((f) => f.endsWith(".sql")).sort();
  const migrations = {
    table: d1.migrations_table ?? "d1_migrations",
    files: sqlFiles.map((name) => ({
      name,
      statements: unstable_splitSqlQuery(readFileSync(path.resolve(root, migrationsDir, name), "utf8")).filter((q) => q.trim() !== ""),
    })),
  };
  await bundled;
  const meta = JSON.parse(readFileSync(path.join(outDir, "meta.json"), "utf8"));
  const inputs = Object.keys(meta.inputs).map((f) => path.relative(root, path.resolve(root, f))).sort();
  const key = inputsKey(inputs, path.resolve(root, migrationsDir));
  const dir = path.join(cacheRoot, key);
  // WebAssembly modules the bundle imports (the thumbnailer's image library) sit beside index.js.
  const wasmModules = readdirSync(outDir).filter((f) => f.endsWith(".wasm"));
  const build = { name: config.name, workerOptions, migrations, wasmModules };
  try {
    // Publish by renaming a complete folder, so that a server starting meanwhile never sees half a build.
    mkdirSync(cacheRoot, { recursive: true });
    const staging = mkdtempSync(path.join(cacheRoot, "staging-"));
    copyFileSync(path.join(outDir, "index.js"), path.join(staging, "index.js"));
    for (const f of wasmModules) copyFileSync(path.join(outDir, f), path.join(staging, f));
    writeFileSync(path.join(staging, "build.json"), JSON.stringify(build));
    writeFileSync(path.join(staging, "inputs.json"), JSON.stringify(inputs));
    rmSync(dir, { recursive: true, force: true });
    renameSync(staging, dir);
    writeFileSync(path.join(cacheRoot, "latest.json.tmp"), JSON.stringify({ inputs, migrationsDir }));
    renameSync(path.join(cacheRoot, "latest.json.tmp"), path.join(cacheRoot, "latest.json"));
    // Builds older than a day are from earlier sources.
    for (const old of readdirSync(cacheRoot)) {
      const p = path.join(cacheRoot, old);
      if (old !== key && Date.now() - statSync(p).mtimeMs > 86_400_000) rmSync(p, { recursive: true, force: true });
    }
    return { ...build, script: path.join(dir, "index.js") };
  } catch (e) {
    log(`not caching the build (${e.message})`);
    return { ...build, script: path.join(outDir, "index.js") };
  }
}

const build = cachedBuild() ?? (await freshBuild());
const { Log, LogLevel, Miniflare, convertV4MiniflareOptions } = await import("miniflare");
if (stopping) await new Promise(() => {});

// The flat ("V4") option format, converted as wrangler itself does.
// Clients reach the Worker through a socket of its own (Miniflare's `unsafeDirectSockets`), not through
// Miniflare's entry worker, a second JavaScript hop on every request (it copies the request three times,
// parses its URL twice and gzips JSON answers). Without it a message send here takes 0.4 ms less and a
// waiting /sync wakes 1.5 ms sooner (9.1 to 7.5 ms at the median). Nothing it adds is used: Request.cf is
// off, no route or upstream is set, and errors are Matrix JSON, not its HTML error page. The entry socket
// stays on a free port for Miniflare's own calls (getD1Database). With HTTPS_KEY and HTTPS_CERT (and no
// HTTPS_PORT) PORT speaks TLS, which only the entry socket can, so it serves PORT then.
const direct = !https.httpsKey;
const miniflareOptions = (listenPort) => convertV4MiniflareOptions({
  host,
  port: direct ? 0 : listenPort,
  inspectorPort,
  ...https,
  // Where `wrangler dev --persist-to DATA_DIR` keeps D1 and Durable Object state.
  resourcePersistencePath: path.join(dataDir, "v3"),
  // No Request.cf download from workers.cloudflare.com: start offline, without a 3 s timeout.
  cf: false,
  log: new Log(LogLevel.INFO),
  telemetry: { enabled: false },
  // A line per request is a loopback HTTP call from workerd to this process (Miniflare's core/log), about a
  // fifth of the workerd CPU of a message send here: off unless LOG_REQUESTS=1.
  logRequests: process.env.LOG_REQUESTS === "1",
  workers: [
    {
      ...build.workerOptions,
      // The name keys Durable Object storage (DATA_DIR/v3/do/<name>-<class>), as under wrangler dev.
      name: build.name,
      modulesRoot: path.dirname(build.script),
      modules: [
        { type: "ESModule", path: build.script },
        ...(build.wasmModules ?? []).map((f) => ({ type: "CompiledWasm", path: path.join(path.dirname(build.script), f) })),
      ],
      bindings: { ...build.workerOptions.bindings, ...vars },
      ...(direct ? { unsafeDirectSockets: [{ host, port: listenPort }] } : {}),
      ...(outboundService ? { outboundService } : {}),
    },
  ],
});
// A client must never reach the Worker before its tables exist (it would answer 500 "no such table"; a
// supervisor that polls the port, like Complement's driver, sends its first requests at once). So while
// migrations are pending, workerd listens on a free port first, the migrations are applied through the
// binding, and then it is restarted on PORT. Which migrations a state folder has is remembered in it, so
// a later start with nothing to apply listens on PORT at once.
const migrationsMarker = path.join(dataDir, "v3", "myelin-migrations.json");
const migrationNames = JSON.stringify(build.migrations.files.map((f) => f.name));
const migrationsKnownApplied = existsSync(migrationsMarker) && readFileSync(migrationsMarker, "utf8") === migrationNames;
mf = new Miniflare(miniflareOptions(migrationsKnownApplied ? port : 0));
let url;
try {
  url = await mf.ready;
  await retryingDropped(() => applyMigrations(build.migrations));
  const { syncConfigFiles } = await import("./appservice-registrations.mjs");
  const ids = await retryingDropped(async () => syncConfigFiles(await mf.getD1Database("DB"), appserviceEntries));
  if (ids.length > 0) log(`application services from APPSERVICE_CONFIG_FILES: ${ids.join(", ")}`);
  if (!migrationsKnownApplied) {
    mkdirSync(path.dirname(migrationsMarker), { recursive: true });
    writeFileSync(migrationsMarker, migrationNames);
    await mf.setOptions(miniflareOptions(port));
    url = await mf.ready;
  }
} catch (e) {
  if (e?.name === "RegistrationError") {
    console.error(`[myelin] APPSERVICE_CONFIG_FILES: ${e.message}`);
    await stop(1);
  }
  console.error(e);
  await stop(1);
}
if (httpsFrontOptions) {
  try {
    await (await import("./start-network.mjs")).httpsFront(httpsFrontOptions);
  } catch (e) {
    console.error(`[myelin] HTTPS_PORT ${httpsPort}: ${e.message}`);
    await stop(1);
  }
  log(`HTTPS on https://${host}:${httpsPort}`);
}
if (direct) url = await mf.unsafeGetDirectURL();
log(`ready at ${url.protocol}//${host}:${url.port} (server name ${serverName})`);
