// MSC4345 "Impositions on Client UI" and decision 12 of ../shared/proposals/README.md: a client is told a
// sender's server domain (`unsigned.server_domain`) only once this server has verified it: the domain's
// `/_matrix/key/v3/org.matrix.msc4345/query` document lists the sender's server key. The
// `unverified_domain` of a participation event is routing, never shown as an origin.
//
// Verified pairs are kept per room (table `verified_server_domains`) for a day (the proposal: a
// verification "may" be cached, "but may not wish to do so permanently, as the keys may be stolen or
// revoked"). They are verified in the background: after this server joins a room, after participation
// events arrive over federation, and when a resident checks a request to take part (which verifies the
// domain anyway, federation-participation.ts).
import { PARTICIPATION_EVENT_TYPE, isServerKey, keyDocumentListsKey } from "../../protocol/participation.js";
import type { RoomEngine } from "./engine.js";

/** How long a verified domain is shown before it is verified again. */
export const DOMAIN_VERIFICATION_TTL_MS = 24 * 60 * 60 * 1000;

export const SERVER_DOMAINS_SCHEMA = `
  CREATE TABLE IF NOT EXISTS verified_server_domains (
    server_key TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    verified_at INTEGER NOT NULL
  );
`;

/** Fetches a domain's key/v3 document (the Room DO's federation client); null when it cannot. */
export type KeyDocumentFetch = (domain: string) => Promise<unknown>;

export class ServerDomains {
  constructor(private readonly sql: SqlStorage) {}

  /** The verified domain of `serverKey`, if verified within the last day. */
  domainOf(serverKey: string, now = Date.now()): string | undefined {
    const row = this.sql
      .exec<{ domain: string; verified_at: number }>("SELECT domain, verified_at FROM verified_server_domains WHERE server_key = ?", serverKey)
      .toArray()[0];
    return row && now - row.verified_at < DOMAIN_VERIFICATION_TTL_MS ? row.domain : undefined;
  }

  record(serverKey: string, domain: string, now = Date.now()): void {
    this.sql.exec("INSERT OR REPLACE INTO verified_server_domains (server_key, domain, verified_at) VALUES (?, ?, ?)", serverKey, domain, now);
  }
}

/**
 * Verifies the domains the room's current participation events advertise for keys other than ours that
 * are not verified (or whose verification is older than a day). One key/v3 fetch per domain; a failed
 * fetch leaves the key unverified (tried again on the next occasion). Returns how many were verified.
 */
export async function verifyServerDomains(engine: RoomEngine, domains: ServerDomains, fetchKeyDocument: KeyDocumentFetch): Promise<number> {
  const meta = engine.meta();
  if (!meta?.rules.authorization.serverParticipation) return 0;
  const pending = new Map<string, string[]>(); // domain -> keys advertised at it
  for (const { state_key: serverKey } of engine.sql
    .exec<{ state_key: string }>("SELECT state_key FROM current_state WHERE type = ?", PARTICIPATION_EVENT_TYPE)
    .toArray()) {
    if (!isServerKey(serverKey) || serverKey === engine.ownServerKey) continue;
    const domain = engine.currentStateEvent(PARTICIPATION_EVENT_TYPE, serverKey)?.content.unverified_domain;
    if (typeof domain !== "string" || domain === "" || domains.domainOf(serverKey) === domain) continue;
    pending.set(domain, [...(pending.get(domain) ?? []), serverKey]);
  }
  let verified = 0;
  for (const [domain, keys] of pending) {
    const doc = await fetchKeyDocument(domain).catch(() => null);
    for (const serverKey of keys) {
      if (await keyDocumentListsKey(doc, serverKey, domain)) {
        domains.record(serverKey, domain);
        verified++;
      }
    }
  }
  return verified;
}
