// The redaction algorithm per room version (spec: content/rooms/v1.md .. v12.md, "Redactions").
import { describe, expect, it } from "vitest";
import type { JsonObject } from "../../protocol/json.js";
import type { Pdu } from "../../protocol/pdu.js";
import { redactPdu } from "../../protocol/redaction.js";
import { ROOM_VERSIONS, roomVersionRules, type RoomVersionRules } from "../../protocol/room-versions.js";

const rules = (v: string): RoomVersionRules => roomVersionRules(v)!;
const ALL = [...ROOM_VERSIONS.keys()];
const range = (from: number, to: number) => ALL.filter((v) => Number(v) >= from && Number(v) <= to);

/** A PDU with every top-level key any version might keep, plus junk. */
function event(type: string, content: JsonObject, extra: Record<string, unknown> = {}): Pdu {
  return {
    event_id: "$ev:example.org",
    type,
    room_id: "!room:example.org",
    sender: "@alice:example.org",
    state_key: "",
    content,
    hashes: { sha256: "aGFzaA" },
    signatures: { "example.org": { "ed25519:1": "c2ln" } },
    depth: 5,
    prev_events: ["$prev"],
    auth_events: ["$auth"],
    origin_server_ts: 1234,
    origin: "example.org",
    membership: "join",
    prev_state: [],
    unsigned: { age: 10, redacted_because: {} },
    redacts: "$target",
    junk: { nested: true },
    age_ts: 99,
    ...extra,
  };
}

const redactedContent = (type: string, content: JsonObject, v: string) => redactPdu(event(type, content), rules(v)).content;

describe("top-level keys", () => {
  const essential = ["auth_events", "content", "depth", "event_id", "hashes", "origin_server_ts", "prev_events", "room_id", "sender", "signatures", "state_key", "type"];

  for (const v of range(1, 10)) {
    it(`v${v} keeps the essential keys plus origin, membership, prev_state`, () => {
      const out = redactPdu(event("m.room.message", { body: "hi" }), rules(v));
      expect(Object.keys(out).sort()).toEqual([...essential, "membership", "origin", "prev_state"].sort());
      expect(out.origin).toBe("example.org");
      expect(out["membership"]).toBe("join");
      expect(out["prev_state"]).toEqual([]);
    });
  }

  for (const v of range(11, 12)) {
    it(`v${v} keeps only the essential keys`, () => {
      const out = redactPdu(event("m.room.message", { body: "hi" }), rules(v));
      expect(Object.keys(out).sort()).toEqual(essential);
    });
  }

  it("drops unsigned, top-level redacts, age_ts and unknown keys in every version", () => {
    for (const v of ALL) {
      const out = redactPdu(event("m.room.redaction", {}), rules(v));
      for (const k of ["unsigned", "redacts", "junk", "age_ts"]) expect(out, `v${v} ${k}`).not.toHaveProperty(k);
    }
  });

  it("keeps the values of kept keys unchanged", () => {
    const input = event("m.room.message", {});
    const out = redactPdu(input, rules("1"));
    for (const k of ["event_id", "type", "room_id", "sender", "state_key", "hashes", "signatures", "depth", "prev_events", "auth_events", "origin_server_ts"]) {
      expect(out[k], k).toEqual(input[k]);
    }
  });

  it("does not add keys the event lacks, but always adds content", () => {
    const bare = { type: "m.room.message", sender: "@a:b" } as unknown as Pdu;
    for (const v of ["1", "11"]) expect(redactPdu(bare, rules(v))).toEqual({ type: "m.room.message", sender: "@a:b", content: {} });
    const badContent = { type: "m.room.member", content: "join" } as unknown as Pdu;
    expect(redactPdu(badContent, rules("11"))).toEqual({ type: "m.room.member", content: {} });
  });

  it("does not modify its input nor share objects with it", () => {
    const input = event("m.room.power_levels", { users: { "@a:b": 100 }, junk: 1 });
    const before = structuredClone(input);
    const out = redactPdu(input, rules("11"));
    expect(input).toEqual(before);
    (out.content["users"] as JsonObject)["@a:b"] = 0;
    out.signatures["example.org"]!["ed25519:1"] = "changed";
    expect(input).toEqual(before);
  });
});

describe("content", () => {
  it("empties the content of a message in every version", () => {
    for (const v of ALL) {
      expect(redactedContent("m.room.message", { body: "secret", msgtype: "m.text" }, v), `v${v}`).toEqual({});
    }
  });

  it("m.room.create: only creator in v1-v10, all content in v11+", () => {
    const content = { creator: "@alice:example.org", room_version: "9", "m.federate": false, predecessor: { room_id: "!old:x" } };
    for (const v of range(1, 10)) expect(redactedContent("m.room.create", content, v), `v${v}`).toEqual({ creator: "@alice:example.org" });
    for (const v of range(11, 12)) expect(redactedContent("m.room.create", content, v), `v${v}`).toEqual(content);
    const v12 = { room_version: "12", additional_creators: ["@bob:example.org"], type: "m.space" };
    expect(redactedContent("m.room.create", v12, "12")).toEqual(v12);
  });

  it("m.room.member: membership always; join_authorised_via_users_server from v9; third_party_invite.signed from v11", () => {
    const signed = { mxid: "@bob:example.org", token: "abc", signatures: { "id.example": { "ed25519:0": "s" } } };
    const content = {
      membership: "join",
      displayname: "Bob",
      avatar_url: "mxc://x/y",
      join_authorised_via_users_server: "@alice:example.org",
      third_party_invite: { display_name: "bob@example.com", signed },
    };
    expect(redactedContent("m.room.member", content, "1")).toEqual({ membership: "join" });
    expect(redactedContent("m.room.member", content, "8")).toEqual({ membership: "join" });
    expect(redactedContent("m.room.member", content, "9")).toEqual({ membership: "join", join_authorised_via_users_server: "@alice:example.org" });
    expect(redactedContent("m.room.member", content, "10")).toEqual({ membership: "join", join_authorised_via_users_server: "@alice:example.org" });
    for (const v of ["11", "12"]) {
      expect(redactedContent("m.room.member", content, v)).toEqual({
        membership: "join",
        join_authorised_via_users_server: "@alice:example.org",
        third_party_invite: { signed },
      });
    }
  });

  it("m.room.member v11+: third_party_invite without signed stays {}, a non-object one is dropped", () => {
    expect(redactedContent("m.room.member", { membership: "invite", third_party_invite: { display_name: "x" } }, "11")).toEqual({
      membership: "invite",
      third_party_invite: {},
    });
    expect(redactedContent("m.room.member", { membership: "invite", third_party_invite: "x" }, "11")).toEqual({ membership: "invite" });
  });

  it("m.room.join_rules: join_rule always, allow from v8", () => {
    const content = { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: "!space:x" }], other: 1 };
    for (const v of range(1, 7)) expect(redactedContent("m.room.join_rules", content, v), `v${v}`).toEqual({ join_rule: "restricted" });
    for (const v of range(8, 12)) {
      expect(redactedContent("m.room.join_rules", content, v), `v${v}`).toEqual({ join_rule: "restricted", allow: content.allow });
    }
  });

  it("m.room.power_levels: the auth keys always, invite from v11", () => {
    const content = {
      ban: 50,
      events: { "m.room.name": 50 },
      events_default: 0,
      kick: 50,
      redact: 50,
      state_default: 50,
      users: { "@alice:example.org": 100 },
      users_default: 0,
      invite: 0,
      notifications: { room: 50 },
    };
    const { invite: _i, notifications: _n, ...withoutInvite } = content;
    for (const v of range(1, 10)) expect(redactedContent("m.room.power_levels", content, v), `v${v}`).toEqual(withoutInvite);
    const { notifications: _n2, ...withInvite } = content;
    for (const v of range(11, 12)) expect(redactedContent("m.room.power_levels", content, v), `v${v}`).toEqual(withInvite);
  });

  it("m.room.aliases: aliases kept in v1-v5 only", () => {
    const content = { aliases: ["#a:example.org"], other: 1 };
    for (const v of range(1, 5)) expect(redactedContent("m.room.aliases", content, v), `v${v}`).toEqual({ aliases: ["#a:example.org"] });
    for (const v of range(6, 12)) expect(redactedContent("m.room.aliases", content, v), `v${v}`).toEqual({});
  });

  it("m.room.history_visibility: history_visibility in every version", () => {
    for (const v of ALL) {
      expect(redactedContent("m.room.history_visibility", { history_visibility: "shared", x: 1 }, v)).toEqual({ history_visibility: "shared" });
    }
  });

  it("m.room.redaction: content redacts kept from v11 only", () => {
    const content = { redacts: "$target", reason: "spam" };
    for (const v of range(1, 10)) expect(redactedContent("m.room.redaction", content, v), `v${v}`).toEqual({});
    for (const v of range(11, 12)) expect(redactedContent("m.room.redaction", content, v), `v${v}`).toEqual({ redacts: "$target" });
  });

  it("keeps protected keys only for their own event type", () => {
    const content = { membership: "join", creator: "@a:b", join_rule: "public", history_visibility: "shared", aliases: [], redacts: "$x" };
    for (const v of ["1", "9", "11", "12"]) expect(redactedContent("m.room.topic", content, v)).toEqual({});
  });

  it("is idempotent", () => {
    for (const v of ["1", "9", "11", "12"]) {
      const once = redactPdu(event("m.room.member", { membership: "join", displayname: "x", third_party_invite: { signed: { a: 1 } } }), rules(v));
      expect(redactPdu(once, rules(v))).toEqual(once);
    }
  });
});

describe("shared values (RedactOptions, for the signed bytes of a received event)", () => {
  const samples: [string, JsonObject][] = [
    ["m.room.message", { msgtype: "m.text", body: "hello" }],
    ["m.room.member", { membership: "invite", displayname: "Bob", third_party_invite: { signed: { mxid: "@bob:example.org", token: "t" }, display_name: "b" } }],
    ["m.room.create", { creator: "@alice:example.org", room_version: "10", "m.federate": true, extra: { deep: [1, 2] } }],
    ["m.room.power_levels", { ban: 50, users: { "@alice:example.org": 100 }, invite: 0, notifications: { room: 50 } }],
    ["m.room.join_rules", { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: "!r:example.org" }] }],
  ];

  it("gives the same redacted form, without copying", () => {
    for (const v of ALL) {
      for (const [type, content] of samples) {
        const pdu = event(type, content);
        const copied = redactPdu(pdu, rules(v)) as unknown as Record<string, unknown>;
        const shared = redactPdu(pdu, rules(v), { share: true }) as unknown as Record<string, unknown>;
        expect(shared).toEqual(copied);
        // Shared: the very arrays and objects of the event; copied: fresh ones.
        expect(shared.prev_events).toBe(pdu.prev_events);
        expect(shared.hashes).toBe(pdu.hashes);
        expect(copied.prev_events).not.toBe(pdu.prev_events);
        expect(copied.hashes).not.toBe(pdu.hashes);
      }
    }
  });

  it("shares content values too, and copies them by default", () => {
    const allow = [{ type: "m.room_membership", room_id: "!r:example.org" }];
    const pdu = event("m.room.join_rules", { join_rule: "restricted", allow });
    expect((redactPdu(pdu, rules("10"), { share: true }).content as JsonObject).allow).toBe(allow);
    const copied = (redactPdu(pdu, rules("10")).content as JsonObject).allow;
    expect(copied).toEqual(allow);
    expect(copied).not.toBe(allow);
  });
});
