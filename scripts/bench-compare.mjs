#!/usr/bin/env node
// `npm run bench:compare`: Myelin and Synapse side by side on this machine (issue 13 §4). Starts Synapse
// (the pinned version, scripts/synapse.mjs; plain-HTTP client API, SQLite) and Myelin as `npm start`
// does (scripts/start.mjs through scripts/myelin-server.mjs, plain HTTP), with rate limits off on both, runs the same client
// workload (bench/compare/workload.mjs) against both in one run, rotating the order per figure
// (Myelin, Synapse, Synapse, Myelin), and prints each figure with the ratio Myelin/Synapse.
//
// Options: --runs N (default 4: the rotation A,B,B,A; 2 gives A,B), --only a,b (figure keys below),
// --connection-close (a new connection per request instead of keep-alive; registration excepted).
import { startMyelin } from "./myelin-server.mjs";
import { registerWithSharedSecret, startSynapse, SYNAPSE_VERSION } from "./synapse.mjs";
import * as workload from "../bench/compare/workload.mjs";
import { startBenchBridge } from "../bench/compare/appservice-listener.mjs";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const runs = Number(arg("--runs") ?? 4);
workload.options.connectionClose = process.argv.includes("--connection-close");
const only = arg("--only")?.split(",");

function percentile(samples, p) {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

// Each scenario: a key, how to run it once (returns samples), and the figures it yields from the
// samples of all its runs on one server.
const latency = (label) => [
  { label: `${label} p50`, unit: "ms", of: (s) => percentile(s, 50) },
  { label: `${label} p99`, unit: "ms", of: (s) => percentile(s, 99) },
];
/** latency() over one field of object samples. */
const latencyOf = (label, field) =>
  latency(label).map((f) => ({ ...f, of: (s) => f.of(s.map((x) => x[field])) }));
const scenarios = [
  { key: "send", run: (srv, tag) => workload.sendLatency(srv, tag), figures: latency("send latency (1 room, 2 users, 100 messages)") },
  // 100 samples per run (200 per server with the default 4 runs): with 50, a p99 was the second-worst of
  // 100 samples, and one pause of the machine more or less moved it by half.
  { key: "wake", run: (srv, tag) => workload.syncWakeLatency(srv, tag, { samples: 100 }), figures: latency("/sync wake latency (send start → long-poll returns)") },
  {
    key: "throughput1",
    run: (srv, tag) => workload.sendThroughput(srv, tag, { rooms: 1 }),
    figures: [{ label: "throughput, 8 senders in 1 room", unit: "events/s", of: mean }],
  },
  {
    key: "throughput8",
    run: (srv, tag) => workload.sendThroughput(srv, tag, { rooms: 8 }),
    figures: [{ label: "throughput, 8 senders in 8 rooms", unit: "events/s", of: mean }],
  },
  {
    key: "initial",
    setup: (srv, tag) => workload.buildManyRooms(srv, tag),
    run: (srv, _tag, fixture) => workload.initialSync(fixture),
    figures: [
      { label: "initial sync, 50 rooms × 20 messages (p50)", unit: "ms", of: (s) => percentile(s, 50) },
    ],
  },
  {
    key: "incremental",
    run: (srv, tag) => workload.incrementalSync(srv, tag),
    figures: latency("incremental sync, one new event"),
  },
  {
    // About 2 minutes per run: one run per server (M, S) unless --runs asks fewer.
    key: "delayed",
    runs: 2,
    run: (srv, tag) => workload.delayedLateness(srv, tag),
    // Samples are { late, delivery, seen } (workload.mjs delayedLateness): the server's lateness in sending,
    // the /sync delivery to a long-polling observer after that, and both together.
    figures: [
      ...latencyOf("delayed event lateness (1,000 due over 1 min; sent − due)", "late"),
      ...latencyOf("delayed event delivery to a /sync observer (received − sent)", "delivery"),
      ...latencyOf("delayed event seen by the /sync observer (received − due)", "seen"),
    ],
  },
  { key: "restart", run: (srv, tag) => workload.delayedRestart(srv, tag), figures: latency("delayed event restart request") },
  // Application services (issue 16): both servers push to one listener on loopback (appservice-listener.mjs).
  { key: "appservice", run: (srv, tag) => workload.appserviceLatency(srv, tag), figures: latency("send → application service (1 room, 100 messages)") },
  {
    key: "appservice8",
    run: (srv, tag) => workload.appserviceThroughput(srv, tag),
    figures: [{ label: "delivered to an application service, 8 senders in 1 room", unit: "events/s", of: mean }],
  },
];

const stamp = Date.now().toString(36);
const secret = `bench-${stamp}`;
console.log(`[bench:compare] starting Synapse ${SYNAPSE_VERSION} and Myelin…`);
// The application service scenarios need a registration on both servers at start (Synapse's
// app_service_config_files, Myelin's APPSERVICE_CONFIG_FILES) and the listener that plays the service.
const withAppservice = !only || only.some((k) => k.startsWith("appservice"));
const bridge = withAppservice ? await startBenchBridge() : null;
const registrationDir = withAppservice ? mkdtempSync(path.join(os.tmpdir(), "myelin-bench-as-")) : null;
const registrations = bridge ? { myelin: bridge.registrationFor("myelin", registrationDir), synapse: bridge.registrationFor("synapse", registrationDir) } : null;
const [synapse, myelinServer] = await Promise.all([
  startSynapse({
    registrationSharedSecret: secret,
    extraConfig: { max_event_delay_duration: "24h", ...(registrations ? { app_service_config_files: [registrations.synapse.file] } : {}) },
  }),
  startMyelin({ secret, env: registrations ? { APPSERVICE_CONFIG_FILES: registrations.myelin.file } : {} }),
]);
const appservice = (who) => (registrations ? { who, bridge, asToken: registrations[who].asToken, prefix: registrations[who].prefix } : undefined);
const servers = {
  myelin: { name: "Myelin", baseUrl: myelinServer.baseUrl, register: (l, p) => registerWithSharedSecret(myelinServer.baseUrl, secret, l, p), appservice: appservice("myelin") },
  synapse: { name: "Synapse", baseUrl: synapse.baseUrl, register: (l, p) => synapse.registerUser(l, p), appservice: appservice("synapse") },
};
const order = ["myelin", "synapse", "synapse", "myelin"];
const rows = [];
const failures = [];
const failed = new Set();
try {
  for (const scenario of scenarios) {
    if (only && !only.includes(scenario.key)) continue;
    const samples = { myelin: [], synapse: [] };
    const fixtures = {};
    for (let i = 0; i < Math.min(runs, scenario.runs ?? runs); i++) {
      const which = order[i % order.length];
      const tag = `${scenario.key}${stamp}r${i}`;
      const t = Date.now();
      try {
        if (scenario.setup && !(which in fixtures)) {
          fixtures[which] = await scenario.setup(servers[which], tag);
          console.log(`[bench:compare] ${scenario.key}: ${servers[which].name} fixture built in ${((Date.now() - t) / 1000).toFixed(1)} s`);
        }
        samples[which].push(...(await scenario.run(servers[which], tag, fixtures[which])));
        console.log(`[bench:compare] ${scenario.key}: run ${i + 1}/${Math.min(runs, scenario.runs ?? runs)} on ${servers[which].name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
      } catch (e) {
        // A failed run leaves that server's figure out (shown as "failed"); the other figures go on.
        const why = `${e.message.split("\n")[0]}${e.cause ? ` (${e.cause.code ?? ""} ${e.cause.message ?? e.cause})` : ""}`;
        failures.push(`${scenario.key} on ${servers[which].name}: ${why}`);
        failed.add(`${scenario.key}/${which}`);
        console.log(`[bench:compare] ${scenario.key}: run ${i + 1}/${runs} on ${servers[which].name} FAILED: ${why}`);
      }
    }
    for (const f of scenario.figures) {
      const figure = (who) => (failed.has(`${scenario.key}/${who}`) || !samples[who].length ? NaN : f.of(samples[who]));
      const m = figure("myelin");
      const s = figure("synapse");
      rows.push({ label: f.label, unit: f.unit, m, s, n: `${samples.myelin.length}/${samples.synapse.length}` });
    }
  }
} finally {
  await Promise.all([synapse.stop(), myelinServer.stop(), bridge?.stop()]);
  if (registrationDir) rmSync(registrationDir, { recursive: true, force: true });
}

const fmt = (x) => (Number.isNaN(x) ? "failed" : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const width = Math.max(...rows.map((r) => r.label.length + r.unit.length + 3));
console.log(`\nMyelin (npm start, workerd) vs Synapse ${SYNAPSE_VERSION} (SQLite), ${runs} runs rotated (M,S,S,M), ${workload.options.connectionClose ? "Connection: close" : "keep-alive"}; samples Myelin/Synapse in [ ]`);
console.log(`${"figure".padEnd(width)}  ${"Myelin".padStart(9)}  ${"Synapse".padStart(9)}  ${"M/S".padStart(6)}`);
for (const r of rows) {
  const ratio = Number.isNaN(r.m / r.s) ? "-" : (r.m / r.s).toFixed(2);
  console.log(`${`${r.label} (${r.unit})`.padEnd(width)}  ${fmt(r.m).padStart(9)}  ${fmt(r.s).padStart(9)}  ${ratio.padStart(6)}  [${r.n}]`);
}
for (const [who, srv] of Object.entries(servers)) {
  const n = workload.retries.get(new URL(srv.baseUrl).origin) ?? 0;
  if (n) console.log(`${srv.name}: ${n} request(s) sent again after the server closed a reused keep-alive connection`);
}
for (const f of failures) console.log(`failed: ${f}`);
if (failures.length) console.log(`Myelin's output: ${myelinServer.logFile}; Synapse's log was in ${synapse.dataDir} (removed)`);
console.log("(latencies: lower is better; events/s: higher is better)");
process.exit(failures.length ? 1 : 0);
