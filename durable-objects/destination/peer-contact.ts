// "Resets its back-off when that server contacts us": a request from a server that we were backing off
// from shows it is up again, so its queue should not wait out an hour-long back-off. Synapse does the same
// (its transport server calls `FederationSender.wake_destination` / resets the retry timings when a
// destination sends us a request). The inbound federation middleware calls this after a request's X-Matrix
// signature checked out, as `ctx.waitUntil(notePeerContact(env, origin))`.
//
// Rate-limited per isolate: one Destination DO call per origin per minute, not one per request (a busy
// peer sends many requests, and the DO call is only useful after an outage).
import type { Env } from "../../worker/env.js";

const INTERVAL_MS = 60_000;
/** Forget the oldest entries beyond this many origins (bounded memory per isolate). */
const MAX_TRACKED = 10_000;
const lastContact = new Map<string, number>();

/** Tells the Destination DO of `origin` that the server is up (at most once a minute per origin and
 * isolate). Never rejects. */
export function notePeerContact(env: Pick<Env, "DESTINATIONS" | "SERVER_NAME">, origin: string, now = Date.now()): Promise<void> {
  if (origin === "" || origin === env.SERVER_NAME) return Promise.resolve();
  const last = lastContact.get(origin);
  if (last !== undefined && now - last < INTERVAL_MS) return Promise.resolve();
  lastContact.delete(origin);
  lastContact.set(origin, now);
  while (lastContact.size > MAX_TRACKED) lastContact.delete(lastContact.keys().next().value as string);
  return env.DESTINATIONS.get(env.DESTINATIONS.idFromName(origin))
    .peerIsUp()
    .catch((e: unknown) => console.warn("federation: peerIsUp failed", origin, e instanceof Error ? e.message : e));
}
