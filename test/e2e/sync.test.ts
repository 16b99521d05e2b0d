// End-to-end: two matrix-js-sdk clients run their sync loops against the real server (`startClient`),
// reach PREPARED, and see each other's messages, typing notifications, read receipts and to-device
// messages as they happen.
import * as sdk from "matrix-js-sdk";
import { afterAll, describe, expect, inject, it } from "vitest";
import { newClient } from "./register.js";

const baseUrl = inject("baseUrl");

const registeredClient = (prefix: string): Promise<sdk.MatrixClient> => newClient(baseUrl, prefix);

/** Starts the client's sync loop and resolves when it is PREPARED. */
function startAndPrepare(client: sdk.MatrixClient): Promise<void> {
  return new Promise((resolve, reject) => {
    const onSync = (state: sdk.SyncState, _prev: sdk.SyncState | null, data?: { error?: Error }) => {
      if (state === sdk.SyncState.Prepared) {
        client.off(sdk.ClientEvent.Sync, onSync);
        resolve();
      } else if (state === sdk.SyncState.Error) {
        client.off(sdk.ClientEvent.Sync, onSync);
        reject(data?.error ?? new Error("sync error"));
      }
    };
    client.on(sdk.ClientEvent.Sync, onSync);
    void client.startClient({ initialSyncLimit: 10 });
  });
}

/** Resolves with the first emitted value that `match` accepts. */
function waitFor<T>(subscribe: (listener: (value: T) => void) => () => void, match: (value: T) => boolean): Promise<T> {
  return new Promise((resolve) => {
    const unsubscribe = subscribe((value) => {
      if (match(value)) {
        unsubscribe();
        resolve(value);
      }
    });
  });
}

describe("sync with two matrix-js-sdk clients", () => {
  const clients: sdk.MatrixClient[] = [];
  afterAll(() => {
    for (const c of clients) c.stopClient();
  });

  it("reach PREPARED and see each other's messages, typing, receipts and to-device messages", async () => {
    const alice = await registeredClient("alice");
    const bob = await registeredClient("bob");
    clients.push(alice, bob);
    await Promise.all([startAndPrepare(alice), startAndPrepare(bob)]);
    const aliceId = alice.getUserId()!;
    const bobId = bob.getUserId()!;

    // alice creates a room and invites bob; bob sees the invite arrive and joins.
    const bobInvited = waitFor<sdk.Room>(
      (l) => {
        bob.on(sdk.ClientEvent.Room, l);
        return () => bob.off(sdk.ClientEvent.Room, l);
      },
      () => true,
    );
    const { room_id: roomId } = await alice.createRoom({ name: "e2e sync", invite: [bobId] });
    const invitedRoom = await bobInvited;
    expect(invitedRoom.roomId).toBe(roomId);
    const aliceSeesJoin = waitFor<sdk.MatrixEvent>(
      (l) => {
        const h = (e: sdk.MatrixEvent) => l(e);
        alice.on(sdk.RoomEvent.Timeline, h);
        return () => alice.off(sdk.RoomEvent.Timeline, h);
      },
      (e) => e.getType() === "m.room.member" && e.getStateKey() === bobId && e.getContent().membership === "join",
    );
    await bob.joinRoom(roomId);
    await aliceSeesJoin;

    // Messages both ways.
    const bobGetsMessage = waitFor<sdk.MatrixEvent>(
      (l) => {
        const h = (e: sdk.MatrixEvent) => l(e);
        bob.on(sdk.RoomEvent.Timeline, h);
        return () => bob.off(sdk.RoomEvent.Timeline, h);
      },
      (e) => e.getType() === "m.room.message" && e.getContent().body === "hello bob",
    );
    const sent = await alice.sendTextMessage(roomId, "hello bob");
    const received = await bobGetsMessage;
    expect(received.getId()).toBe(sent.event_id);
    expect(received.getSender()).toBe(aliceId);

    const aliceGetsReply = waitFor<sdk.MatrixEvent>(
      (l) => {
        const h = (e: sdk.MatrixEvent) => l(e);
        alice.on(sdk.RoomEvent.Timeline, h);
        return () => alice.off(sdk.RoomEvent.Timeline, h);
      },
      (e) => e.getType() === "m.room.message" && e.getContent().body === "hi alice" && e.getSender() === bobId,
    );
    await bob.sendTextMessage(roomId, "hi alice");
    await aliceGetsReply;

    // Typing.
    const aliceSeesTyping = waitFor<sdk.RoomMember>(
      (l) => {
        const h = (_e: sdk.MatrixEvent, member: sdk.RoomMember) => l(member);
        alice.on(sdk.RoomMemberEvent.Typing, h);
        return () => alice.off(sdk.RoomMemberEvent.Typing, h);
      },
      (m) => m.userId === bobId && m.typing,
    );
    await bob.sendTyping(roomId, true, 20_000);
    await aliceSeesTyping;

    // Read receipts.
    const aliceSeesReceipt = waitFor<sdk.MatrixEvent>(
      (l) => {
        const h = (e: sdk.MatrixEvent) => l(e);
        alice.on(sdk.RoomEvent.Receipt, h);
        return () => alice.off(sdk.RoomEvent.Receipt, h);
      },
      (e) => JSON.stringify(e.getContent()).includes(bobId),
    );
    await bob.sendReadReceipt(received);
    const receipt = await aliceSeesReceipt;
    expect(receipt.getContent()[sent.event_id]?.["m.read"]?.[bobId]).toBeDefined();

    // To-device.
    const bobGetsToDevice = waitFor<sdk.MatrixEvent>(
      (l) => {
        bob.on(sdk.ClientEvent.ToDeviceEvent, l);
        return () => bob.off(sdk.ClientEvent.ToDeviceEvent, l);
      },
      (e) => e.getType() === "org.example.ping",
    );
    await alice.sendToDevice("org.example.ping", new Map([[bobId, new Map([[bob.getDeviceId()!, { n: 42 }]])]]));
    const toDevice = await bobGetsToDevice;
    expect(toDevice.getSender()).toBe(aliceId);
    expect(toDevice.getContent()).toEqual({ n: 42 });
  });
});
