#!/usr/bin/env node
// `npm run complement`: runs Complement, the Matrix project's black-box homeserver test suite, against this
// checkout without Docker, through the team's driver (`run.sh` in the shared complement folder: it builds
// Complement with an overlay that starts each homeserver with `npm start`). About 20+ minutes; not part
// of `npm test`.
//   COMPLEMENT_DIR  the driver's folder (default: the first `shared/complement` with a run.sh found in a
//                   parent folder of the checkout, e.g. ../shared/complement)
//   CSAPI_RUN, TOP_RUN, PORTS, OUT  passed to run.sh: go test -run regexes for tests/csapi and tests/,
//                   the servers' port range (default 19100-19199), the results folder (default .complement/)
// Prints the totals and the failing tests; results are in .complement/results.txt and failures.txt.
//
// `npm run complement:federation` (`--federation`) runs the tests that need federation instead, through
// the project's copy of the driver (scripts/complement/run.sh: every server serves HTTPS with a
// certificate from Complement's CA, trusts that CA, and finds hs1, hs2 and Complement's own federation
// server through OUTBOUND_HOSTS_FILE). The selection: every top-level test in tests/ that the default run
// leaves out, the csapi tests with federation subtests (CSAPI_FEDERATION below) and tests/msc3902
// (partial-state joins). TOP_RUN, CSAPI_RUN and MSC3902_RUN override the three parts ("-" leaves one
// out). Results are in .complement-federation/.
// The servers run with the settings Complement's own Synapse image uses where ours differ from Synapse's
// defaults (set them in the environment to override): the unauthenticated legacy media endpoints serve
// all media (MEDIA_LEGACY_FREEZE_TIME=off; TestContent and TestLocalPngThumbnail use them, and Complement
// skips TestContent on Synapse for that reason) and URL previews may fetch loopback addresses
// (URL_PREVIEW_IP_RANGE_BLACKLIST=none; Synapse's image sets `url_preview_ip_range_blacklist: []`), and
// server notices are on as that image configures them (system user `_server`, "Server Alert"; TestServerNotices).
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function findDriver() {
  if (process.env.COMPLEMENT_DIR) return path.resolve(process.env.COMPLEMENT_DIR);
  for (let dir = path.dirname(root); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "shared", "complement");
    if (existsSync(path.join(candidate, "run.sh"))) return candidate;
    if (path.dirname(dir) === dir) return undefined;
  }
}

/** The csapi tests that have subtests needing a second server or Complement's federation server. */
const CSAPI_FEDERATION = ["TestDeviceListUpdates", "TestMessagesOverFederation", "TestPushRuleRoomUpgrade", "TestSync", "TestSyncTimelineGap", "TestThreadReceiptsInSyncMSC4102"];

/** go test -run regexes of the federation run (see the header). */
function federationSelection() {
  const topDefault = /^top_default='(.*)'$/m.exec(readFileSync(path.join(driver, "run.sh"), "utf8"))?.[1];
  if (!topDefault) throw new Error("complement: the default top-level selection (top_default) is not in run.sh");
  const inDefault = new RegExp(topDefault);
  const testsDir = path.join(driver, "src", "tests");
  const names = readdirSync(testsDir)
    .filter((f) => f.endsWith("_test.go"))
    .flatMap((f) => [...readFileSync(path.join(testsDir, f), "utf8").matchAll(/^func (Test\w+)\(t \*testing\.T\)/gm)].map((m) => m[1]))
    .filter((name) => name !== "TestMain" && !inDefault.test(name));
  const pick = (name, fallback) => (process.env[name] === "-" ? "" : process.env[name] || fallback);
  return {
    TOP_RUN: pick("TOP_RUN", `^(${names.sort().join("|")})$`),
    CSAPI_RUN: pick("CSAPI_RUN", `^(${CSAPI_FEDERATION.join("|")})$`),
    MSC3902_RUN: pick("MSC3902_RUN", "."),
  };
}

const driver = findDriver();
if (!driver || !existsSync(path.join(driver, "run.sh"))) {
  console.error("complement: no driver found; set COMPLEMENT_DIR to the folder holding run.sh");
  process.exit(2);
}
const federation = process.argv.includes("--federation");
const out = path.resolve(root, process.env.OUT || (federation ? ".complement-federation" : ".complement"));
console.log(`complement: driver ${driver}, results in ${out}`);
const run = spawnSync("bash", federation ? [path.join(root, "scripts", "complement", "run.sh"), root] : [path.join(driver, "run.sh"), root], {
  cwd: root,
  stdio: "inherit",
  env: {
    MEDIA_LEGACY_FREEZE_TIME: "off",
    URL_PREVIEW_IP_RANGE_BLACKLIST: "none",
    SERVER_NOTICES_LOCALPART: "_server",
    SERVER_NOTICES_DISPLAY_NAME: "Server Alert",
    SERVER_NOTICES_ROOM_NAME: "Server Alert",
    ...process.env,
    ...(federation ? federationSelection() : {}),
    DRIVER: driver,
    OUT: out,
    WRANGLER_SEND_METRICS: "false",
  },
});
const resultsFile = path.join(out, "results.txt");
if (run.status !== 0 || !existsSync(resultsFile)) {
  console.error(`complement: the driver failed (exit ${run.status}); see its output above`);
  process.exit(run.status || 1);
}
const lines = readFileSync(resultsFile, "utf8").split("\n");
const failing = lines.filter((l) => l.startsWith("FAIL") && !l.split(/\s+/)[2]?.includes("/"));
console.log(`\nfailing top-level tests (${failing.length}; subtests and logs in ${path.relative(root, out)}/):`);
for (const l of failing) console.log("  " + l.split(/\s+/).slice(1).join("  "));
console.log("");
for (const l of lines.filter((l) => l.includes("tests:"))) console.log(l);
