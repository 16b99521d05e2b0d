// Access to a user's Durable Object (DESIGN.md, "Who owns what": account data, push rules, filters and
// later the sync stream live there), and the ownership check of the `/user/{userId}/...` endpoints.
import type { Context } from "hono";
import type { UserDurableObject } from "../durable-objects/user.js";
import { forbidden } from "../protocol/errors.js";
import { requester } from "./auth.js";
import type { AppEnv, Env } from "./env.js";

/** The User DO of `userId` (one per user, addressed by the full user ID). */
export function userStore(env: Pick<Env, "USERS">, userId: string): DurableObjectStub<UserDurableObject> {
  return env.USERS.get(env.USERS.idFromName(userId));
}

/** Throws 403 M_FORBIDDEN unless the authenticated requester is `userId` (spec: the access token "must
 * be authorised to make requests for this user ID"). Behind `requireAuth` only. */
export function requireSelf(c: Context<AppEnv>, userId: string, message: string): string {
  const me = requester(c).userId;
  if (me !== userId) throw forbidden(message);
  return me;
}

/** A 200 response whose body is JSON text already serialised (by a Durable Object). */
export function jsonText(c: Context<AppEnv>, text: string): Response {
  return c.body(text, 200, { "Content-Type": "application/json" });
}

/** Tells the User DOs whose pushers changed in D1 (durable-objects/user/pushers.ts); their push delivery
 * rereads them. Best effort: a failure is logged; D1 is already right and the next change repairs the DO's
 * copy. */
export async function pushersChanged(env: Pick<Env, "USERS">, userIds: Iterable<string>): Promise<void> {
  await Promise.all(
    [...new Set(userIds)].map((userId) =>
      userStore(env, userId)
        .pushersChanged(userId)
        .catch((e: unknown) => console.warn("pushers: could not tell the user's DO", e instanceof Error ? e.message : e)),
    ),
  );
}
