#!/usr/bin/env node
// `npm run bench`: runs bench/*.bench.ts inside workerd (the runtime the server runs in) and prints
// their figures. `npm run bench -- bench/protocol.bench.ts` runs one file.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const run = spawnSync(
  path.join(root, "node_modules", ".bin", "vitest"),
  ["run", "--config", "vitest.bench.config.ts", "--reporter=verbose", "--silent=false", ...process.argv.slice(2)],
  { cwd: root, stdio: "inherit", env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
);
process.exit(run.status ?? 1);
