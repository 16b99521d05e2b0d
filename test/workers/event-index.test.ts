// The Room DO's background D1 write (durable-objects/room/event-index.ts): the event-ID index and the room's
// activity hint are written at most once per FLUSH_INTERVAL_MS per room (issue 13: one D1 write per send
// cost as much as the rest of the send). Real D1, counted on the way through; a hand-driven clock.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { EventIndexWriter, FLUSH_INTERVAL_MS, roomActivityOf, roomOfEvent, type IndexClock } from "../../durable-objects/room/event-index.js";

function countingDb() {
  const writes: number[] = [];
  const db = {
    prepare: (query: string) => env.DB.prepare(query),
    batch: (statements: D1PreparedStatement[]) => {
      writes.push(statements.length);
      return env.DB.batch(statements);
    },
  } as unknown as D1Database;
  return { db, writes };
}

function manualClock(start: number) {
  const sleeps: { ms: number; release: () => void; woken: boolean }[] = [];
  const clock: IndexClock & { t: number } = {
    t: start,
    now: () => clock.t,
    sleep(ms) {
      let release = () => {};
      const done = new Promise<void>((resolve) => (release = resolve));
      const entry = { ms, release, woken: false };
      sleeps.push(entry);
      return { done, wake: () => ((entry.woken = true), release()) };
    },
  };
  return { clock, sleeps };
}

const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `$${prefix}-${crypto.randomUUID()}-${i}`);

describe("event index writer", () => {
  it("writes the first commit at once and the commits of the following interval together at its end", async () => {
    const { db, writes } = countingDb();
    const { clock, sleeps } = manualClock(1_000_000);
    const writer = new EventIndexWriter(db, () => {}, clock);
    const roomId = `!${crypto.randomUUID()}:test.local`;
    const [e1, e2, e3, e4] = ids("ix", 4);

    writer.add(roomId, [e1!], { streamOrdering: 1, bumpTs: 5 });
    expect(writes).toHaveLength(1); // started in the same turn: no wait after a quiet interval
    await writer.settled();

    clock.t += 10;
    writer.add(roomId, [e2!], { streamOrdering: 2, bumpTs: 6 });
    clock.t += 10;
    writer.add(roomId, [e3!], { streamOrdering: 3, bumpTs: null });
    await Promise.resolve();
    expect(writes).toHaveLength(1);
    expect(sleeps.map((s) => s.ms)).toEqual([FLUSH_INTERVAL_MS - 10]);
    expect(await roomOfEvent(env.DB, e2!)).toBeNull();

    clock.t = 1_000_000 + FLUSH_INTERVAL_MS;
    sleeps[0]!.release();
    await writer.settled();
    expect(writes).toEqual([2, 2]); // e2 and e3 in one write (the hint and one insert of both IDs)
    for (const e of [e1, e2, e3]) expect(await roomOfEvent(env.DB, e!)).toBe(roomId);
    expect((await roomActivityOf(env.DB, [roomId])).get(roomId)).toEqual({ streamOrdering: 3, bumpTs: 6 });

    // Exactly one interval after the last write started (at 1,000,000 + FLUSH_INTERVAL_MS): written at once.
    clock.t += FLUSH_INTERVAL_MS - 1;
    writer.add(roomId, [e4!], { streamOrdering: 4, bumpTs: 7 });
    await Promise.resolve();
    expect(sleeps.map((s) => s.ms)).toEqual([FLUSH_INTERVAL_MS - 10, 1]); // one millisecond early: it waits
    clock.t += 1;
    sleeps[1]!.release();
    await writer.settled();
    const [e5] = ids("edge", 1);
    clock.t += FLUSH_INTERVAL_MS;
    writer.add(roomId, [e5!], { streamOrdering: 5, bumpTs: 8 });
    expect(writes).toHaveLength(4);
    expect(sleeps).toHaveLength(2);
    await writer.settled();
    expect(await roomOfEvent(env.DB, e4!)).toBe(roomId);
    expect(await roomOfEvent(env.DB, e5!)).toBe(roomId);
  });

  it("settled() writes a waiting commit at once (before a purge deletes the room's rows)", async () => {
    const { db, writes } = countingDb();
    const { clock, sleeps } = manualClock(2_000_000);
    const writer = new EventIndexWriter(db, () => {}, clock);
    const roomId = `!${crypto.randomUUID()}:test.local`;
    const [e1, e2] = ids("settle", 2);
    writer.add(roomId, [e1!], { streamOrdering: 1, bumpTs: 1 });
    await writer.settled();
    clock.t += 1;
    writer.add(roomId, [e2!], { streamOrdering: 2, bumpTs: 2 });
    await Promise.resolve();
    expect(sleeps).toHaveLength(1);
    expect(writes).toHaveLength(1);
    await writer.settled(); // the clock never moves: only the early wake-up can let it write
    expect(sleeps[0]!.woken).toBe(true);
    expect(writes).toHaveLength(2);
    expect(await roomOfEvent(env.DB, e2!)).toBe(roomId);
  });
});
