// Applying filters (protocol/event-filter.ts) and sync tokens (durable-objects/user/sync-token.ts).
import { describe, expect, it } from "vitest";
import { decodeSyncToken, encodeSyncToken } from "../../durable-objects/user/sync-token.js";
import { eventPasses, roomEventPasses, roomPasses, selectEventFields, syncFilterView, typeMatches } from "../../protocol/event-filter.js";
import { parseFilter } from "../../protocol/filter.js";

describe("typeMatches", () => {
  it("matches literally and with * wildcards", () => {
    expect(typeMatches("m.room.message", "m.room.message")).toBe(true);
    expect(typeMatches("m.room.message", "m.room.messages")).toBe(false);
    expect(typeMatches("m.room.*", "m.room.message")).toBe(true);
    expect(typeMatches("m.room.*", "m.room")).toBe(false);
    expect(typeMatches("*", "anything")).toBe(true);
    expect(typeMatches("m.*.member", "m.room.member")).toBe(true);
    expect(typeMatches("m.*.member", "m.room.message")).toBe(false);
    expect(typeMatches("*.*", "a")).toBe(false);
    expect(typeMatches("a*a", "a")).toBe(false);
    expect(typeMatches("a*a", "aa")).toBe(true);
  });
});

describe("eventPasses / roomEventPasses", () => {
  const ev = { type: "m.room.message", sender: "@a:x", roomId: "!r:x", content: { body: "hi" } };
  it("includes by types and senders, not_* wins", () => {
    expect(eventPasses(undefined, ev)).toBe(true);
    expect(eventPasses({ types: ["m.room.*"] }, ev)).toBe(true);
    expect(eventPasses({ types: ["m.room.*"], not_types: ["m.room.message"] }, ev)).toBe(false);
    expect(eventPasses({ senders: ["@b:x"] }, ev)).toBe(false);
    expect(eventPasses({ senders: ["@a:x"], not_senders: ["@a:x"] }, ev)).toBe(false);
    expect(eventPasses({ types: [] }, ev)).toBe(false);
  });
  it("applies rooms and contains_url", () => {
    expect(roomEventPasses({ rooms: ["!r:x"] }, ev)).toBe(true);
    expect(roomEventPasses({ rooms: ["!r:x"], not_rooms: ["!r:x"] }, ev)).toBe(false);
    expect(roomEventPasses({ contains_url: true }, ev)).toBe(false);
    expect(roomEventPasses({ contains_url: false }, ev)).toBe(true);
    expect(roomEventPasses({ contains_url: true }, { ...ev, content: { url: "mxc://x/y" } })).toBe(true);
    expect(roomPasses({ not_rooms: ["!r:x"] }, "!r:x")).toBe(false);
    expect(roomPasses({}, "!r:x")).toBe(true);
  });
});

describe("selectEventFields", () => {
  const event = { type: "m.room.message", content: { body: "b", "m.key": { x: 1 }, other: 2 }, sender: "@a:x", unsigned: { age: 3 } };
  it("keeps the named dotted paths", () => {
    expect(selectEventFields(event, ["type", "content.body"])).toEqual({ type: "m.room.message", content: { body: "b" } });
    expect(selectEventFields(event, ["content.m\\.key.x", "unsigned"])).toEqual({ content: { "m.key": { x: 1 } }, unsigned: { age: 3 } });
    expect(selectEventFields(event, ["nope.deeper"])).toEqual({});
    expect(selectEventFields(event, undefined)).toBe(event);
  });
});

describe("syncFilterView", () => {
  it("resolves defaults", () => {
    const view = syncFilterView(parseFilter({}));
    expect(view.timelineLimit).toBe(10);
    expect(view.eventFormat).toBe("client");
    expect(view.lazyLoadMembers).toBe(false);
    const custom = syncFilterView(
      parseFilter({ event_format: "federation", room: { include_leave: true, timeline: { limit: 5000, unread_thread_notifications: true }, state: { lazy_load_members: true } } }),
      1000,
    );
    expect(custom.timelineLimit).toBe(1000);
    expect(custom.eventFormat).toBe("federation");
    expect(custom.includeLeave).toBe(true);
    expect(custom.lazyLoadMembers).toBe(true);
    expect(custom.unreadThreadNotifications).toBe(true);
  });
});

describe("sync tokens", () => {
  it("round-trips and refuses garbage", () => {
    expect(encodeSyncToken({ position: 12, toDevice: 12 })).toBe("s12");
    expect(encodeSyncToken({ position: 12, toDevice: 8 })).toBe("s12_8");
    expect(decodeSyncToken("s12")).toEqual({ position: 12, toDevice: 12 });
    expect(decodeSyncToken("s12_8")).toEqual({ position: 12, toDevice: 8 });
    expect(decodeSyncToken("s8_12")).toBeNull();
    expect(decodeSyncToken("12")).toBeNull();
    expect(decodeSyncToken("t12")).toBeNull();
    expect(decodeSyncToken("s")).toBeNull();
    expect(decodeSyncToken("s1_")).toBeNull();
  });
});
