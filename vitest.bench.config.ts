// `npm run bench`: benchmarks run inside workerd (the production runtime) and print their figures.
import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

export default defineConfig(async () => {
  const migrations = await readD1Migrations(path.join(import.meta.dirname, "schema/migrations"));
  return {
    plugins: [
      cloudflareTest({
        main: "./worker/index.ts",
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: { TEST_MIGRATIONS: migrations, SERVER_NAME: "bench.local", ENABLE_REGISTRATION: "true" },
        },
      }),
    ],
    test: {
      include: ["bench/**/*.bench.ts"],
      setupFiles: ["./test/workers/apply-migrations.ts"],
      testTimeout: 600_000,
      fileParallelism: false,
    },
  };
});
