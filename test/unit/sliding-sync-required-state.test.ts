// The required_state a sliding sync connection remembers after a request narrowed it (Synapse's
// `_required_state_changes`): protocol/sliding-sync.ts effectiveRequiredState.
import { describe, expect, it } from "vitest";
import { MAX_REMEMBERED_STATE_KEYS, effectiveRequiredState, parseRequiredState } from "../../protocol/sliding-sync.js";

const me = "@me:example.org";
const rs = (pairs: string[][]) => parseRequiredState(pairs, me);
const nothingChanged = () => false;

describe("effectiveRequiredState", () => {
  it("keeps a removed key the client still has, drops it once it changed", () => {
    const old = rs([["m.room.name", ""], ["m.room.topic", ""]]);
    const request = rs([["m.room.name", ""]]);
    expect(effectiveRequiredState(old, request, nothingChanged)).toEqual(old);
    expect(effectiveRequiredState(old, request, (t, k) => t === "m.room.topic" && k === "")).toEqual(request);
  });

  it("does not remember wildcards or $LAZY", () => {
    expect(effectiveRequiredState(rs([["*", "*"]]), rs([["m.room.name", ""]]), nothingChanged)).toEqual(rs([["m.room.name", ""]]));
    expect(effectiveRequiredState(rs([["m.room.member", "*"]]), rs([["m.room.member", me]]), nothingChanged)).toEqual(rs([["m.room.member", me]]));
    expect(effectiveRequiredState(rs([["m.room.member", "$LAZY"], ["m.room.name", ""]]), rs([["m.room.name", ""]]), nothingChanged)).toEqual(rs([["m.room.name", ""]]));
    // A type wildcard added or removed: the request as it is.
    expect(effectiveRequiredState(rs([["*", ""], ["m.room.name", ""]]), rs([["m.room.name", ""]]), nothingChanged)).toEqual(rs([["m.room.name", ""]]));
  });

  it("remembers at most MAX_REMEMBERED_STATE_KEYS keys of a type", () => {
    const many = Array.from({ length: MAX_REMEMBERED_STATE_KEYS + 5 }, (_, i) => ["m.room.member", `@u${i}:example.org`]);
    const out = effectiveRequiredState(rs(many), rs([["m.room.member", me]]), nothingChanged);
    expect(out.entries["m.room.member"]!.length).toBe(MAX_REMEMBERED_STATE_KEYS);
    expect(out.entries["m.room.member"]).toContain(me);
  });
});
