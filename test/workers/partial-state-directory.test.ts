// Partial-state rooms (durable-objects/room/partial-state.ts) in the directories: an alias of a room held
// with partial state lists the servers the resident named (`servers_in_room`) beside those of the members
// we know, for clients (GET /directory/room/{roomAlias}) and for other servers (query/directory), as
// Synapse's get_current_hosts_in_room_or_partial_state_approximation; once the resync completes, the
// servers come from the member list alone.
import { describe, expect, it } from "vitest";
import { signedInbound, uniqueServer } from "./federation-helpers.js";
import { api, SERVER_NAME } from "./helpers.js";
import { completeResync, makePartial } from "./partial-state-helpers.js";
import { createRoom, newUser } from "./room-helpers.js";

const aliasPath = (alias: string) => `/_matrix/client/v3/directory/room/${encodeURIComponent(alias)}`;

describe("partial-state rooms in the room directory", () => {
  it("an alias lists the servers the resident named while the room is partial, for clients and other servers", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const alias = `#partial-${crypto.randomUUID().slice(0, 8)}:${SERVER_NAME}`;
    expect((await api("PUT", aliasPath(alias), { token: alice.access_token, body: { room_id: roomId } })).status).toBe(200);
    const resident = uniqueServer("resident");
    const other = uniqueServer("other");
    await makePartial(roomId, [resident, SERVER_NAME, other]);

    const client = await api("GET", aliasPath(alias));
    expect(client.status).toBe(200);
    expect(client.body).toEqual({ room_id: roomId, servers: [SERVER_NAME, resident, other] });
    const asker = uniqueServer("asker");
    const federation = await signedInbound(asker, "GET", `/_matrix/federation/v1/query/directory?room_alias=${encodeURIComponent(alias)}`);
    expect(federation.status).toBe(200);
    expect(federation.body).toEqual({ room_id: roomId, servers: [SERVER_NAME, resident, other] });

    // Complete: the members tell (here only ours).
    await completeResync(roomId);
    expect((await api("GET", aliasPath(alias))).body).toEqual({ room_id: roomId, servers: [SERVER_NAME] });
  });
});
