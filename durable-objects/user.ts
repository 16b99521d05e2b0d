// The User Durable Object: one user's sync hub (stream, to-device inbox, account data, keys).
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../worker/env.js";

export class UserDurableObject extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
  }
}
