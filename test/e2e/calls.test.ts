// End-to-end for calls (issue 17): TURN credentials from the real server open an allocation on a real
// coturn (Debian's `coturn` package; .ci/run installs it), the Cloudflare managed-TURN mode talks to a
// local HTTP server that plays Cloudflare's API, and a delayed event (MSC4140) scheduled before a restart
// of the server is sent once after it.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import dgram from "node:dgram";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type RunningServer } from "./server.js";

const SECRET = "e2e-turn-secret";
const CF_KEY_ID = "key/with slash";
const CF_TOKEN = "cf-api-token";

/** A port in 21000-21999 free for both TCP and UDP (TURN listens on both). */
async function freePortInRange(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 21000 + Math.floor(Math.random() * 1000);
    const tcpFree = await new Promise<boolean>((resolve) => {
      const s = net.createServer().once("error", () => resolve(false));
      s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const s = dgram.createSocket("udp4").once("error", () => resolve(false));
      s.bind(port, "127.0.0.1", () => s.close(() => resolve(true)));
    });
    if (tcpFree && udpFree) return port;
  }
  throw new Error("no free port in 21000-21999");
}

/** Plays Cloudflare's Realtime TURN API: records each request and answers with `next`. */
interface FakeCloudflare {
  url: string;
  requests: { method: string; path: string; authorization?: string; body: string }[];
  next: { status: number; body: unknown };
  close(): Promise<void>;
}

async function startFakeCloudflare(): Promise<FakeCloudflare> {
  const fake: FakeCloudflare = { url: "", requests: [], next: { status: 500, body: {} }, close: async () => {} };
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      fake.requests.push({ method: req.method!, path: req.url!, authorization: req.headers.authorization, body });
      res.writeHead(fake.next.status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(fake.next.body));
    });
  });
  const port = await freePortInRange();
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  fake.url = `http://127.0.0.1:${port}/v1`;
  fake.close = () => new Promise((resolve) => server.close(() => resolve()));
  return fake;
}

interface Coturn {
  port: number;
  log(): string;
  stop(): Promise<void>;
}

/** coturn with `use-auth-secret` on loopback, relaying on loopback ports of our range. */
async function startCoturn(secret: string): Promise<Coturn> {
  const port = await freePortInRange();
  const dir = mkdtempSync(path.join(os.tmpdir(), "myelin-coturn-"));
  const logFile = path.join(dir, "turnserver.log");
  const relayBase = 21000 + 100 * Math.floor(Math.random() * 10);
  const child: ChildProcess = spawn(
    "turnserver",
    [
      // A log file, not stdout: coturn's stdout is block-buffered into a pipe.
      "-n", "-v", `--log-file=${logFile}`, "--simple-log", "--no-cli", "--no-tls", "--no-dtls",
      "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", `--listening-port=${port}`,
      `--min-port=${relayBase}`, `--max-port=${relayBase + 99}`,
      "--use-auth-secret", `--static-auth-secret=${secret}`, "--realm=myelin.test",
      // The test's peer is on loopback, which coturn refuses by default.
      "--allow-loopback-peers",
      `--pidfile=${path.join(dir, "turnserver.pid")}`, `--db=${path.join(dir, "turndb")}`,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const log = () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : "");
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`turnserver did not start:\n${output}\n${log()}`)), 20_000);
    child.once("error", (e) => reject(new Error(`turnserver could not run (is coturn installed? .ci/run installs it): ${e.message}`)));
    child.once("exit", () => reject(new Error(`turnserver exited:\n${output}\n${log()}`)));
    const poll = setInterval(() => {
      if (log().includes("Total General servers")) {
        clearInterval(poll);
        clearTimeout(timer);
        resolve();
      }
    }, 50);
  });
  return {
    port,
    log,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        child.kill("SIGKILL");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** turnutils_uclient: allocates a relay with these credentials and sends a few messages through it. */
function allocate(turnPort: number, username: string, password: string): { status: number | null; output: string } {
  const peerPort = 21999;
  const run = spawnSync(
    "turnutils_uclient",
    ["-u", username, "-w", password, "-p", String(turnPort), "-e", "127.0.0.1", "-r", String(peerPort), "-y", "-n", "2", "-m", "1", "127.0.0.1"],
    { encoding: "utf8", timeout: 30_000 },
  );
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/**
 * fetch, sent again when a reused keep-alive connection was closed by the server before it answered
 * (undici then reports "other side closed"; the request was not processed). Happens after the idle
 * pauses of this file (coturn runs, the restart).
 */
async function fetchRetry(url: string, init?: RequestInit): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fetch(url, init);
    } catch (e) {
      const code = (e as { cause?: { code?: string } }).cause?.code;
      if (attempt >= 3 || code !== "UND_ERR_SOCKET") throw e;
    }
  }
}

async function register(baseUrl: string, username: string): Promise<{ user_id: string; access_token: string }> {
  const body = { username, password: `pw-${username}`, auth: { type: "m.login.dummy" } };
  const res = await fetchRetry(`${baseUrl}/_matrix/client/v3/register`, { method: "POST", body: JSON.stringify(body) });
  expect(res.status).toBe(200);
  return (await res.json()) as { user_id: string; access_token: string };
}

async function turnServer(baseUrl: string, token: string): Promise<Record<string, unknown>> {
  const res = await fetchRetry(`${baseUrl}/_matrix/client/v3/voip/turnServer`, { headers: { Authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

describe("calls", () => {
  let coturn: Coturn;
  let cloudflare: FakeCloudflare;
  let server: RunningServer;
  let serverEnv: Record<string, string>;
  let alice: { user_id: string; access_token: string };
  // Kept across a restart of the server (test below), removed at the end.
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "myelin-calls-"));

  beforeAll(async () => {
    coturn = await startCoturn(SECRET);
    cloudflare = await startFakeCloudflare();
    serverEnv = {
      TURN_URIS: `turn:127.0.0.1:${coturn.port}?transport=udp`,
      TURN_SHARED_SECRET: SECRET,
      TURN_CLOUDFLARE_KEY_ID: CF_KEY_ID,
      TURN_CLOUDFLARE_API_TOKEN: CF_TOKEN,
      TURN_CLOUDFLARE_API_URL: cloudflare.url,
    };
    server = await startServer(serverEnv, { port: await freePortInRange(), dataDir });
    alice = await register(server.baseUrl, `alice${Date.now().toString(36)}`);
  });

  afterAll(async () => {
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
    await cloudflare?.close();
    await coturn?.stop();
  });

  it("asks Cloudflare's generate-ice-servers API and hands its TURN credentials on", async () => {
    cloudflare.next = {
      status: 201,
      body: {
        iceServers: [
          { urls: ["stun:stun.cloudflare.com:3478", "stun:stun.cloudflare.com:53"] },
          {
            urls: ["turn:turn.cloudflare.com:3478?transport=udp", "turn:turn.cloudflare.com:53?transport=udp", "turns:turn.cloudflare.com:443?transport=tcp"],
            username: "cf-user",
            credential: "cf-credential",
          },
        ],
      },
    };
    cloudflare.requests.length = 0;
    expect(await turnServer(server.baseUrl, alice.access_token)).toEqual({
      username: "cf-user",
      password: "cf-credential",
      ttl: 3600,
      uris: ["turn:turn.cloudflare.com:3478?transport=udp", "turns:turn.cloudflare.com:443?transport=tcp"],
    });
    expect(cloudflare.requests).toEqual([
      {
        method: "POST",
        path: `/v1/turn/keys/${encodeURIComponent(CF_KEY_ID)}/credentials/generate-ice-servers`,
        authorization: `Bearer ${CF_TOKEN}`,
        body: JSON.stringify({ ttl: 3600 }),
      },
    ]);
  });

  it("falls back to the shared secret when Cloudflare fails, and coturn accepts those credentials", async () => {
    cloudflare.next = { status: 500, body: { success: false } };
    cloudflare.requests.length = 0;
    const creds = await turnServer(server.baseUrl, alice.access_token);
    expect(cloudflare.requests.length).toBe(1);
    expect(creds.uris).toEqual([`turn:127.0.0.1:${coturn.port}?transport=udp`]);
    const username = creds.username as string;
    expect(username.endsWith(`:${alice.user_id}`)).toBe(true);

    // The port comes from the URI Myelin handed out.
    const turnPort = Number(/^turn:127\.0\.0\.1:(\d+)/.exec((creds.uris as string[])[0]!)![1]);
    const ok = allocate(turnPort, username, creds.password as string);
    expect(ok.output).not.toContain("Cannot complete Allocation");
    expect(ok.status, ok.output).toBe(0);
    expect(coturn.log()).toContain(`user <${username}>: incoming packet ALLOCATE processed, success`);

    // A wrong password is refused: the test would pass with any credentials otherwise.
    const password = creds.password as string;
    const wrong = allocate(turnPort, username, (password[0] === "A" ? "B" : "A") + password.slice(1));
    expect(wrong.status).not.toBe(0);
    expect(wrong.output).toContain("Cannot complete Allocation");
  });

  it("sends a delayed event scheduled before a restart of the server once, after the restart", async () => {
    const auth = { Authorization: `Bearer ${alice.access_token}` };
    const created = await fetchRetry(`${server.baseUrl}/_matrix/client/v3/createRoom`, { method: "POST", headers: auth, body: "{}" });
    const { room_id: roomId } = (await created.json()) as { room_id: string };
    const room = `${server.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}`;
    // Long enough that the server is down when it falls due (stopping takes a second or two), or restarts
    // before it; either way it can only be sent by the restarted server.
    const delay = 8000;
    const scheduled = await fetchRetry(`${room}/send/m.room.message/restart1?org.matrix.msc4140.delay=${delay}`, {
      method: "PUT",
      headers: auth,
      body: JSON.stringify({ msgtype: "m.text", body: "sent after the restart" }),
    });
    expect(scheduled.status).toBe(200);
    const { delay_id: delayId } = (await scheduled.json()) as { delay_id: string };

    const listUrl = () => `${server.baseUrl}/_matrix/client/unstable/org.matrix.msc4140/delayed_events`;
    const before = (await (await fetchRetry(`${listUrl()}?status=scheduled`, { headers: auth })).json()) as { scheduled: { delay_id: string }[] };
    expect(before.scheduled.map((e) => e.delay_id)).toEqual([delayId]);
    await server.stop();
    const restartedAt = Date.now();
    server = await startServer(serverEnv, { port: server.port, dataDir });

    // Wait for it (no bound on how late: that is the benchmark's question, not this test's).
    let finalised: { delayed_event: { delay_id: string }; outcome: string; event_id?: string; origin_server_ts: number }[] = [];
    for (let i = 0; i < 120 && finalised.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const res = (await (await fetchRetry(`${listUrl()}?status=finalised`, { headers: auth })).json()) as { finalised: typeof finalised };
      finalised = res.finalised;
    }
    expect(finalised).toHaveLength(1);
    expect(finalised[0]).toMatchObject({ delayed_event: { delay_id: delayId }, outcome: "send" });
    expect(finalised[0]!.origin_server_ts).toBeGreaterThan(restartedAt);
    const messages = (await (await fetchRetry(`${room}/messages?dir=b&limit=50`, { headers: auth })).json()) as { chunk: { type: string; event_id: string; content: { body?: string } }[] };
    const sent = messages.chunk.filter((e) => e.type === "m.room.message");
    expect(sent.map((e) => [e.event_id, e.content.body])).toEqual([[finalised[0]!.event_id, "sent after the restart"]]);
  });
});
