// Tests that run inside workerd with real D1 and Durable Object storage (@cloudflare/vitest-pool-workers).
import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

// The pool's per-request slowdown, undone (vitest.pool-fix.ts explains it).
import "./vitest.pool-fix.js";

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
