// Extra Myelin servers for federation tests that need more than the stage's own (B, C, D...): each
// started over TLS with the stage's test CA (global-setup.ts made it and every server trusts it), and
// stopped with its state folder removed after the file. Also the reads the MSC4345/MSC4348 tests share.
import { rmSync } from "node:fs";
import { expect, inject } from "vitest";
import { startServer, type RunningServer } from "../e2e/server.js";
import type { TestCA } from "../e2e/tls.js";
import { call, enc, type Server, type User } from "./client.js";

/** The stage's CA and server certificate (made once by global-setup.ts, shared by every server). */
export function stageCA(): TestCA {
  const caDir = inject("caDir");
  return { dir: caDir, caCert: `${caDir}/ca.crt`, serverKey: `${caDir}/server.key`, serverCert: `${caDir}/server.crt`, caPem: inject("caPem"), remove() {} };
}

export interface MoreMyelins {
  /** Starts one more Myelin with `secret` for shared-secret registration (and `env` beside it). */
  start(secret: string, env?: Record<string, string>): Promise<Server>;
  /** Stops every server started here and removes their state folders (for afterAll). */
  stopAll(): Promise<void>;
}

export function moreMyelins(): MoreMyelins {
  const started: RunningServer[] = [];
  return {
    async start(secret, env = {}) {
      const s = await startServer({ REGISTRATION_SHARED_SECRET: secret, ...env }, { https: stageCA() });
      started.push(s);
      return { baseUrl: s.baseUrl, serverName: s.serverName, registrationSharedSecret: secret };
    },
    async stopAll() {
      await Promise.all(started.map((s) => s.stop()));
      for (const s of started) rmSync(s.dataDir, { recursive: true, force: true });
    },
  };
}

/** A server's key in MSC4345 rooms, from its key/v3 document. */
export async function serverKeyOf(server: Server): Promise<string> {
  const res = await fetch(`${server.baseUrl}/_matrix/key/v3/org.matrix.msc4345/query`);
  expect(res.status).toBe(200);
  const doc = (await res.json()) as { verify_keys: Record<string, { key: string }> };
  return Object.values(doc.verify_keys)[0]!.key;
}

export type ClientEvent = { sender: string; content: { body?: string }; unsigned?: { server_domain?: string; account?: string } };

/** The message with `body` among the room's latest 50 as `user` sees them, if there. */
export async function messageEvent(user: User, roomId: string, body: string): Promise<ClientEvent | undefined> {
  const res = await call(user, "GET", `/rooms/${enc(roomId)}/messages?dir=b&limit=50`);
  return (res.body.chunk as ClientEvent[]).find((e) => e.content.body === body);
}
