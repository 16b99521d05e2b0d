// The server-default push rules (spec: Client-Server API, "Push Notifications" > "Predefined Rules",
// at spec commit d0ba2aae, i.e. v1.17). Data only; the logic lives in push-rules.ts.
//
// v1.17 removed the legacy mention rules (.m.rule.contains_display_name, .m.rule.roomnotif,
// .m.rule.contains_user_name; MSC4210). Servers may still offer extra server-default rules, and
// clients that do not send `m.mentions` depend on them, so they are kept by default at their
// v1.7-v1.16 positions (as Synapse does without its MSC4210 flag). Evaluation skips them whenever
// the event has an `m.mentions` property (spec, "User and room mentions"). `legacyMentionRules:
// false` gives exactly the v1.17 list.
import type { PushRule, PushRuleKind } from "./push-rules.js";

export interface PushRulesOptions {
  /** Serve the deprecated body-matching mention rules (default true). */
  legacyMentionRules?: boolean;
}

export const MASTER_RULE_ID = ".m.rule.master";
export const CONTAINS_DISPLAY_NAME_RULE_ID = ".m.rule.contains_display_name";
export const ROOMNOTIF_RULE_ID = ".m.rule.roomnotif";
export const CONTAINS_USER_NAME_RULE_ID = ".m.rule.contains_user_name";

/** The default rules that are disabled when the event carries `m.mentions`, by kind. */
export const LEGACY_MENTION_RULE_IDS: { readonly [K in PushRuleKind]?: readonly string[] } = {
  override: [CONTAINS_DISPLAY_NAME_RULE_ID, ROOMNOTIF_RULE_ID],
  content: [CONTAINS_USER_NAME_RULE_ID],
};

const soundDefault = { set_tweak: "sound", value: "default" };
const highlight = { set_tweak: "highlight" };

function rule(rule_id: string, enabled: boolean, conditions: PushRule["conditions"], actions: PushRule["actions"]): PushRule {
  return { rule_id, default: true, enabled, conditions, actions };
}

/**
 * The server-default rules of each kind, in priority order, for one user. `.m.rule.master` is the
 * first override rule; the caller places user-defined rules after it (it outranks everything).
 * Fresh objects on every call, so callers may change them.
 */
export function serverDefaultRules(
  userId: string,
  localpart: string,
  options: PushRulesOptions = {},
): { override: PushRule[]; content: PushRule[]; underride: PushRule[] } {
  const legacy = options.legacyMentionRules ?? true;
  const override: PushRule[] = [
    rule(MASTER_RULE_ID, false, [], []),
    rule(".m.rule.suppress_notices", true, [{ kind: "event_match", key: "content.msgtype", pattern: "m.notice" }], []),
    rule(
      ".m.rule.invite_for_me",
      true,
      [
        { kind: "event_match", key: "type", pattern: "m.room.member" },
        { kind: "event_match", key: "content.membership", pattern: "invite" },
        { kind: "event_match", key: "state_key", pattern: userId },
      ],
      ["notify", { ...soundDefault }],
    ),
    rule(".m.rule.member_event", true, [{ kind: "event_match", key: "type", pattern: "m.room.member" }], []),
    rule(
      ".m.rule.is_user_mention",
      true,
      [{ kind: "event_property_contains", key: "content.m\\.mentions.user_ids", value: userId }],
      ["notify", { ...soundDefault }, { ...highlight }],
    ),
    ...(legacy
      ? [rule(CONTAINS_DISPLAY_NAME_RULE_ID, true, [{ kind: "contains_display_name" }], ["notify", { ...soundDefault }, { ...highlight }])]
      : []),
    rule(
      ".m.rule.is_room_mention",
      true,
      [
        { kind: "event_property_is", key: "content.m\\.mentions.room", value: true },
        { kind: "sender_notification_permission", key: "room" },
      ],
      ["notify", { ...highlight }],
    ),
    ...(legacy
      ? [
          rule(
            ROOMNOTIF_RULE_ID,
            true,
            [
              { kind: "event_match", key: "content.body", pattern: "@room" },
              { kind: "sender_notification_permission", key: "room" },
            ],
            ["notify", { ...highlight }],
          ),
        ]
      : []),
    rule(
      ".m.rule.tombstone",
      true,
      [
        { kind: "event_match", key: "type", pattern: "m.room.tombstone" },
        { kind: "event_match", key: "state_key", pattern: "" },
      ],
      ["notify", { ...highlight }],
    ),
    rule(".m.rule.reaction", true, [{ kind: "event_match", key: "type", pattern: "m.reaction" }], []),
    rule(
      ".m.rule.room.server_acl",
      true,
      [
        { kind: "event_match", key: "type", pattern: "m.room.server_acl" },
        { kind: "event_match", key: "state_key", pattern: "" },
      ],
      [],
    ),
    rule(
      ".m.rule.suppress_edits",
      true,
      [{ kind: "event_property_is", key: "content.m\\.relates_to.rel_type", value: "m.replace" }],
      [],
    ),
  ];

  const content: PushRule[] = legacy
    ? [
        {
          rule_id: CONTAINS_USER_NAME_RULE_ID,
          default: true,
          enabled: true,
          pattern: localpart,
          actions: ["notify", { ...soundDefault }, { ...highlight }],
        },
      ]
    : [];

  const underride: PushRule[] = [
    rule(".m.rule.call", true, [{ kind: "event_match", key: "type", pattern: "m.call.invite" }], [
      "notify",
      { set_tweak: "sound", value: "ring" },
    ]),
    rule(
      ".m.rule.encrypted_room_one_to_one",
      true,
      [
        { kind: "room_member_count", is: "2" },
        { kind: "event_match", key: "type", pattern: "m.room.encrypted" },
      ],
      ["notify", { ...soundDefault }],
    ),
    rule(
      ".m.rule.room_one_to_one",
      true,
      [
        { kind: "room_member_count", is: "2" },
        { kind: "event_match", key: "type", pattern: "m.room.message" },
      ],
      ["notify", { ...soundDefault }],
    ),
    rule(".m.rule.message", true, [{ kind: "event_match", key: "type", pattern: "m.room.message" }], ["notify"]),
    rule(".m.rule.encrypted", true, [{ kind: "event_match", key: "type", pattern: "m.room.encrypted" }], ["notify"]),
  ];

  return { override, content, underride };
}

/** The IDs of the server-default rules of one kind (user-independent). */
export function serverDefaultRuleIds(kind: PushRuleKind, options: PushRulesOptions = {}): string[] {
  if (kind === "room" || kind === "sender") return [];
  return serverDefaultRules("@_:_", "_", options)[kind].map((r) => r.rule_id);
}
