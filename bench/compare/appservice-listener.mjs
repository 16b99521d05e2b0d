// The application service side of `npm run bench:compare -- --only appservice,appservice8`: one HTTP
// listener on loopback that plays a bridge for both servers (Myelin's registration points at
// `http://127.0.0.1:<port>/myelin`, Synapse's at `/synapse`), answers every
// PUT /_matrix/app/v1/transactions/{txnId} with 200 and notes when each message arrived, so the workload can
// wait for a message and read the time it reached the service. Registrations are written as the YAML
// (here JSON, a subset) both servers read: Synapse's `app_service_config_files`, Myelin's
// APPSERVICE_CONFIG_FILES.
import { createServer } from "node:http";
import { writeFileSync } from "node:fs";
import path from "node:path";

/**
 * @returns {Promise<{ port: number, registrationFor(who: string, dir: string): { file: string, asToken: string, prefix: string },
 *   waitFor(who: string, marker: string, timeoutMs?: number): Promise<number>, stop(): Promise<void> }>}
 */
export async function startBenchBridge() {
  /** who → marker (message body) → arrival time (performance.now()). */
  const arrived = new Map();
  /** who → marker → resolver. */
  const waiting = new Map();
  const hsTokens = new Map();
  const of = (map, who) => map.get(who) ?? map.set(who, new Map()).get(who);

  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const at = performance.now();
      const m = /^\/(\w+)\/_matrix\/app\/v1\/transactions\/[^/]+$/.exec(req.url ?? "");
      if (req.method !== "PUT" || !m) {
        // Queries (users, rooms) and anything else: nothing here.
        res.writeHead(404, { "content-type": "application/json" }).end('{"errcode":"M_NOT_FOUND"}');
        return;
      }
      const who = m[1];
      if (req.headers.authorization !== `Bearer ${hsTokens.get(who)}`) {
        res.writeHead(403, { "content-type": "application/json" }).end('{"errcode":"M_FORBIDDEN"}');
        return;
      }
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        res.writeHead(400).end();
        return;
      }
      for (const event of body.events ?? []) {
        const marker = event?.content?.body;
        if (event?.type !== "m.room.message" || typeof marker !== "string") continue;
        const seen = of(arrived, who);
        if (seen.has(marker)) continue; // a retried transaction
        seen.set(marker, at);
        of(waiting, who).get(marker)?.(at);
        of(waiting, who).delete(marker);
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = server.address().port;

  return {
    port,
    registrationFor(who, dir) {
      const asToken = `as-${who}-${Math.random().toString(36).slice(2)}`;
      const hsToken = `hs-${who}-${Math.random().toString(36).slice(2)}`;
      hsTokens.set(who, hsToken);
      const prefix = "_bench_";
      const registration = {
        id: `bench-${who}`,
        url: `http://127.0.0.1:${port}/${who}`,
        as_token: asToken,
        hs_token: hsToken,
        sender_localpart: "benchbridge",
        rate_limited: false,
        namespaces: { users: [{ exclusive: true, regex: `@${prefix}.*` }], aliases: [], rooms: [] },
      };
      const file = path.join(dir, `appservice-${who}.yaml`);
      writeFileSync(file, JSON.stringify(registration, null, 2));
      return { file, asToken, prefix };
    },
    /** Resolves with the arrival time of the message whose body is `marker` (at once if it is there). */
    waitFor(who, marker, timeoutMs = 60_000) {
      const at = of(arrived, who).get(marker);
      if (at !== undefined) return Promise.resolve(at);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          of(waiting, who).delete(marker);
          reject(new Error(`the service did not receive "${marker}" within ${timeoutMs} ms`));
        }, timeoutMs);
        of(waiting, who).set(marker, (t) => (clearTimeout(timer), resolve(t)));
      });
    },
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
