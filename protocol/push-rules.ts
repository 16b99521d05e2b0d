// Push rules (spec: Client-Server API, "Push Notifications" > "Push Rules", "Push Rules: API";
// appendices "Glob-style matching" and "Dot-separated property paths").
//
// Three parts:
// - the ruleset a user sees (GET /pushrules/): server-default rules merged with the user's stored
//   customisations (`StoredPushRules`, a small JSON value the User DO keeps);
// - the changes the push rule API makes to those customisations (PUT/DELETE, enabled, actions),
//   as pure functions that return a new value and throw `MatrixError`;
// - evaluation of a ruleset against an event for one user.
//
// Error choices (the OpenAPI names only some): unknown rule -> 404 M_NOT_FOUND (spec); before/after
// naming no user-defined rule of that kind -> 400 M_UNKNOWN (the spec's example, and Synapse);
// rule ID empty, starting with "." or containing "/" or "\" -> 400 M_INVALID_PARAM (the spec says
// "MUST be rejected" without a code; Synapse uses M_UNKNOWN); before/after naming a server-default
// rule or the rule itself -> 400 M_INVALID_PARAM; deleting a server-default rule -> 400
// M_INVALID_PARAM (Synapse answers 404, but the rule exists); a body of the wrong shape (no
// `actions`, an unknown action, a content rule without a string `pattern`, a condition without a
// string `kind`) -> 400 M_BAD_JSON.
import { MatrixError, badJson, invalidParam, notFound } from "./errors.js";
import { isJsonObject, type JsonObject, type JsonValue } from "./json.js";
import {
  LEGACY_MENTION_RULE_IDS,
  MASTER_RULE_ID,
  serverDefaultRuleIds,
  serverDefaultRules,
  type PushRulesOptions,
} from "./push-rules-defaults.js";

export type { PushRulesOptions } from "./push-rules-defaults.js";

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/** The rule kinds, in the order they are checked (spec: "Push Rules"). */
export const PUSH_RULE_KINDS = ["override", "content", "room", "sender", "underride"] as const;
export type PushRuleKind = (typeof PUSH_RULE_KINDS)[number];

export function isPushRuleKind(kind: string): kind is PushRuleKind {
  return (PUSH_RULE_KINDS as readonly string[]).includes(kind);
}

/** `{"set_tweak": "sound", "value": "default"}`; the value of `highlight` may be omitted (= true). */
export type SetTweakAction = { set_tweak: string; value?: JsonValue };
/** The actions of the current spec, and the historical `dont_notify` and `coalesce` (spec, "Historical
 * Actions"): kept and returned as the client set them, as Synapse does (Complement checks that a rule set
 * to `["dont_notify"]` reads back so), and ignored when rules are evaluated. */
export type PushAction = "notify" | "dont_notify" | "coalesce" | SetTweakAction;

/**
 * A condition as stored and returned: its `kind` plus parameters. Kept open (not a closed union)
 * because user rules may carry kinds this server does not know; those never match.
 */
export type PushCondition = { kind: string; [param: string]: JsonValue };

/** One rule as GET /pushrules/ returns it (spec: PushRule). */
export type PushRule = {
  rule_id: string;
  default: boolean;
  enabled: boolean;
  actions: PushAction[];
  /** override and underride rules only. */
  conditions?: PushCondition[];
  /** content rules only. */
  pattern?: string;
};

/** The global ruleset (spec: push_ruleset.yaml). */
export type Ruleset = { [K in PushRuleKind]: PushRule[] };

/** A user-defined rule as stored. Its position is its index in its kind's list. */
export type StoredUserRule = {
  rule_id: string;
  enabled: boolean;
  actions: PushAction[];
  conditions?: PushCondition[];
  pattern?: string;
};

/** A user's change to a server-default rule. */
export type DefaultRuleChange = { enabled?: boolean; actions?: PushAction[] };

/**
 * A user's customisations: the only push rule data that needs storing (the defaults are
 * rebuilt from the user ID). `{}` is a valid value (no customisations).
 */
export type StoredPushRules = {
  /** User-defined rules of each kind, most important first. */
  user?: { [K in PushRuleKind]?: StoredUserRule[] };
  /** Changes to server-default rules, by kind, then by rule ID. */
  defaults?: { [K in PushRuleKind]?: { [ruleId: string]: DefaultRuleChange } };
};

export function emptyStoredPushRules(): StoredPushRules {
  return { user: {}, defaults: {} };
}

// ---------------------------------------------------------------------------------------------
// The ruleset as the user sees it
// ---------------------------------------------------------------------------------------------

/** The server-default global ruleset of a user, as GET /pushrules/ returns it before any change. */
export function defaultPushRules(userId: string, localpart: string, options: PushRulesOptions = {}): Ruleset {
  return effectiveRuleset({}, userId, localpart, options);
}

function withChange(rule: PushRule, change: DefaultRuleChange | undefined): PushRule {
  if (!change) return rule;
  return {
    ...rule,
    ...(change.enabled !== undefined ? { enabled: change.enabled } : {}),
    ...(change.actions !== undefined ? { actions: change.actions.map(copyAction) } : {}),
  };
}

function userRuleToPushRule(kind: PushRuleKind, r: StoredUserRule): PushRule {
  const out: PushRule = { rule_id: r.rule_id, default: false, enabled: r.enabled, actions: r.actions.map(copyAction) };
  if (kind === "override" || kind === "underride") out.conditions = (r.conditions ?? []).map((c) => ({ ...c }));
  if (kind === "content" && r.pattern !== undefined) out.pattern = r.pattern;
  return out;
}

/**
 * The user's global ruleset: `.m.rule.master` first, then the user's rules of each kind, then the
 * other server-default rules of that kind (spec, "Predefined Rules": server-default rules rank
 * below user-defined rules, except the master rule, which ranks above everything).
 */
export function effectiveRuleset(
  stored: StoredPushRules,
  userId: string,
  localpart: string,
  options: PushRulesOptions = {},
): Ruleset {
  const defaults = serverDefaultRules(userId, localpart, options);
  const changed = (kind: PushRuleKind, rules: PushRule[]) =>
    rules.map((r) => withChange(r, stored.defaults?.[kind]?.[r.rule_id]));
  const user = (kind: PushRuleKind) => (stored.user?.[kind] ?? []).map((r) => userRuleToPushRule(kind, r));

  const defaultOverride = changed("override", defaults.override);
  const master = defaultOverride.filter((r) => r.rule_id === MASTER_RULE_ID);
  const otherOverride = defaultOverride.filter((r) => r.rule_id !== MASTER_RULE_ID);
  return {
    override: [...master, ...user("override"), ...otherOverride],
    content: [...user("content"), ...changed("content", defaults.content)],
    room: user("room"),
    sender: user("sender"),
    underride: [...user("underride"), ...changed("underride", defaults.underride)],
  };
}

/** GET /pushrules/global/{kind}/{ruleId}. Throws 404 M_NOT_FOUND. */
export function getRule(
  stored: StoredPushRules,
  kind: PushRuleKind,
  ruleId: string,
  userId: string,
  localpart: string,
  options: PushRulesOptions = {},
): PushRule {
  const rule = effectiveRuleset(stored, userId, localpart, options)[kind].find((r) => r.rule_id === ruleId);
  if (!rule) throw ruleNotFound();
  return rule;
}

// ---------------------------------------------------------------------------------------------
// Changes (PUT / DELETE /pushrules/global/{kind}/{ruleId}, .../enabled, .../actions)
// ---------------------------------------------------------------------------------------------

const ruleNotFound = () => notFound("The push rule was not found.");

function isServerDefault(kind: PushRuleKind, ruleId: string, options: PushRulesOptions): boolean {
  return serverDefaultRuleIds(kind, options).includes(ruleId);
}

function copyAction(a: PushAction): PushAction {
  return typeof a === "string" ? a : { ...a };
}

/**
 * Validates an `actions` array from a request body. `dont_notify` and `coalesce` are kept (spec,
 * "Historical Actions": they have no effect; Synapse stores and returns them). Other strings, and
 * objects without a string `set_tweak`, are rejected as Synapse does. Throws 400 M_BAD_JSON.
 */
export function parseActions(value: unknown): PushAction[] {
  if (!Array.isArray(value)) throw badJson("'actions' must be an array");
  const out: PushAction[] = [];
  for (const a of value as unknown[]) {
    if (a === "notify" || a === "dont_notify" || a === "coalesce") out.push(a);
    else if (isJsonObject(a) && typeof a.set_tweak === "string") {
      const tweak: SetTweakAction = { set_tweak: a.set_tweak };
      if (a.value !== undefined) tweak.value = a.value;
      out.push(tweak);
    } else throw badJson(`Unrecognised push rule action: ${JSON.stringify(a)}`);
  }
  return out;
}

function parseConditions(value: unknown): PushCondition[] {
  if (value === undefined) return []; // spec: override/underride rules MAY have conditions
  if (!Array.isArray(value)) throw badJson("'conditions' must be an array");
  return (value as unknown[]).map((c) => {
    if (!isJsonObject(c) || typeof c.kind !== "string") throw badJson("Each condition must be an object with a string 'kind'");
    return { ...c, kind: c.kind };
  });
}

/** Spec (PUT ruleId): IDs starting with "." are reserved for server-default rules; no slashes. */
function checkUserRuleId(ruleId: string): void {
  if (ruleId === "") throw invalidParam("The rule ID must not be empty");
  if (ruleId.startsWith(".")) throw invalidParam("Rule IDs starting with '.' are reserved for server-default rules");
  if (ruleId.includes("/") || ruleId.includes("\\")) throw invalidParam("Rule IDs must not contain slashes or backslashes");
}

/**
 * PUT /pushrules/global/{kind}/{ruleId}?before=&after=: creates or replaces a user-defined rule.
 *
 * Placement (spec): with `before`, the rule becomes the next more important rule than `before`
 * (`before` wins when both are given); with `after`, the next less important than `after`; both
 * must name a user-defined rule of the same kind. Without either, a new rule becomes the most
 * important user-defined rule of its kind and an updated rule keeps its place (the spec leaves
 * this open). New rules are enabled (spec: "MUST be enabled by default"); an update keeps the
 * rule's enabled flag, as Synapse does. An empty `before`/`after` counts as absent.
 *
 * The body needs `actions`; content rules need a string `pattern`; override/underride rules take
 * `conditions` (absent = always match). Room and sender rules match by their rule ID, so only
 * `actions` is read for them.
 */
export function putRule(
  stored: StoredPushRules,
  kind: PushRuleKind,
  ruleId: string,
  body: JsonObject,
  before?: string,
  after?: string,
): StoredPushRules {
  checkUserRuleId(ruleId);
  if (!("actions" in body)) throw badJson("Missing 'actions'");
  const actions = parseActions(body.actions);
  const rule: StoredUserRule = { rule_id: ruleId, enabled: true, actions };
  if (kind === "override" || kind === "underride") rule.conditions = parseConditions(body.conditions);
  if (kind === "content") {
    if (typeof body.pattern !== "string") throw badJson("Content rules need a string 'pattern'");
    rule.pattern = body.pattern;
  }

  const list = stored.user?.[kind] ?? [];
  const existingIndex = list.findIndex((r) => r.rule_id === ruleId);
  if (existingIndex >= 0) rule.enabled = list[existingIndex].enabled;
  const without = list.filter((r) => r.rule_id !== ruleId);

  const anchor = before ? { id: before, offset: 0 } : after ? { id: after, offset: 1 } : undefined;
  let next: StoredUserRule[];
  if (anchor) {
    if (anchor.id === ruleId) throw invalidParam("A rule cannot be placed relative to itself");
    if (anchor.id.startsWith(".")) throw invalidParam("Rules cannot be placed relative to a server-default rule");
    const at = without.findIndex((r) => r.rule_id === anchor.id);
    if (at < 0) throw new MatrixError(400, "M_UNKNOWN", `before/after rule not found: ${anchor.id}`);
    next = [...without.slice(0, at + anchor.offset), rule, ...without.slice(at + anchor.offset)];
  } else if (existingIndex >= 0) {
    next = list.map((r) => (r.rule_id === ruleId ? rule : r));
  } else {
    next = [rule, ...list];
  }
  return { ...stored, user: { ...stored.user, [kind]: next } };
}

/** DELETE /pushrules/global/{kind}/{ruleId}. Server-default rules cannot be deleted (400). */
export function deleteRule(
  stored: StoredPushRules,
  kind: PushRuleKind,
  ruleId: string,
  options: PushRulesOptions = {},
): StoredPushRules {
  const list = stored.user?.[kind] ?? [];
  if (!list.some((r) => r.rule_id === ruleId)) {
    if (isServerDefault(kind, ruleId, options)) throw invalidParam("Server-default push rules cannot be deleted");
    throw ruleNotFound();
  }
  return { ...stored, user: { ...stored.user, [kind]: list.filter((r) => r.rule_id !== ruleId) } };
}

function changeRule(
  stored: StoredPushRules,
  kind: PushRuleKind,
  ruleId: string,
  change: DefaultRuleChange,
  options: PushRulesOptions,
): StoredPushRules {
  const list = stored.user?.[kind] ?? [];
  if (list.some((r) => r.rule_id === ruleId)) {
    const next = list.map((r) => (r.rule_id === ruleId ? { ...r, ...change } : r));
    return { ...stored, user: { ...stored.user, [kind]: next } };
  }
  if (!isServerDefault(kind, ruleId, options)) throw ruleNotFound();
  const kindChanges = stored.defaults?.[kind] ?? {};
  const merged: DefaultRuleChange = { ...kindChanges[ruleId], ...change };
  return { ...stored, defaults: { ...stored.defaults, [kind]: { ...kindChanges, [ruleId]: merged } } };
}

/** PUT /pushrules/global/{kind}/{ruleId}/enabled. Throws 404 M_NOT_FOUND. */
export function setEnabled(
  stored: StoredPushRules,
  kind: PushRuleKind,
  ruleId: string,
  enabled: boolean,
  options: PushRulesOptions = {},
): StoredPushRules {
  return changeRule(stored, kind, ruleId, { enabled }, options);
}

/**
 * PUT /pushrules/global/{kind}/{ruleId}/actions; `actions` is the body's raw `actions` value.
 * Also changes server-default rules (spec: "This can be used to change the actions of builtin
 * rules"). Throws 404 M_NOT_FOUND, 400 M_BAD_JSON.
 */
export function setActions(
  stored: StoredPushRules,
  kind: PushRuleKind,
  ruleId: string,
  actions: unknown,
  options: PushRulesOptions = {},
): StoredPushRules {
  // Existence first: an unknown rule is a 404 whatever the body says.
  const known = (stored.user?.[kind] ?? []).some((r) => r.rule_id === ruleId) || isServerDefault(kind, ruleId, options);
  if (!known) throw ruleNotFound();
  return changeRule(stored, kind, ruleId, { actions: parseActions(actions) }, options);
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/** What the evaluator needs to know besides the event and the rules. */
export interface PushContext {
  /** The user whose rules these are. */
  userId: string;
  /** The user's display name in the room (for `contains_display_name`); empty or absent never matches. */
  displayName?: string | null;
  /** The number of joined members of the room (`room_member_count`). */
  roomMemberCount: number;
  /**
   * The sender's power level in the room (`sender_notification_permission`). Absent when it is
   * not known (e.g. an outlier): such conditions then do not match.
   */
  senderPowerLevel?: number;
  /** The `notifications` object of the room's m.room.power_levels content; missing keys default to 50. */
  notificationPowerLevels?: { [key: string]: number };
  /** The room ID, used for room rules when the event has no `room_id` (client format from /sync). */
  roomId?: string;
}

export interface PushEvaluation {
  /** Whether the event generates a notification (the `notify` action). */
  notify: boolean;
  /** The `highlight` tweak: true if set without a value or to true; false if absent. */
  highlight: boolean;
  /** The `sound` tweak, if set to a string. */
  sound?: string;
  /** All tweaks, last one wins, `highlight` resolved to a boolean when present. */
  tweaks: { [tweak: string]: JsonValue };
  /** The actions of the matching rule (empty if none matched). */
  actions: PushAction[];
  /** The matching rule, if any. */
  rule?: { kind: PushRuleKind; rule_id: string };
}

const NOTHING: PushEvaluation = { notify: false, highlight: false, tweaks: {}, actions: [] };

/** Interprets a list of actions (spec, "Actions"). */
export function interpretActions(actions: readonly PushAction[]): Omit<PushEvaluation, "rule"> {
  let notify = false;
  const tweaks: { [tweak: string]: JsonValue } = {};
  const kept: PushAction[] = [];
  for (const a of actions) {
    if (a === "notify") {
      notify = true;
      kept.push(a);
    } else if (typeof a === "object" && a !== null && typeof a.set_tweak === "string") {
      // "If a highlight tweak is given with no value, its value is defined to be true."
      tweaks[a.set_tweak] = a.set_tweak === "highlight" ? a.value === undefined || a.value === true : (a.value ?? null);
      kept.push(copyAction(a));
    }
    // Anything else, including the historical dont_notify/coalesce, is ignored.
  }
  const out: Omit<PushEvaluation, "rule"> = { notify, highlight: tweaks.highlight === true, tweaks, actions: kept };
  if (typeof tweaks.sound === "string") out.sound = tweaks.sound;
  return out;
}

/**
 * Runs the ruleset against an event (client-format JSON: type, content, sender, state_key,
 * room_id...) for `context.userId`: the first enabled rule whose conditions all hold decides
 * (spec, "Push Rules"). The user's own events never notify ("Homeservers MUST NOT notify the Push
 * Gateway for events that the user has sent themselves"). If the event content has `m.mentions`,
 * the legacy mention rules are skipped (spec, "User and room mentions").
 */
export function evaluatePushRules(ruleset: Ruleset, event: JsonObject, context: PushContext): PushEvaluation {
  if (event.sender === context.userId) return { ...NOTHING, tweaks: {}, actions: [] };
  const evaluator = new ConditionEvaluator(event, context);
  const hasMentions = isJsonObject(event.content) && Object.hasOwn(event.content, "m.mentions");
  for (const kind of PUSH_RULE_KINDS) {
    for (const rule of ruleset[kind] ?? []) {
      if (!rule.enabled) continue;
      if (hasMentions && LEGACY_MENTION_RULE_IDS[kind]?.includes(rule.rule_id)) continue;
      if (!evaluator.ruleMatches(kind, rule)) continue;
      return { ...interpretActions(rule.actions), rule: { kind, rule_id: rule.rule_id } };
    }
  }
  return { ...NOTHING, tweaks: {}, actions: [] };
}

/** Matches one condition against an event; exported for tests and for callers with single conditions. */
export function conditionMatches(condition: PushCondition, event: JsonObject, context: PushContext): boolean {
  return new ConditionEvaluator(event, context).matches(condition);
}

class ConditionEvaluator {
  /** Case-folded code points of strings already seen (content.body is read by many rules). */
  private readonly folded = new Map<string, FoldedText>();

  constructor(
    private readonly event: JsonObject,
    private readonly context: PushContext,
  ) {}

  ruleMatches(kind: PushRuleKind, rule: PushRule): boolean {
    switch (kind) {
      case "override":
      case "underride":
        return (rule.conditions ?? []).every((c) => this.matches(c));
      case "content":
        // Content rules: `pattern` against content.body at word boundaries (spec, "Push Rules").
        return typeof rule.pattern === "string" && this.eventMatch("content.body", rule.pattern);
      case "room": {
        const roomId = typeof this.event.room_id === "string" ? this.event.room_id : this.context.roomId;
        return roomId === rule.rule_id;
      }
      case "sender":
        return this.event.sender === rule.rule_id;
    }
  }

  matches(c: PushCondition): boolean {
    switch (c.kind) {
      case "event_match":
        return typeof c.key === "string" && typeof c.pattern === "string" && this.eventMatch(c.key, c.pattern);
      case "event_property_is": {
        if (typeof c.key !== "string" || !isScalar(c.value)) return false;
        const v = lookupPath(this.event, c.key);
        return isScalar(v) && v === c.value;
      }
      case "event_property_contains": {
        if (typeof c.key !== "string" || !isScalar(c.value)) return false;
        const v = lookupPath(this.event, c.key);
        return Array.isArray(v) && v.some((item) => isScalar(item) && item === c.value);
      }
      case "contains_display_name": {
        const name = this.context.displayName;
        const body = isJsonObject(this.event.content) ? this.event.content.body : undefined;
        if (!name || typeof body !== "string") return false;
        const tokens = compileLiteral(name);
        const text = this.fold(body);
        return literalMayMatch(tokens, text) && globMatch(tokens, text, "word");
      }
      case "room_member_count":
        return typeof c.is === "string" && memberCountMatches(c.is, this.context.roomMemberCount);
      case "sender_notification_permission": {
        if (typeof c.key !== "string" || this.context.senderPowerLevel === undefined) return false;
        // m.room.power_levels: `notifications.room` defaults to 50; other keys are treated alike.
        const required = this.context.notificationPowerLevels?.[c.key] ?? 50;
        return this.context.senderPowerLevel >= required;
      }
      default:
        // "Unrecognised conditions MUST NOT match any events."
        return false;
    }
  }

  /** event_match: whole-value glob, or word-boundary substring glob for `content.body`. */
  eventMatch(key: string, pattern: string): boolean {
    const value = lookupPath(this.event, key);
    if (typeof value !== "string") return false;
    const tokens = compileGlob(pattern);
    const mode = key === "content.body" ? "word" : "whole";
    // A whole-value pattern without wildcards matches one code point per token: a value of another length
    // (no surrogates: one unit per code point) cannot match, and need not be folded. Most rules are such
    // (`type`, `content.msgtype`), and every event runs all of them for every recipient.
    if (mode === "whole" && !tokens.some((t) => t.t !== "char") && value.length !== tokens.length && !HAS_SURROGATE.test(value)) return false;
    const text = this.fold(value);
    return literalMayMatch(tokens, text) && globMatch(tokens, text, mode);
  }

  private fold(s: string): FoldedText {
    let f = this.folded.get(s);
    if (!f) {
      f = foldText(s);
      this.folded.set(s, f);
    }
    return f;
  }
}

type Scalar = string | number | boolean | null;
/** The values event_property_is/contains compare: non-compound canonical JSON values. */
function isScalar(v: JsonValue | undefined): v is Scalar {
  return v === null || typeof v === "string" || typeof v === "boolean" || (typeof v === "number" && Number.isSafeInteger(v));
}

/**
 * Splits a dot-separated property path (appendix "Dot-separated property paths"): `\.` is a
 * literal dot, `\\` a literal backslash, any other backslash is kept as it is.
 */
export function splitKeyPath(key: string): string[] {
  let parts = splitKeyPaths.get(key);
  if (parts === undefined) {
    parts = splitKeyPathUncached(key);
    if (splitKeyPaths.size >= COMPILED_GLOBS_MAX) splitKeyPaths.clear();
    splitKeyPaths.set(key, parts);
  }
  // A copy: callers may change what they get.
  return parts.slice();
}

/** Split paths: every event runs the same rules' keys for every recipient (bounded: user rules are free text). */
const splitKeyPaths = new Map<string, string[]>();

function splitKeyPathUncached(key: string): string[] {
  const parts: string[] = [];
  let current = "";
  for (let i = 0; i < key.length; i++) {
    const c = key[i];
    if (c === "\\" && (key[i + 1] === "." || key[i + 1] === "\\")) {
      current += key[i + 1];
      i++;
    } else if (c === ".") {
      parts.push(current);
      current = "";
    } else current += c;
  }
  parts.push(current);
  return parts;
}

/** The value at a dotted path, walking objects only; undefined if any step is missing. */
export function lookupPath(event: JsonObject, key: string): JsonValue | undefined {
  let node: JsonValue = event;
  let parts = splitKeyPaths.get(key);
  if (parts === undefined) parts = splitKeyPath(key);
  for (const part of parts) {
    if (!isJsonObject(node) || !Object.hasOwn(node, part)) return undefined;
    node = node[part];
  }
  return node;
}

/** room_member_count `is`: a decimal integer, optionally prefixed by ==, <, >, <= or >=. */
function memberCountMatches(is: string, count: number): boolean {
  const m = /^(==|<=|>=|<|>)?([0-9]+)$/.exec(is);
  if (!m) return false;
  const n = Number(m[2]);
  switch (m[1]) {
    case "<":
      return count < n;
    case ">":
      return count > n;
    case "<=":
      return count <= n;
    case ">=":
      return count >= n;
    default:
      return count === n;
  }
}

// --- Glob matching ------------------------------------------------------------------------------
// Appendix "Glob-style matching": `*` matches zero or more characters, `?` exactly one. Matching is
// case-insensitive (per code point, upper-then-lower folding). It runs as an NFA over pattern
// positions, O(text x pattern), so a hostile pattern such as `*a*a*a*a*b` cannot make it
// backtrack exponentially the way a translated regular expression could.

type GlobToken = { t: "star" } | { t: "one" } | { t: "char"; c: string };

const foldChar = (c: string) => c.toUpperCase().toLowerCase();

const HAS_SURROGATE = /[\ud800-\udfff]/;

/** Compiled patterns: rules are few and the same for every event (bounded: user rules are free text). */
const compiledGlobs = new Map<string, GlobToken[]>();
const COMPILED_GLOBS_MAX = 1000;

function compileGlob(pattern: string): GlobToken[] {
  let tokens = compiledGlobs.get(pattern);
  if (tokens === undefined) {
    tokens = compileGlobUncached(pattern);
    if (compiledGlobs.size >= COMPILED_GLOBS_MAX) compiledGlobs.clear();
    compiledGlobs.set(pattern, tokens);
  }
  return tokens;
}

function compileGlobUncached(pattern: string): GlobToken[] {
  const tokens: GlobToken[] = [];
  for (const ch of pattern) {
    if (ch === "*") {
      if (tokens.at(-1)?.t !== "star") tokens.push({ t: "star" });
    } else if (ch === "?") tokens.push({ t: "one" });
    else tokens.push({ t: "char", c: foldChar(ch) });
  }
  return tokens;
}

/** Compiled literals (display names for `contains_display_name`), bounded like compiledGlobs. */
const compiledLiterals = new Map<string, GlobToken[]>();

function compileLiteral(text: string): GlobToken[] {
  let tokens = compiledLiterals.get(text);
  if (tokens === undefined) {
    tokens = Array.from(text, (ch): GlobToken => ({ t: "char", c: foldChar(ch) }));
    if (compiledLiterals.size >= COMPILED_GLOBS_MAX) compiledLiterals.clear();
    compiledLiterals.set(text, tokens);
  }
  return tokens;
}

/** A word character per the spec's word-boundary definition: `[A-Za-z0-9_]`. */
const isWordChar = (ch: string) => /^[A-Za-z0-9_]$/.test(ch);

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/** A text folded per code point, with its word characters; `joined` is `folded` as one string. */
interface FoldedText {
  folded: string[];
  word: boolean[];
  joined?: string;
}

/** The folded characters of a pattern without wildcards, as one string (null: it has wildcards). */
const literalTexts = new WeakMap<GlobToken[], string | null>();

/**
 * False when a pattern without wildcards cannot match: its folded characters, one after another, are not
 * in the folded text (a match, whole or at word boundaries, is such a run). Most body rules (the user's
 * name, "@room", the display name) meet most bodies here, without running the matcher.
 */
function literalMayMatch(tokens: GlobToken[], text: FoldedText): boolean {
  let literal = literalTexts.get(tokens);
  if (literal === undefined) {
    literal = tokens.every((t) => t.t === "char") ? tokens.map((t) => (t as { c: string }).c).join("") : null;
    literalTexts.set(tokens, literal);
  }
  if (literal === null) return true;
  text.joined ??= text.folded.join("");
  return text.joined.includes(literal);
}

function foldText(s: string): FoldedText {
  // Printable ASCII (most message bodies): one unit per code point, and folding a letter is lower-casing it.
  if (PRINTABLE_ASCII.test(s)) {
    const folded = s.toLowerCase().split("");
    const word = new Array<boolean>(s.length);
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      word[i] = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
    }
    return { folded, word };
  }
  const chars = Array.from(s);
  return { folded: chars.map(foldChar), word: chars.map(isWordChar) };
}

/**
 * "whole": the pattern must match the entire text. "word": it must match some substring that
 * starts and ends at a word boundary (start/end of the text, or next to a non-word character).
 */
function globMatch(tokens: GlobToken[], text: FoldedText, mode: "whole" | "word"): boolean {
  const m = tokens.length;
  const n = text.folded.length;
  let active = new Uint8Array(m + 1);
  let next = new Uint8Array(m + 1);
  // Epsilon closure: a star may match nothing.
  const close = (set: Uint8Array) => {
    for (let i = 0; i < m; i++) if (set[i] && tokens[i].t === "star") set[i + 1] = 1;
  };
  const any = (set: Uint8Array) => set.some((x) => x === 1);

  if (mode === "whole") {
    active[0] = 1;
    close(active);
  }
  for (let p = 0; ; p++) {
    if (mode === "word") {
      if (p === 0 || !text.word[p - 1]) {
        active[0] = 1;
        close(active);
      }
      if (active[m] && (p === n || !text.word[p])) return true;
    }
    if (p === n) break;
    if (mode === "whole" && !any(active)) return false;
    next.fill(0);
    const c = text.folded[p];
    for (let i = 0; i < m; i++) {
      if (!active[i]) continue;
      const tok = tokens[i];
      if (tok.t === "star") next[i] = 1;
      else if (tok.t === "one" || tok.c === c) next[i + 1] = 1;
    }
    close(next);
    [active, next] = [next, active];
  }
  return mode === "whole" && active[m] === 1;
}

/**
 * Copies the user's rules about room `from` to room `to` when the user follows a room upgrade (Synapse's
 * `copy_push_rules_from_room_to_room_for_user`; the spec leaves it to servers): every user-defined rule whose
 * rule ID or condition values name `from` gets a copy, just before it, naming `to` instead. Rules that
 * already exist under the new ID are left alone, so copying twice changes nothing.
 */
export function copyRoomRules(stored: StoredPushRules, from: string, to: string): StoredPushRules {
  if (from === to) return stored;
  const swap = (v: JsonValue): JsonValue => (typeof v === "string" ? v.split(from).join(to) : v);
  let changed = false;
  const user: { [K in PushRuleKind]?: StoredUserRule[] } = {};
  for (const kind of PUSH_RULE_KINDS) {
    const rules = stored.user?.[kind];
    if (!rules) continue;
    const existing = new Set(rules.map((r) => r.rule_id));
    const out: StoredUserRule[] = [];
    for (const rule of rules) {
      const mentions = rule.rule_id.includes(from) || (rule.conditions ?? []).some((c) => Object.values(c).some((v) => v === from));
      const newId = rule.rule_id.split(from).join(to);
      if (mentions && !existing.has(newId) && newId !== rule.rule_id) {
        const copy: StoredUserRule = { rule_id: newId, enabled: rule.enabled, actions: rule.actions.map(copyAction) };
        if (rule.conditions) copy.conditions = rule.conditions.map((c) => Object.fromEntries(Object.entries(c).map(([k, v]) => [k, swap(v)])) as PushCondition);
        if (rule.pattern !== undefined) copy.pattern = rule.pattern;
        out.push(copy);
        existing.add(newId);
        changed = true;
      }
      out.push(rule);
    }
    user[kind] = out;
  }
  return changed ? { ...stored, user } : stored;
}
