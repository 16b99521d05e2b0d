// Partial-state rooms (durable-objects/room/partial-state.ts) in the directories and member lists:
// - an alias of a room held with partial state lists the servers the resident named (`servers_in_room`)
//   beside those of the members we know, for clients (GET /directory/room/{roomAlias}) and for other
//   servers (query/directory), as Synapse's get_current_hosts_in_room_or_partial_state_approximation; once
//   the resync completes, the servers come from the member list alone;
// - /members and /joined_members wait for the resync (as Synapse), then list the members it brought;
// - the user directory finds those members once the resync completes (room/directory-index.ts).
// The member the partial join "left out" is a real signed join of a remote stand-in's user, made with
// make_join before the room became partial and served to the resync by the stand-in resident.
import { describe, expect, it } from "vitest";
import { signedInbound, uniqueServer } from "./federation-helpers.js";
import { api, SERVER_NAME, type RegisteredUser } from "./helpers.js";
import { completeResync, makePartial, remoteJoin } from "./partial-state-helpers.js";
import { createRoom, join, newUser } from "./room-helpers.js";

const enc = encodeURIComponent;

/** Whether a request's promise is still unanswered after `meanwhile` ran (a round trip through the worker). */
async function stillWaiting(promise: Promise<unknown>, meanwhile: () => Promise<unknown>): Promise<boolean> {
  let answered = false;
  void promise.then(() => (answered = true));
  await meanwhile();
  return !answered;
}

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

  it("/members and /joined_members wait for the resync, then list the members it brought; the user directory finds them from then on", async () => {
    const alice = await newUser("alice");
    const roomId = await createRoom(alice, { preset: "public_chat" });
    const server = uniqueServer("resident");
    const tag = `psdir${crypto.randomUUID().slice(0, 6)}`;
    const carol = `@carol-${tag}:${server}`;
    const carolJoin = await remoteJoin(roomId, carol, `Carolina ${tag}`);
    // A local member whose name the search matches less well (a prefix, not the whole name).
    const bob = await newUser("bob");
    expect((await api("PUT", `/_matrix/client/v3/profile/${enc(bob.user_id)}/displayname`, { token: bob.access_token, body: { displayname: `Carolina ${tag} junior` } })).status).toBe(200);
    expect((await join(bob, roomId)).status).toBe(200);
    await makePartial(roomId, [server]);

    const search = async (user: RegisteredUser, term: string) => {
      const res = await api("POST", "/_matrix/client/v3/user_directory/search", { token: user.access_token, body: { search_term: term } });
      expect(res.status).toBe(200);
      return res.body.results as { user_id: string; display_name?: string }[];
    };
    // Not in the partial state: not found.
    expect((await search(alice, tag)).map((u) => u.user_id)).toEqual([bob.user_id]);
    const members = api("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/members`, { token: alice.access_token });
    const joined = api("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/joined_members`, { token: alice.access_token });
    expect(await stillWaiting(members, () => search(alice, tag))).toBe(true);
    expect(await stillWaiting(joined, () => search(alice, tag))).toBe(true);

    await completeResync(roomId, [carolJoin]);
    const [m, j] = await Promise.all([members, joined]);
    expect(m.status).toBe(200);
    expect((m.body.chunk as { state_key: string; content: { membership: string } }[]).map((e) => [e.state_key, e.content.membership]).sort()).toEqual(
      [[alice.user_id, "join"], [bob.user_id, "join"], [carol, "join"]].sort(),
    );
    expect(j.status).toBe(200);
    expect(Object.keys(j.body.joined).sort()).toEqual([alice.user_id, bob.user_id, carol].sort());
    expect(j.body.joined[carol].display_name).toBe(`Carolina ${tag}`);
    // Complete now: answered at once.
    expect((await api("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/joined_members`, { token: alice.access_token })).status).toBe(200);

    // The user directory: by display name (case aside) and by user ID; someone who shares no room with
    // Carol does not find her.
    // Ranked with this server's users: Carol's whole name matches, Bob's starts with the term.
    expect(await search(alice, `carolina ${tag.toUpperCase()}`)).toEqual([
      { user_id: carol, display_name: `Carolina ${tag}` },
      { user_id: bob.user_id, display_name: `Carolina ${tag} junior` },
    ]);
    const one = await api("POST", "/_matrix/client/v3/user_directory/search", { token: alice.access_token, body: { search_term: `carolina ${tag}`, limit: 1 } });
    expect(one.body).toEqual({ results: [{ user_id: carol, display_name: `Carolina ${tag}` }], limited: true });
    expect((await search(alice, `carol-${tag}`)).map((u) => u.user_id)).toEqual([carol]);
    const outsider = await newUser("outsider");
    expect(await search(outsider, tag)).toEqual([]);
  });
});
