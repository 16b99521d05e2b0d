import { describe, expect, it } from "vitest";
import { authOrder } from "../../protocol/auth-chain.js";
import type { Pdu } from "../../protocol/pdu.js";

function ev(depth: number, auth: string[]): Pdu {
  return {
    type: "m.room.member",
    sender: "@a:x",
    content: {},
    origin_server_ts: 0,
    depth,
    prev_events: [],
    auth_events: auth,
    hashes: { sha256: "" },
    signatures: {},
  };
}

describe("authOrder", () => {
  it("puts every event after its auth events, whatever the input order", () => {
    const events = new Map<string, Pdu>([
      ["$member", ev(4, ["$create", "$pl", "$jr"])],
      ["$jr", ev(3, ["$create", "$pl"])],
      ["$pl", ev(2, ["$create"])],
      ["$create", ev(1, [])],
    ]);
    const order = authOrder(events);
    expect(order).toEqual(["$create", "$pl", "$jr", "$member"]);
    const reversed = authOrder(new Map([...events].reverse()));
    expect(reversed).toEqual(order);
  });

  it("the auth edge wins over depth: a deeper auth event still comes first", () => {
    // $b claims depth 1 but is authorised by $a at depth 5.
    const events = new Map<string, Pdu>([
      ["$a", ev(5, [])],
      ["$b", ev(1, ["$a"])],
    ]);
    expect(authOrder(events)).toEqual(["$a", "$b"]);
  });

  it("among ready events, lower depth first", () => {
    // $z sorts after $y by ID but is shallower: depth alone decides.
    const events = new Map<string, Pdu>([
      ["$y", ev(3, [])],
      ["$z", ev(2, [])],
    ]);
    expect(authOrder(events)).toEqual(["$z", "$y"]);
  });

  it("at equal depth, the event ID decides", () => {
    const events = new Map<string, Pdu>([
      ["$q", ev(2, [])],
      ["$p", ev(2, [])],
    ]);
    expect(authOrder(events)).toEqual(["$p", "$q"]);
  });

  it("auth events outside the batch count as known; a cycle is placed last instead of being lost", () => {
    const events = new Map<string, Pdu>([
      ["$c1", ev(1, ["$c2"])],
      ["$c2", ev(1, ["$c1"])],
      ["$free", ev(9, ["$elsewhere"])],
    ]);
    expect(authOrder(events)).toEqual(["$free", "$c1", "$c2"]);
  });

  it("orders a batch of 20,000 events sharing one auth event", () => {
    const events = new Map<string, Pdu>([["$create", ev(1, [])]]);
    for (let i = 0; i < 20_000; i++) events.set(`$m${i}`, ev(2 + (i % 7), ["$create"]));
    const order = authOrder(events);
    expect(order.length).toBe(20_001);
    expect(order[0]).toBe("$create");
  });
});
