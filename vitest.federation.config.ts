// Federation tests: the real server (as `npm start` runs it, over HTTPS with a local CA) and a real
// Synapse (pinned, installed into .synapse/ by scripts/synapse.mjs) federating on loopback, driven from
// Node. One CA, one Synapse and one Myelin for the whole stage (test/federation/global-setup.ts).
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/federation/**/*.test.ts"],
    environment: "node",
    globalSetup: ["./test/federation/global-setup.ts"],
    setupFiles: ["./test/federation/trust-ca.ts"],
    testTimeout: 60_000,
    // Synapse's first install is a pip download of about 30-60 s.
    hookTimeout: 300_000,
    fileParallelism: false,
  },
});
