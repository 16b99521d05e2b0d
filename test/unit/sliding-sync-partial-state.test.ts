// Which sliding sync room configs must wait for a partial-state room's full state (protocol/sliding-sync.ts
// mustAwaitFullState; Synapse's RoomSyncConfig.must_await_full_state).
import { describe, expect, it } from "vitest";
import { mustAwaitFullState, parseRequiredState } from "../../protocol/sliding-sync.js";

const ME = "@me:here.test";
const isMine = (userId: string) => userId.endsWith(":here.test");
const waits = (pairs: string[][]) => mustAwaitFullState(parseRequiredState(pairs, ME), isMine);

describe("mustAwaitFullState", () => {
  it("waits for every state, and for another server's user under any type or as a member", () => {
    expect(waits([["*", "*"]])).toBe(true);
    expect(waits([["*", "*"], ["m.room.member", "$LAZY"]])).toBe(true);
    expect(waits([["*", "@other:there.test"]])).toBe(true);
    expect(waits([["m.room.member", "@other:there.test"]])).toBe(true);
    expect(waits([["m.room.member", "$LAZY"], ["m.room.member", "$ME"], ["m.room.member", "@other:there.test"]])).toBe(true);
  });

  it("does not wait for non-member state, local users, lazy members, or a wildcard member key (as Synapse)", () => {
    expect(waits([])).toBe(false);
    expect(waits([["m.room.create", ""], ["m.room.name", "*"]])).toBe(false);
    expect(waits([["m.room.member", "$LAZY"]])).toBe(false);
    expect(waits([["m.room.member", "$ME"], ["m.room.member", "@you:here.test"]])).toBe(false);
    expect(waits([["*", "$ME"], ["*", "@you:here.test"], ["*", "foobarbaz"], ["*", "@foo"], ["*", "foo:bar"]])).toBe(false);
    expect(waits([["m.room.member", "*"]])).toBe(false);
    expect(waits([["m.room.member", "*"], ["m.room.member", "@other:there.test"]])).toBe(false);
    // A non-member type naming another server's user is state a partial join has.
    expect(waits([["m.room.power_levels", "@other:there.test"]])).toBe(false);
  });
});
