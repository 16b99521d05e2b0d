// `npm run bench`: benchmarks run inside workerd (the production runtime) and print their figures.
import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";
// The pool's per-request slowdown, undone (vitest.pool-fix.ts explains it): without it a bench
// that makes thousands of requests slows down with every one (1,000 rooms took 1,317 s to create).
import "./vitest.pool-fix.js";

export default defineConfig(async () => {
  const migrations = await readD1Migrations(path.join(import.meta.dirname, "schema/migrations"));
  return {
    plugins: [
      cloudflareTest({
        main: "./worker/index.ts",
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: { TEST_MIGRATIONS: migrations, SERVER_NAME: "bench.local", ENABLE_REGISTRATION: "true", FEDERATION_DOH_URL: "https://doh.test/dns-query" },
          // The remote homeservers of the federation benchmarks: the test pool's stand-in
          // (test/workers/remote-homeserver.mjs; vitest.workers.config.ts explains the bindings).
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
      include: ["bench/**/*.bench.ts"],
      setupFiles: ["./test/workers/apply-migrations.ts"],
      // CPU time of workerd for figures per core on a loaded machine (bench/cpu-clock.ts).
      globalSetup: ["./bench/cpu-clock.global.mjs"],
      testTimeout: 600_000,
      fileParallelism: false,
    },
  };
});
