// Simplified sliding sync (MSC4186) benchmarks (issue: sliding sync), inside workerd through the Worker's
// fetch handler:
//  - the first request of a connection for a user in 1,000 rooms, one list with ranges [[0, 19]] and
//    matrix-rust-sdk's room-list required_state (aim: under 300 ms). Reported cold (the first sync of the
//    User DO: every room is asked for its events since the user joined, docs/fan-out.md) and warm (new
//    connections on a User DO that already listens to its rooms).
//  - wake latency of a waiting connection: with the request parked in the User DO, the time from another
//    user's send returning to the response arriving (p50 / p99 over 200 messages; aim: p50 under 10 ms).
//
// Requests go to the Worker's fetch handler directly (app-client.ts); GET /versions is reported next to
// the figures as the harness's baseline.
import { env } from "cloudflare:workers";
import { it } from "vitest";
import { createRoom as createRoomDirect } from "../worker/client/rooms.js";
import type { Env } from "../worker/env.js";
import type { RoomRpc } from "../worker/room-store.js";
import { api, createRoom, harnessBaseline, registerUser, send, uniqueLocalpart, type RegisteredUser, V3 } from "./app-client.js";
import { ROOM_LIST_STATE } from "../test/fixtures/room-list-state.js";
import { percentile, report } from "./report.js";

const SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = any;

async function ss(user: RegisteredUser, body: unknown, query = ""): Promise<Body> {
  const res = await api("POST", `${SS}${query}`, { token: user.access_token, body });
  if (res.status !== 200) throw new Error(`sliding sync: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

const roomList = (connId: string) => ({
  conn_id: connId,
  lists: { all_rooms: { ranges: [[0, 19]], timeline_limit: 1, required_state: ROOM_LIST_STATE, filters: { not_room_types: ["m.space"] } } },
  extensions: { to_device: { enabled: true }, e2ee: { enabled: true }, account_data: { enabled: true }, receipts: { enabled: true }, typing: { enabled: true } },
});

const ROOMS = 1000;

// Setting up 1,000 rooms takes minutes on the loaded 2-core machine: hence the longer timeout.
it(`first request of a connection: a user in ${ROOMS} rooms, ranges [[0, 19]]`, { timeout: 3_600_000 }, async () => {
  const alice = await registerUser(uniqueLocalpart("alice"));
  const rooms: string[] = [];
  // 1,000 rooms, 16 at a time, each with a name and one message: created by the createRoom handler's
  // function and the Room DO directly (the same events and notifications as the API; the test pool's
  // fetch slows down with every request a file makes, so the setup does not go through it).
  const t0 = performance.now();
  for (let i = 0; i < ROOMS; i += 16) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(16, ROOMS - i) }, async (_, k) => {
        const roomId = await createRoomDirect(env as unknown as Env, alice.user_id, { name: `room ${i + k}` });
        const res = await (env.ROOMS.get(env.ROOMS.idFromName(roomId)) as unknown as RoomRpc).sendEvent({
          sender: alice.user_id,
          type: "m.room.message",
          content: { msgtype: "m.text", body: `hello ${i + k}` },
        });
        if ("error" in res) throw new Error(res.error.error);
        return roomId;
      }),
    );
    rooms.push(...batch);
  }
  report(`creating ${ROOMS} rooms with one message each`, (performance.now() - t0) / 1000, "s");
  report("harness baseline before the first requests (GET /versions)", await harnessBaseline(), "ms");

  const tCold = performance.now();
  const cold = await ss(alice, roomList("cold"));
  const coldMs = performance.now() - tCold;
  if (cold.lists.all_rooms.count !== ROOMS || Object.keys(cold.rooms).length !== 20) throw new Error(`unexpected first response: count ${cold.lists.all_rooms.count}`);
  report(`first request, ${ROOMS} rooms, [[0,19]], cold User DO (listens to every room)`, coldMs, "ms");

  const warm: number[] = [];
  for (let r = 0; r < 7; r++) {
    const t1 = performance.now();
    const body = await ss(alice, roomList(`warm-${r}`));
    warm.push(performance.now() - t1);
    if (Object.keys(body.rooms).length !== 20) throw new Error("expected 20 rooms");
  }
  warm.sort((a, b) => a - b);
  report(`first request of a new connection, ${ROOMS} rooms, [[0,19]], median of 7`, percentile(warm, 50), "ms", `min ${warm[0]!.toFixed(0)}; max ${warm.at(-1)!.toFixed(0)}`);

  // An incremental request with one new message among the 1,000 rooms.
  let pos = (await ss(alice, roomList("inc"))).pos as string;
  const incremental: number[] = [];
  for (let i = 0; i < 9; i++) {
    await send(alice, rooms[(i * 137) % ROOMS]!, `one more ${i}`);
    const t1 = performance.now();
    const body = await ss(alice, roomList("inc"), `?pos=${pos}`);
    incremental.push(performance.now() - t1);
    if (Object.keys(body.rooms).length !== 1) throw new Error(`expected one room, got ${Object.keys(body.rooms).length}`);
    pos = body.pos;
  }
  incremental.sort((a, b) => a - b);
  report(`incremental request, 1 new event among ${ROOMS} rooms, median of 9`, percentile(incremental, 50), "ms", `max ${incremental.at(-1)!.toFixed(0)}`);
});

it("wake latency of a waiting connection: send returned -> response arrived", async () => {
  const alice = await registerUser(uniqueLocalpart("alice"));
  const bob = await registerUser(uniqueLocalpart("bob"));
  const roomId = await createRoom(alice, { preset: "public_chat" });
  const joined = await api("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/join`, { token: bob.access_token, body: {} });
  if (joined.status !== 200) throw new Error("join failed");
  const request = { conn_id: "wake", lists: { all_rooms: { ranges: [[0, 19]], timeline_limit: 1, required_state: [["m.room.name", ""]] } } };
  let pos = (await ss(bob, request)).pos as string;
  const bobDo = env.USERS.get(env.USERS.idFromName(bob.user_id));

  report("harness baseline before the waits (GET /versions)", await harnessBaseline(), "ms");
  const afterReturn: number[] = [];
  let arrivedFirst = 0;
  let otherWakes = 0;
  const N = 200;
  for (let i = -10; i < N; i++) {
    let arrived = 0;
    let done = false;
    const poll = ss(bob, request, `?pos=${pos}&timeout=30000`).then((body) => {
      arrived = performance.now();
      done = true;
      return body;
    });
    // Parked in bob's User DO before alice sends; a request that returns on its own (other news, e.g.
    // device list bookkeeping of the join) is consumed and the round retried.
    while (!done && (await bobDo.waitingSyncs()) === 0) await new Promise((r) => setTimeout(r, 1));
    if (done) {
      pos = (await poll).pos;
      i--;
      continue;
    }
    await send(alice, roomId, `message ${i}`);
    const returned = performance.now();
    let body = await poll;
    pos = body.pos;
    // The send answers before the event reaches bob's User DO; a response woken by something else is
    // followed by another wait for the message.
    for (let k = 0; k < 5 && !(body.rooms?.[roomId]?.timeline ?? []).some((e: Body) => e.content?.body === `message ${i}`); k++) {
      otherWakes++;
      body = await ss(bob, request, `?pos=${pos}&timeout=30000`);
      arrived = performance.now();
      pos = body.pos;
    }
    if (!(body.rooms?.[roomId]?.timeline ?? []).some((e: Body) => e.content?.body === `message ${i}`)) throw new Error("the message never arrived");
    if (i < 0) continue; // warm-up
    if (arrived <= returned) arrivedFirst++;
    afterReturn.push(Math.max(0, arrived - returned));
  }
  afterReturn.sort((a, b) => a - b);
  report("sliding sync wake after send returned, p50", percentile(afterReturn, 50), "ms", `${arrivedFirst}/${N} arrived before the send returned (counted as 0)`);
  report("sliding sync wake after send returned, p99", percentile(afterReturn, 99), "ms", `${otherWakes} responses woken by something else first`);
  report("harness baseline after the waits (GET /versions)", await harnessBaseline(), "ms");
});
