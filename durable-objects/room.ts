// The Room Durable Object: the only writer of one room's event DAG (see DESIGN.md, "Who owns what").
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../worker/env.js";

export class RoomDurableObject extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
  }
}
