// Asking application services about users and aliases they may own (spec: Application Service API,
// "Querying": GET /_matrix/app/v1/users/{userId} and GET /_matrix/app/v1/rooms/{roomAlias}). Synapse
// (handlers/appservice.py `query_user_exists`, `query_room_alias_exists`) asks every service whose
// namespace holds the ID, and takes a 200 as "it exists now": the service has created the user or the alias
// while answering. Answers other than 200 (and unreachable services) mean "no".
import type { Env } from "../env.js";
import { appservices, type Appservice } from "../../durable-objects/appservice/registry.js";

const QUERY_TIMEOUT_MS = 10_000;

async function ask(service: Appservice, path: string): Promise<boolean> {
  const url = service.registration.url;
  if (url === null) return false;
  try {
    const res = await fetch(`${url}${path}`, {
      headers: { Authorization: `Bearer ${service.registration.hsToken}` },
      signal: AbortSignal.timeout(QUERY_TIMEOUT_MS),
    });
    await res.arrayBuffer().catch(() => undefined);
    return res.status === 200;
  } catch (e) {
    console.warn(`appservice ${service.id}: query failed: ${e instanceof Error ? e.message : String(e)}`);
    return false;
  }
}

/** An unknown local alias: asks the services whose alias namespaces hold it; true when one created it. */
export async function queryAppservicesForAlias(env: Env, alias: string): Promise<boolean> {
  for (const service of await appservices(env)) {
    if (!service.isAliasInNamespace(alias)) continue;
    if (await ask(service, `/_matrix/app/v1/rooms/${encodeURIComponent(alias)}`)) return true;
  }
  return false;
}

/** An unknown local user: asks the services whose user namespaces hold it; true when one created it. */
export async function queryAppservicesForUser(env: Env, userId: string): Promise<boolean> {
  for (const service of await appservices(env)) {
    if (!service.isUserInNamespace(userId)) continue;
    if (await ask(service, `/_matrix/app/v1/users/${encodeURIComponent(userId)}`)) return true;
  }
  return false;
}
