// The re-send rule of presence over federation (durable-objects/user/presence-federation.ts): Synapse's
// FEDERATION_PING_INTERVAL (25 minutes, strictly more) and its filter for presence sent on a join.
import { describe, expect, it } from "vitest";
import { FEDERATION_PING_INTERVAL_MS, JOIN_PRESENCE_MAX_OFFLINE_AGE_MS, presencePingDue, presenceWorthSendingOnJoin } from "../../durable-objects/user/presence-federation.js";

describe("presence re-send", () => {
  it("is due when never sent or more than 25 minutes ago, not at exactly 25 minutes", () => {
    const now = 10_000_000_000;
    expect(FEDERATION_PING_INTERVAL_MS).toBe(25 * 60_000);
    expect(presencePingDue(null, now)).toBe(true);
    expect(presencePingDue(now - FEDERATION_PING_INTERVAL_MS + 1, now)).toBe(false);
    expect(presencePingDue(now - FEDERATION_PING_INTERVAL_MS, now)).toBe(false);
    expect(presencePingDue(now - FEDERATION_PING_INTERVAL_MS - 1, now)).toBe(true);
  });

  it("sends an offline presence on a join only if recent (under a week) or with a status message", () => {
    const now = 10_000_000_000;
    expect(presenceWorthSendingOnJoin({ presence: "online", lastActiveTs: 0 }, now)).toBe(true);
    expect(presenceWorthSendingOnJoin({ presence: "offline", lastActiveTs: now - JOIN_PRESENCE_MAX_OFFLINE_AGE_MS + 1 }, now)).toBe(true);
    expect(presenceWorthSendingOnJoin({ presence: "offline", lastActiveTs: now - JOIN_PRESENCE_MAX_OFFLINE_AGE_MS }, now)).toBe(false);
    expect(presenceWorthSendingOnJoin({ presence: "offline", lastActiveTs: 0, statusMsg: "away" }, now)).toBe(true);
    expect(presenceWorthSendingOnJoin({ presence: "offline", lastActiveTs: 0, statusMsg: null }, now)).toBe(false);
  });
});
