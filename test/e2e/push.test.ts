// End-to-end: push notifications from the real server to a small push gateway (Push Gateway API,
// POST /_matrix/push/v1/notify) that this test runs on loopback. Bob registers a pusher and never syncs;
// Alice's messages reach the gateway with Bob's unread count (rooms with unread notifications, Synapse's
// default), which a read receipt lowers (with a badge update of its own).
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { registerAccount, unique } from "./register.js";

const baseUrl = inject("baseUrl");

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

/** The gateway: keeps every notification it gets, answers `{"rejected": []}`. */
const received: Json[] = [];
const waiting = new Set<() => void>();
let gatewayServer: http.Server;
let gatewayUrl: string;

/** Listens on a port of 25000-25999 (this suite's range), trying a few. */
async function listenInRange(server: http.Server): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 25000 + Math.floor(Math.random() * 1000);
    const ok = await new Promise<boolean>((resolve) => {
      const onError = () => resolve(false);
      server.once("error", onError);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", onError);
        resolve(true);
      });
    });
    if (ok) return (server.address() as AddressInfo).port;
  }
  throw new Error("no free port in 25000-25999");
}

beforeAll(async () => {
  gatewayServer = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.method === "POST" && req.url === "/_matrix/push/v1/notify") {
        received.push(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        for (const w of [...waiting]) w();
        res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ rejected: [] }));
      } else {
        res.writeHead(404).end();
      }
    });
  });
  const port = await listenInRange(gatewayServer);
  gatewayUrl = `http://127.0.0.1:${port}/_matrix/push/v1/notify`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => gatewayServer.close(() => resolve()));
});

/** Resolves once the gateway holds `n` notifications (bounded: fails after 30 s). */
function notifications(n: number): Promise<Json[]> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (received.length >= n) {
        clearTimeout(timer);
        waiting.delete(check);
        resolve(received.slice(0, n));
      }
    };
    const timer = setTimeout(() => {
      waiting.delete(check);
      reject(new Error(`the gateway got ${received.length} notifications, not ${n}`));
    }, 30_000);
    waiting.add(check);
    check();
  });
}

async function call(method: string, path: string, token?: string, body?: unknown): Promise<Json> {
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function register(prefix: string): Promise<{ userId: string; token: string }> {
  const a = await registerAccount(baseUrl, unique(prefix));
  return { userId: a.user_id, token: a.access_token };
}

const room = (roomId: string) => `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}`;
let txn = 0;
const say = async (token: string, roomId: string, body: string): Promise<string> =>
  (await call("PUT", `${room(roomId)}/send/m.room.message/push-${++txn}`, token, { msgtype: "m.text", body })).event_id;

describe("push notifications to a gateway on loopback", () => {
  it("delivers what Bob's push rules notify about, with his unread count, while he does not sync", async () => {
    const alice = await register("alice");
    const bob = await register("bob");
    await call("PUT", `/_matrix/client/v3/profile/${encodeURIComponent(alice.userId)}/displayname`, alice.token, { displayname: "Alice" });
    const roomOne = (await call("POST", "/_matrix/client/v3/createRoom", alice.token, { preset: "public_chat", name: "Room one" })).room_id;
    const roomTwo = (await call("POST", "/_matrix/client/v3/createRoom", alice.token, { preset: "public_chat" })).room_id;
    await call("POST", `${room(roomOne)}/join`, bob.token, {});
    await call("POST", `${room(roomTwo)}/join`, bob.token, {});
    await call("POST", "/_matrix/client/v3/pushers/set", bob.token, {
      kind: "http",
      app_id: "org.example.e2e",
      app_display_name: "E2E",
      device_display_name: "Bob's phone",
      pushkey: "bob-pushkey",
      lang: "en",
      data: { url: gatewayUrl, custom: "kept" },
    });
    expect((await call("GET", "/_matrix/client/v3/pushers", bob.token)).pushers).toHaveLength(1);

    // Bob's own message notifies no one (Alice has no pusher); Alice's first one reaches Bob's gateway.
    await say(bob.token, roomOne, "hi from bob");
    const first = await say(alice.token, roomOne, "first");
    const [one] = await notifications(1);
    expect(one.notification).toMatchObject({
      event_id: first,
      room_id: roomOne,
      type: "m.room.message",
      sender: alice.userId,
      sender_display_name: "Alice",
      room_name: "Room one",
      content: { msgtype: "m.text", body: "first" },
      counts: { unread: 1 },
      devices: [{ app_id: "org.example.e2e", pushkey: "bob-pushkey", data: { custom: "kept" }, tweaks: { sound: "default" } }],
    });
    expect(one.notification.devices[0].data.url).toBeUndefined();

    // A second room with an unread notification: 2.
    const second = await say(alice.token, roomTwo, "second");
    const two = await notifications(2);
    expect(two[1].notification).toMatchObject({ event_id: second, room_id: roomTwo, counts: { unread: 2 } });

    // Bob reads room one (on another device, say): the gateway gets a badge update (counts only, as
    // Synapse sends after a read receipt), and the next push counts only room two.
    await call("POST", `${room(roomOne)}/receipt/m.read/${encodeURIComponent(first)}`, bob.token, {});
    const three = await notifications(3);
    expect(three[2].notification).toMatchObject({ id: "", type: null, sender: "", counts: { unread: 1 } });
    expect(three[2].notification.event_id).toBeUndefined();
    const third = await say(alice.token, roomTwo, "third");
    const four = await notifications(4);
    expect(four[3].notification).toMatchObject({ event_id: third, counts: { unread: 1 } });

    // Removing the pusher stops the pushes: after a message and a sync of Bob's, nothing more arrived.
    await call("POST", "/_matrix/client/v3/pushers/set", bob.token, { kind: null, app_id: "org.example.e2e", pushkey: "bob-pushkey" });
    await say(alice.token, roomTwo, "fourth");
    await call("GET", "/_matrix/client/v3/sync?timeout=0", bob.token);
    expect(received).toHaveLength(4);
  });
});
