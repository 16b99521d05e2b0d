// Sync benchmarks (issue: sync), inside workerd through the Worker's fetch handler:
//  - initial sync of a user in 100 rooms with 50 messages each (default filter: 10 timeline events per room),
//    and incremental syncs with one new event among those rooms
//  - long-poll wake-up: with one user already long-polling, the time from another user's send returning to
//    the sync response arriving (p50 / p99 over 200 messages)
//
// Requests go to the Worker's fetch handler directly (app-client.ts); each test reports the latency of GET
// /versions as the harness baseline next to its figures.
import { env } from "cloudflare:workers";
import { it } from "vitest";
import type { RoomRpc } from "../worker/room-store.js";
import { api, createRoom, harnessBaseline, registerUser, send, sync, uniqueLocalpart, userDo, V3 } from "./app-client.js";
import { percentile, report } from "./report.js";

const roomRpc = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId)) as unknown as RoomRpc;

it("initial sync: 100 rooms with 50 messages each", async () => {
  const alice = await registerUser(uniqueLocalpart("alice"));
  const rooms: string[] = [];
  for (let i = 0; i < 100; i++) rooms.push(await createRoom(alice, { name: `room ${i}` }));
  // Fill the rooms in parallel, each room's messages in order, through the Room DO directly (the same
  // checks, storage and User DO notifications as PUT /send, without 5,000 HTTP requests of setup).
  await Promise.all(
    rooms.map(async (roomId) => {
      const room = roomRpc(roomId);
      for (let m = 0; m < 50; m++) {
        const res = await room.sendEvent({ sender: alice.user_id, type: "m.room.message", content: { msgtype: "m.text", body: `room message ${m}` } });
        if ("error" in res) throw new Error(`sendEvent: ${res.error.error}`);
      }
    }),
  );
  const runs: number[] = [];
  for (let r = 0; r < 6; r++) {
    const t0 = performance.now();
    const body = await sync(alice);
    runs.push(performance.now() - t0);
    const joined = Object.keys(body.rooms?.join ?? {});
    if (joined.length !== 100) throw new Error(`initial sync returned ${joined.length} rooms`);
    for (const id of joined) if (body.rooms!.join![id]!.timeline.events.length !== 10) throw new Error("expected 10 timeline events per room");
  }
  report("harness baseline before the initial syncs (GET /versions)", await harnessBaseline(), "ms");
  const warm = runs.slice(1).sort((a, b) => a - b);
  report("initial sync, 100 rooms x 50 messages (limit 10), median", percentile(warm, 50), "ms", `first ${runs[0]!.toFixed(0)} ms; min ${warm[0]!.toFixed(0)}`);

  // Incremental syncs, each after one new message in one of the 100 rooms.
  let since = (await sync(alice)).next_batch;
  const incremental: number[] = [];
  for (let i = 0; i < 11; i++) {
    await send(alice, rooms[(i * 37) % 100]!, `one more ${i}`);
    const t0 = performance.now();
    const inc = await sync(alice, `?since=${since}`);
    incremental.push(performance.now() - t0);
    if (Object.keys(inc.rooms?.join ?? {}).length !== 1) throw new Error("incremental sync should name one room");
    since = inc.next_batch;
  }
  incremental.sort((a, b) => a - b);
  report("incremental sync, 1 new event among 100 rooms, median of 11", percentile(incremental, 50), "ms", `max ${incremental.at(-1)!.toFixed(0)}`);
});

it("long-poll wake-up latency: send returned -> sync response arrived", async () => {
  const alice = await registerUser(uniqueLocalpart("alice"));
  const bob = await registerUser(uniqueLocalpart("bob"));
  const roomId = await createRoom(alice, { preset: "public_chat" });
  const joined = await api("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/join`, { token: bob.access_token, body: {} });
  if (joined.status !== 200) throw new Error("join failed");
  let since = (await sync(bob)).next_batch;

  report("harness baseline before the long-polls (GET /versions)", await harnessBaseline(), "ms");
  const afterReturn: number[] = [];
  const fromStart: number[] = [];
  let arrivedFirst = 0;
  const N = 200;
  for (let i = -10; i < N; i++) {
    let arrived = 0;
    let done = false;
    const poll = sync(bob, `?since=${since}&timeout=30000`).then((body) => {
      arrived = performance.now();
      done = true;
      return body;
    });
    // "Already long-polling": the request is parked in bob's User DO before alice sends. A poll that
    // returns on its own (other news, e.g. device list bookkeeping after the join) is consumed and retried.
    while (!done && (await userDo(bob.user_id).waitingSyncs()) === 0) await new Promise((r) => setTimeout(r, 1));
    if (done) {
      since = (await poll).next_batch;
      i--;
      continue;
    }
    const start = performance.now();
    await send(alice, roomId, `message ${i}`);
    const returned = performance.now();
    const body = await poll;
    const events = body.rooms?.join?.[roomId]?.timeline.events ?? [];
    if (events.length !== 1) throw new Error(`expected the one new event, got ${events.length}`);
    since = body.next_batch;
    if (i < 0) continue; // warm-up
    if (arrived <= returned) arrivedFirst++;
    afterReturn.push(Math.max(0, arrived - returned));
    fromStart.push(arrived - start);
  }
  afterReturn.sort((a, b) => a - b);
  fromStart.sort((a, b) => a - b);
  const note = `${arrivedFirst}/${N} responses arrived before the send returned (counted as 0)`;
  report("long-poll wake-up after send returned, p50", percentile(afterReturn, 50), "ms", note);
  report("long-poll wake-up after send returned, p99", percentile(afterReturn, 99), "ms");
  report("send start -> long-poll response, p50", percentile(fromStart, 50), "ms");
  report("send start -> long-poll response, p99", percentile(fromStart, 99), "ms");
  report("harness baseline after the long-polls (GET /versions)", await harnessBaseline(), "ms");
});
