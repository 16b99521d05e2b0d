// The body of a transaction to an application service (durable-objects/appservice/transaction.ts): which
// fields each registration flag brings, in Synapse's names, and how queued device list changes combine.
import { describe, expect, it } from "vitest";
import { parseRegistration, storedForm } from "../../protocol/appservice-registration.js";
import { deviceListRow, toDeviceRow, transactionBody, transactionParts } from "../../durable-objects/appservice/transaction.js";
import type { OutgoingTransaction, QueuedEdu } from "../../durable-objects/destination/queue.js";

function registration(flags: Record<string, unknown>) {
  return storedForm(
    parseRegistration(
      { id: "b", url: "http://127.0.0.1:1", as_token: "a", hs_token: "h", sender_localpart: "bot", namespaces: { users: [{ exclusive: true, regex: "@b_.*" }] }, ...flags },
      "test",
    ),
  );
}

function txn(edus: QueuedEdu[], events: Record<string, unknown>[] = []): OutgoingTransaction {
  return {
    txnId: "1.1",
    originServerTs: 0,
    attempts: 0,
    pdus: events.map((e, i) => ({ eventId: `$${i}`, json: JSON.stringify(e) })),
    edus: edus.map((e) => ({ eduType: e.eduType, content: e.content })),
  };
}

const typing = { eduType: "m.typing", content: JSON.stringify({ type: "m.typing", room_id: "!r:x", content: { user_ids: [] } }) };
const keys = { oneTimeKeys: { "@b_1:x": { D: { signed_curve25519: 3 } } }, unusedFallbackKeyTypes: { "@b_1:x": { D: [] } } };

describe("transaction body", () => {
  it("without flags: events only, even when ephemeral rows and key counts are there", () => {
    const body = transactionBody(registration({}), transactionParts(txn([typing, deviceListRow("@u:x", "changed")], [{ type: "m.room.message" }])), keys);
    expect(body).toEqual({ events: [{ type: "m.room.message" }] });
  });

  it("receive_ephemeral: ephemeral under both names and to-device messages (empty too, as Synapse)", () => {
    const todevice = toDeviceRow("@b_1:x", "D", "@u:x", "m.room.encrypted", '{"ciphertext":{"k":1}}');
    const body = transactionBody(registration({ receive_ephemeral: true }), transactionParts(txn([typing, todevice])), null);
    expect(body.ephemeral).toEqual([JSON.parse(typing.content)]);
    expect(body["de.sorunome.msc2409.ephemeral"]).toEqual(body.ephemeral);
    expect(body["de.sorunome.msc2409.to_device"]).toEqual([
      { to_user_id: "@b_1:x", to_device_id: "D", type: "m.room.encrypted", sender: "@u:x", content: { ciphertext: { k: 1 } } },
    ]);
    const empty = transactionBody(registration({ receive_ephemeral: true }), transactionParts(txn([], [{ type: "m" }])), null);
    expect(empty["de.sorunome.msc2409.to_device"]).toEqual([]);
    expect(Object.keys(empty).filter((k) => k.includes("msc3202"))).toEqual([]);
  });

  it("org.matrix.msc3202: key counts under both names, fallback types, device lists; empty ones left out", () => {
    const reg = registration({ "org.matrix.msc3202": true });
    const body = transactionBody(reg, transactionParts(txn([deviceListRow("@u:x", "changed")])), keys);
    expect(body["org.matrix.msc3202.device_one_time_keys_count"]).toEqual(keys.oneTimeKeys);
    expect(body["org.matrix.msc3202.device_one_time_key_counts"]).toEqual(keys.oneTimeKeys);
    expect(body["org.matrix.msc3202.device_unused_fallback_key_types"]).toEqual(keys.unusedFallbackKeyTypes);
    expect(body["org.matrix.msc3202.device_lists"]).toEqual({ changed: ["@u:x"], left: [] });
    expect(body.ephemeral).toBeUndefined();
    const none = transactionBody(reg, transactionParts(txn([], [{ type: "m" }])), { oneTimeKeys: {}, unusedFallbackKeyTypes: {} });
    expect(Object.keys(none)).toEqual(["events"]);
  });

  it("device list changes of one user: the later one wins, in either direction", () => {
    const parts = transactionParts(
      txn([deviceListRow("@a:x", "changed"), deviceListRow("@b:x", "left"), deviceListRow("@a:x", "left"), deviceListRow("@b:x", "changed"), deviceListRow("@c:x", "changed")]),
    );
    expect(parts.deviceLists).toEqual({ changed: ["@b:x", "@c:x"], left: ["@a:x"] });
    // A waiting change is replaced in the queue too (same dedupe key per user).
    expect(deviceListRow("@a:x", "left").dedupeKey).toBe(deviceListRow("@a:x", "changed").dedupeKey);
  });
});
