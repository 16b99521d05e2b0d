// The published room directory across servers (spec: Server-Server API, "Public Room Directory"): served to
// other servers (GET and POST /_matrix/federation/v1/publicRooms) and used by a client's
// /publicRooms?server=<other>. The other server is played by test/workers/remote-homeserver.mjs.
import { describe, expect, it } from "vitest";
import { remoteControl, uniqueServer } from "./federation-helpers.js";
import { federationApi } from "./federation-room-helpers.js";
import { api } from "./helpers.js";
import { V3, createRoom, newUser } from "./room-helpers.js";

const F1 = "/_matrix/federation/v1";

describe("/publicRooms over federation", () => {
  it("serves the published rooms to another server, GET and POST with a filter; unsigned requests 401", async () => {
    const alice = await newUser("alice");
    const name = `fedlisted-${crypto.randomUUID().slice(0, 8)}`;
    const roomId = await createRoom(alice, { preset: "public_chat", visibility: "public", name });
    const remote = uniqueServer("dir");
    const get = await federationApi(remote, "GET", `${F1}/publicRooms?limit=500`);
    expect(get.status).toBe(200);
    expect((get.body.chunk as { room_id: string }[]).map((c) => c.room_id)).toContain(roomId);
    const post = await federationApi(remote, "POST", `${F1}/publicRooms`, { filter: { generic_search_term: name } });
    expect(post.status).toBe(200);
    expect(post.body.chunk.map((c: { room_id: string }) => c.room_id)).toEqual([roomId]);
    expect(post.body.chunk[0].name).toBe(name);
    expect((await api("GET", `${F1}/publicRooms`)).status).toBe(401);
    expect((await federationApi(remote, "POST", `${F1}/publicRooms`, { limit: "ten" })).status).toBe(400);
    expect((await federationApi(remote, "GET", `${F1}/publicRooms?include_all_networks=maybe`)).status).toBe(400);
  });

  it("a client's /publicRooms?server= asks that server (GET, or POST with the filter) and passes its answer on", async () => {
    const alice = await newUser("alice");
    const server = uniqueServer("dir");
    const page = { chunk: [{ room_id: `!r:${server}`, num_joined_members: 3, world_readable: false, guest_can_join: false, name: "Theirs" }], next_batch: "n1", total_room_count_estimate: 7 };
    await remoteControl("/_test/answer", { server, method: "GET", path: `${F1}/publicRooms`, body: page });
    await remoteControl("/_test/answer", { server, method: "POST", path: `${F1}/publicRooms`, body: { chunk: [] } });
    const got = await api("GET", `${V3}/publicRooms?server=${encodeURIComponent(server)}&limit=5&since=s0`);
    expect(got.status).toBe(200);
    expect(got.body).toEqual(page);
    const filtered = await api("POST", `${V3}/publicRooms?server=${encodeURIComponent(server)}`, {
      token: alice.access_token,
      body: { limit: 2, filter: { generic_search_term: "x" } },
    });
    expect(filtered.status).toBe(200);
    expect(filtered.body.chunk).toEqual([]);
    const requests = await remoteControl<{ method: string; query: string; body: unknown }[]>(`/_test/answered?server=${encodeURIComponent(server)}`);
    expect(requests.map((r) => [r.method, r.query, r.body])).toEqual([
      ["GET", "?limit=5&since=s0", null],
      ["POST", "", { limit: 2, filter: { generic_search_term: "x" } }],
    ]);
  });

  it("answers 502 when the other server gives no directory, passes its 4xx on, and refuses a bad server name", async () => {
    const server = uniqueServer("dir");
    await remoteControl("/_test/answer", { server, method: "GET", path: `${F1}/publicRooms`, body: { not: "a directory" } });
    const bad = await api("GET", `${V3}/publicRooms?server=${encodeURIComponent(server)}`);
    expect(bad.status).toBe(502);
    const closed = uniqueServer("dir");
    await remoteControl("/_test/answer", { server: closed, method: "GET", path: `${F1}/publicRooms`, status: 403, body: { errcode: "M_FORBIDDEN", error: "not public" } });
    const refused = await api("GET", `${V3}/publicRooms?server=${encodeURIComponent(closed)}`);
    expect(refused.status).toBe(403);
    expect(refused.body.errcode).toBe("M_FORBIDDEN");
    expect((await api("GET", `${V3}/publicRooms?server=${encodeURIComponent("bad name!")}`)).status).toBe(400);
  });
});
