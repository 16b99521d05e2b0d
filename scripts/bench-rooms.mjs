#!/usr/bin/env node
// `npm run bench:rooms`: a user in many rooms, on the real server (scripts/start.mjs, as `npm start`), and
// optionally on Synapse beside it (`--synapse`). Issue targets: an initial /sync of a user in 1,000 rooms
// under 2 s and an incremental one under 50 ms; the first simplified sliding sync request (MSC4186) with
// `ranges [[0, 19]]` under 300 ms.
//
//   npm run bench:rooms [-- --rooms 1000] [--synapse]
//
// The user creates N rooms (a name and one message each, 8 at a time). The server is then restarted on its
// state, so that the first request meets a cold User DO that holds no lease on any room (docs/fan-out.md,
// "Many rooms"); Synapse is not restarted (its caches stay warm). Figures, in this order:
//  1. sliding sync, first request of a connection (matrix-rust-sdk's room-list request), cold
//  2. the same with a new connection on the warm server, median of 5
//  3. sliding sync, incremental request after one new message, median of 5
//  4. after another restart: initial /sync (no filter), cold
//  5. the same initial /sync again at once (the rooms' DOs still loaded)
//  6. incremental /sync after one new message (timeout=0), median of 5
// Each figure is the client's time for the whole request, on loopback.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startMyelin } from "./myelin-server.mjs";
import { ensureSynapse, registerWithSharedSecret, startSynapse } from "./synapse.mjs";

const args = process.argv.slice(2);
const ROOMS = Number(args[args.indexOf("--rooms") + 1]) > 0 && args.includes("--rooms") ? Number(args[args.indexOf("--rooms") + 1]) : 1000;
const WITH_SYNAPSE = args.includes("--synapse");
const SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
const ROOM_LIST_STATE = [
  ["m.room.encryption", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"], ["m.room.name", ""],
  ["m.room.canonical_alias", ""], ["m.room.power_levels", ""], ["m.room.create", ""], ["m.room.avatar", ""],
  ["m.room.topic", ""], ["m.room.join_rules", ""], ["m.room.history_visibility", ""], ["m.room.tombstone", ""],
];
const roomList = (connId) => ({
  conn_id: connId,
  lists: { all_rooms: { ranges: [[0, 19]], timeline_limit: 1, required_state: ROOM_LIST_STATE, filters: { not_room_types: ["m.space"] } } },
  extensions: { to_device: { enabled: true }, e2ee: { enabled: true }, account_data: { enabled: true }, receipts: { enabled: true }, typing: { enabled: true } },
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function client(baseUrl, token) {
  return async (method, path, body) => {
    for (let attempt = 0; ; attempt++) {
      try {
        const t0 = performance.now();
        const res = await fetch(baseUrl + path, {
          method,
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        const text = await res.text();
        const ms = performance.now() - t0;
        if (res.status !== 200) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
        return { ms, body: JSON.parse(text) };
      } catch (e) {
        // A reused keep-alive connection the server closed at that moment (see bench-compare.mjs).
        if (attempt < 2 && /other side closed|ECONNRESET|fetch failed/.test(String(e?.cause ?? e))) continue;
        throw e;
      }
    }
  };
}

async function createRooms(api, n) {
  const t0 = performance.now();
  let made = 0;
  const rooms = [];
  for (let i = 0; i < n; i += 8) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(8, n - i) }, async () => {
        const k = made++;
        const { body } = await api("POST", "/_matrix/client/v3/createRoom", { name: `room ${k}` });
        await api("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(body.room_id)}/send/m.room.message/c${k}`, { msgtype: "m.text", body: `hello ${k}` });
        return body.room_id;
      }),
    );
    rooms.push(...batch);
    if (rooms.length % 200 < 8) process.stderr.write(`  ${rooms.length} rooms, ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  }
  return { rooms, seconds: (performance.now() - t0) / 1000 };
}

let txn = 0;
async function sendOne(api, rooms) {
  const roomId = rooms[Math.floor(Math.random() * rooms.length)];
  await api("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/n${Date.now()}-${txn++}`, { msgtype: "m.text", body: "one more" });
  return roomId;
}

/** Runs the figures against one server; `restart()` restarts it on its state and returns the new base URL. */
async function measure(name, baseUrl, token, restart) {
  let api = client(baseUrl, token);
  process.stderr.write(`${name}: creating ${ROOMS} rooms\n`);
  const { rooms, seconds } = await createRooms(api, ROOMS);
  const out = { name, create: seconds };

  api = client(await restart(), token);
  const cold = await api("POST", SS, roomList("cold"));
  if (cold.body.lists.all_rooms.count !== ROOMS) throw new Error(`${name}: sliding sync counted ${cold.body.lists.all_rooms.count} rooms`);
  out.ssCold = cold.ms;
  const warm = [];
  for (let i = 0; i < 5; i++) warm.push((await api("POST", SS, roomList(`warm-${i}`))).ms);
  out.ssWarm = median(warm);
  let pos = (await api("POST", SS, roomList("inc"))).body.pos;
  const inc = [];
  for (let i = 0; i < 5; i++) {
    const roomId = await sendOne(api, rooms);
    await sleep(200);
    const r = await api("POST", `${SS}?pos=${pos}&timeout=0`, roomList("inc"));
    if (!r.body.rooms?.[roomId]) process.stderr.write(`  ${name}: the incremental sliding sync lacked the new message's room\n`);
    pos = r.body.pos;
    inc.push(r.ms);
  }
  out.ssIncremental = median(inc);

  api = client(await restart(), token);
  const initial = await api("GET", "/_matrix/client/v3/sync");
  const joined = Object.keys(initial.body.rooms?.join ?? {}).length;
  if (joined !== ROOMS) throw new Error(`${name}: the initial /sync had ${joined} rooms`);
  out.syncInitial = initial.ms;
  out.syncBytes = JSON.stringify(initial.body).length;
  // The same request again at once, while the rooms' DOs are still loaded (an idle DO is evicted after
  // seconds; on Cloudflare the rooms of a cold request start in parallel, here they share one thread).
  out.syncInitialWarm = (await api("GET", "/_matrix/client/v3/sync")).ms;
  let since = initial.body.next_batch;
  const incSync = [];
  for (let i = 0; i < 5; i++) {
    const roomId = await sendOne(api, rooms);
    await sleep(200);
    const r = await api("GET", `/_matrix/client/v3/sync?since=${encodeURIComponent(since)}&timeout=0`);
    if (!r.body.rooms?.join?.[roomId]) process.stderr.write(`  ${name}: the incremental /sync lacked the new message's room\n`);
    since = r.body.next_batch;
    incSync.push(r.ms);
  }
  out.syncIncremental = median(incSync);
  // A user directory search (the type-ahead of a client's invite dialog): its scope is every member of
  // the searcher's rooms (worker/client/user-directory.ts).
  api = client(await restart(), token);
  out.directorySearchCold = (await api("POST", "/_matrix/client/v3/user_directory/search", { search_term: "nobody", limit: 10 })).ms;
  const search = [];
  for (let i = 0; i < 5; i++) search.push((await api("POST", "/_matrix/client/v3/user_directory/search", { search_term: `nobody${i}`, limit: 10 })).ms);
  out.directorySearch = median(search);
  return out;
}

const secret = randomBytes(16).toString("hex");
const results = [];
// Our own folder, kept across the restarts (startMyelin removes only a folder it made).
const dataDir = mkdtempSync(path.join(os.tmpdir(), "myelin-bench-rooms-"));
let myelin = await startMyelin({ secret, dataDir });
try {
  const user = await registerWithSharedSecret(myelin.baseUrl, secret, `rooms${Date.now()}`, "bench-password-1");
  results.push(
    await measure("Myelin", myelin.baseUrl, user.accessToken, async () => {
      const port = myelin.port;
      await myelin.stop();
      myelin = await startMyelin({ secret, dataDir, port });
      return myelin.baseUrl;
    }),
  );
} finally {
  await myelin.stop();
  rmSync(dataDir, { recursive: true, force: true });
}

if (WITH_SYNAPSE) {
  await ensureSynapse();
  const synapse = await startSynapse();
  try {
    const user = await synapse.registerUser(`rooms${Date.now()}`, "bench-password-1");
    // Synapse is not restarted between the figures: its caches stay warm (its figures are the better for it).
    results.push(await measure("Synapse", synapse.baseUrl, user.accessToken, async () => synapse.baseUrl));
  } finally {
    await synapse.stop();
  }
}

const rows = [
  ["creating the rooms (s)", "create", 1],
  ["sliding sync, first request, cold (ms; aim < 300)", "ssCold", 0],
  ["sliding sync, new connection, warm, median (ms)", "ssWarm", 0],
  ["sliding sync, incremental, median (ms)", "ssIncremental", 0],
  ["/sync initial, cold (ms; aim < 2000)", "syncInitial", 0],
  ["/sync initial, again at once (rooms loaded) (ms)", "syncInitialWarm", 0],
  ["/sync initial, response size (kB)", "syncBytes", 0],
  ["/sync incremental, median (ms; aim < 50)", "syncIncremental", 0],
  ["user directory search, cold (ms)", "directorySearchCold", 0],
  ["user directory search, again, median (ms)", "directorySearch", 0],
];
console.log(`\nA user in ${ROOMS} rooms (load average at the end: ${(await import("node:os")).loadavg()[0].toFixed(1)})`);
console.log(["figure".padEnd(52), ...results.map((r) => r.name.padStart(10)), results.length === 2 ? "M/S".padStart(7) : ""].join(""));
for (const [label, key, digits] of rows) {
  const vals = results.map((r) => (key === "syncBytes" ? r[key] / 1000 : r[key]));
  const ratio = results.length === 2 && vals[1] > 0 ? (vals[0] / vals[1]).toFixed(2).padStart(7) : "";
  console.log([label.padEnd(52), ...vals.map((v) => v.toFixed(digits).padStart(10)), ratio].join(""));
}
