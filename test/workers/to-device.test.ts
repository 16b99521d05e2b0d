// Send-to-device messaging: PUT /sendToDevice/{eventType}/{txnId} delivers into the recipient devices'
// inboxes in their User DO, which /sync reads (toDeviceSince) and acknowledges (ackToDevice).
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, login, registerUser, uniqueLocalpart } from "./helpers.js";

const V3 = "/_matrix/client/v3";
const userDo = (userId: string) => env.USERS.get(env.USERS.idFromName(userId));

async function inbox(userId: string, deviceId: string, since = 0, limit = 100) {
  const batch = await userDo(userId).toDeviceSince(deviceId, since, limit);
  return { ...batch, events: batch.events.map((e) => JSON.parse(e) as { sender: string; type: string; content: Record<string, unknown> }) };
}

describe("PUT /sendToDevice", () => {
  it("delivers to named devices and to `*`, once per transaction ID", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bobLocalpart = uniqueLocalpart("bob");
    const bob = await registerUser(bobLocalpart);
    const bobSecond = await login(bobLocalpart, `password-${bobLocalpart}`, { device_id: "BOBTWO" });
    expect(bobSecond.status).toBe(200);

    const send = (txnId: string, messages: object) =>
      api("PUT", `${V3}/sendToDevice/m.room_key_request/${txnId}`, { token: alice.access_token, body: { messages } });

    let res = await send("t1", { [bob.user_id]: { [bob.device_id]: { n: 1 } } });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
    let first = await inbox(bob.user_id, bob.device_id);
    expect(first.events).toEqual([{ sender: alice.user_id, type: "m.room_key_request", content: { n: 1 } }]);
    expect((await inbox(bob.user_id, "BOBTWO")).events).toEqual([]);

    // Retrying the same transaction delivers nothing new.
    res = await send("t1", { [bob.user_id]: { [bob.device_id]: { n: 1 } } });
    expect(res.status).toBe(200);
    expect((await inbox(bob.user_id, bob.device_id)).events).toHaveLength(1);

    // `*` reaches every device; unknown devices and remote users are dropped without an error.
    res = await send("t2", { [bob.user_id]: { "*": { n: 2 } }, "@carol:remote.example": { X: { n: 9 } } });
    expect(res.status).toBe(200);
    res = await send("t3", { [bob.user_id]: { NOSUCHDEVICE: { n: 3 } } });
    expect(res.status).toBe(200);
    first = await inbox(bob.user_id, bob.device_id);
    expect(first.events.map((e) => e.content.n)).toEqual([1, 2]);
    expect((await inbox(bob.user_id, "BOBTWO")).events.map((e) => e.content.n)).toEqual([2]);

    // The same txnId from another device of the sender is another transaction.
    const aliceLocal = alice.user_id.slice(1, alice.user_id.indexOf(":"));
    const aliceTwo = await login(aliceLocal, `password-${aliceLocal}`, { device_id: "ALICETWO" });
    res = await api("PUT", `${V3}/sendToDevice/m.room_key_request/t1`, {
      token: aliceTwo.body.access_token,
      body: { messages: { [bob.user_id]: { [bob.device_id]: { n: 4 } } } },
    });
    expect(res.status).toBe(200);
    expect((await inbox(bob.user_id, bob.device_id)).events.map((e) => e.content.n)).toEqual([1, 2, 4]);
  });

  it("a read with nothing waiting, then messages: each read from a position sees exactly what came after it", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const send = (txnId: string, n: number) =>
      api("PUT", `${V3}/sendToDevice/m.room_key_request/${txnId}`, { token: alice.access_token, body: { messages: { [bob.user_id]: { [bob.device_id]: { n } } } } });
    // Nothing stored yet: the inbox keeps no message position to compare with.
    const empty = await inbox(bob.user_id, bob.device_id);
    expect(empty.events).toEqual([]);
    expect((await send("a", 1)).status).toBe(200);
    const one = await inbox(bob.user_id, bob.device_id, empty.position);
    expect(one.events.map((e) => e.content.n)).toEqual([1]);
    // From the message's own position: nothing; from the one before it: the message.
    const at = await runInDurableObject(userDo(bob.user_id), (_i, state) => state.storage.sql.exec<{ p: number }>("SELECT MAX(stream_position) AS p FROM to_device_inbox").one().p);
    expect((await inbox(bob.user_id, bob.device_id, at)).events).toEqual([]);
    expect((await inbox(bob.user_id, bob.device_id, at - 1)).events.map((e) => e.content.n)).toEqual([1]);
    expect((await send("b", 2)).status).toBe(200);
    expect((await inbox(bob.user_id, bob.device_id, one.position)).events.map((e) => e.content.n)).toEqual([2]);
  });

  it("stores a message once when the same transaction is sent concurrently", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        api("PUT", `${V3}/sendToDevice/m.test/same`, {
          token: alice.access_token,
          body: { messages: { [bob.user_id]: { [bob.device_id]: { once: true } } } },
        }),
      ),
    );
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect((await inbox(bob.user_id, bob.device_id)).events).toHaveLength(1);
    // The inbox itself refuses a second copy of a message ID.
    const store = userDo(bob.user_id);
    expect(await store.deliverToDevice("m1", alice.user_id, "m.test", [bob.device_id], ["{}"])).toBeTypeOf("number");
    expect(await store.deliverToDevice("m1", alice.user_id, "m.test", [bob.device_id], ["{}"])).toBeNull();
    expect((await inbox(bob.user_id, bob.device_id)).events).toHaveLength(2);
  });

  it("pages with a limit, and drops messages once acknowledged", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    for (let i = 0; i < 5; i++) {
      await api("PUT", `${V3}/sendToDevice/org.example.ping/p${i}`, {
        token: alice.access_token,
        body: { messages: { [bob.user_id]: { [bob.device_id]: { i } } } },
      });
    }
    const page1 = await inbox(bob.user_id, bob.device_id, 0, 3);
    expect(page1.events.map((e) => e.content.i)).toEqual([0, 1, 2]);
    expect(page1.limited).toBe(true);
    const page2 = await inbox(bob.user_id, bob.device_id, page1.position, 3);
    expect(page2.events.map((e) => e.content.i)).toEqual([3, 4]);
    expect(page2.limited).toBe(false);
    expect(page2.position).toBe(await userDo(bob.user_id).streamPosition());

    // Until acknowledged, a sync from the old position gets the same messages again.
    expect((await inbox(bob.user_id, bob.device_id, 0, 3)).events.map((e) => e.content.i)).toEqual([0, 1, 2]);
    expect(await userDo(bob.user_id).ackToDevice(bob.device_id, page1.position)).toBe(3);
    expect((await inbox(bob.user_id, bob.device_id, 0, 100)).events.map((e) => e.content.i)).toEqual([3, 4]);
    await userDo(bob.user_id).ackToDevice(bob.device_id, page2.position);
    expect((await inbox(bob.user_id, bob.device_id, 0, 100)).events).toEqual([]);
  });

  it("validates the request", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const put = (body: unknown) => api("PUT", `${V3}/sendToDevice/m.test/v1`, { token: alice.access_token, body });
    expect((await put({})).body.errcode).toBe("M_BAD_JSON");
    expect((await put({ messages: { [bob.user_id]: { [bob.device_id]: "not an object" } } })).body.errcode).toBe("M_BAD_JSON");
    expect((await put({ messages: { "not-a-user": {} } })).body.errcode).toBe("M_INVALID_PARAM");
    expect((await inbox(bob.user_id, bob.device_id)).events).toEqual([]);
    // A rejected request did not use up its transaction ID.
    expect((await put({ messages: { [bob.user_id]: { [bob.device_id]: { ok: true } } } })).status).toBe(200);
    expect((await inbox(bob.user_id, bob.device_id)).events).toHaveLength(1);
    expect((await api("PUT", `${V3}/sendToDevice/m.test/v2`, { body: { messages: {} } })).status).toBe(401);
  });

  it("deleting a device drops its inbox", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bobLocalpart = uniqueLocalpart("bob");
    const bob = await registerUser(bobLocalpart);
    const second = await login(bobLocalpart, `password-${bobLocalpart}`, { device_id: "GONE" });
    await api("PUT", `${V3}/sendToDevice/m.test/d1`, {
      token: alice.access_token,
      body: { messages: { [bob.user_id]: { GONE: { x: 1 } } } },
    });
    expect((await inbox(bob.user_id, "GONE")).events).toHaveLength(1);
    expect((await api("POST", `${V3}/logout`, { token: second.body.access_token })).status).toBe(200);
    expect((await inbox(bob.user_id, "GONE")).events).toEqual([]);
  });
});
