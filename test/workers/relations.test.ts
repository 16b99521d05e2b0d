// GET /relations and /threads, and bundled aggregations (worker/client/relations.ts,
// durable-objects/room/relations.ts; spec: "Forming relationships between events", "Threading",
// "Event replacements", "Reference relations"; MSC3981 recursion).
import { describe, expect, it } from "vitest";
import { api, type RegisteredUser } from "./helpers.js";
import { createRoom, join, newUser, r, send } from "./room-helpers.js";

type Ev = { event_id: string; type: string; sender: string; content: Record<string, unknown>; unsigned?: Record<string, any> };

const V1 = "/_matrix/client/v1";

async function post(user: RegisteredUser, roomId: string, content: Record<string, unknown>, type = "m.room.message"): Promise<string> {
  const res = await send(user, roomId, content, type);
  expect(res.status).toBe(200);
  return res.body.event_id;
}

const inThread = (root: string, body: string) => ({ msgtype: "m.text", body, "m.relates_to": { rel_type: "m.thread", event_id: root } });

function relations(user: RegisteredUser, roomId: string, path: string, query = "") {
  return api("GET", `${V1}/rooms/${encodeURIComponent(roomId)}/relations/${path}${query ? `?${query}` : ""}`, { token: user.access_token });
}

function threads(user: RegisteredUser, roomId: string, query = "") {
  return api("GET", `${V1}/rooms/${encodeURIComponent(roomId)}/threads${query ? `?${query}` : ""}`, { token: user.access_token });
}

async function getEvent(user: RegisteredUser, roomId: string, id: string): Promise<Ev> {
  const res = await api("GET", `${r(roomId)}/event/${encodeURIComponent(id)}`, { token: user.access_token });
  expect(res.status).toBe(200);
  return res.body;
}

/** A room with a root message, a thread of three replies (alice, bob, alice), a reaction to the root, a
 * reaction to the second reply, two edits of the root and a reference to it. */
async function scene() {
  const alice = await newUser("rel");
  const bob = await newUser("rel");
  const carol = await newUser("rel");
  const roomId = await createRoom(alice, { preset: "public_chat" });
  expect((await join(bob, roomId)).status).toBe(200);
  expect((await join(carol, roomId)).status).toBe(200);
  const root = await post(alice, roomId, { msgtype: "m.text", body: "root" });
  const reply1 = await post(alice, roomId, inThread(root, "r1"));
  const reply2 = await post(bob, roomId, inThread(root, "r2"));
  const reaction = await post(carol, roomId, { "m.relates_to": { rel_type: "m.annotation", event_id: root, key: "👍" } }, "m.reaction");
  const deepReaction = await post(carol, roomId, { "m.relates_to": { rel_type: "m.annotation", event_id: reply2, key: "🎉" } }, "m.reaction");
  const edit1 = await post(alice, roomId, { msgtype: "m.text", body: "* root v2", "m.new_content": { msgtype: "m.text", body: "root v2" }, "m.relates_to": { rel_type: "m.replace", event_id: root } });
  const edit2 = await post(alice, roomId, { msgtype: "m.text", body: "* root v3", "m.new_content": { msgtype: "m.text", body: "root v3" }, "m.relates_to": { rel_type: "m.replace", event_id: root } });
  // An edit by someone else is not a valid replacement.
  const foreignEdit = await post(bob, roomId, { msgtype: "m.text", body: "* hijack", "m.new_content": { msgtype: "m.text", body: "hijack" }, "m.relates_to": { rel_type: "m.replace", event_id: root } });
  const reference = await post(bob, roomId, { msgtype: "m.text", body: "see above", "m.relates_to": { rel_type: "m.reference", event_id: root } });
  const reply3 = await post(alice, roomId, inThread(root, "r3"));
  return { alice, bob, carol, roomId, root, reply1, reply2, reply3, reaction, deepReaction, edit1, edit2, foreignEdit, reference };
}

describe("GET /relations", () => {
  it("lists the children newest first, by rel_type and event type, with pagination and recursion", async () => {
    const s = await scene();
    // The default page is 5 (Synapse's default).
    expect((await relations(s.alice, s.roomId, encodeURIComponent(s.root))).body.chunk).toHaveLength(5);
    const all = await relations(s.alice, s.roomId, encodeURIComponent(s.root), "limit=50");
    expect(all.status).toBe(200);
    expect(all.body.chunk.map((e: Ev) => e.event_id)).toEqual([s.reply3, s.reference, s.foreignEdit, s.edit2, s.edit1, s.reaction, s.reply2, s.reply1]);
    expect(all.body.recursion_depth).toBeUndefined();

    const thread = await relations(s.alice, s.roomId, `${encodeURIComponent(s.root)}/m.thread`);
    expect(thread.body.chunk.map((e: Ev) => e.event_id)).toEqual([s.reply3, s.reply2, s.reply1]);
    const reactions = await relations(s.alice, s.roomId, `${encodeURIComponent(s.root)}/m.annotation/m.reaction`);
    expect(reactions.body.chunk.map((e: Ev) => e.event_id)).toEqual([s.reaction]);
    expect((await relations(s.alice, s.roomId, `${encodeURIComponent(s.root)}/m.annotation/m.room.message`)).body.chunk).toEqual([]);

    // Pages of two, forwards and backwards, no gaps or duplicates.
    const pageIds: string[] = [];
    let from: string | undefined;
    for (let i = 0; i < 10; i++) {
      const page = await relations(s.alice, s.roomId, `${encodeURIComponent(s.root)}/m.thread`, `limit=2${from ? `&from=${from}` : ""}`);
      pageIds.push(...page.body.chunk.map((e: Ev) => e.event_id));
      if (from) expect(page.body.prev_batch).toBe(from);
      from = page.body.next_batch;
      if (!from) break;
    }
    expect(pageIds).toEqual([s.reply3, s.reply2, s.reply1]);
    const forwards = await relations(s.alice, s.roomId, `${encodeURIComponent(s.root)}/m.thread`, "dir=f&limit=2");
    expect(forwards.body.chunk.map((e: Ev) => e.event_id)).toEqual([s.reply1, s.reply2]);
    const rest = await relations(s.alice, s.roomId, `${encodeURIComponent(s.root)}/m.thread`, `dir=f&limit=2&from=${forwards.body.next_batch}`);
    expect(rest.body.chunk.map((e: Ev) => e.event_id)).toEqual([s.reply3]);
    expect(rest.body.next_batch).toBeUndefined();

    // recurse: the reaction to a reply counts; the filters apply at every level.
    const deep = await relations(s.alice, s.roomId, `${encodeURIComponent(s.root)}/m.annotation`, "recurse=true");
    expect(deep.body.chunk.map((e: Ev) => e.event_id)).toEqual([s.deepReaction, s.reaction]);
    expect(deep.body.recursion_depth).toBe(3);
    const shallow = await relations(s.alice, s.roomId, `${encodeURIComponent(s.root)}/m.annotation`, "recurse=false");
    expect(shallow.body.chunk.map((e: Ev) => e.event_id)).toEqual([s.reaction]);
    expect(shallow.body.recursion_depth).toBe(1);
  });

  it("answers 404 for unknown parents and non-members, 400 for bad parameters", async () => {
    const s = await scene();
    const mallory = await newUser("rel");
    expect((await relations(s.alice, s.roomId, encodeURIComponent("$unknown"))).status).toBe(404);
    expect((await relations(mallory, s.roomId, encodeURIComponent(s.root))).status).toBe(404);
    expect((await relations(s.alice, s.roomId, encodeURIComponent(s.root), "dir=up")).body.errcode).toBe("M_INVALID_PARAM");
    expect((await relations(s.alice, s.roomId, encodeURIComponent(s.root), "from=bogus")).body.errcode).toBe("M_INVALID_PARAM");
    expect((await relations(s.alice, s.roomId, encodeURIComponent(s.root), "recurse=maybe")).body.errcode).toBe("M_INVALID_PARAM");
  });

  it("drops a redacted child and hides edits of a redacted parent", async () => {
    const s = await scene();
    const redact = await api("PUT", `${r(s.roomId)}/redact/${encodeURIComponent(s.reaction)}/red1`, { token: s.carol.access_token, body: {} });
    expect(redact.status).toBe(200);
    const afterChild = await relations(s.alice, s.roomId, `${encodeURIComponent(s.root)}/m.annotation`);
    expect(afterChild.body.chunk).toEqual([]);

    expect((await api("PUT", `${r(s.roomId)}/redact/${encodeURIComponent(s.root)}/red2`, { token: s.alice.access_token, body: {} })).status).toBe(200);
    const afterParent = await relations(s.alice, s.roomId, encodeURIComponent(s.root), "limit=50");
    const ids = afterParent.body.chunk.map((e: Ev) => e.event_id);
    expect(ids).not.toContain(s.edit1);
    expect(ids).not.toContain(s.edit2);
    expect(ids).toContain(s.reply1);
    // No m.replace aggregation on a redacted event either.
    expect((await getEvent(s.alice, s.roomId, s.root)).unsigned?.["m.relations"]?.["m.replace"]).toBeUndefined();
  });
});

describe("bundled aggregations", () => {
  it("adds the thread summary, the latest valid edit and the references to the parent", async () => {
    const s = await scene();
    const forAlice = await getEvent(s.alice, s.roomId, s.root);
    const relationsOf = forAlice.unsigned!["m.relations"];
    expect(relationsOf["m.thread"].count).toBe(3);
    expect(relationsOf["m.thread"].latest_event.event_id).toBe(s.reply3);
    expect(relationsOf["m.thread"].latest_event.content.body).toBe("r3");
    expect(relationsOf["m.thread"].current_user_participated).toBe(true);
    expect(relationsOf["m.replace"].event_id).toBe(s.edit2);
    expect(relationsOf["m.reference"]).toEqual({ chunk: [{ event_id: s.reference }] });

    // Participation is per reader: bob replied, carol only reacted.
    expect((await getEvent(s.bob, s.roomId, s.root)).unsigned!["m.relations"]["m.thread"].current_user_participated).toBe(true);
    expect((await getEvent(s.carol, s.roomId, s.root)).unsigned!["m.relations"]["m.thread"].current_user_participated).toBe(false);

    // The same bundle on /messages; events without children get none.
    const page = await api("GET", `${r(s.roomId)}/messages?dir=b&limit=50`, { token: s.alice.access_token });
    const root = page.body.chunk.find((e: Ev) => e.event_id === s.root);
    expect(root.unsigned["m.relations"]["m.thread"].count).toBe(3);
    const plain = page.body.chunk.find((e: Ev) => e.event_id === s.reply1);
    expect(plain.unsigned["m.relations"]).toBeUndefined();
    // A reply with a reaction has no m.annotation bundle (not aggregated by this server) and no thread.
    const reply2 = page.body.chunk.find((e: Ev) => e.event_id === s.reply2);
    expect(reply2.unsigned["m.relations"]).toBeUndefined();
  });
});

describe("GET /threads", () => {
  it("lists thread roots by latest reply, filters by participation, paginates", async () => {
    const s = await scene();
    const second = await post(s.bob, s.roomId, { msgtype: "m.text", body: "another root" });
    await post(s.carol, s.roomId, inThread(second, "carol's reply"));

    const all = await threads(s.alice, s.roomId);
    expect(all.status).toBe(200);
    expect(all.body.chunk.map((e: Ev) => e.event_id)).toEqual([second, s.root]);
    expect(all.body.chunk[0].unsigned["m.relations"]["m.thread"].count).toBe(1);
    expect(all.body.next_batch).toBeUndefined();

    // Alice sent the first root and replies in it; she took no part in the second thread.
    expect((await threads(s.alice, s.roomId, "include=participated")).body.chunk.map((e: Ev) => e.event_id)).toEqual([s.root]);
    // Bob sent the second root and replied in the first.
    expect((await threads(s.bob, s.roomId, "include=participated")).body.chunk.map((e: Ev) => e.event_id)).toEqual([second, s.root]);

    const first = await threads(s.alice, s.roomId, "limit=1");
    expect(first.body.chunk.map((e: Ev) => e.event_id)).toEqual([second]);
    const next = await threads(s.alice, s.roomId, `limit=1&from=${first.body.next_batch}`);
    expect(next.body.chunk.map((e: Ev) => e.event_id)).toEqual([s.root]);
    expect(next.body.next_batch).toBeUndefined();

    expect((await threads(s.alice, s.roomId, "include=mine")).body.errcode).toBe("M_INVALID_PARAM");
    expect((await threads(s.alice, s.roomId, "limit=0")).body.errcode).toBe("M_INVALID_PARAM");
    const mallory = await newUser("rel");
    expect((await threads(mallory, s.roomId)).status).toBe(403);
  });
});
