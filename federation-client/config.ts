// Federation switches read from the environment (README "Configuration"): whether federation is on at all,
// and, for closed deployments, the only servers this one federates with.
import type { Env } from "../worker/env.js";
import { hostnameOf } from "../protocol/server-name.js";

type ConfigEnv = Pick<Env, "FEDERATION_ENABLED" | "FEDERATION_DOMAIN_ALLOWLIST" | "SERVER_NAME">;

/** `FEDERATION_ENABLED`: on unless set to false/0/off/no. */
export function federationEnabled(env: ConfigEnv): boolean {
  const v = env.FEDERATION_ENABLED?.trim().toLowerCase();
  return !(v === "false" || v === "0" || v === "off" || v === "no");
}

const listCache = new Map<string, Set<string>>();

function parseList(text: string): Set<string> {
  let set = listCache.get(text);
  if (!set) {
    set = new Set(
      text
        .split(",")
        .map((s) => s.trim().toLowerCase())
        .filter((s) => s !== ""),
    );
    listCache.set(text, set);
  }
  return set;
}

/** Comma-separated server names from an env var (empty for unset). */
export function serverList(text: string | undefined): string[] {
  return text ? [...parseList(text)] : [];
}

/**
 * Whether this server may talk to `serverName` (both directions). With `FEDERATION_DOMAIN_ALLOWLIST` set,
 * only listed servers are allowed; an entry matches the server name exactly or its hostname without the
 * port (as Synapse's `federation_domain_whitelist` matches the domain). Our own name is always allowed.
 */
export function federationAllowed(env: ConfigEnv, serverName: string): boolean {
  if (!federationEnabled(env)) return false;
  if (serverName === env.SERVER_NAME) return true;
  const list = env.FEDERATION_DOMAIN_ALLOWLIST?.trim();
  if (!list) return true;
  const allowed = parseList(list);
  const name = serverName.toLowerCase();
  return allowed.has(name) || allowed.has(hostnameOf(name));
}
