// watchRemoteUsers (durable-objects/user/room-mates.ts) calls the remote users' DOs a bounded number at a
// time: a partial-state room's resync brings thousands of members at once (issue 19). The DO namespace here
// only counts the calls in flight.
import { describe, expect, it } from "vitest";
import { WATCH_CONCURRENCY, watchRemoteUsers } from "../../durable-objects/user/room-mates.js";
import { FOLLOWED_ROOM_MATES_MAX, followsRoomMates } from "../../durable-objects/user/sync.js";

function countingUsers() {
  const seen = { calls: [] as string[], inFlight: 0, most: 0 };
  const USERS = {
    idFromName: (name: string) => name,
    get: (name: string) => ({
      async watchRemoteDeviceList(me: string, roomId?: string) {
        seen.inFlight += 1;
        seen.most = Math.max(seen.most, seen.inFlight);
        await new Promise((r) => setTimeout(r, 1));
        seen.inFlight -= 1;
        seen.calls.push(`${name} ${me} ${roomId}`);
        if (name.startsWith("@fail")) throw new Error("unreachable");
      },
    }),
  };
  return { env: { USERS } as unknown as Parameters<typeof watchRemoteUsers>[0], seen };
}

describe("watchRemoteUsers", () => {
  it(`calls every remote user's DO once, at most ${WATCH_CONCURRENCY} at a time, going on past failures`, async () => {
    const { env, seen } = countingUsers();
    const users = Array.from({ length: WATCH_CONCURRENCY * 3 + 1 }, (_, i) => (i === 5 ? "@fail:r.test" : `@u${i}:r.test`));
    await watchRemoteUsers(env, users, "@me:here.test", "!room:r.test");
    expect(seen.calls.sort()).toEqual(users.map((u) => `${u} @me:here.test !room:r.test`).sort());
    expect(seen.most).toBe(WATCH_CONCURRENCY);
  });

  it("with fewer users than the bound, calls them all at once; with none, none", async () => {
    const { env, seen } = countingUsers();
    await watchRemoteUsers(env, ["@a:r.test", "@b:r.test"], "@me:here.test");
    expect(seen.most).toBe(2);
    await watchRemoteUsers(env, [], "@me:here.test");
    expect(seen.calls).toHaveLength(2);
  });
});


describe("followsRoomMates", () => {
  it(`a room's remote members are followed up to ${FOLLOWED_ROOM_MATES_MAX} members, not above`, () => {
    expect(followsRoomMates(FOLLOWED_ROOM_MATES_MAX)).toBe(true);
    expect(followsRoomMates(FOLLOWED_ROOM_MATES_MAX + 1)).toBe(false);
    expect(followsRoomMates(2)).toBe(true);
    expect(followsRoomMates(undefined)).toBe(true);
  });
});
