// A first join to a server this one has never talked to: the resident's verify keys are fetched while
// make_join and send_join are under way, not after the answer arrived (durable-objects/room/remote-join.ts
// `prefetchKeys`, wired in room.ts). The resident is played by test/workers/partial-state-resident.ts under a
// fresh server name (no key of it is cached); its key is the one the remote stand-in publishes for that name.
// The stand-in's send_join holds its answer until D1 has the resident's key document: without the prefetch
// nothing fetches the key before the answer, and the join fails.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RemoteFetch } from "../../durable-objects/room/federation-inbound.js";
import { uniqueServer } from "./federation-helpers.js";
import { ResidentRoom } from "./partial-state-resident.js";
import { newUser } from "./room-helpers.js";

const stub = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
type Room = { updateMembership(request: Record<string, unknown>): Promise<{ ok?: { eventId: string }; error?: unknown }> };

async function keyDocumentStored(server: string): Promise<boolean> {
  const row = await env.DB.prepare("SELECT key_json FROM remote_server_key_documents WHERE server_name = ?").bind(server).first<{ key_json: string | null }>();
  return typeof row?.key_json === "string";
}

describe("joining a room on a server met for the first time", () => {
  it("fetches the resident's keys beside make_join and send_join", async () => {
    const room = await ResidentRoom.create(uniqueServer("keys-first"), "12", "creator");
    expect(await keyDocumentStored(room.server)).toBe(false);
    const alice = await newUser("alice");
    const resident = room.remote();
    let keysBeforeAnswer: boolean | undefined;
    const remote: RemoteFetch = async (destination, method, path, body) => {
      if (method === "PUT" && path.startsWith("/_matrix/federation/v2/send_join/")) {
        // Waits (at most 10 s, so that a missing prefetch fails instead of hanging) for the key document.
        for (let i = 0; i < 200 && !(await keyDocumentStored(room.server)); i++) await new Promise((r) => setTimeout(r, 50));
        keysBeforeAnswer = await keyDocumentStored(room.server);
        if (!keysBeforeAnswer) return { ok: false, status: 503, error: "held back until the keys were fetched (test)" };
      }
      return resident(destination, method, path, body);
    };
    const outcome = await runInDurableObject(stub(room.roomId), async (instance) => {
      Object.defineProperty(instance, "remote", { get: () => remote, configurable: true });
      Object.defineProperty(instance, "remoteStream", { get: () => undefined, configurable: true });
      return (instance as unknown as Room).updateMembership({ sender: alice.user_id, target: alice.user_id, action: "join", roomId: room.roomId, servers: [room.server] });
    });
    expect(keysBeforeAnswer).toBe(true);
    expect(outcome.error).toBeUndefined();
    expect(outcome.ok?.eventId).toMatch(/^\$/);
  });
});
