// Test files reach Myelin over HTTPS: trust the stage's CA (made by global-setup.ts) in this worker too.
import { inject } from "vitest";
import { trustCA } from "../e2e/tls.js";

trustCA({ caPem: inject("caPem") });

// The keep-alive race: workerd (npm start) closes an idle connection after 5 s, and a request Node sends on
// that connection just as it closes fails with "other side closed" / ECONNRESET before any answer (the
// server never read it). Retrying such a request once is the pattern Node documents for it; e2e's burst test
// does the same. Any other failure, and any answer, is passed through unchanged.
const plainFetch = globalThis.fetch;
function closedBeforeAnswer(e: unknown): boolean {
  const cause = (e as { cause?: { code?: string } } | undefined)?.cause;
  return cause?.code === "UND_ERR_SOCKET" || cause?.code === "ECONNRESET";
}
globalThis.fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
  try {
    return await plainFetch(input, init);
  } catch (e) {
    if (!closedBeforeAnswer(e)) throw e;
    return plainFetch(input, init);
  }
};
