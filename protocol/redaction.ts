// The redaction algorithm (spec: room versions 1-12, "Redactions"; Client-Server API, "Redactions").
// The redacted form is what signatures and reference hashes (event IDs) cover, so it must match
// other servers byte for byte. Behaviour per room version comes only from `rules.redaction`.
import { isJsonObject, type JsonObject, type JsonValue } from "./json.js";
import { MEMBER_SERVER_KEY } from "./accounts.js";
import { PARTICIPATION_EVENT_TYPE } from "./participation.js";
import type { Pdu } from "./pdu.js";
import type { RedactionRules, RoomVersionRules } from "./room-versions.js";

/** Top-level keys every room version keeps. */
const KEPT_TOP_LEVEL = [
  "event_id",
  "type",
  "room_id",
  "sender",
  "state_key",
  "content",
  "hashes",
  "signatures",
  "depth",
  "prev_events",
  "auth_events",
  "origin_server_ts",
] as const;

/** Top-level keys kept by room versions 1-10 only (dropped by v11, MSC2176). */
const KEPT_TOP_LEVEL_LEGACY = ["origin", "membership", "prev_state"] as const;

const POWER_LEVELS_KEYS = ["ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"];

/** Deep copy of a JSON value, so the redacted form shares nothing mutable with its input. */
function cloneJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(cloneJson);
  if (typeof value === "object" && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = cloneJson(v);
    return out;
  }
  return value;
}

/** How kept values get into the redacted form: `cloneJson`, or as they are (`RedactOptions.share`). */
type Copy = (value: unknown) => unknown;
const shareValue: Copy = (value) => value;

function pick(content: JsonObject, keys: readonly string[], copy: Copy): JsonObject {
  const out: JsonObject = {};
  for (const key of keys) {
    if (Object.hasOwn(content, key) && content[key] !== undefined) out[key] = copy(content[key]) as JsonValue;
  }
  return out;
}

/** The content that survives redaction, for an event of type `type`. */
export function redactContent(type: unknown, content: JsonObject, rules: RedactionRules, copy: Copy = cloneJson): JsonObject {
  switch (type) {
    case "m.room.member": {
      const keys = ["membership"];
      if (rules.keepsJoinAuthorisedViaUsersServer) keys.push("join_authorised_via_users_server");
      // MSC4348: the server an account's membership names is what the auth rules read.
      if (rules.keepsMemberServerKey) keys.push(MEMBER_SERVER_KEY);
      const out = pick(content, keys, copy);
      // v11 (MSC3821): only `signed` of `third_party_invite` is kept. An object without `signed`
      // stays as `{}`; a non-object value is dropped (what Synapse does; ruma keeps `{}` too).
      const invite = content["third_party_invite"];
      if (rules.keepsThirdPartyInviteSigned && isJsonObject(invite)) {
        out["third_party_invite"] = pick(invite, ["signed"], copy);
      }
      return out;
    }
    case "m.room.create":
      // v11 (MSC2176): the whole create content is protected; before, only `creator`.
      return rules.keepsAllCreateContent ? (copy(content) as JsonObject) : pick(content, ["creator"], copy);
    case "m.room.join_rules":
      return pick(content, rules.keepsJoinRulesAllow ? ["join_rule", "allow"] : ["join_rule"], copy);
    case "m.room.power_levels": {
      const keys = rules.keepsPowerLevelsInvite ? [...POWER_LEVELS_KEYS, "invite"] : [...POWER_LEVELS_KEYS];
      // MSC4345 (decision 9): `accept` is protected like the other levels.
      if (rules.keepsParticipation) keys.push("accept");
      return pick(content, keys, copy);
    }
    case PARTICIPATION_EVENT_TYPE:
      // MSC4345 (decision 9): what routing and the rules need; `reason` goes.
      return rules.keepsParticipation ? pick(content, ["participation", "unverified_domain", "request_authorised_via_server"], copy) : {};
    case "m.room.history_visibility":
      return pick(content, ["history_visibility"], copy);
    case "m.room.aliases":
      return rules.keepsAliasesContent ? pick(content, ["aliases"], copy) : {};
    case "m.room.redaction":
      return rules.keepsRedactsInContent ? pick(content, ["redacts"], copy) : {};
    default:
      return {};
  }
}

/**
 * Returns the redacted form of a PDU for the given room version: only the protocol-essential
 * top-level keys and content keys survive. `unsigned` is dropped (this is the federation form that
 * hashes and signatures cover, not the client form with `redacted_because`). The result always has
 * a `content` object, even if the input had none or a non-object one. The input is not modified
 * and the result shares no objects with it.
 */
export function redactPdu(pdu: Pdu, rules: RoomVersionRules, options: RedactOptions = {}): Pdu {
  const source = pdu as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  const copy = options.share ? shareValue : cloneJson;
  const keep = (key: string) => {
    if (Object.hasOwn(source, key) && source[key] !== undefined) out[key] = copy(source[key]);
  };
  for (const key of KEPT_TOP_LEVEL) if (key !== "content") keep(key);
  if (rules.redaction.keepsOriginMembershipPrevState) for (const key of KEPT_TOP_LEVEL_LEGACY) keep(key);
  const content = isJsonObject(source["content"]) ? source["content"] : {};
  out["content"] = redactContent(source["type"], content, rules.redaction, copy);
  return out as unknown as Pdu;
}

export interface RedactOptions {
  /** The result shares the kept values with `pdu` instead of copying them: for a caller that only reads it
   * (serialises it) and drops it. Checking a received event copied its signatures, prev and auth events
   * and hashes for one canonical JSON serialisation (about 3% of the CPU of checking events). */
  share?: boolean;
}
