// Tests that run inside workerd with real D1 and Durable Object storage (@cloudflare/vitest-pool-workers).
import fs from "node:fs";
import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

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
  console.warn("vitest.workers.config.ts: the pool's createProxyPrototypeClass changed; its per-request slowdown is not patched");
}
fs.readFileSync = function (this: unknown, file: fs.PathOrFileDescriptor, options?: unknown) {
  const contents = readFileSync.call(this, file, options as never);
  if (file === RUNNER_MODULE && typeof contents === "string") return contents.replace(PROXY_PER_CONSTRUCTION, PROXY_ONCE);
  return contents;
} as typeof fs.readFileSync;

export default defineConfig(async () => {
  const migrations = await readD1Migrations(path.join(import.meta.dirname, "schema/migrations"));
  return {
    plugins: [
      cloudflareTest({
        main: "./worker/index.ts",
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: {
            TEST_MIGRATIONS: migrations,
            SERVER_NAME: "test.local",
            ENABLE_REGISTRATION: "true",
            REGISTRATION_SHARED_SECRET: "test-shared-secret",
            // SRV look-ups go to the test resolver played by the remote-homeserver worker.
            FEDERATION_DOH_URL: "https://doh.test/dns-query",
          },
          // Federation tests talk to a second, independent implementation instead of the internet:
          // test/workers/remote-homeserver.mjs, an auxiliary worker in the same workerd. Myelin's outbound
          // federation fetches reach it through the optional FEDERATION_TEST_FETCHER binding
          // (federation-client/outbound-fetch.ts); it calls Myelin back through a service binding to the
          // pool's runner worker, which serves the Worker under test (vitest-pool-workers 0.23 names it
          // `vitest-pool-workers-runner-<project name>`; this project has no name).
          serviceBindings: { FEDERATION_TEST_FETCHER: "remote-homeserver" },
          workers: [
            {
              name: "remote-homeserver",
              modules: true,
              scriptPath: "./test/workers/remote-homeserver.mjs",
              compatibilityDate: "2026-08-22",
              serviceBindings: { MYELIN: "vitest-pool-workers-runner-" },
            },
          ],
        },
      }),
    ],
    test: {
      include: ["test/workers/**/*.test.ts"],
      // A bound on a hung test, not a speed requirement: on a loaded 2-core machine a test of many requests
      // can pass vitest's 5 s default without anything being wrong.
      testTimeout: 60_000,
      // One workerd runs many test files in turn instead of one workerd per file: starting workerd and
      // loading the Worker into it cost 3-5 s per file. test/workers/fresh-state.ts gives each file the state
      // a fresh workerd had (storage, module state, the remote stand-in) and applies the D1 migrations.
      isolate: false,
      setupFiles: ["./test/workers/fresh-state.ts"],
    },
  };
});
