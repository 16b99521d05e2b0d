#!/usr/bin/env node
// `npm start`: runs the whole homeserver locally in workerd (wrangler dev) with persistent D1 and
// Durable Object state. Applies pending D1 migrations first, so a fresh checkout needs no extra step.
//
// Environment: PORT (8008), SERVER_NAME (localhost:<PORT>), DATA_DIR (.data/<PORT>), plus the
// server's own settings passed through as wrangler vars: SIGNING_KEY, ENABLE_REGISTRATION (default
// "true" locally), REGISTRATION_SHARED_SECRET, WELL_KNOWN_SERVER, WELL_KNOWN_CLIENT, and the rate
// limit settings (RC_*).
import { spawn, spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const port = process.env.PORT || "8008";
const serverName = process.env.SERVER_NAME || `localhost:${port}`;
const dataDir = path.resolve(root, process.env.DATA_DIR || path.join(".data", port));
const wrangler = path.join(root, "node_modules", ".bin", "wrangler");
const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CI: process.env.CI ?? "" };

const passThrough = ["SIGNING_KEY", "REGISTRATION_SHARED_SECRET", "WELL_KNOWN_SERVER", "WELL_KNOWN_CLIENT"];
const vars = { SERVER_NAME: serverName, ENABLE_REGISTRATION: process.env.ENABLE_REGISTRATION ?? "true" };
for (const name of passThrough) if (process.env[name]) vars[name] = process.env[name];
for (const name of Object.keys(process.env)) if (name.startsWith("RC_")) vars[name] = process.env[name];

console.log(`[myelin] server name ${serverName}, port ${port}, state in ${dataDir}`);

const migrate = spawnSync(
  wrangler,
  ["d1", "migrations", "apply", "DB", "--local", "--persist-to", dataDir],
  { cwd: root, env: { ...env, CI: "true" }, stdio: ["ignore", "inherit", "inherit"] },
);
if (migrate.status !== 0) {
  console.error("[myelin] applying D1 migrations failed");
  process.exit(migrate.status ?? 1);
}

const args = [
  "dev",
  "--port", port,
  "--ip", process.env.HOST || "127.0.0.1",
  "--persist-to", dataDir,
  "--inspector-port", process.env.INSPECTOR_PORT || String(Number(port) + 20000),
  "--show-interactive-dev-session=false",
  ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
];
const dev = spawn(wrangler, args, { cwd: root, env, stdio: ["ignore", "inherit", "inherit"] });
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => dev.kill(signal));
dev.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
