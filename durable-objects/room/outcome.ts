// Client errors across the Room DO's RPC boundary as values (the same `Outcome` as the User DO,
// durable-objects/user/outcome.ts): a 403 for a user who may not send is an ordinary answer, and an
// exception thrown out of an RPC method is logged by the runtime as an uncaught failure of the DO.
import { MatrixError } from "../../protocol/errors.js";
import type { Outcome } from "../user/outcome.js";

export type { Outcome } from "../user/outcome.js";
export { unwrap } from "../user/outcome.js";

/** A thrown MatrixError as an outcome value; anything else propagates (a bug: let it be logged). */
export function errorOutcome(e: unknown): { error: { status: number; errcode: string; error: string; extra?: Record<string, string> } } {
  if (e instanceof MatrixError) {
    const extra: Record<string, string> = {};
    for (const [k, v] of Object.entries(e.extra)) if (typeof v === "string") extra[k] = v;
    return { error: { status: e.status, errcode: e.errcode, error: e.message, extra } };
  }
  throw e;
}

/** Runs `fn` (sync or async) and returns its value or its MatrixError as an outcome. */
export async function outcomeOf<T>(fn: () => T | Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: await fn() };
  } catch (e) {
    return errorOutcome(e);
  }
}
