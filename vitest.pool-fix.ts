// Loaded by vitest.workers.config.ts and vitest.bench.config.ts before the pool starts.
import fs from "node:fs";
import path from "node:path";

// @cloudflare/vitest-pool-workers 0.23 wraps the prototype of its entrypoint and Durable Object wrapper classes in
// one more Proxy every time workerd constructs one (createProxyPrototypeClass in
// dist/worker/lib/cloudflare/test-internal.mjs), i.e. on every request to the Worker. Every later request walks the
// whole chain: measured on this (loaded) machine, 100 GET /versions took 1.3 s on a fresh workerd and 88 s after
// 700 requests, so a test file of a thousand requests spent most of its time there. Wrapping once has the same
// effect (the Proxy's trap gets the receiver). The pool reads that module from disk when workerd asks for it; this serves it patched,
// in memory (node_modules is not changed). If an upgrade changes the code, nothing is patched and a warning says so.
const RUNNER_MODULE = path.join(import.meta.dirname, "node_modules/@cloudflare/vitest-pool-workers/dist/worker/lib/cloudflare/test-internal.mjs");
const PROXY_PER_CONSTRUCTION = "\tfunction Class(...args) {\n\t\tClass.prototype = new Proxy(Class.prototype, {";
const PROXY_ONCE = "\tlet proxied = false;\n\tfunction Class(...args) {\n\t\tif (!proxied) proxied = true, Class.prototype = new Proxy(Class.prototype, {";
const readFileSync = fs.readFileSync;
if (!readFileSync(RUNNER_MODULE, "utf8").includes(PROXY_PER_CONSTRUCTION)) {
  console.warn("vitest.pool-fix.ts: the pool's createProxyPrototypeClass changed; its per-request slowdown is not patched");
}
fs.readFileSync = function (this: unknown, file: fs.PathOrFileDescriptor, options?: unknown) {
  const contents = readFileSync.call(this, file, options as never);
  if (file === RUNNER_MODULE && typeof contents === "string") return contents.replace(PROXY_PER_CONSTRUCTION, PROXY_ONCE);
  return contents;
} as typeof fs.readFileSync;

