// Filter validation (spec: Client-Server API, "Filtering"; definitions/sync_filter.yaml).
import { describe, expect, it } from "vitest";
import { MatrixError } from "../../protocol/errors.js";
import { isFilterId, parseFilter } from "../../protocol/filter.js";
import type { JsonValue } from "../../protocol/json.js";

/** The request example of POST /user/{userId}/filter in filter.yaml. */
const specExample = {
  room: {
    state: { types: ["m.room.*"], not_rooms: ["!726s6s6q:example.com"] },
    timeline: { limit: 10, types: ["m.room.message"], not_rooms: ["!726s6s6q:example.com"], not_senders: ["@spam:example.com"] },
    ephemeral: { types: ["m.receipt", "m.typing"], not_rooms: ["!726s6s6q:example.com"], not_senders: ["@spam:example.com"] },
  },
  presence: { types: ["m.presence"], not_senders: ["@alice:example.com"] },
  event_format: "client",
  event_fields: ["type", "content", "sender"],
};

function badJsonMessage(value: JsonValue): string {
  try {
    parseFilter(value);
  } catch (e) {
    expect(e).toBeInstanceOf(MatrixError);
    expect((e as MatrixError).errcode).toBe("M_BAD_JSON");
    expect((e as MatrixError).status).toBe(400);
    return (e as MatrixError).message;
  }
  throw new Error(`filter was accepted: ${JSON.stringify(value)}`);
}

describe("parseFilter", () => {
  it("accepts the spec example and returns it typed", () => {
    const f = parseFilter(specExample);
    expect(f.room?.timeline?.limit).toBe(10);
    expect(f.room?.state?.types).toEqual(["m.room.*"]);
    expect(f.presence?.not_senders).toEqual(["@alice:example.com"]);
    expect(f.event_format).toBe("client");
    expect(f.event_fields).toEqual(["type", "content", "sender"]);
  });

  it("accepts the empty filter, v12 room IDs, flags and unknown keys", () => {
    expect(parseFilter({})).toEqual({});
    const f = parseFilter({
      room: {
        rooms: ["!abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"],
        include_leave: true,
        state: { lazy_load_members: true, include_redundant_members: false },
        timeline: { limit: 0, contains_url: false, unread_thread_notifications: true },
        account_data: { not_types: ["m.tag"] },
      },
      account_data: { types: ["m.direct"] },
      "org.example.experimental": 1.5,
    });
    expect(f.room?.include_leave).toBe(true);
    expect(f.room?.state?.lazy_load_members).toBe(true);
    expect(f.room?.timeline?.limit).toBe(0);
    expect(f.account_data?.types).toEqual(["m.direct"]);
  });

  it("rejects a filter that is not an object", () => {
    expect(badJsonMessage([])).toMatch(/object/);
    expect(badJsonMessage("room")).toMatch(/object/);
  });

  it("rejects wrongly typed fields, naming them", () => {
    expect(badJsonMessage({ room: [] })).toMatch(/^room must be an object/);
    expect(badJsonMessage({ room: { timeline: { limit: "10" } } })).toMatch(/room\.timeline\.limit/);
    expect(badJsonMessage({ room: { timeline: { limit: -1 } } })).toMatch(/limit/);
    expect(badJsonMessage({ room: { timeline: { limit: 2.5 } } })).toMatch(/limit/);
    expect(badJsonMessage({ room: { state: { types: "m.room.member" } } })).toMatch(/room\.state\.types/);
    expect(badJsonMessage({ room: { state: { types: [1] } } })).toMatch(/room\.state\.types/);
    expect(badJsonMessage({ presence: { senders: ["alice"] } })).toMatch(/presence\.senders/);
    expect(badJsonMessage({ room: { rooms: ["#alias:example.com"] } })).toMatch(/room\.rooms/);
    expect(badJsonMessage({ room: { ephemeral: { not_rooms: [""] } } })).toMatch(/not_rooms/);
    expect(badJsonMessage({ room: { include_leave: "yes" } })).toMatch(/include_leave/);
    expect(badJsonMessage({ room: { state: { lazy_load_members: 1 } } })).toMatch(/lazy_load_members/);
    expect(badJsonMessage({ event_format: "raw" })).toMatch(/event_format/);
    expect(badJsonMessage({ event_fields: "content.body" })).toMatch(/event_fields/);
    expect(badJsonMessage({ account_data: { types: null } })).toMatch(/account_data\.types/);
  });
});

describe("isFilterId", () => {
  it("accepts the decimal IDs this server hands out and nothing else", () => {
    expect(isFilterId("0")).toBe(true);
    expect(isFilterId("42")).toBe(true);
    expect(isFilterId("")).toBe(false);
    expect(isFilterId("{}")).toBe(false);
    expect(isFilterId("12a")).toBe(false);
    expect(isFilterId("1".repeat(16))).toBe(false);
  });
});
