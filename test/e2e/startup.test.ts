// `npm start` on a fresh state folder: nothing answers on PORT before the D1 migrations are applied (a
// supervisor polling the port, like Complement's driver, used to get 500 "no such table" from its first
// requests), and a restart with nothing to migrate listens on PORT at once.
import { describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort, startServer } from "./server.js";

describe("npm start", () => {
  it("answers no request on PORT before its tables exist", async () => {
    const port = await freePort();
    const dataDir = mkdtempSync(path.join(os.tmpdir(), "myelin-e2e-startup-"));
    const statuses: number[] = [];
    let polling = true;
    // A D1 read on every poll: GET /register/available reads the users table.
    const poller = (async () => {
      while (polling) {
        try {
          const res = await fetch(`http://127.0.0.1:${port}/_matrix/client/v3/register/available?username=nobody`);
          statuses.push(res.status);
          await res.arrayBuffer();
        } catch {
          // not listening yet
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    try {
      const server = await startServer({}, { port, dataDir });
      polling = false;
      await poller;
      await server.stop();
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
      expect(server.log()).toContain("applied D1 migration");

      // Started again on the same folder: nothing to apply, so no detour over a free port.
      const again = await startServer({}, { port, dataDir });
      const res = await fetch(`${again.baseUrl}/_matrix/client/v3/register/available?username=nobody`);
      await again.stop();
      expect(res.status).toBe(200);
      expect(again.log()).not.toContain("applied D1 migration");
      expect(again.log()).not.toContain("Updated and ready");
    } finally {
      polling = false;
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
