// End-to-end: two matrix-js-sdk clients that speak only simplified sliding sync (MSC4186), through the
// SDK's own SlidingSync class and SlidingSyncSdk (`startClient({ slidingSync })`), with its Rust crypto
// (matrix-sdk-crypto-wasm, as Element Web and, through matrix-rust-sdk, Element X). They never call
// /sync: every request the clients make goes through a counting `fetchFn`, and /v3/sync stays at zero.
//
// What it shows is the "done means": the room list fills (invites included), a room opens through
// a subscription with more history, messages go both ways, typing and read receipts arrive through the
// extensions, and in an encrypted room the megolm keys travel as to-device messages (to_device extension;
// one-time keys and device lists from the e2ee extension) so that each side decrypts the other's messages.
import * as sdk from "matrix-js-sdk";
import { SlidingSync, type MSC3575List } from "matrix-js-sdk/lib/sliding-sync.js";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { ROOM_LIST_STATE } from "../fixtures/room-list-state.js";
import { registerAccount, unique, type Account } from "./register.js";

const baseUrl = inject("baseUrl");

// The SDK and its crypto log every step at debug and info level; keep the test's output readable.
beforeAll(() => {
  for (const level of ["log", "info", "debug"] as const) vi.spyOn(console, level).mockImplementation(() => {});
});

interface Session {
  client: sdk.MatrixClient;
  sliding: SlidingSync;
  userId: string;
  /** Requests by kind, from the client's own fetch. */
  calls: { sync: number; sliding: number };
}

const sessions: Session[] = [];

const register = (prefix: string): Promise<Account> => registerAccount(baseUrl, unique(prefix));

/** A logged-in client with Rust crypto, started on sliding sync only. */
async function start(prefix: string): Promise<Session> {
  const account = await register(prefix);
  const calls = { sync: 0, sliding: 0 };
  const fetchFn: typeof fetch = (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    if (/\/_matrix\/client\/(v3|r0|unstable)\/sync\b/.test(url)) calls.sync += 1;
    if (url.includes("/org.matrix.simplified_msc3575/sync")) calls.sliding += 1;
    return fetch(input, init);
  };
  const client = sdk.createClient({ baseUrl, accessToken: account.access_token, userId: account.user_id, deviceId: account.device_id, fetchFn });
  await client.initRustCrypto({ useIndexedDB: false });
  const list: MSC3575List = { ranges: [[0, 19]], timeline_limit: 1, required_state: ROOM_LIST_STATE, filters: { not_room_types: ["m.space"] } };
  // The open room (Element X's room subscription): more history, the whole state (members to encrypt for).
  const sliding = new SlidingSync(baseUrl, new Map([["all_rooms", list]]), { timeline_limit: 20, required_state: [["*", "*"]] }, client, 5_000);
  const prepared = new Promise<void>((resolve) => client.on(sdk.ClientEvent.Sync, (state) => state === sdk.SyncState.Prepared && resolve()));
  await client.startClient({ slidingSync: sliding });
  await prepared;
  const session = { client, sliding, userId: account.user_id, calls };
  sessions.push(session);
  return session;
}

/** Resolves once `check()` holds, looking every 50 ms; rejects after `limitMs` (a hang bound, not a timing claim). */
async function until<T>(what: string, check: () => T | undefined | null | false, limitMs = 20_000): Promise<T> {
  const begin = Date.now();
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() - begin > limitMs) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function open(s: Session, roomId: string): void {
  const rooms = s.sliding.getRoomSubscriptions();
  rooms.add(roomId);
  s.sliding.modifyRoomSubscriptions(rooms);
}

function timelineBody(s: Session, roomId: string, body: string): sdk.MatrixEvent | undefined {
  return s.client
    .getRoom(roomId)
    ?.getLiveTimeline()
    .getEvents()
    .find((e) => e.getContent().body === body);
}

afterAll(() => {
  for (const s of sessions) s.client.stopClient();
  vi.restoreAllMocks();
});

describe("matrix-js-sdk on simplified sliding sync only, with Rust crypto", () => {
  it("lists rooms, opens one, sends and receives, sees typing and receipts, and decrypts in an encrypted room", async () => {
    const alice = await start("ssalice");
    const bob = await start("ssbob");

    // --- A plain room: alice invites bob; the invite is in bob's room list, he joins.
    const { room_id: plain } = await alice.client.createRoom({ name: "plain room", invite: [bob.userId] });
    const invited = await until("the invite in bob's list", () => bob.client.getRoom(plain));
    expect(invited.getMember(bob.userId)?.membership).toBe("invite");
    await alice.client.sendTextMessage(plain, "one");
    await alice.client.sendTextMessage(plain, "two");
    await alice.client.sendTextMessage(plain, "three");
    // A sticky event (MSC4354), e.g. a MatrixRTC membership, before bob joins.
    const sendSticky = alice.client._unstable_sendStickyEvent.bind(alice.client) as (...args: unknown[]) => Promise<{ event_id: string }>;
    const { event_id: stickyId } = await sendSticky(plain, 600_000, null, "org.matrix.msc4143.rtc.member", { msc4354_sticky_key: "alice-device" });
    await bob.client.joinRoom(plain);
    // The list's timeline_limit is 1: only the latest event (bob's join) until bob opens the room.
    await until("the joined room in bob's list", () => bob.client.getRoom(plain)?.getMyMembership() === "join");
    expect(bob.client.getRoom(plain)!.name).toBe("plain room");
    expect(timelineBody(bob, plain, "three")).toBeUndefined();
    // The sticky event came through the sticky events extension, not the timeline.
    await until("the sticky event at bob", () => [...bob.client.getRoom(plain)!._unstable_getStickyEvents()].some((e) => e.getId() === stickyId));
    open(bob, plain);
    await until("the history of the opened room", () => timelineBody(bob, plain, "one"));
    expect(bob.client.getRoom(plain)!.getMember(alice.userId)?.membership).toBe("join");

    // Both ways.
    open(alice, plain);
    await bob.client.sendTextMessage(plain, "hello from bob");
    await until("bob's message at alice", () => timelineBody(alice, plain, "hello from bob"));

    // Typing (typing extension).
    await alice.client.sendTyping(plain, true, 20_000);
    await until("alice typing at bob", () => bob.client.getRoom(plain)?.getMember(alice.userId)?.typing);

    // Read receipts (receipts extension).
    const seen = timelineBody(bob, plain, "three")!;
    await bob.client.sendReadReceipt(seen);
    // (Not synthesised from bob's own message: the receipt the server delivered.)
    await until("bob's receipt at alice", () => alice.client.getRoom(plain)?.getReadReceiptForUserId(bob.userId, true)?.eventId === seen.getId());

    // --- An encrypted room (megolm): keys travel as to-device messages.
    const { room_id: secret } = await alice.client.createRoom({
      name: "secret room",
      invite: [bob.userId],
      initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    await until("the encrypted invite at bob", () => bob.client.getRoom(secret));
    await bob.client.joinRoom(secret);
    open(alice, secret);
    open(bob, secret);
    await until("bob's join at alice", () => alice.client.getRoom(secret)?.getMember(bob.userId)?.membership === "join");
    expect(alice.client.getRoom(secret)!.hasEncryptionStateEvent()).toBe(true);

    await alice.client.sendTextMessage(secret, "for bob's eyes only");
    const atBob = await until("alice's encrypted message at bob", () =>
      bob.client
        .getRoom(secret)
        ?.getLiveTimeline()
        .getEvents()
        .find((e) => e.getWireType() === "m.room.encrypted" && e.getSender() === alice.userId),
    );
    await until("bob decrypts", () => atBob.getClearContent()?.body === "for bob's eyes only" || atBob.isDecryptionFailure());
    expect(atBob.isDecryptionFailure()).toBe(false);
    expect(atBob.getContent().body).toBe("for bob's eyes only");

    await until("bob's encryption state", () => bob.client.getRoom(secret)?.hasEncryptionStateEvent());
    await bob.client.sendTextMessage(secret, "and back");
    const atAlice = await until("bob's encrypted message at alice", () =>
      alice.client
        .getRoom(secret)
        ?.getLiveTimeline()
        .getEvents()
        .find((e) => e.getWireType() === "m.room.encrypted" && e.getSender() === bob.userId),
    );
    await until("alice decrypts", () => atAlice.getClearContent()?.body === "and back" || atAlice.isDecryptionFailure());
    expect(atAlice.getContent().body).toBe("and back");

    // Neither client ever called /sync: everything came through sliding sync.
    for (const s of [alice, bob]) {
      expect(s.calls.sync).toBe(0);
      expect(s.calls.sliding).toBeGreaterThan(0);
    }
  });
});
