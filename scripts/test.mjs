#!/usr/bin/env node
// `npm test`: the whole suite, in four stages:
//   1. unit        protocol/ core on Node (vitest.unit.config.ts)
//   2. workers     storage and routing inside workerd with real D1 and Durable Objects (vitest.workers.config.ts)
//   3. e2e         the real server started as `npm start` does, driven over HTTP (vitest.e2e.config.ts)
//   4. federation  the real server over HTTPS federating with a real Synapse on loopback; installs the
//                  pinned Synapse into .synapse/ on first use (scripts/synapse.mjs; vitest.federation.config.ts)
// Prints one closing line "N passed, N failed" for the whole run. Extra arguments go to every stage
// (e.g. `npm test -- -t "login"`); `STAGES=unit,workers npm test` runs a subset.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const stages = (process.env.STAGES || "unit,workers,e2e,federation").split(",");
const outDir = mkdtempSync(path.join(os.tmpdir(), "myelin-test-"));
const vitest = path.join(root, "node_modules", ".bin", "vitest");
let passed = 0, failed = 0, skipped = 0, broken = false;

for (const stage of stages) {
  console.log(`\n=== ${stage} tests ===`);
  const report = path.join(outDir, `${stage}.json`);
  const run = spawnSync(
    vitest,
    ["run", "--config", `vitest.${stage}.config.ts`, "--reporter=default", "--reporter=json", `--outputFile.json=${report}`, ...process.argv.slice(2)],
    { cwd: root, stdio: "inherit", env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
  );
  try {
    const r = JSON.parse(readFileSync(report, "utf8"));
    passed += r.numPassedTests;
    failed += r.numFailedTests;
    skipped += r.numPendingTests + (r.numTodoTests ?? 0);
    if (r.numFailedTestSuites > 0 && r.numFailedTests === 0) broken = true;
  } catch {
    broken = true;
  }
  if (run.status !== 0) broken = true;
}

console.log(`\n${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(broken || failed > 0 ? 1 : 0);
