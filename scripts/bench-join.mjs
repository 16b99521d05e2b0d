#!/usr/bin/env node
// `npm run bench:join`: joining a big room on another server, Myelin beside Synapse (issue 19 §5).
//
// Starts, on loopback with one throwaway CA: a resident Synapse that hosts a public room of M members,
// a second Synapse and a Myelin (HTTPS, as `npm start` runs it) that each have one user join that room
// (both ask for a partial-state join: Synapse does so by default since 1.76, Myelin always). For each
// joiner it prints:
//   join 200        time from POST /join to its 200 answer
//   first message   time from the resident's send (issued right after the join answered) until the
//                   message is in the joiner's /sync (a long-poll already waiting); printed with the
//                   part of it until the resident answered the send (its own work, the same for both)
//   full members    time from POST /join until /joined_members on the joiner lists all M+1 members
//                   (Synapse's /joined_members waits for its resync; Myelin's is polled)
//   CPU             CPU seconds the joining server's processes used from the join until full members
//   peak RSS        the largest resident memory of the joining server's processes in that window
// and Myelin/Synapse ratios. On Cloudflare, each Durable Object invocation has its own CPU and memory
// limit; locally every DO runs in one workerd process, so the process's figures are an upper bound for
// any single invocation (partial-state.ts bounds each alarm's batch; docs: README, rooms over federation).
//
// Options: --members M (default 2000), --full (M = 10000), --order myelin,synapse (who joins first;
// `--order myelin` runs Myelin only and starts no joining Synapse).
// Building the room on Synapse takes most of the run (about 1 minute per 1,000 members here).
// --resident DIR keeps the resident Synapse (its state, the CA and the built room) in DIR and reuses it
// on later runs with the same M, so that a run costs only the joins; each joiner leaves the room at the
// end so that the room's server list does not grow with dead servers. --ports P puts the servers on
// fixed ports P.. P+5 (resident federation, resident client, Myelin, Myelin inspector, joining Synapse
// federation and client); a reused resident needs the same P (its server name carries its port).
import { existsSync, readFileSync, readdirSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { makeCa } from "./ca.mjs";
import { startMyelin } from "./myelin-server.mjs";
import { registerWithSharedSecret, startSynapse, SYNAPSE_VERSION } from "./synapse.mjs";

const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const M = process.argv.includes("--full") ? 10_000 : Number(arg("--members") ?? 2000);
const order = (arg("--order") ?? "myelin,synapse").split(",");
if (!Number.isInteger(M) || M < 2) throw new Error("--members must be an integer of at least 2");
const residentDir = arg("--resident") ? path.resolve(arg("--resident")) : undefined;
const portBase = arg("--ports") ? Number(arg("--ports")) : undefined;
const fixedPort = (i) => (portBase === undefined ? undefined : portBase + i);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const log = (m) => console.log(`[bench:join] ${m}`);

// ---- process figures from /proc (Linux) ----

const TICKS = 100; // USER_HZ on Linux
/** Every process in process group `pgid` (start.mjs and workerd; Synapse's python). */
function groupPids(pgid) {
  const pids = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === pgid) pids.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}
function cpuSeconds(pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    } catch {
      // exited
    }
  }
  return ticks / TICKS;
}
function rssMiB(pids) {
  let kib = 0;
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      if (m) kib += Number(m[1]);
    } catch {
      // exited
    }
  }
  return kib / 1024;
}
/** Samples CPU and RSS of a process group until stopped. */
function watch(pgid) {
  const pids = groupPids(pgid);
  const cpu0 = cpuSeconds(pids);
  let peak = rssMiB(pids);
  const timer = setInterval(() => (peak = Math.max(peak, rssMiB(pids))), 100);
  return () => {
    clearInterval(timer);
    return { cpu: cpuSeconds(pids) - cpu0, peakRss: Math.max(peak, rssMiB(pids)) };
  };
}

// ---- a minimal client ----

async function call(server, token, method, p, body, signal) {
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(`${server.baseUrl}/_matrix/client/v3${p}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        signal,
      });
      const text = await res.text();
      let json;
      try {
        json = JSON.parse(text);
      } catch {
        json = text;
      }
      return { status: res.status, body: json };
    } catch (e) {
      // A reused keep-alive connection closed under the request: send it again (all are idempotent).
      if (attempt === 3 || !["UND_ERR_SOCKET", "ECONNRESET"].includes(e.cause?.code)) throw e;
    }
  }
}
const enc = encodeURIComponent;
const LAZY = enc(JSON.stringify({ room: { state: { lazy_load_members: true }, timeline: { limit: 5 } }, presence: { types: [] } }));

/** Runs `fn` over `items` with at most `n` in flight. */
async function pool(items, n, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

// ---- the run ----

const workDir = mkdtempSync(path.join(os.tmpdir(), "myelin-bench-join-"));
const ca = makeCa(residentDir ? path.join(residentDir, "ca") : path.join(workDir, "ca"));
const savedFile = residentDir && path.join(residentDir, "resident.json");
const saved = savedFile && existsSync(savedFile) ? JSON.parse(readFileSync(savedFile, "utf8")) : undefined;
if (saved && saved.members !== M) throw new Error(`${residentDir} holds a room of ${saved.members} members, not ${M}`);
if (saved && portBase !== undefined && saved.port !== portBase) throw new Error(`${residentDir} needs --ports ${saved.port}`);
const caPem = readFileSync(ca.caCert, "utf8");
if (typeof tls.setDefaultCACertificates !== "function") throw new Error("run with the project's Node 22 (npm run bench:join)");
tls.setDefaultCACertificates([...tls.getCACertificates("default"), caPem]);

const secret = saved?.secret ?? `join-${Date.now().toString(36)}`;
log(`starting a resident Synapse ${SYNAPSE_VERSION}${saved ? " (reused)" : ""}, ${order.join(" and ")} to join…`);
// bcrypt_rounds 4: registering thousands of members must not spend minutes hashing passwords.
const fast = { bcrypt_rounds: 4 };
const residentPorts = saved ? { port: saved.port, clientPort: saved.port + 1 } : { port: fixedPort(0), clientPort: fixedPort(1) };
const [resident, synapseJoiner, myelin] = await Promise.all([
  startSynapse({
    caDir: ca.dir, registrationSharedSecret: secret, extraConfig: fast, ...residentPorts,
    ...(residentDir ? { dataDir: path.join(residentDir, "synapse") } : {}),
  }),
  order.includes("synapse")
    ? startSynapse({ caDir: ca.dir, registrationSharedSecret: secret, extraConfig: fast, port: fixedPort(4), clientPort: fixedPort(5) })
    : undefined,
  order.includes("myelin")
    ? startMyelin({ secret, ca, port: fixedPort(2), env: portBase === undefined ? {} : { INSPECTOR_PORT: String(portBase + 3) } })
    : undefined,
]);
const joiners = {
  myelin: myelin && { name: "Myelin", baseUrl: myelin.baseUrl, pgid: myelin.pid },
  synapse: synapseJoiner && { name: "Synapse", baseUrl: synapseJoiner.baseUrl, pgid: synapseJoiner.pid },
};

const results = {};
try {
  let owner;
  let roomId;
  if (saved) {
    const login = await fetch(`${resident.baseUrl}/_matrix/client/v3/login`, {
      method: "POST",
      body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user: "owner" }, password: "pw-owner-1" }),
    }).then((r) => r.json());
    if (!login.access_token) throw new Error(`owner login: ${JSON.stringify(login)}`);
    owner = { accessToken: login.access_token };
    roomId = saved.roomId;
    log(`reusing room ${roomId} of ${M} members`);
  } else {
    owner = await resident.registerUser("owner", "pw-owner-1");
    const created = await call(resident, owner.accessToken, "POST", "/createRoom", { preset: "public_chat", name: `Big room of ${M}` });
    if (created.status !== 200) throw new Error(`createRoom: ${JSON.stringify(created.body)}`);
    roomId = created.body.room_id;
    const t0 = now();
    let done = 1;
    await pool(Array.from({ length: M - 1 }, (_, i) => i), 8, async (i) => {
      const u = await resident.registerUser(`member${i}`, "pw-member-1");
      const r = await call(resident, u.accessToken, "POST", `/join/${enc(roomId)}`, {});
      if (r.status !== 200) throw new Error(`member ${i} join: ${JSON.stringify(r.body)}`);
      if (++done % 500 === 0) log(`room: ${done}/${M} members (${((now() - t0) / 1000).toFixed(0)} s)`);
    });
    log(`room ${roomId} has ${M} members (built in ${((now() - t0) / 1000).toFixed(0)} s)`);
    if (savedFile) {
      mkdirSync(residentDir, { recursive: true });
      writeFileSync(savedFile, JSON.stringify({ members: M, roomId, secret, port: resident.port }));
    }
  }

  for (const key of order) {
    const j = joiners[key];
    // A new joiner each run: a reused room remembers the last run's joiner (a fresh server of the same name
    // would have to learn its earlier membership).
    const user = await registerWithSharedSecret(j.baseUrl, secret, residentDir ? `joiner-${Date.now().toString(36)}` : "joiner", "pw-joiner-1");
    const stop = watch(j.pgid);
    const start = now();
    const joined = await call(j, user.accessToken, "POST", `/join/${enc(roomId)}?via=${enc(resident.serverName)}`, {});
    const joinMs = now() - start;
    if (joined.status !== 200) throw new Error(`${j.name} join: ${joined.status} ${JSON.stringify(joined.body)}`);

    // The first message: a long-poll is waiting on the joiner before the resident sends.
    const first = await call(j, user.accessToken, "GET", `/sync?timeout=0&filter=${LAZY}`);
    let since = first.body.next_batch;
    const sent = now();
    const send = call(resident, owner.accessToken, "PUT", `/rooms/${enc(roomId)}/send/m.room.message/${key}-hello`, { msgtype: "m.text", body: `hello ${key}` });
    let messageMs;
    const deadline = Date.now() + 120_000;
    const sendResult = await send;
    // The resident's own part: its send answered (in a big room mostly its push rules for every member).
    const residentSendMs = now() - sent;
    while (messageMs === undefined && Date.now() < deadline) {
      const s = await call(j, user.accessToken, "GET", `/sync?timeout=10000&since=${enc(since)}&filter=${LAZY}`);
      if (s.status !== 200) throw new Error(`${j.name} sync: ${JSON.stringify(s.body)}`);
      since = s.body.next_batch;
      const timeline = s.body.rooms?.join?.[roomId]?.timeline?.events ?? [];
      if (timeline.some((e) => e.event_id === sendResult.body.event_id)) messageMs = now() - sent;
    }

    // The full member list (Synapse's answer waits for its resync; ask again until every member is there).
    let membersMs;
    const membersDeadline = Date.now() + 600_000;
    while (membersMs === undefined && Date.now() < membersDeadline) {
      const r = await call(j, user.accessToken, "GET", `/rooms/${enc(roomId)}/joined_members`, undefined, AbortSignal.timeout(120_000)).catch(() => null);
      if (r?.status === 200 && Object.keys(r.body.joined).length >= M + 1) membersMs = now() - start;
      else await sleep(100);
    }
    const usage = stop();
    results[key] = { joinMs, messageMs, residentSendMs, membersMs, ...usage };
    if (residentDir) {
      // A reused room must not collect the dead servers of earlier runs.
      const left = await call(j, user.accessToken, "POST", `/rooms/${enc(roomId)}/leave`, {});
      if (left.status !== 200) log(`${j.name}: leaving the room failed (${left.status} ${JSON.stringify(left.body)})`);
    }
    log(`${j.name}: join ${joinMs.toFixed(0)} ms, first message ${messageMs?.toFixed(0)} ms, full members ${membersMs?.toFixed(0)} ms, CPU ${usage.cpu.toFixed(1)} s, peak RSS ${usage.peakRss.toFixed(0)} MiB`);
  }
} finally {
  // --hold S: keep the servers up S seconds after the runs (to stop a CPU profile through Myelin's
  // inspector, port P+3 with --ports, while the server is idle).
  if (arg("--hold")) await sleep(Number(arg("--hold")) * 1000);
  await Promise.all([resident.stop(), synapseJoiner?.stop(), myelin?.stop()]);
  rmSync(workDir, { recursive: true, force: true });
}

const rows = [
  ["time to the join's 200", "ms", "joinMs"],
  ["first message from the resident in /sync", "ms", "messageMs"],
  ["  of which the resident's send until its 200", "ms", "residentSendMs"],
  [`full member list (${M + 1})`, "ms", "membersMs"],
  ["CPU of the joining server, join → full members", "s", "cpu"],
  ["peak RSS of the joining server's processes", "MiB", "peakRss"],
];
const fmt = (x) => (x === undefined ? "-" : x >= 100 ? x.toFixed(0) : x.toFixed(1));
console.log(`\nJoining a Synapse ${SYNAPSE_VERSION} room of ${M} members over loopback TLS (partial-state joins on both); joined in the order ${order.join(", ")}`);
console.log(`${"figure".padEnd(54)}  ${"Myelin".padStart(8)}  ${"Synapse".padStart(8)}  ${"M/S".padStart(6)}`);
for (const [label, unit, k] of rows) {
  const m = results.myelin?.[k];
  const s = results.synapse?.[k];
  const ratio = m !== undefined && s ? (m / s).toFixed(2) : "-";
  console.log(`${`${label} (${unit})`.padEnd(54)}  ${fmt(m).padStart(8)}  ${fmt(s).padStart(8)}  ${ratio.padStart(6)}`);
}
console.log("(lower is better; Myelin's process figures cover every Durable Object in one workerd)");
