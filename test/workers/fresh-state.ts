// Set-up run before every test file of the workers stage (vitest.workers.config.ts, `setupFiles`).
//
// The stage runs with `isolate: false`: one workerd (one Miniflare) runs many test files one after another,
// instead of a new workerd per file. Starting workerd and loading the Worker's ~350 modules into it
// (drizzle, hono, the photon wasm, our own code) took 3-5 s per file, about half of the stage. To keep
// each file's view exactly what a fresh workerd gave it, this file resets, before every file but the first
// one a workerd runs:
//   1. background work of the previous file: its waitUntil promises are awaited, then every Durable Object
//      instance is torn down and all storage is deleted (`reset()`: Durable Objects, and D1 and R2, which
//      Miniflare keeps in Durable Objects too);
//   2. the stand-in for other servers (test/workers/remote-homeserver.mjs): its recorded requests, counters
//      and stored answers (POST /_test/reset);
//   3. module state: every module of this project is evaluated again (caches such as the server's signing
//      key, remote keys, discovery results, back-off), so nothing a previous file left in memory is seen.
//      Only node_modules stay loaded (they hold no state of ours).
// and then, for every file, applies the D1 migrations to the empty database.
// test/workers/isolation-1.test.ts and isolation-2.test.ts check that storage, module state and the remote
// stand-in start empty.
import { env } from "cloudflare:workers";
// The pool's own runner module (not `cloudflare:test`, which is a module of the project graph that step 3
// evaluates again): `reset()` and the registry of waitUntil promises live there.
import { reset, waitForGlobalWaitUntil } from "cloudflare:test-internal";

interface ModuleNode {
  promise?: unknown;
  exports?: unknown;
  evaluated?: boolean;
  importers: Set<string>;
}
interface WorkerState {
  evaluatedModules: { idToModuleMap: Map<string, ModuleNode> };
}

const marker = Symbol.for("myelin.test.files-run");
const runtime = globalThis as unknown as Record<symbol, number | undefined> & { __vitest_worker__?: WorkerState };
const filesBefore = runtime[marker] ?? 0;
runtime[marker] = filesBefore + 1;

// Vite's module runner asks the server about every import it meets, even of a module it has already
// fetched ("is my copy still current?"). Through the pool that is a round trip from workerd to Node per
// import statement: re-evaluating our modules for each file made over a thousand of them. In a run the
// answer for a module fetched before is always "yes": when a file changes (watch mode) vitest invalidates
// the module, which drops the fetched copy (`meta`), and such a module is fetched again as usual.
interface Transport { invoke(name: string, data: unknown): Promise<unknown>; shortCircuited?: true }
const moduleRunner = (globalThis as unknown as { __vitest_mocker__?: { moduleRunner?: { transport?: Transport } } }).__vitest_mocker__?.moduleRunner;
const transport = moduleRunner?.transport;
if (!transport || typeof transport.invoke !== "function") throw new Error("test/workers/fresh-state.ts: vitest's module runner was not found (vitest upgrade?)");
if (!transport.shortCircuited) {
  const invoke = transport.invoke;
  transport.invoke = (name, data) =>
    name === "fetchModule" && Array.isArray(data) && (data[2] as { cached?: boolean } | undefined)?.cached === true
      ? Promise.resolve({ cache: true })
      : invoke.call(transport, name, data);
  transport.shortCircuited = true;
}

if (filesBefore > 0) {
  // 1. What the previous file started and did not wait for (e.g. federation sends a request handed to
  // waitUntil) finishes first, so that it cannot write into this file's storage.
  await waitForGlobalWaitUntil().catch(() => undefined);
  // (workerd logs "Application called deleteAllDurableObjects()" for objects still running: expected.)
  await reset();

  // 2. The remote servers' state.
  const remote = (env as unknown as { FEDERATION_TEST_FETCHER: Fetcher }).FEDERATION_TEST_FETCHER;
  const res = await remote.fetch("https://control.test/_test/reset", { method: "POST" });
  if (!res.ok) throw new Error(`resetting test/workers/remote-homeserver.mjs failed: ${res.status}`);

  // 3. Module state: the same reset vitest does between files when it isolates them (`resetModules`),
  // limited to the project's own modules. Vitest keeps its state in `__vitest_worker__`; fail loudly if a
  // vitest upgrade moves it, rather than silently sharing state between files.
  const modules = runtime.__vitest_worker__?.evaluatedModules?.idToModuleMap;
  if (!(modules instanceof Map)) throw new Error("test/workers/fresh-state.ts: vitest's module registry was not found (vitest upgrade?)");
  const self = import.meta.url.replace(/^file:\/\//, "");
  for (const [id, node] of modules) {
    if (id.includes("/node_modules/") || id === self || id.endsWith("/test/workers/fresh-state.ts")) continue;
    if (!(id.startsWith("/") || id.startsWith("\0cloudflare:test"))) continue;
    node.promise = undefined;
    node.exports = undefined;
    node.evaluated = false;
    node.importers.clear();
  }
}

// Imported after the reset, so that the Worker's modules are evaluated afresh.
const { applyD1Migrations } = await import("cloudflare:test");
await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
