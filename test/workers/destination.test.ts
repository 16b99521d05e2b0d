// The Destination DO (durable-objects/destination.ts): one remote server's outbound queue. The remote
// servers are played by test/workers/remote-homeserver.mjs, which checks our X-Matrix signature with the
// key we publish, records every PUT /send it receives and can be told to fail the next ones.
import { createExecutionContext, evictDurableObject, runDurableObjectAlarm, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { QueuedEdu, QueuedPdu } from "../../durable-objects/destination.js";
import { notePeerContact } from "../../durable-objects/destination/peer-contact.js";
import app from "../../worker/index.js";
import type { Env } from "../../worker/env.js";
import { remoteAuthorization, remoteControl, uniqueServer } from "./federation-helpers.js";

const SERVER_NAME = "test.local";
const destinationStub = (server: string) => env.DESTINATIONS.get(env.DESTINATIONS.idFromName(server));

interface ReceivedTransaction {
  txnId: string;
  body: { origin: string; origin_server_ts: number; pdus: Record<string, unknown>[]; edus?: { edu_type: string; content: Record<string, unknown> }[] };
  accepted: boolean;
  origin: string;
}

const received = (server: string) => remoteControl<ReceivedTransaction[]>(`/_test/transactions?server=${encodeURIComponent(server)}`);
const failNext = (server: string, times: number, status = 503) => remoteControl("/_test/fail", { server, times, status });

let counter = 0;
/** A PDU-shaped JSON object (the queue does not look inside, except at prev_events for catch-up). */
function pdu(roomId: string, prevEvents: unknown[] = [], body = `m${++counter}`): { item: QueuedPdu; json: Record<string, unknown> } {
  const eventId = `$ev${++counter}-${crypto.randomUUID().slice(0, 6)}`;
  const json = {
    type: "m.room.message",
    room_id: roomId,
    sender: `@alice:${SERVER_NAME}`,
    origin_server_ts: 1_700_000_000_000 + counter,
    depth: counter,
    prev_events: prevEvents,
    auth_events: [],
    content: { msgtype: "m.text", body, id: eventId },
    hashes: { sha256: "x" },
    signatures: {},
  };
  return { item: { roomId, eventId, json: JSON.stringify(json) }, json };
}

/** A chain of n PDUs in one room, each naming the one before as its prev event. */
function chain(roomId: string, n: number): { item: QueuedPdu; json: Record<string, unknown> }[] {
  const out: { item: QueuedPdu; json: Record<string, unknown> }[] = [];
  for (let i = 0; i < n; i++) out.push(pdu(roomId, i === 0 ? [] : [out[i - 1]!.item.eventId]));
  return out;
}

async function enqueueAndSettle(server: string, pdus: QueuedPdu[], edus: QueuedEdu[] = []): Promise<number> {
  const stub = destinationStub(server);
  const added = await stub.enqueue(server, pdus, edus);
  await stub.sendsSettled();
  return added;
}

describe("Destination DO: sending", () => {
  it("sends an enqueued PDU as a signed transaction with the right body, then empties the queue", async () => {
    const server = uniqueServer("dest");
    const p = pdu("!room:test.local");
    expect(await enqueueAndSettle(server, [p.item])).toBe(1);

    const txns = await received(server);
    // Recorded only after the peer verified our X-Matrix signature against the key we publish.
    expect(txns).toHaveLength(1);
    expect(txns[0]!.accepted).toBe(true);
    expect(txns[0]!.origin).toBe(SERVER_NAME);
    expect(txns[0]!.body.origin).toBe(SERVER_NAME);
    expect(typeof txns[0]!.body.origin_server_ts).toBe("number");
    expect(txns[0]!.body.pdus).toEqual([p.json]);
    expect(txns[0]!.body.edus).toBeUndefined();

    const state = await destinationStub(server).queueState();
    expect(state.destination).toBe(server);
    expect(state.pdus).toEqual([]);
    expect(state.transactionInFlight).toBeNull();
    expect(state.transactionsSent).toBe(1);
    expect(state.failures).toBe(0);
  });

  it("keeps arrival order across enqueues and does not queue an event twice", async () => {
    const server = uniqueServer("order");
    const stub = destinationStub(server);
    const pdus = chain("!r:test.local", 5);
    // Separate calls, not awaited one by one: the first may leave alone, the rest follow in order.
    const adds = await Promise.all(pdus.map((p) => stub.enqueue(server, [p.item])));
    expect(adds).toEqual([1, 1, 1, 1, 1]);
    expect(await stub.enqueue(server, [pdus[4]!.item])).toBe(0);
    await stub.sendsSettled();
    const sent = (await received(server)).flatMap((t) => t.body.pdus);
    expect(sent.map((p) => (p.content as { id: string }).id)).toEqual(pdus.map((p) => p.item.eventId));
  });

  it("sends at most 50 PDUs and 100 EDUs per transaction, in order (51 PDUs, 101 EDUs: two transactions)", async () => {
    const server = uniqueServer("batch");
    const pdus = Array.from({ length: 51 }, () => pdu("!big:test.local"));
    const edus: QueuedEdu[] = Array.from({ length: 101 }, (_, i) => ({ eduType: "m.test", content: JSON.stringify({ n: i }) }));
    expect(await enqueueAndSettle(server, pdus.map((p) => p.item), edus)).toBe(152);

    const txns = await received(server);
    expect(txns.map((t) => t.body.pdus.length)).toEqual([50, 1]);
    expect(txns.map((t) => t.body.edus?.length)).toEqual([100, 1]);
    expect(txns.flatMap((t) => t.body.pdus)).toEqual(pdus.map((p) => p.json));
    expect(txns.flatMap((t) => t.body.edus!.map((e) => e.content.n))).toEqual(edus.map((_, i) => i));
    expect(txns[0]!.body.edus![0]).toEqual({ edu_type: "m.test", content: { n: 0 } });
    expect(new Set(txns.map((t) => t.txnId)).size).toBe(2);
  });

  it("exactly 50 PDUs fit one transaction", async () => {
    const server = uniqueServer("fifty");
    await enqueueAndSettle(server, Array.from({ length: 50 }, () => pdu("!r:test.local").item));
    expect((await received(server)).map((t) => t.body.pdus.length)).toEqual([50]);
  });

  it("replaces a waiting EDU with the same dedupe key", async () => {
    const server = uniqueServer("dedupe");
    const stub = destinationStub(server);
    await failNext(server, 1);
    // The first send fails: the first EDU is now in flight and keeps its content for the retry.
    await stub.enqueue(server, [], [{ eduType: "m.typing", content: JSON.stringify({ v: 1 }), dedupeKey: "typing:!r" }]);
    await stub.sendsSettled();
    await stub.enqueue(server, [], [{ eduType: "m.typing", content: JSON.stringify({ v: 2 }), dedupeKey: "typing:!r" }]);
    await stub.enqueue(server, [], [{ eduType: "m.typing", content: JSON.stringify({ v: 3 }), dedupeKey: "typing:!r" }]);
    expect((await stub.queueState()).edus.map((e) => e.inFlight)).toEqual([true, false]);
    await runDurableObjectAlarm(stub);
    const txns = await received(server);
    expect(txns.map((t) => t.body.edus!.map((e) => e.content.v))).toEqual([[1], [1], [3]]);
  });
});

describe("Destination DO: failures and back-off", () => {
  it("retries a failed transaction on the alarm with the same ID and content, backing off, and drops nothing before the 200", async () => {
    const server = uniqueServer("retry");
    const stub = destinationStub(server);
    await failNext(server, 2);
    const pdus = chain("!r:test.local", 3);
    await enqueueAndSettle(server, pdus.map((p) => p.item));

    let state = await stub.queueState();
    expect(state.failures).toBe(1);
    expect(state.pdus.map((p) => p.eventId)).toEqual(pdus.map((p) => p.item.eventId));
    expect(state.pdus.every((p) => p.inFlight)).toBe(true);
    const txnId = state.transactionInFlight!.txnId;
    const firstDelay = state.retryAt! - state.lastFailureTs!;
    expect(firstDelay).toBeGreaterThanOrEqual(5_000);
    expect(firstDelay).toBeLessThanOrEqual(6_000);
    expect(state.alarmAt).toBe(state.retryAt);
    expect(state.lastError).toContain("503");

    // A new event while backing off waits: no attempt before the retry is due.
    const later = pdu("!r:test.local", [pdus[2]!.item.eventId]);
    await enqueueAndSettle(server, [later.item]);
    expect(await received(server)).toHaveLength(1);

    expect(await runDurableObjectAlarm(stub)).toBe(true);
    state = await stub.queueState();
    expect(state.failures).toBe(2);
    expect(state.transactionInFlight).toEqual({ txnId, attempts: 2 });
    const secondDelay = state.retryAt! - state.lastFailureTs!;
    expect(secondDelay).toBeGreaterThanOrEqual(8_000);
    expect(secondDelay).toBeLessThanOrEqual(12_000);
    expect(state.pdus).toHaveLength(4);

    expect(await runDurableObjectAlarm(stub)).toBe(true);
    state = await stub.queueState();
    expect(state.pdus).toEqual([]);
    expect(state.failures).toBe(0);
    expect(state.retryAt).toBeNull();

    const txns = await received(server);
    expect(txns.map((t) => [t.txnId === txnId, t.accepted])).toEqual([
      [true, false],
      [true, false],
      [true, true],
      [false, true],
    ]);
    // The retries carry exactly the first attempt's transaction; the later event goes in the next one.
    expect(txns[1]!.body).toEqual(txns[0]!.body);
    expect(txns[2]!.body).toEqual(txns[0]!.body);
    expect(txns[3]!.body.pdus).toEqual([later.json]);
  });

  it("a restart keeps the queue, the transaction in flight and the back-off; the alarm resumes it", async () => {
    // A name discovery refuses: the attempt fails without a request (a request's pending timeout timer would
    // keep the object from being evicted).
    const server = `not a server name ${crypto.randomUUID()}`;
    const stub = destinationStub(server);
    const pdus = chain("!r:test.local", 2);
    await enqueueAndSettle(server, pdus.map((p) => p.item));
    const before = await stub.queueState();
    expect(before.failures).toBe(1);
    expect(before.transactionInFlight!.attempts).toBe(1);

    await evictDurableObject(stub);
    const after = await destinationStub(server).queueState();
    expect(after.transactionInFlight).toEqual(before.transactionInFlight);
    expect(after.pdus).toEqual(before.pdus);
    expect(after.retryAt).toBe(before.retryAt);
    expect(after.alarmAt).toBe(before.retryAt);

    expect(await runDurableObjectAlarm(destinationStub(server))).toBe(true);
    const retried = await destinationStub(server).queueState();
    expect(retried.transactionInFlight).toEqual({ txnId: before.transactionInFlight!.txnId, attempts: 2 });
    expect(retried.failures).toBe(2);
    expect(retried.pdus).toEqual(before.pdus);
  });

  it("refuses to queue for this server itself", async () => {
    expect(await destinationStub("test.local").enqueue("test.local", [pdu("!r:test.local").item])).toBe(0);
    expect((await destinationStub("test.local").queueState()).destination).toBeNull();
  });

  it("treats a 4xx answer as a failure too: the PDUs stay queued", async () => {
    const server = uniqueServer("fourxx");
    const stub = destinationStub(server);
    await failNext(server, 1, 400);
    const p = pdu("!r:test.local");
    await enqueueAndSettle(server, [p.item]);
    let state = await stub.queueState();
    expect(state.failures).toBe(1);
    expect(state.pdus.map((x) => x.eventId)).toEqual([p.item.eventId]);
    await runDurableObjectAlarm(stub);
    state = await stub.queueState();
    expect(state.pdus).toEqual([]);
    expect((await received(server)).map((t) => t.accepted)).toEqual([false, true]);
  });

  it("peerIsUp ends the back-off and sends at once", async () => {
    const server = uniqueServer("peerup");
    const stub = destinationStub(server);
    await failNext(server, 3);
    await enqueueAndSettle(server, [pdu("!r:test.local").item]);
    await runDurableObjectAlarm(stub);
    await runDurableObjectAlarm(stub);
    expect((await stub.queueState()).failures).toBe(3);

    await stub.peerIsUp();
    await stub.sendsSettled();
    const state = await stub.queueState();
    expect(state.pdus).toEqual([]);
    expect(state.failures).toBe(0);
    expect((await received(server)).map((t) => t.accepted)).toEqual([false, false, false, true]);
  });

  it("peerIsUp on a destination with nothing queued creates no queue", async () => {
    const server = uniqueServer("idle");
    await destinationStub(server).peerIsUp();
    expect((await destinationStub(server).queueState()).destination).toBeNull();
    expect(await received(server)).toEqual([]);
  });

  it("after peerIsUp a new failure backs off from the minimum again", async () => {
    const server = uniqueServer("reset");
    const stub = destinationStub(server);
    await failNext(server, 3);
    await enqueueAndSettle(server, [pdu("!r:test.local").item]);
    await runDurableObjectAlarm(stub);
    await stub.peerIsUp();
    await stub.sendsSettled();
    const state = await stub.queueState();
    expect(state.failures).toBe(1);
    expect(state.retryAt! - state.lastFailureTs!).toBeLessThanOrEqual(6_000);
  });
});

describe("Destination DO: catch-up after a long outage", () => {
  it("keeps each room's latest events when a failing queue grows past the limit; the peer fetches the gap", async () => {
    const server = uniqueServer("catchup");
    const stub = destinationStub(server);
    await stub.setTuning({ catchUpAfterPdus: 6 });
    await failNext(server, 1);
    const roomA = chain("!a:test.local", 4);
    const roomB = chain("!b:test.local", 2);
    // A fork in room B: two events on b2 (both are latest), and a v1-style prev_events pair in room C.
    const b3 = pdu("!b:test.local", [roomB[1]!.item.eventId]);
    const b4 = pdu("!b:test.local", [roomB[1]!.item.eventId]);
    const c1 = pdu("!c:test.local");
    const c2 = pdu("!c:test.local", [[c1.item.eventId, { sha256: "x" }]]);
    const all = [...roomA, ...roomB, b3, b4, c1, c2];
    await enqueueAndSettle(server, [roomA[0]!.item]);
    // The first transaction (a1) failed; the rest arrives while the destination is backing off.
    await stub.enqueue(server, all.slice(1).map((p) => p.item));
    expect((await stub.queueState()).pdus).toHaveLength(10);

    await runDurableObjectAlarm(stub);
    const state = await stub.queueState();
    expect(state.pdus).toEqual([]);
    expect(state.pdusDroppedByCatchUp).toBe(6);
    const txns = await received(server);
    expect(txns).toHaveLength(2);
    expect(txns[1]!.body.pdus).toEqual([roomA[3]!.json, b3.json, b4.json, c2.json]);
    // The transaction given up by catch-up is not reused: the next one has a new ID.
    expect(txns[1]!.txnId).not.toBe(txns[0]!.txnId);
  });

  it("does not collapse a failing queue at exactly the limit", async () => {
    const server = uniqueServer("atlimit");
    const stub = destinationStub(server);
    await stub.setTuning({ catchUpAfterPdus: 3 });
    await failNext(server, 1);
    const pdus = chain("!a:test.local", 3);
    await enqueueAndSettle(server, [pdus[0]!.item]);
    await stub.enqueue(server, pdus.slice(1).map((p) => p.item));
    await runDurableObjectAlarm(stub);
    expect((await stub.queueState()).pdusDroppedByCatchUp).toBe(0);
    const accepted = (await received(server)).filter((t) => t.accepted);
    expect(accepted.flatMap((t) => t.body.pdus)).toEqual(pdus.map((p) => p.json));
  });

  it("collapses a queue whose oldest PDU waited too long", async () => {
    const server = uniqueServer("old");
    const stub = destinationStub(server);
    // Every queued PDU counts as old: even a healthy queue collapses.
    await stub.setTuning({ catchUpAfterMs: 0 });
    await failNext(server, 1);
    const pdus = chain("!a:test.local", 3);
    await enqueueAndSettle(server, [pdus[0]!.item]);
    await stub.enqueue(server, pdus.slice(1).map((p) => p.item));
    await runDurableObjectAlarm(stub);
    expect((await received(server)).at(-1)!.body.pdus).toEqual([pdus[2]!.json]);
  });
});

describe("Destination DO: catch-up keeps sticky events (MSC4354)", () => {
  it("an unexpired sticky event stays in a collapsed queue; an expired one is dropped like any other", async () => {
    const server = uniqueServer("stickycatchup");
    const stub = destinationStub(server);
    await stub.setTuning({ catchUpAfterMs: 0 });
    await failNext(server, 1);
    const a1 = pdu("!s:test.local");
    const sticky = (prev: string, ts: number, duration: number) => {
      const p = pdu("!s:test.local", [prev]);
      const json = { ...p.json, origin_server_ts: ts, msc4354_sticky: { duration_ms: duration } };
      return { item: { ...p.item, json: JSON.stringify(json) }, json };
    };
    const live = sticky(a1.item.eventId, Date.now(), 600_000);
    const expired = sticky(live.item.eventId, Date.now() - 3_600_000, 3_600_000); // ended just now
    const last = pdu("!s:test.local", [expired.item.eventId]);
    await enqueueAndSettle(server, [a1.item]);
    await stub.enqueue(server, [live, expired, last].map((p) => p.item));
    await runDurableObjectAlarm(stub);
    expect((await stub.queueState()).pdusDroppedByCatchUp).toBe(2);
    expect((await received(server)).at(-1)!.body.pdus).toEqual([live.json, last.json]);
  });
});

describe("Destination DO: the peer contacts us", () => {
  /** A signed request from `server` to this server, through the Worker, waiting for its background work. */
  // An authenticated endpoint that answers 404 (unknown event): unknown endpoints answer 404 before any
  // authentication (worker/federation), so they would not count as contact.
  async function contactFrom(server: string, uri = "/_matrix/federation/v1/event/%24no-such-event"): Promise<number> {
    const { authorization } = await remoteAuthorization({ name: server, method: "GET", uri });
    const ctx = createExecutionContext();
    const res = await app.fetch(new Request(`https://${SERVER_NAME}${uri}`, { headers: { Authorization: authorization } }), env as unknown as Env, ctx);
    await waitOnExecutionContext(ctx);
    return res.status;
  }

  it("an authenticated request from a server we back off from ends the back-off and sends at once", async () => {
    const server = uniqueServer("contact");
    const stub = destinationStub(server);
    await failNext(server, 1);
    await enqueueAndSettle(server, [pdu("!r:test.local").item]);
    expect((await stub.queueState()).failures).toBe(1);

    expect(await contactFrom(server)).toBe(404);
    await stub.sendsSettled();
    const state = await stub.queueState();
    expect(state.pdus).toEqual([]);
    expect(state.failures).toBe(0);
    expect((await received(server)).map((t) => t.accepted)).toEqual([false, true]);
  });

  it("a request that fails authentication changes nothing", async () => {
    const server = uniqueServer("forged");
    const stub = destinationStub(server);
    await failNext(server, 1);
    await enqueueAndSettle(server, [pdu("!r:test.local").item]);
    const uri = "/_matrix/federation/v1/event/%24no-such-event";
    // Signed for another URI: the signature does not match this request.
    const { authorization } = await remoteAuthorization({ name: server, method: "GET", uri: "/_matrix/federation/v1/other" });
    const ctx = createExecutionContext();
    const res = await app.fetch(new Request(`https://${SERVER_NAME}${uri}`, { headers: { Authorization: authorization } }), env as unknown as Env, ctx);
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(401);
    expect((await stub.queueState()).failures).toBe(1);
  });

  it("tells a Destination DO at most once a minute per origin", async () => {
    const server = uniqueServer("ratelimit");
    const stub = destinationStub(server);
    await failNext(server, 2);
    await enqueueAndSettle(server, [pdu("!r:test.local").item]);
    const t = Date.now() + 3_600_000; // a clock of its own: other tests' contacts do not interfere
    await notePeerContact(env as unknown as Env, server, t);
    await stub.sendsSettled();
    expect((await stub.queueState()).failures).toBe(1); // reset, then the retry failed again
    await notePeerContact(env as unknown as Env, server, t + 59_999);
    await stub.sendsSettled();
    expect((await stub.queueState()).failures).toBe(1);
    await notePeerContact(env as unknown as Env, server, t + 60_000);
    await stub.sendsSettled();
    expect((await stub.queueState()).failures).toBe(0);
    expect((await received(server)).map((t) => t.accepted)).toEqual([false, false, true]);
  });
});
