// The Room DO's background D1 write (durable-objects/room/event-index.ts): the event-ID index and the room's
// activity hint are written FIRST_WRITE_DELAY_MS after a commit and at most once per FLUSH_INTERVAL_MS per room (issue 13: one D1 write per send
// cost as much as the rest of the send). Real D1, counted on the way through; a hand-driven clock.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { EventIndexWriter, FIRST_WRITE_DELAY_MS, FLUSH_INTERVAL_MS, roomActivityOf, roomOfEvent, type IndexClock } from "../../durable-objects/room/event-index.js";

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
  it("writes a commit FIRST_WRITE_DELAY_MS after it, and the commits of the following interval together at its end", async () => {
    const { db, writes } = countingDb();
    const { clock, sleeps } = manualClock(1_000_000);
    const writer = new EventIndexWriter(db, () => {}, clock);
    const roomId = `!${crypto.randomUUID()}:test.local`;
    const [e1, e2, e3, e4, e5] = ids("ix", 5);

    writer.add(roomId, [e1!], { streamOrdering: 1, bumpTs: 5 });
    await Promise.resolve();
    // Not in the commit's own turn: the push to waiting /syncs goes first.
    expect(writes).toHaveLength(0);
    expect(sleeps.map((s) => s.ms)).toEqual([FIRST_WRITE_DELAY_MS]);
    clock.t += FIRST_WRITE_DELAY_MS;
    sleeps[0]!.release();
    await writer.settled();
    expect(writes).toEqual([2]);
    expect(await roomOfEvent(env.DB, e1!)).toBe(roomId);
    const written = clock.t;

    // Within the interval after a write: together at the interval's end.
    clock.t += 10;
    writer.add(roomId, [e2!], { streamOrdering: 2, bumpTs: 6 });
    clock.t += 10;
    writer.add(roomId, [e3!], { streamOrdering: 3, bumpTs: null });
    await Promise.resolve();
    expect(writes).toHaveLength(1);
    expect(sleeps.map((s) => s.ms)).toEqual([FIRST_WRITE_DELAY_MS, FLUSH_INTERVAL_MS - 10]);
    expect(await roomOfEvent(env.DB, e2!)).toBeNull();
    clock.t = written + FLUSH_INTERVAL_MS;
    sleeps[1]!.release();
    await writer.settled();
    expect(writes).toEqual([2, 2]); // e2 and e3 in one write (the hint and one insert of both IDs)
    for (const e of [e2, e3]) expect(await roomOfEvent(env.DB, e!)).toBe(roomId);
    expect((await roomActivityOf(env.DB, [roomId])).get(roomId)).toEqual({ streamOrdering: 3, bumpTs: 6 });
    const second = clock.t;

    // Where the two waits meet: a commit FIRST_WRITE_DELAY_MS before the interval's end waits exactly
    // that; one a millisecond earlier waits for the interval's end.
    clock.t = second + FLUSH_INTERVAL_MS - FIRST_WRITE_DELAY_MS - 1;
    writer.add(roomId, [e4!], { streamOrdering: 4, bumpTs: 7 });
    await Promise.resolve();
    expect(sleeps.at(-1)!.ms).toBe(FIRST_WRITE_DELAY_MS + 1);
    clock.t = second + FLUSH_INTERVAL_MS;
    sleeps.at(-1)!.release();
    await writer.settled();
    const third = clock.t;
    clock.t = third + FLUSH_INTERVAL_MS - FIRST_WRITE_DELAY_MS;
    writer.add(roomId, [e5!], { streamOrdering: 5, bumpTs: 8 });
    await Promise.resolve();
    expect(sleeps.at(-1)!.ms).toBe(FIRST_WRITE_DELAY_MS);
    expect(writes).toHaveLength(3);
    clock.t += FIRST_WRITE_DELAY_MS;
    sleeps.at(-1)!.release();
    await writer.settled();
    expect(writes).toHaveLength(4);
    expect(await roomOfEvent(env.DB, e4!)).toBe(roomId);
    expect(await roomOfEvent(env.DB, e5!)).toBe(roomId);
  });

  it("writes a commit whose events go to other servers without the first delay (soon), and not within the interval", async () => {
    const { db, writes } = countingDb();
    const { clock, sleeps } = manualClock(3_000_000);
    const writer = new EventIndexWriter(db, () => {}, clock);
    const roomId = `!${crypto.randomUUID()}:test.local`;
    const [e1, e2, e3, e4] = ids("soon", 4);

    writer.add(roomId, [e1!], { streamOrdering: 1, bumpTs: 1 }, true);
    expect(writes).toHaveLength(1); // in the commit's own turn
    await writer.settled();

    // A local-only commit waits its first delay; a commit for other servers arriving meanwhile ends it.
    clock.t += FLUSH_INTERVAL_MS;
    writer.add(roomId, [e2!], { streamOrdering: 2, bumpTs: 2 });
    await Promise.resolve();
    expect(sleeps.map((s) => s.ms)).toEqual([FIRST_WRITE_DELAY_MS]);
    clock.t += 1;
    writer.add(roomId, [e3!], { streamOrdering: 3, bumpTs: 3 }, true);
    expect(sleeps[0]!.woken).toBe(true);
    for (let i = 0; i < 10 && writes.length < 2; i++) await Promise.resolve();
    expect(writes).toEqual([2, 2]);
    await writer.settled();
    expect(await roomOfEvent(env.DB, e3!)).toBe(roomId);

    // Within the interval after a write, `soon` still waits for the interval's end.
    clock.t += 10;
    writer.add(roomId, [e4!], { streamOrdering: 4, bumpTs: 4 }, true);
    await Promise.resolve();
    expect(writes).toHaveLength(2);
    expect(sleeps.at(-1)!.ms).toBe(FLUSH_INTERVAL_MS - 10);
    clock.t += FLUSH_INTERVAL_MS - 10;
    sleeps.at(-1)!.release();
    await writer.settled();
    expect(writes).toHaveLength(3);
    expect(await roomOfEvent(env.DB, e4!)).toBe(roomId);
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
    expect(sleeps).toHaveLength(2);
    expect(writes).toHaveLength(1);
    await writer.settled(); // the clock never moves: only the early wake-up can let it write
    expect(sleeps.map((s) => s.woken)).toEqual([true, true]);
    expect(writes).toHaveLength(2);
    expect(await roomOfEvent(env.DB, e2!)).toBe(roomId);
  });
});
