// Client-Server API: Push rules (spec: "Push Rules: API", data/api/client-server/pushrules.yaml). The
// user's customisation of the default rules is stored in their Durable Object; the rules themselves
// (defaults, merging, validation of changes) are protocol/push-rules.ts. Every change takes a stream
// position in the User DO, so /sync can send the new `m.push_rules` account data.
import { Hono, type Context } from "hono";
import { MatrixError, badJson, invalidParam, notFound } from "../../protocol/errors.js";
import { getRule, isPushRuleKind, type PushRule, type PushRuleKind, type Ruleset, type StoredPushRules } from "../../protocol/push-rules.js";
import { pushRulesAccountData, type PushRuleChange } from "../../durable-objects/user.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { userStore } from "../user-store.js";
import { roomStub } from "../room-store.js";

async function storedPushRules(env: Env, userId: string): Promise<StoredPushRules> {
  return JSON.parse(await userStore(env, userId).getPushRules()) as StoredPushRules;
}

/** The effective rules of a user, as the `m.push_rules` account data content: `{"global": ruleset}`. */
export async function pushRulesContent(env: Env, userId: string): Promise<{ global: Ruleset }> {
  return pushRulesAccountData(await storedPushRules(env, userId), userId);
}

/** MSC4306's kind between content and room. This server has no rules of it (it defines none and does not
 * let users add any), so a rule of it is not found, as on Synapse with the MSC off; clients (and
 * Complement) look for its rules before they disable them. */
const POSTCONTENT = "postcontent";

function kindParam(c: Context<AppEnv>, { write = false } = {}): PushRuleKind {
  const kind = c.req.param("kind")!;
  if (kind === POSTCONTENT) {
    if (write && c.req.method === "PUT" && !c.req.path.endsWith("/enabled") && !c.req.path.endsWith("/actions")) {
      throw invalidParam("postcontent push rules are not supported");
    }
    throw notFound("Unknown push rule");
  }
  // Spec: `kind` is one of override, underride, sender, room, content.
  if (!isPushRuleKind(kind)) throw invalidParam(`Unknown push rule kind: ${kind}`);
  return kind;
}

/** Fetches the user's effective rule (404 M_NOT_FOUND if there is none). */
async function effectiveRule(c: Context<AppEnv>): Promise<PushRule> {
  const kind = kindParam(c);
  const userId = requester(c).userId;
  const stored = await storedPushRules(c.env, userId);
  // Localparts cannot contain ':' (spec: Appendices, "User Identifiers").
  return getRule(stored, kind, c.req.param("ruleId")!, userId, userId.slice(1, userId.indexOf(":")));
}

async function change(c: Context<AppEnv>, change: PushRuleChange): Promise<Response> {
  const result = await userStore(c.env, requester(c).userId).changePushRules(change);
  if ("error" in result) throw new MatrixError(result.error.status, result.error.errcode, result.error.error);
  return c.json({});
}

export const pushRulesRoutes = new Hono<AppEnv>();
const R = "/_matrix/client/:version{v3|r0}/pushrules";
const RULE = `${R}/global/:kind/:ruleId`;

// GET /_matrix/client/v3/pushrules/
pushRulesRoutes.get(`${R}/`, requireAuth, async (c) => c.json(await pushRulesContent(c.env, requester(c).userId)));
// (Synapse refuses the form without the slash; serving it costs nothing.)
pushRulesRoutes.get(R, requireAuth, async (c) => c.json(await pushRulesContent(c.env, requester(c).userId)));

// GET /_matrix/client/v3/pushrules/global/
pushRulesRoutes.get(`${R}/global/`, requireAuth, async (c) => c.json((await pushRulesContent(c.env, requester(c).userId)).global));
pushRulesRoutes.get(`${R}/global`, requireAuth, async (c) => c.json((await pushRulesContent(c.env, requester(c).userId)).global));

// GET /_matrix/client/v3/pushrules/global/{kind}/ (not in the spec; Synapse serves the rules of one kind)
pushRulesRoutes.get(`${R}/global/:kind/`, requireAuth, async (c) => {
  if (c.req.param("kind") === POSTCONTENT) return c.json([]);
  const kind = kindParam(c);
  return c.json((await pushRulesContent(c.env, requester(c).userId)).global[kind]);
});

// GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}
pushRulesRoutes.get(RULE, requireAuth, async (c) => c.json(await effectiveRule(c)));

// PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}
pushRulesRoutes.put(RULE, requireAuth, async (c) => {
  const kind = kindParam(c, { write: true });
  const body = await readJsonObject(c, { allowEmpty: false });
  // An empty before/after counts as absent (protocol/push-rules.ts putRule).
  const before = c.req.query("before") || undefined;
  const after = c.req.query("after") || undefined;
  return change(c, { op: "put", kind, ruleId: c.req.param("ruleId"), body: JSON.stringify(body), before, after });
});

// DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}
pushRulesRoutes.delete(RULE, requireAuth, async (c) => change(c, { op: "delete", kind: kindParam(c), ruleId: c.req.param("ruleId") }));

// GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled
pushRulesRoutes.get(`${RULE}/enabled`, requireAuth, async (c) => c.json({ enabled: (await effectiveRule(c)).enabled }));

// PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled
pushRulesRoutes.put(`${RULE}/enabled`, requireAuth, async (c) => {
  const kind = kindParam(c);
  const body = await readJsonObject(c, { allowEmpty: false });
  if (!("enabled" in body)) throw new MatrixError(400, "M_MISSING_PARAM", "Missing 'enabled'");
  if (typeof body.enabled !== "boolean") throw badJson("'enabled' must be a boolean");
  return change(c, { op: "enabled", kind, ruleId: c.req.param("ruleId"), enabled: body.enabled });
});

// GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions
pushRulesRoutes.get(`${RULE}/actions`, requireAuth, async (c) => c.json({ actions: (await effectiveRule(c)).actions }));

// PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions
pushRulesRoutes.put(`${RULE}/actions`, requireAuth, async (c) => {
  const kind = kindParam(c);
  const body = await readJsonObject(c, { allowEmpty: false });
  if (!("actions" in body)) throw new MatrixError(400, "M_MISSING_PARAM", "Missing 'actions'");
  return change(c, { op: "actions", kind, ruleId: c.req.param("ruleId"), actions: JSON.stringify(body.actions) });
});

/**
 * A user who joins (or creates, by upgrading) a room that replaces another keeps their push rules about the
 * old room for the new one (as Synapse does on such a join; Complement's TestPushRuleRoomUpgrade). Best
 * effort: the join has happened either way.
 */
export async function copyPushRulesFromPredecessor(env: Env, userId: string, roomId: string): Promise<void> {
  try {
    const create = await roomStub(env, roomId).stateEventForUser({ userId }, "m.room.create", "");
    if (!("ok" in create) || !create.ok) return;
    const predecessor = (create.ok.content as { predecessor?: { room_id?: unknown } }).predecessor;
    if (typeof predecessor?.room_id !== "string") return;
    await userStore(env, userId).changePushRules({ op: "copyRoom", from: predecessor.room_id, to: roomId });
  } catch (e) {
    console.warn("copying push rules to an upgraded room failed", e instanceof Error ? e.message : e);
  }
}
