// The members a partial-state resync brings are new room-mates of the local members (user.ts roomFullState,
// user/sync.ts roomBecameWhole, awaited by the room before /members answers): the remote ones are watched
// (their servers' device list and presence updates reach our users; the room anchors our copy of their keys),
// and those whose server sent a device list update while the room was partial (nobody here followed them
// then) are news in /sync (`device_lists.changed`), as Synapse replays the updates it kept (Complement
// msc3902 "Device list tracking for pre-existing members in partial state room"; only those:
// "CanReceiveDeviceListUpdateDuringPartialStateJoin" wants exactly the one who sent an update).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { counter, remoteControl, uniqueServer } from "./federation-helpers.js";
import { federationApi } from "./federation-room-helpers.js";
import { api, type RegisteredUser } from "./helpers.js";
import { completeResync, makePartial, remoteJoin } from "./partial-state-helpers.js";
import { createRoom, join, newUser, putState } from "./room-helpers.js";

type SyncBody = { next_batch: string; device_lists?: { changed?: string[] } };

async function sync(user: RegisteredUser, query: Record<string, string>): Promise<SyncBody> {
  const res = await api("GET", `/_matrix/client/v3/sync?${new URLSearchParams(query).toString()}`, { token: user.access_token });
  expect(res.status).toBe(200);
  return res.body as unknown as SyncBody;
}

describe("members brought by a partial-state resync", () => {
  it("are news in device_lists.changed and are watched as the resync completes", async () => {
    const alice = await newUser("alice");
    const bob = await newUser("bob");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const server = uniqueServer("resident");
    const charlie = `@charlie:${server}`;
    const charlieJoin = await remoteJoin(roomId, charlie, "Charlie");
    expect((await join(bob, roomId)).status).toBe(200);
    await makePartial(roomId, [server]);
    expect((await putState(bob, roomId, "m.room.member", bob.user_id, { membership: "join", displayname: "Bob" })).status).toBe(200);
    const lazy = JSON.stringify({ room: { state: { lazy_load_members: true } } });
    const since = (await sync(bob, { filter: lazy })).next_batch;
    const charlieDo = env.USERS.get(env.USERS.idFromName(charlie)) as unknown as { remoteWatchers(): Promise<string[]> };
    expect(await charlieDo.remoteWatchers()).not.toContain(bob.user_id);

    // Charlie's server tells us his devices changed; nobody here follows him yet (the update is noted).
    const update = { user_id: charlie, device_id: "CDEV", stream_id: 2, prev_id: [1], deleted: false };
    expect((await federationApi(server, "PUT", `/_matrix/federation/v1/send/rm-${crypto.randomUUID()}`, { origin: server, origin_server_ts: Date.now(), pdus: [], edus: [{ edu_type: "m.device_list_update", content: update }] })).status).toBe(200);
    await completeResync(roomId, [charlieJoin]);
    // Done before the resync counts as complete (and before /members, which waited for it, answers).
    const changed = (await sync(bob, { filter: lazy, since })).device_lists?.changed ?? [];
    expect(changed).toContain(charlie);
    expect(await charlieDo.remoteWatchers()).toContain(bob.user_id);

    // The room now proves Bob and Charlie share it: the first key query fetches Charlie's list (GET
    // /user/devices), the next ones are answered from our copy (Complement: "device list ... cached").
    await remoteControl("/_test/user-keys", { server, devices: { [charlie]: { user_id: charlie, stream_id: 3, devices: [{ device_id: "C", keys: {}, device_display_name: "phone" }] } }, query: { device_keys: {} } });
    const query = async () => expect((await api("POST", "/_matrix/client/v3/keys/query", { token: bob.access_token, body: { device_keys: { [charlie]: [] } } })).status).toBe(200);
    await query();
    expect(await counter(`devices:${charlie}`)).toBe(1);
    await query();
    await query();
    expect(await counter(`devices:${charlie}`)).toBe(1);
  });
});
