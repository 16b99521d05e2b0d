// The one place the federation client reaches the network. In production that is the runtime's `fetch`.
// Tests bind `FEDERATION_TEST_FETCHER` (worker/env.ts) to an auxiliary worker that plays the remote
// homeservers, their .well-known files and a DNS-over-HTTPS resolver (test/workers/remote-homeserver.mjs):
// everything above this function (discovery, signing, key checks) runs unchanged.
import type { Env } from "../worker/env.js";

export type OutboundFetch = (request: Request) => Promise<Response>;

export function outboundFetch(env: Pick<Env, "FEDERATION_TEST_FETCHER">): OutboundFetch {
  const seam = env.FEDERATION_TEST_FETCHER;
  if (seam) return (request) => seam.fetch(request);
  return (request) => fetch(request);
}
