// Global set-up of `npm run bench` (runs in Node): a loopback endpoint that answers the CPU time workerd has
// used so far (user + system, from /proc on Linux), so that a benchmark inside workerd can report work per
// CPU second instead of per wall-clock second on a loaded machine (bench/cpu-clock.ts; plain JavaScript so that Node's types stay out of the project's `tsc`). Without /proc the
// endpoint answers null and benchmarks fall back to wall-clock time.
import fs from "node:fs";
import http from "node:http";

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on every Linux this runs on). */
const TICKS_PER_SECOND = 100;

/** [pid, ppid, comm, utime + stime in ticks] of every process, or [] without /proc. */
/** @returns {{ pid: number, ppid: number, comm: string, ticks: number }[]} */
function processes() {
  let entries;
  try {
    entries = fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d));
  } catch {
    return [];
  }
  const out = [];
  for (const pid of entries) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const fields = stat.slice(close + 2).split(" ");
      // After "pid (comm) ": state ppid ... utime is field 14 and stime 15 of the whole line (11 and 12 here).
      out.push({ pid: Number(pid), ppid: Number(fields[1]), comm, ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

/** CPU seconds used by the workerd processes started under this vitest process. */
/** @returns {number | null} */
function workerdCpuSeconds() {
  const all = processes();
  if (all.length === 0) return null;
  const children = new Map();
  for (const p of all) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const mine = new Set();
  const stack = [process.pid];
  while (stack.length > 0) for (const c of children.get(stack.pop()) ?? []) if (!mine.has(c)) (mine.add(c), stack.push(c));
  const workerd = all.filter((p) => mine.has(p.pid) && p.comm.startsWith("workerd"));
  if (workerd.length === 0) return null;
  return workerd.reduce((n, p) => n + p.ticks, 0) / TICKS_PER_SECOND;
}

/** @param {import("vitest/node").TestProject} project */
export default async function setup(project) {
  const server = http.createServer((_req, res) => {
    res.setHeader("content-type", "application/json");
    // No keep-alive: a connection Node closes after 5 s idle would be reused by workerd and fail.
    res.setHeader("connection", "close");
    res.end(JSON.stringify({ cpuSeconds: workerdCpuSeconds() }));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  project.provide("cpuClockUrl", `http://127.0.0.1:${server.address().port}/`);
  return () => new Promise((resolve) => server.close(() => resolve()));
}
