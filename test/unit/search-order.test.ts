// The search term grammar (durable-objects/room/search-query.ts, Synapse's `_tokenize_query`) and the merged
// order of POST /search results across rooms with its tie-breaks (worker/search-order.ts).
import { describe, expect, it } from "vitest";
import { parseSearchTerm } from "../../durable-objects/room/search-query.js";
import { compareKeys, positionInRoom, type BatchKey } from "../../worker/search-order.js";

describe("parseSearchTerm", () => {
  it("ANDs words, keeps phrases, ORs on `or`, negates `-word` after the positive part", () => {
    expect(parseSearchTerm("hello world")).toEqual({ match: '("hello" AND "world")', highlights: ["hello", "world"] });
    expect(parseSearchTerm("Message 4").match).toBe('("Message" AND "4")');
    expect(parseSearchTerm('"hello world" again').match).toBe('("hello world" AND "again")');
    expect(parseSearchTerm("cats or dogs").match).toBe('("cats" OR "dogs")');
    expect(parseSearchTerm("cats OR dogs fish").match).toBe('("cats" OR "dogs" AND "fish")');
    expect(parseSearchTerm("-dogs cats").match).toBe('"cats" NOT "dogs"');
    expect(parseSearchTerm("cats -dogs -fish").match).toBe('"cats" NOT ("dogs" OR "fish")');
  });

  it("drops Synapse's stop words outside phrases and leaves nothing to search for in empty or negative-only terms", () => {
    expect(parseSearchTerm("the cat and a dog").match).toBe('("cat" AND "dog")');
    expect(parseSearchTerm("").match).toBeNull();
    expect(parseSearchTerm("the").match).toBeNull();
    expect(parseSearchTerm("-cats").match).toBeNull();
    expect(parseSearchTerm("or").match).toBeNull();
    expect(parseSearchTerm("or cats").match).toBe('"cats"');
  });

  it("quotes everything, so FTS5 syntax in the term is only text", () => {
    // `and` is one of Synapse's stop words.
    expect(parseSearchTerm("NOT AND NEAR").match).toBe('("NOT" AND "NEAR")');
    expect(parseSearchTerm("col:value* ^start (x)").match).toBe('("col" AND "value" AND "start" AND "x")');
    expect(parseSearchTerm("well-known").match).toBe('"well-known"');
    expect(parseSearchTerm('"unclosed phrase').match).toBe('"unclosed phrase"');
    expect(parseSearchTerm("héllo wörld").highlights).toEqual(["héllo", "wörld"]);
  });
});

describe("merged search order", () => {
  const key = (rank: number | null, ts: number, roomId: string, ordering: number): BatchKey => ({ rank, ts, roomId, ordering });
  const sorted = (order: "rank" | "recent", keys: BatchKey[]) => [...keys].sort((a, b) => compareKeys(order, a, b));

  it("recent: newest first; at the same timestamp the room ID (ascending), then the room's order (newest first)", () => {
    const a1 = key(null, 100, "!a:x", 5);
    const a2 = key(null, 100, "!a:x", 7);
    const b1 = key(null, 100, "!b:x", 9);
    const newer = key(null, 101, "!z:x", 1);
    const older = key(null, 99, "!a:x", 99);
    expect(sorted("recent", [older, b1, a1, newer, a2])).toEqual([newer, a2, a1, b1, older]);
  });

  it("rank: best first, ties as recent", () => {
    const best = key(3, 1, "!z:x", 1);
    const tieNew = key(2, 50, "!b:x", 1);
    const tieOldA = key(2, 40, "!a:x", 2);
    const tieOldB = key(2, 40, "!b:x", 3);
    const worst = key(1, 99, "!a:x", 9);
    expect(sorted("rank", [worst, tieOldB, tieNew, best, tieOldA])).toEqual([best, tieNew, tieOldA, tieOldB, worst]);
    // The same keys ordered by recent ignore the rank.
    expect(sorted("recent", [worst, tieOldB, tieNew, best, tieOldA])).toEqual([worst, tieNew, tieOldA, tieOldB, best]);
  });

  it("a merged position becomes each room's start: its own room continues below the ordering, rooms after it include the timestamp, rooms before it exclude it", () => {
    const position = key(2, 40, "!b:x", 3);
    expect(positionInRoom(position, "!b:x")).toEqual({ rank: 2, ts: 40, ordering: 3 });
    expect(positionInRoom(position, "!c:x")).toEqual({ rank: 2, ts: 40, ordering: Number.MAX_SAFE_INTEGER });
    expect(positionInRoom(position, "!a:x")).toEqual({ rank: 2, ts: 40, ordering: Number.MIN_SAFE_INTEGER });
    expect(positionInRoom(key(null, 40, "!b:x", 3), "!b:x")).toEqual({ ts: 40, ordering: 3 });
  });
});
