// End-to-end: a bridge built on matrix-appservice (the HTTP listener library matrix-appservice-bridge, and so
// the IRC and Slack bridges, are built on) against the real server started as `npm start` does with
// APPSERVICE_CONFIG_FILES. The bridge registers a puppet with m.login.application_service, puppets it with
// user_id= and ts=, and receives the room's events through PUT /_matrix/app/v1/transactions. Then the bridge
// goes down while a user sends messages, the server restarts, the bridge comes back: it gets every message
// (at least once), in order.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { AppService } from "matrix-appservice";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startServer, type RunningServer } from "./server.js";

interface PushedEvent {
  event_id: string;
  type: string;
  sender: string;
  room_id: string;
  origin_server_ts: number;
  content: Record<string, unknown>;
  state_key?: string;
}

/** The parts of express's request and response the third-party routes below use. */
interface HttpRequest {
  params: Record<string, string>;
  query: Record<string, unknown>;
}
interface HttpResponse {
  status(code: number): HttpResponse;
  send(body: unknown): void;
}

const HS_TOKEN = `hs-${Math.random().toString(36).slice(2)}`;
const AS_TOKEN = `as-${Math.random().toString(36).slice(2)}`;

let dir: string;
let server: RunningServer;
let asPort: number;
let bridge: AppService | undefined;
const received: PushedEvent[] = [];

async function startBridge(): Promise<void> {
  const as = new AppService({ homeserverToken: HS_TOKEN });
  as.on("event", (e: Record<string, unknown>) => void received.push(e as unknown as PushedEvent));
  // Queries: the bridge creates what it is asked about (spec: Application Service API, "Querying").
  as.onUserQuery = async (userId: string) => {
    const localpart = userId.slice(1, userId.indexOf(":"));
    await call("POST", "/_matrix/client/v3/register", AS_TOKEN, { type: "m.login.application_service", username: localpart, inhibit_login: true });
  };
  as.onAliasQuery = async (alias: string) => {
    const room = await call("POST", "/_matrix/client/v3/createRoom", AS_TOKEN, {});
    await call("PUT", `/_matrix/client/v3/directory/room/${encodeURIComponent(alias)}`, AS_TOKEN, { room_id: room.body.room_id });
  };
  const app = as.expressApp as unknown as { get(path: string, handler: (req: HttpRequest, res: HttpResponse) => void): void };
  app.get("/_matrix/app/v1/thirdparty/protocol/:protocol", (req, res) => {
    if (req.params.protocol !== "e2enet") return void res.status(404).send({ errcode: "M_NOT_FOUND" });
    res.send({ user_fields: ["nick"], location_fields: ["channel"], icon: "mxc://x/y", field_types: {}, instances: [{ network_id: "net1", desc: "Net One", fields: {} }] });
  });
  app.get("/_matrix/app/v1/thirdparty/location/:protocol", (req, res) => {
    res.send([{ alias: `#_e2e_${String(req.query.channel)}:x`, protocol: req.params.protocol, fields: { channel: req.query.channel } }]);
  });
  await as.listen(asPort, "127.0.0.1", 16);
  bridge = as;
}

async function stopBridge(): Promise<void> {
  await bridge?.close();
  bridge = undefined;
}

async function call(method: string, urlPath: string, token: string | undefined, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${server.baseUrl}${urlPath}`, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Polls until `done()` holds (each step waits a little); fails with `what` after `limitMs`. */
async function until(what: string, done: () => boolean, limitMs = 60_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!done()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function registerUser(localpart: string): Promise<{ user_id: string; access_token: string }> {
  const first = await call("POST", "/_matrix/client/v3/register", undefined, { username: localpart, password: `pw-${localpart}` });
  const res = await call("POST", "/_matrix/client/v3/register", undefined, {
    username: localpart,
    password: `pw-${localpart}`,
    auth: { type: "m.login.dummy", session: first.body.session },
  });
  expect(res.status).toBe(200);
  return res.body;
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "myelin-appservice-"));
  asPort = await freePort();
  const port = await freePort();
  const serverName = `localhost:${port}`;
  const registration = path.join(dir, "bridge.yaml");
  writeFileSync(
    registration,
    [
      "id: e2e-bridge",
      `url: "http://127.0.0.1:${asPort}"`,
      `as_token: "${AS_TOKEN}"`,
      `hs_token: "${HS_TOKEN}"`,
      "sender_localpart: e2ebridgebot",
      "rate_limited: false",
      "protocols: [e2enet]",
      "namespaces:",
      "  users:",
      "    - exclusive: true",
      `      regex: "@_e2e_.*:${serverName.replace(".", "\\\\.")}"`,
      "  aliases:",
      "    - exclusive: true",
      `      regex: "#_e2e_.*"`,
      "  rooms: []",
      "",
    ].join("\n"),
  );
  server = await startServer({ APPSERVICE_CONFIG_FILES: registration }, { dataDir: path.join(dir, "data"), port });
  await startBridge();
});

afterAll(async () => {
  await stopBridge();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("a bridge on matrix-appservice", () => {
  let roomId: string;
  let human: { user_id: string; access_token: string };
  let puppet: string;

  it("registers a puppet, puppets it with massaged timestamps, and receives the room's events", async () => {
    const reg = await call("POST", "/_matrix/client/v3/register", AS_TOKEN, { type: "m.login.application_service", username: "_e2e_alice" });
    expect(reg.status).toBe(200);
    puppet = reg.body.user_id;
    const asPuppet = `user_id=${encodeURIComponent(puppet)}`;

    human = await registerUser(`human${Date.now().toString(36)}`);
    const created = await call("POST", `/_matrix/client/v3/createRoom?${asPuppet}`, AS_TOKEN, { invite: [human.user_id] });
    expect(created.status).toBe(200);
    roomId = created.body.room_id;
    expect((await call("POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/join`, human.access_token, {})).status).toBe(200);

    const bridged = await call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/b1?${asPuppet}&ts=1500000000000`, AS_TOKEN, {
      msgtype: "m.text",
      body: "from the other network",
    });
    expect(bridged.status).toBe(200);
    const said = await call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/h1`, human.access_token, { msgtype: "m.text", body: "hello bridge" });
    expect(said.status).toBe(200);

    await until("the human's message", () => received.some((e) => e.event_id === said.body.event_id));
    const mine = received.find((e) => e.event_id === bridged.body.event_id)!;
    expect(mine.sender).toBe(puppet);
    expect(mine.origin_server_ts).toBe(1500000000000);
    const theirs = received.find((e) => e.event_id === said.body.event_id)!;
    expect(theirs).toMatchObject({ type: "m.room.message", room_id: roomId, sender: human.user_id, content: { body: "hello bridge" } });
    // The room's creation reached the bridge before the messages, in order.
    const order = received.filter((e) => e.room_id === roomId).map((e) => e.event_id);
    expect(order.indexOf(bridged.body.event_id)).toBeLessThan(order.indexOf(said.body.event_id));
    expect(received.find((e) => e.room_id === roomId)?.type).toBe("m.room.create");
  });

  it("a bridge that is down gets every message, in order, after it comes back and after a server restart", async () => {
    await stopBridge();
    const sent: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/down${i}`, human.access_token, {
        msgtype: "m.text",
        body: `while down ${i}`,
      });
      expect(res.status).toBe(200);
      sent.push(res.body.event_id);
    }
    // Restart the server with the same state; the bridge is still down meanwhile.
    const { port, dataDir } = server;
    await server.stop();
    server = await startServer({ APPSERVICE_CONFIG_FILES: path.join(dir, "bridge.yaml") }, { dataDir, port });
    const afterRestart = await call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/after`, human.access_token, {
      msgtype: "m.text",
      body: "after the restart",
    });
    expect(afterRestart.status).toBe(200);
    sent.push(afterRestart.body.event_id);
    expect(received.filter((e) => sent.includes(e.event_id))).toEqual([]);

    // The bridge comes back and, as bridges do on start, makes a request with its as_token: its queue stops
    // backing off.
    await startBridge();
    expect((await call("GET", "/_matrix/client/v3/account/whoami", AS_TOKEN)).status).toBe(200);
    await until("every message sent while the bridge was down", () => sent.every((id) => received.some((e) => e.event_id === id)));
    const got = received.filter((e) => sent.includes(e.event_id)).map((e) => e.event_id);
    // In order; a transaction may be delivered twice (at least once), never out of order.
    const firstSeen = [...new Set(got)];
    expect(firstSeen).toEqual(sent);
  });

  it("ping: the server reaches the bridge (an answer that is not 2xx is M_BAD_STATUS)", async () => {
    const res = await call("POST", "/_matrix/client/v1/appservice/e2e-bridge/ping", AS_TOKEN, { transaction_id: "p1" });
    // matrix-appservice 3.0.0 has no /_matrix/app/v1/ping route: its 404 comes back as M_BAD_STATUS.
    expect(res.status).toBe(502);
    expect(res.body.errcode).toBe("M_BAD_STATUS");
    expect(res.body.status).toBe(404);
    const other = await call("POST", "/_matrix/client/v1/appservice/someone-else/ping", AS_TOKEN, {});
    expect(other.status).toBe(403);
  });

  it("queries: an unknown user or alias in the namespace is asked of the bridge, which creates it", async () => {
    const user = `@_e2e_queried${Date.now().toString(36)}:${server.serverName}`;
    const profile = await call("GET", `/_matrix/client/v3/profile/${encodeURIComponent(user)}`, human.access_token);
    expect(profile.status).toBe(200);
    const alias = `#_e2e_chan${Date.now().toString(36)}:${server.serverName}`;
    const resolved = await call("GET", `/_matrix/client/v3/directory/room/${encodeURIComponent(alias)}`, undefined);
    expect(resolved.status).toBe(200);
    expect(resolved.body.room_id).toMatch(/^!/);
    // Outside the namespaces nobody is asked.
    expect((await call("GET", `/_matrix/client/v3/directory/room/${encodeURIComponent(`#nobody:${server.serverName}`)}`, undefined)).status).toBe(404);
  });

  it("third-party protocols and locations come from the bridge", async () => {
    const protocols = await call("GET", "/_matrix/client/v3/thirdparty/protocols", human.access_token);
    expect(protocols.status).toBe(200);
    expect(protocols.body.e2enet.instances).toEqual([{ network_id: "net1", desc: "Net One", fields: {}, instance_id: "e2e-bridge|net1" }]);
    expect((await call("GET", "/_matrix/client/v3/thirdparty/protocol/other", human.access_token)).status).toBe(404);
    const locations = await call("GET", "/_matrix/client/v3/thirdparty/location/e2enet?channel=general", human.access_token);
    expect(locations.body).toEqual([{ alias: "#_e2e_general:x", protocol: "e2enet", fields: { channel: "general" } }]);
  });
});
