// Client errors across the User DO's RPC boundary as values rather than exceptions (like
// `changePushRules` in durable-objects/user.ts): a 400 or 404 is an ordinary answer, not something to
// log as a failure on the DO side, and RPC would not keep the MatrixError class anyway.
import { MatrixError } from "../../protocol/errors.js";

export type Outcome<T> = { ok: T } | { error: { status: number; errcode: string; error: string; extra?: Record<string, string> } };

/** Runs `fn` in the DO; a MatrixError it throws becomes the error value, anything else propagates. */
export function outcome<T>(fn: () => T): Outcome<T> {
  try {
    return { ok: fn() };
  } catch (e) {
    if (e instanceof MatrixError) {
      const extra: Record<string, string> = {};
      for (const [k, v] of Object.entries(e.extra)) if (typeof v === "string") extra[k] = v;
      return { error: { status: e.status, errcode: e.errcode, error: e.message, extra } };
    }
    throw e;
  }
}

/** The success type of an outcome, also when RPC has rewritten it (e.g. intersected with Disposable). */
export type OutcomeValue<R> = R extends { ok: infer T } ? T : never;

/** In the worker: the value of an outcome, or its MatrixError thrown. */
export function unwrap<R extends Outcome<unknown>>(result: R): OutcomeValue<R> {
  if ("error" in result) {
    const { status, errcode, error, extra } = result.error;
    throw new MatrixError(status, errcode, error, extra ?? {});
  }
  return (result as { ok: OutcomeValue<R> }).ok;
}
