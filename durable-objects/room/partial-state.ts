// Partial-state joins (spec: Server-Server API, send_join `omit_members`; MSC3706/MSC3902 as Synapse implements
// them): a room joined without its member events is usable at once (the join, non-member state, messages),
// and the rest of its state is fetched in the background, in bounded steps on the room's alarm, so that no
// invocation holds or checks the whole state at once (DESIGN.md, "Federation": joins built for size).
//
// The resync, one step per alarm invocation:
//   1. ids:    GET /state_ids at our join's prev event from one of `servers_in_room` (with that event: the
//              state before the join, and its auth chain, as IDs), read as a stream, one ID in memory at a
//              time. The state IDs go to `partial_state_ids`, the IDs we lack to `partial_state_missing`.
//   2. state:  when many are missing (Synapse's rule: a tenth or more of the state and auth chain), one
//              GET /state read as a stream (protocol/json-array-stream.ts: one PDU in memory at a time), each
//              PDU whose event ID is missing staged in `partial_state_staged` (JSON and auth edges). What it
//              does not bring (or if it fails) is left to the next phase.
//   3. fetch:  up to FETCH_PER_STEP missing events per step with GET /event, staged the same way. A server
//              that does not answer is replaced by the next one.
//   4. check:  staged events whose auth events are all stored are checked and stored as outliers
//              (engine.persistOutliers: signatures, hashes, auth), CHECK_PER_STEP per step, in auth order.
//   5. apply:  the member events of the full state that the current state lacks (and that no event since the
//              join has changed) are added to the current state, with state deltas, so /sync and /members
//              see them; resyncBatches.applyPerStep state IDs per step, from rows of `partial_state_ids`
//              (a big room's state is never one list in memory, issue 19 §3);
//   6. recheck: the events from our join on are authorised again against the whole state, RECHECK_PER_STEP
//              per step (room/partial-state-recheck.ts); then the room leaves partial state.
// A restart continues where it left off: every step's progress is in SQLite.
import { eventIdFor } from "../../protocol/event-hashes.js";
import { JsonArrayElements } from "../../protocol/json-array-stream.js";
import { isJsonObject } from "../../protocol/json.js";
import { authEventIds, prevEventIds, stateKey, type Pdu } from "../../protocol/pdu.js";
import type { RoomEngine } from "./engine.js";
import { MAX_PARAMS } from "./event-rows.js";
import type { RemoteFetch, RemoteStream } from "./federation-inbound.js";
import { planMissedDeviceListUpdates } from "./partial-state-device-lists.js";
import { beginRecheck, endRecheck, recheckStep } from "./partial-state-recheck.js";
import { sqlLimit } from "../sql-limit.js";

/** Missing events are fetched with one /state when they are at least this share of the state and auth
 * chain (Synapse: `_get_state_ids_after_missing_prev_event`), else one /event each. */
const STATE_REQUEST_SHARE = 0.1;
/** Staged PDUs written per SQLite transaction while /state streams in. */
const STAGE_BATCH = 500;
const FETCH_PER_STEP = 100;
const FETCH_CONCURRENCY = 20;
const CHECK_PER_STEP = 500;
/**
 * State IDs applied per step (issue 19 §3: the state of a big room is not held in one invocation). Tests
 * lower it to make several steps of a small room.
 */
export const resyncBatches = { applyPerStep: 2_000 };
/** Staged /state elements between two turns of the event loop (see `breathe`). */
const ELEMENTS_PER_TURN = 100;
/** Delay between steps (each step is its own invocation) and after a failed step. */
const STEP_DELAY_MS = 10;
const RETRY_DELAY_MS = 5_000;

export const PARTIAL_STATE_SCHEMA = `
  CREATE TABLE IF NOT EXISTS partial_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    join_event_id TEXT NOT NULL,
    servers TEXT NOT NULL,
    server_index INTEGER NOT NULL DEFAULT 0,
    phase TEXT NOT NULL,
    state_ids TEXT
  );
  CREATE TABLE IF NOT EXISTS partial_state_missing (event_id TEXT PRIMARY KEY);
  CREATE TABLE IF NOT EXISTS partial_state_staged (event_id TEXT PRIMARY KEY, json TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS partial_state_staged_auth (event_id TEXT NOT NULL, auth_event_id TEXT NOT NULL, PRIMARY KEY (event_id, auth_event_id));
  CREATE INDEX IF NOT EXISTS partial_state_staged_auth_by_auth ON partial_state_staged_auth (auth_event_id);
  -- The state at our join as /state_ids named it (the join's prev event last), one row per ID, read in
  -- bounded batches (the column partial_state.state_ids held it as one JSON list before; still read).
  CREATE TABLE IF NOT EXISTS partial_state_ids (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL);
  -- The apply phase's position: the IDs from seq below on are applied (it goes from the last down).
  CREATE TABLE IF NOT EXISTS partial_state_apply (id INTEGER PRIMARY KEY CHECK (id = 1), below INTEGER NOT NULL);
`;

type Phase = "ids" | "state" | "fetch" | "check" | "apply" | "recheck";

type PartialRow = {
  join_event_id: string;
  servers: string;
  server_index: number;
  phase: Phase;
  state_ids: string | null;
};

const schemaReady = new WeakSet<RoomEngine>();
function ensureSchema(engine: RoomEngine): void {
  if (schemaReady.has(engine)) return;
  engine.sql.exec(PARTIAL_STATE_SCHEMA);
  schemaReady.add(engine);
}

function row(engine: RoomEngine): PartialRow | undefined {
  ensureSchema(engine);
  return engine.sql.exec<PartialRow>("SELECT join_event_id, servers, server_index, phase, state_ids FROM partial_state WHERE id = 1").toArray()[0];
}

/** Whether the room is still in partial state (joined with omit_members, resync not finished). */
export function isPartialState(engine: RoomEngine): boolean {
  if (!engine.meta()) return false;
  return row(engine) !== undefined;
}

/** The servers named by the resident while the room is in partial state (empty otherwise): they stand for
 * the members this server does not know yet, for outbound events (room/outbound.ts). */
export function partialStateServers(engine: RoomEngine): string[] {
  if (!engine.meta()) return [];
  const r = row(engine);
  return r ? (JSON.parse(r.servers) as string[]) : [];
}

/** The stream ordering of the join a partial-state resync runs for; null when the room is not partial. */
export function partialStateJoinOrdering(engine: RoomEngine): number | null {
  const r = engine.meta() ? row(engine) : undefined;
  return r ? (engine.events.meta(r.join_event_id)?.streamOrdering ?? null) : null;
}

/**
 * The event whose state the resync asks for: the join's prev event when it has one (the state before the
 * join is the state after it), as Synapse asks (`_get_state_ids_after_missing_prev_event` for the join's
 * prev events; Complement's partial-state tests answer /state_ids and /state only there); the join itself
 * (the state before it) when it has several.
 */
function stateQueryEvent(engine: RoomEngine, joinEventId: string): string {
  const prev = prevEventIds(engine.events.pdu(joinEventId) ?? ({} as Pdu));
  return prev.length === 1 ? prev[0]! : joinEventId;
}

/**
 * Records that the room was joined with partial state; the resync starts on the next alarm. A second partial
 * join while the first one's resync runs (another local user, or a rejoin) keeps that resync, as Synapse
 * does (the state at the first join is as good as any): only servers not listed yet are added.
 */
export function beginPartialState(engine: RoomEngine, joinEventId: string, serversInRoom: string[], ownServer: string): void {
  ensureSchema(engine);
  const servers = serversInRoom.filter((s) => s !== ownServer);
  const running = row(engine);
  if (running) {
    const known = JSON.parse(running.servers) as string[];
    const more = servers.filter((s) => !known.includes(s));
    if (more.length > 0) engine.sql.exec("UPDATE partial_state SET servers = ? WHERE id = 1", JSON.stringify([...known, ...more]));
    return;
  }
  engine.sql.exec(
    "INSERT OR REPLACE INTO partial_state (id, join_event_id, servers, server_index, phase, state_ids) VALUES (1, ?, ?, 0, 'ids', NULL)",
    joinEventId,
    JSON.stringify(servers),
  );
}

/**
 * One bounded step of the resync. Returns the delay after which the next step should run, or null when the
 * room is complete (or was never partial).
 */
export async function resyncStep(
  engine: RoomEngine,
  remote: RemoteFetch | undefined,
  stream?: RemoteStream,
  locked: <T>(fn: () => Promise<T>) => Promise<T> = (fn) => fn(),
): Promise<number | null> {
  const state = engine.meta() ? row(engine) : undefined;
  if (!state) return null;
  if (!remote) return RETRY_DELAY_MS;
  const servers = JSON.parse(state.servers) as string[];
  if (servers.length === 0) {
    // Nobody to ask: the room stays as it is (the join worked; the member list stays partial).
    finish(engine);
    return null;
  }
  const server = servers[state.server_index % servers.length]!;
  const nextServer = () => engine.sql.exec("UPDATE partial_state SET server_index = server_index + 1 WHERE id = 1");
  // After a server failed: the next one at once while this round of servers lasts, as Synapse's resync
  // goes down its list (Complement msc3902 "PartialStateJoinSyncsUsingOtherHomeservers"); after a whole
  // round failed, wait before starting the next.
  const failoverDelay = () => ((state.server_index + 1) % servers.length === 0 ? RETRY_DELAY_MS : STEP_DELAY_MS);
  switch (state.phase) {
    case "ids": {
      const roomId = engine.meta()!.roomId;
      const at = stateQueryEvent(engine, state.join_event_id);
      const path = `/_matrix/federation/v1/state_ids/${encodeURIComponent(roomId)}?event_id=${encodeURIComponent(at)}`;
      const recorder = new StateIdsRecorder(engine);
      const read = stream ? await readStateIdsStreamed(recorder, stream, server, path) : await readStateIds(recorder, remote, server, path);
      if (!read) {
        nextServer();
        return failoverDelay();
      }
      // The state after the join's prev event is the state before it plus the prev event itself (a state
      // event overrides its key: the apply phase lets the last ID of a key win; any other event is ignored).
      if (at !== state.join_event_id) recorder.add("pdu_ids", at);
      recorder.flush();
      // As Synapse's `_get_state_ids_after_missing_prev_event`: one /state when the missing events are a
      // tenth or more of both lists' lengths.
      const next: Phase = stream && recorder.missing >= recorder.total * STATE_REQUEST_SHARE ? "state" : "fetch";
      engine.sql.exec("UPDATE partial_state SET state_ids = NULL, phase = ? WHERE id = 1", next);
      return STEP_DELAY_MS;
    }
    case "state": {
      // Whatever happens, what is still missing afterwards is fetched one by one (and from other servers).
      engine.sql.exec("UPDATE partial_state SET phase = 'fetch' WHERE id = 1");
      const staged = stream ? await stageFromState(engine, stream, server, stateQueryEvent(engine, state.join_event_id)) : 0;
      if (staged === 0) nextServer();
      return STEP_DELAY_MS;
    }
    case "fetch": {
      const ids = engine.sql.exec<{ event_id: string }>(`SELECT event_id FROM partial_state_missing LIMIT ${sqlLimit(FETCH_PER_STEP)}`).toArray().map((r) => r.event_id);
      if (ids.length === 0) {
        engine.sql.exec("UPDATE partial_state SET phase = 'check' WHERE id = 1");
        return STEP_DELAY_MS;
      }
      let failures = 0;
      const stored = storedMemo(engine);
      for (let i = 0; i < ids.length; i += FETCH_CONCURRENCY) {
        const chunk = ids.slice(i, i + FETCH_CONCURRENCY);
        const answers = await Promise.all(chunk.map((id) => remote(server, "GET", `/_matrix/federation/v1/event/${encodeURIComponent(id)}`)));
        for (const [j, answer] of answers.entries()) {
          const id = chunk[j]!;
          const pdu = answer.ok && isJsonObject(answer.body) && Array.isArray(answer.body.pdus) && isJsonObject(answer.body.pdus[0]) ? (answer.body.pdus[0] as unknown as Pdu) : undefined;
          if (!pdu) {
            failures += 1;
            continue;
          }
          engine.transaction(() => {
            stage(engine, id, JSON.stringify(pdu), authEventIds(pdu), stored);
            engine.sql.exec("DELETE FROM partial_state_missing WHERE event_id = ?", id);
          });
        }
      }
      if (failures === ids.length) {
        // This server gives us nothing: the next one (the events may be gone everywhere: drop them after a
        // full round of servers, as Synapse leaves unfetchable state out).
        nextServer();
        if ((state.server_index + 1) % servers.length === 0) {
          for (const id of ids) engine.sql.exec("DELETE FROM partial_state_missing WHERE event_id = ?", id);
        }
        return failoverDelay();
      }
      return STEP_DELAY_MS;
    }
    case "check":
    case "apply":
    case "recheck":
      // The steps that change the room (outliers, then its state) run in the room's write queue; the
      // ones before only wait for other servers and fill the resync's own tables, so they run outside it:
      // a server that answers slowly (or a /state_ids held back, as Complement's tests do) never holds up
      // the room's sends and inbound events.
      return locked(() => lockedStep(engine));
  }
}

/** The `check` and `apply` steps, in the room's write queue (the row is read again: it may have moved on). */
async function lockedStep(engine: RoomEngine): Promise<number | null> {
  const state = engine.meta() ? row(engine) : undefined;
  if (!state) return null;
  switch (state.phase) {
    case "check": {
      // Staged events none of whose auth events is still staged (those are stored, or will never come).
      const ready = engine.sql
        .exec<{ event_id: string; json: string }>(
          `SELECT s.event_id, s.json FROM partial_state_staged s
           WHERE NOT EXISTS (SELECT 1 FROM partial_state_staged_auth a JOIN partial_state_staged t ON t.event_id = a.auth_event_id WHERE a.event_id = s.event_id AND t.event_id != s.event_id)
           LIMIT ${sqlLimit(CHECK_PER_STEP)}`,
        )
        .toArray();
      const remaining = engine.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM partial_state_staged").one().n;
      if (remaining === 0) {
        engine.sql.exec("UPDATE partial_state SET phase = 'apply' WHERE id = 1");
        return STEP_DELAY_MS;
      }
      // An auth cycle (no valid room has one) would leave nothing ready: take the rest as it is.
      const batch = ready.length > 0 ? ready : engine.sql.exec<{ event_id: string; json: string }>(`SELECT event_id, json FROM partial_state_staged LIMIT ${sqlLimit(CHECK_PER_STEP)}`).toArray();
      await engine.persistOutliers(batch.map((r) => JSON.parse(r.json) as Pdu));
      for (let i = 0; i < batch.length; i += MAX_PARAMS) {
        const chunk = batch.slice(i, i + MAX_PARAMS).map((r) => r.event_id);
        const marks = chunk.map(() => "?").join(",");
        engine.transaction(() => {
          engine.sql.exec(`DELETE FROM partial_state_staged WHERE event_id IN (${marks})`, ...chunk);
          engine.sql.exec(`DELETE FROM partial_state_staged_auth WHERE event_id IN (${marks})`, ...chunk);
        });
      }
      return STEP_DELAY_MS;
    }
    case "apply": {
      if (!applyFullStateStep(engine, state)) return STEP_DELAY_MS;
      engine.transaction(() => {
        beginRecheck(engine, state.join_event_id);
        engine.sql.exec("UPDATE partial_state SET phase = 'recheck' WHERE id = 1");
      });
      // The first batch at once: a room with few events since the join is done in this invocation.
      return recheckThenFinish(engine, state);
    }
    case "recheck":
      return recheckThenFinish(engine, state);
    default:
      return STEP_DELAY_MS;
  }
}

/**
 * GET /state at our join, read as it arrives: each PDU of `pdus` and `auth_chain` whose event ID (computed
 * from its content, so a server cannot pass one event off as another) is missing is staged, in batches of
 * STAGE_BATCH per transaction. Returns how many were staged; a broken or cut-off answer keeps what came.
 */
async function stageFromState(engine: RoomEngine, stream: RemoteStream, server: string, joinEventId: string): Promise<number> {
  const { roomId, rules } = engine.meta()!;
  const answer = await stream(server, `/_matrix/federation/v1/state/${encodeURIComponent(roomId)}?event_id=${encodeURIComponent(joinEventId)}`);
  if (!answer.ok || !answer.response.ok || !answer.response.body) return 0;
  const reader = new JsonArrayElements();
  let batch: { id: string; json: string; auth: string[] }[] = [];
  let staged = 0;
  let sinceTurn = 0;
  const stored = storedMemo(engine);
  const flush = () => {
    const rows = batch;
    batch = [];
    engine.transaction(() => {
      for (const { id, json, auth } of rows) {
        // Staged only if it was missing (one statement: the row goes as it is found).
        if (engine.sql.exec("DELETE FROM partial_state_missing WHERE event_id = ? RETURNING event_id", id).toArray().length === 0) continue;
        stage(engine, id, json, auth, stored);
        staged += 1;
      }
    });
  };
  try {
    for await (const chunk of answer.response.body.pipeThrough(new TextDecoderStream())) {
      for (const element of reader.push(chunk)) {
        if (element.key !== "pdus" && element.key !== "auth_chain") continue;
        let pdu: Pdu;
        let id: string;
        try {
          const parsed: unknown = JSON.parse(element.json);
          if (!isJsonObject(parsed)) continue;
          pdu = parsed as unknown as Pdu;
          id = await eventIdFor(pdu, rules);
        } catch {
          continue; // not a PDU of this room version: the check phase would refuse it anyway
        }
        batch.push({ id, json: element.json, auth: authEventIds(pdu) });
        if (batch.length >= STAGE_BATCH) flush();
        if (++sinceTurn >= ELEMENTS_PER_TURN) {
          sinceTurn = 0;
          await breathe();
        }
      }
    }
  } catch (e) {
    console.warn(`partial-state resync: /state from ${server} broke off`, e instanceof Error ? e.message : e);
  }
  flush();
  return staged;
}

/** IDs of a /state_ids answer written per SQLite transaction while it is read. */
const IDS_BATCH = 1_000;

/**
 * Records a /state_ids answer as it is read (issue 19 §3: the lists of a big room, 200,000 IDs for the
 * largest, are never one array in memory): the state IDs in order in `partial_state_ids`, and every ID we
 * lack (state or auth chain) once in `partial_state_missing`. Starts by clearing both (a server that broke
 * off before left a part); until the phase moves on, a restart reads the answer again.
 */
class StateIdsRecorder {
  /** IDs read, duplicates included (Synapse's share rule counts the lists' lengths). */
  total = 0;
  /** Distinct IDs we lack. */
  missing = 0;
  private batch: { state: boolean; id: string }[] = [];

  constructor(private readonly engine: RoomEngine) {
    engine.transaction(() => {
      engine.sql.exec("DELETE FROM partial_state_ids");
      engine.sql.exec("DELETE FROM partial_state_missing");
    });
  }

  add(list: "pdu_ids" | "auth_chain_ids", id: string): void {
    this.total += 1;
    this.batch.push({ state: list === "pdu_ids", id });
    if (this.batch.length >= IDS_BATCH) this.flush();
  }

  flush(): void {
    const rows = this.batch;
    this.batch = [];
    if (rows.length === 0) return;
    const stored = storedMemo(this.engine);
    this.engine.transaction(() => {
      for (const { state, id } of rows) {
        if (state) this.engine.sql.exec("INSERT INTO partial_state_ids (event_id) VALUES (?)", id);
        if (!stored(id)) this.missing += this.engine.sql.exec("INSERT OR IGNORE INTO partial_state_missing (event_id) VALUES (?)", id).rowsWritten;
      }
    });
  }
}

/** An event ID as /state_ids lists it (a room version 1 or 2 ID names its server; at most 255 characters). */
const isEventIdText = (v: unknown): v is string => typeof v === "string" && v.startsWith("$") && v.length <= 255;

/** /state_ids answered whole (the stand-ins of the tests; servers are read as streams). False: a failed or malformed answer. */
async function readStateIds(recorder: StateIdsRecorder, remote: RemoteFetch, server: string, path: string): Promise<boolean> {
  const answer = await remote(server, "GET", path);
  if (!answer.ok || !isJsonObject(answer.body) || !Array.isArray(answer.body.pdu_ids) || !Array.isArray(answer.body.auth_chain_ids)) return false;
  for (const list of ["pdu_ids", "auth_chain_ids"] as const) for (const id of answer.body[list] as unknown[]) if (isEventIdText(id)) recorder.add(list, id);
  return true;
}

/**
 * /state_ids read as a stream (protocol/json-array-stream.ts with strings: one ID in memory at a time), in
 * batches of IDS_BATCH rows. False: the request failed, the answer broke off or is not JSON, or it lacks
 * either list (Complement's PartialStateJoinSyncsUsingOtherHomeservers answers `{}`).
 */
async function readStateIdsStreamed(recorder: StateIdsRecorder, stream: RemoteStream, server: string, path: string): Promise<boolean> {
  const answer = await stream(server, path);
  if (!answer.ok || !answer.response.ok || !answer.response.body) return false;
  const reader = new JsonArrayElements(1024, { strings: true });
  const seen = new Set<string>();
  let sinceTurn = 0;
  try {
    for await (const chunk of answer.response.body.pipeThrough(new TextDecoderStream())) {
      for (const element of reader.push(chunk)) {
        if (element.key !== "pdu_ids" && element.key !== "auth_chain_ids") continue;
        seen.add(element.key);
        const id: unknown = JSON.parse(element.json);
        if (isEventIdText(id)) recorder.add(element.key, id);
        if (++sinceTurn >= IDS_BATCH) {
          sinceTurn = 0;
          await breathe();
        }
      }
    }
    reader.end();
  } catch (e) {
    console.warn(`partial-state resync: /state_ids from ${server} broke off`, e instanceof Error ? e.message : e);
    return false;
  }
  // The state before any event holds at least the create event: an answer without state IDs is no answer
  // (an empty auth chain can be right: the stand-ins of the tests send one).
  return seen.has("pdu_ids");
}

/**
 * Whether an event is stored, remembered for one step: the auth events of a big room's member events are
 * mostly the same few (create, power levels, join rules), and a stored event stays stored.
 */
function storedMemo(engine: RoomEngine): (eventId: string) => boolean {
  const known = new Set<string>();
  return (eventId) => {
    if (known.has(eventId)) return true;
    if (!engine.events.has(eventId)) return false;
    if (known.size < 10_000) known.add(eventId);
    return true;
  };
}

/**
 * Stages a fetched event for the check phase. Its auth edges are kept only towards events not stored yet:
 * those are the ones that may still be staged and must be checked first (the check phase's order); an
 * edge to a stored event orders nothing. A member event of a big room names only stored auth events
 * (create, power levels, join rules), so it costs one row instead of four.
 */
function stage(engine: RoomEngine, id: string, json: string, auth: string[], stored: (eventId: string) => boolean): void {
  engine.sql.exec("INSERT OR REPLACE INTO partial_state_staged (event_id, json) VALUES (?, ?)", id, json);
  for (const a of auth) {
    if (!stored(a)) engine.sql.exec("INSERT OR IGNORE INTO partial_state_staged_auth (event_id, auth_event_id) VALUES (?, ?)", id, a);
  }
}

/**
 * Lets the event loop run other work: reading a big room's /state is seconds of hashing, and while it runs
 * nothing else of this Durable Object is served (locally, nothing of the whole workerd process). Without
 * it, the resident's transactions waited until the whole answer was read (a message sent right after the
 * join reached /sync after 10 s at 10,000 members, issue 19 §5), and Synapse dropped its connection.
 */
function breathe(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * The state at our join, as /state_ids named it (the join's prev event last). Whole: for the recheck
 * (room/partial-state-recheck.ts), which asks for it when it needs it.
 */
export function stateIdsAtJoin(engine: RoomEngine): string[] {
  ensureSchema(engine);
  const legacy = row(engine)?.state_ids;
  if (legacy) return JSON.parse(legacy) as string[];
  return engine.sql.exec<{ event_id: string }>("SELECT event_id FROM partial_state_ids ORDER BY seq").toArray().map((r) => r.event_id);
}

/**
 * One bounded step of adding to the current state the entries of the full state (at our join) that it
 * lacks and that no event since the join has set: the member events the partial join left out. Each step
 * takes the next `resyncBatches.applyPerStep` IDs, from the last down, so that the last ID of a state key
 * wins (an entry already in the current state, or added by an earlier step, is kept). Returns true when
 * every ID was applied. A repeated step (after a crash) finds its additions in the current state.
 */
function applyFullStateStep(engine: RoomEngine, state: PartialRow): boolean {
  if (state.state_ids) {
    // A resync that began before the IDs had their table: moved there once.
    const ids = JSON.parse(state.state_ids) as string[];
    engine.transaction(() => {
      engine.sql.exec("DELETE FROM partial_state_ids");
      for (const id of ids) engine.sql.exec("INSERT INTO partial_state_ids (event_id) VALUES (?)", id);
      engine.sql.exec("UPDATE partial_state SET state_ids = NULL WHERE id = 1");
    });
  }
  const below =
    engine.sql.exec<{ below: number }>("SELECT below FROM partial_state_apply WHERE id = 1").toArray()[0]?.below ??
    (engine.sql.exec<{ m: number | null }>("SELECT MAX(seq) AS m FROM partial_state_ids").one().m ?? 0) + 1;
  if (below <= 1) return true;
  const from = Math.max(1, below - resyncBatches.applyPerStep);
  const joinOrdering = engine.events.meta(state.join_event_id)?.streamOrdering ?? 0;
  const changed = new Set(
    engine.sql
      .exec<{ type: string; state_key: string }>("SELECT type, state_key FROM state_deltas WHERE stream_ordering > ?", joinOrdering)
      .toArray()
      .map((r) => stateKey(r.type, r.state_key)),
  );
  const rows = engine.sql
    .exec<{ event_id: string; type: string; state_key: string }>(
      `SELECT e.event_id, e.type, e.state_key FROM partial_state_ids p JOIN events e ON e.event_id = p.event_id
       WHERE p.seq >= ? AND p.seq < ? AND e.rejected_reason IS NULL AND e.state_key IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM current_state c WHERE c.type = e.type AND c.state_key = e.state_key)
       ORDER BY p.seq DESC`,
      from,
      below,
    )
    .toArray();
  const additions = new Map<string, string>();
  for (const r of rows) {
    const key = stateKey(r.type, r.state_key);
    if (additions.has(key) || changed.has(key)) continue;
    additions.set(key, r.event_id);
  }
  if (additions.size > 0) engine.addToCurrentState(additions, joinOrdering);
  engine.sql.exec("INSERT OR REPLACE INTO partial_state_apply (id, below) VALUES (1, ?)", from);
  return from <= 1;
}

/** One step of the recheck; the room leaves partial state with its last one (same write-queue turn). */
async function recheckThenFinish(engine: RoomEngine, state: PartialRow): Promise<number | null> {
  if (!(await recheckStep(engine, () => stateIdsAtJoin(engine))).done) return STEP_DELAY_MS;
  // Our users' device list updates the resync shows some servers missed (room.ts sends them once complete).
  planMissedDeviceListUpdates(engine, state.join_event_id, JSON.parse(state.servers) as string[]);
  finish(engine);
  return null;
}

function finish(engine: RoomEngine): void {
  engine.transaction(() => {
    endRecheck(engine);
    engine.sql.exec("DELETE FROM partial_state");
    engine.sql.exec("DELETE FROM partial_state_ids");
    engine.sql.exec("DELETE FROM partial_state_apply");
    engine.sql.exec("DELETE FROM partial_state_missing");
    engine.sql.exec("DELETE FROM partial_state_staged");
    engine.sql.exec("DELETE FROM partial_state_staged_auth");
  });
}

