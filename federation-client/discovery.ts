// Server discovery (spec: Server-Server API, "Resolving server names"): turns a server name into the base
// URL to connect to and the Host header to send, in the spec's order: IP literal, explicit port,
// `/.well-known/matrix/server` (cached, with back-off), SRV `_matrix-fed._tcp` then `_matrix._tcp`, then
// port 8448. Workers have no DNS API: SRV records come from a DNS-over-HTTPS resolver (`FEDERATION_DOH_URL`,
// JSON API). A/AAAA/CNAME resolution is left to the runtime's fetch.
//
// Limit of the platform: a Worker's fetch takes its TLS server name (SNI, certificate check) from the URL's
// host. When an SRV record points to another host, the spec wants the certificate of the delegated
// hostname (`tlsServerName`) while connecting to the SRV target; a Worker can only connect to the target
// by name, so the certificate is checked against the target. `tlsServerName` records what the spec expects.
import { drizzle } from "drizzle-orm/d1";
import { eq } from "drizzle-orm";
import { isJsonObject } from "../protocol/json.js";
import { parseServerName } from "../protocol/server-name.js";
import { federationWellKnown } from "../schema/d1.js";
import type { Env } from "../worker/env.js";
import { outboundFetch } from "./outbound-fetch.js";

export interface ResolvedServer {
  /** Base URL without a trailing slash, e.g. `https://1.2.3.4:8448`. */
  url: string;
  /** The Host header the spec asks for. */
  host: string;
  /** The name the server's certificate must be valid for (absent for IP literals: no SNI). */
  tlsServerName?: string;
}

export class DiscoveryError extends Error {
  override name = "DiscoveryError";
}

type DiscoveryEnv = Pick<Env, "DB" | "FEDERATION_DOH_URL" | "FEDERATION_TEST_FETCHER">;

export const DEFAULT_DOH_URL = "https://cloudflare-dns.com/dns-query";
const DEFAULT_PORT = 8448;

// Cache periods (spec: "Resolving server names" step 3; figures as Synapse's well_known_resolver.py).
const WELL_KNOWN_DEFAULT_CACHE_MS = 24 * 3600_000;
const WELL_KNOWN_MAX_CACHE_MS = 48 * 3600_000;
const WELL_KNOWN_MIN_CACHE_MS = 5 * 60_000;
/** An answer that is not a valid delegation (404, bad JSON, bad `m.server`): up to an hour. */
const WELL_KNOWN_INVALID_CACHE_MS = 3600_000;
/** A network error or 5xx: retried after 2 min, doubling per consecutive failure, at most an hour. */
const WELL_KNOWN_DOWN_CACHE_MS = 2 * 60_000;
const WELL_KNOWN_TIMEOUT_MS = 10_000;
const WELL_KNOWN_MAX_BYTES = 50 * 1024;
const DOH_TIMEOUT_MS = 5_000;

/** Resolves a server name to where its federation API is served. Throws DiscoveryError for a name that is
 * not a valid server name; lookups that fail fall through to the next step as the spec says. */
export async function resolveServer(env: DiscoveryEnv, serverName: string): Promise<ResolvedServer> {
  const parsed = parseServerName(serverName);
  if (!parsed) throw new DiscoveryError(`invalid server name: ${serverName}`);
  // 1. IP literal: that address, the given port or 8448; Host is the server name; no SNI.
  if (parsed.ipLiteral) return { url: `https://${parsed.host}:${parsed.port ?? DEFAULT_PORT}`, host: serverName };
  // 2. Explicit port: the hostname (A/AAAA by the runtime) and that port; Host is the server name.
  if (parsed.port !== null) return { url: `https://${parsed.host}:${parsed.port}`, host: serverName, tlsServerName: parsed.host };
  // 3. .well-known delegation.
  const delegated = await wellKnownDelegation(env, parsed.host);
  if (delegated !== null) {
    const d = parseServerName(delegated)!; // validated before caching
    // 3.1 Delegated IP literal: Host is the delegated name (with its port if one was given).
    if (d.ipLiteral) return { url: `https://${d.host}:${d.port ?? DEFAULT_PORT}`, host: delegated };
    // 3.2 Delegated explicit port.
    if (d.port !== null) return { url: `https://${d.host}:${d.port}`, host: delegated, tlsServerName: d.host };
    // 3.3-3.5 SRV on the delegated hostname, then 8448; Host is the delegated hostname.
    return srvOrDefault(env, d.host);
  }
  // 4-6. SRV on the hostname, then 8448; Host is the hostname.
  return srvOrDefault(env, parsed.host);
}

async function srvOrDefault(env: DiscoveryEnv, hostname: string): Promise<ResolvedServer> {
  const srv = (await lookupSrv(env, `_matrix-fed._tcp.${hostname}`)) ?? (await lookupSrv(env, `_matrix._tcp.${hostname}`));
  if (srv) return { url: `https://${srv.target}:${srv.port}`, host: hostname, tlsServerName: hostname };
  return { url: `https://${hostname}:${DEFAULT_PORT}`, host: hostname, tlsServerName: hostname };
}

// ---------------------------------------------------------------------------------------------------
// .well-known/matrix/server

interface WellKnownEntry {
  delegatedServer: string | null;
  expiresTs: number;
  failures: number;
}

/** Per-isolate copy of the D1 cache: discovery runs before every request to a server. */
const wellKnownMemo = new Map<string, WellKnownEntry>();
/** Bound of the per-isolate copies (a crude reset, like server-keys.ts: they are only a read-through cache). */
const MEMO_MAX = 1000;

function remember<V>(memo: Map<string, V>, key: string, value: V): void {
  if (memo.size >= MEMO_MAX && !memo.has(key)) memo.clear();
  memo.set(key, value);
}

/** The valid `m.server` of `hostname`, or null when there is none (cached either way). */
export async function wellKnownDelegation(env: DiscoveryEnv, hostname: string, now = Date.now()): Promise<string | null> {
  let entry = wellKnownMemo.get(hostname);
  if (!entry || entry.expiresTs <= now) {
    const row = (await drizzle(env.DB).select().from(federationWellKnown).where(eq(federationWellKnown.serverName, hostname)).limit(1))[0];
    entry = row ? { delegatedServer: row.delegatedServer, expiresTs: row.expiresTs, failures: row.failures } : undefined;
    if (entry && entry.expiresTs > now) remember(wellKnownMemo, hostname, entry);
  }
  if (entry && entry.expiresTs > now) return entry.delegatedServer;

  const result = await fetchWellKnown(env, hostname);
  let next: WellKnownEntry;
  if (result.kind === "valid") {
    next = { delegatedServer: result.server, expiresTs: now + result.cacheMs, failures: 0 };
  } else if (result.kind === "invalid") {
    next = { delegatedServer: null, expiresTs: now + WELL_KNOWN_INVALID_CACHE_MS, failures: 0 };
  } else {
    // Down: exponential back-off. A server that had a valid delegation keeps using it meanwhile (as Synapse
    // does for a recently valid answer), so that a blip of its web server does not reroute federation.
    const failures = (entry?.failures ?? 0) + 1;
    const backoff = Math.min(WELL_KNOWN_DOWN_CACHE_MS * 2 ** (failures - 1), WELL_KNOWN_INVALID_CACHE_MS);
    next = { delegatedServer: entry?.delegatedServer ?? null, expiresTs: now + backoff, failures };
  }
  remember(wellKnownMemo, hostname, next);
  await drizzle(env.DB)
    .insert(federationWellKnown)
    .values({ serverName: hostname, ...next })
    .onConflictDoUpdate({ target: federationWellKnown.serverName, set: next });
  return next.delegatedServer;
}

/** Forgets cached .well-known answers (tests; an operator fixing a delegation). */
export function clearWellKnownMemo(): void {
  wellKnownMemo.clear();
  srvMemo.clear();
}

type WellKnownResult = { kind: "valid"; server: string; cacheMs: number } | { kind: "invalid" } | { kind: "down" };

async function fetchWellKnown(env: DiscoveryEnv, hostname: string): Promise<WellKnownResult> {
  let res: Response;
  try {
    // fetch follows 30x redirects and stops redirect loops (at 20 hops).
    res = await outboundFetch(env)(
      new Request(`https://${hostname}/.well-known/matrix/server`, {
        headers: { Accept: "application/json" },
        redirect: "follow",
        signal: AbortSignal.timeout(WELL_KNOWN_TIMEOUT_MS),
      }),
    );
  } catch {
    return { kind: "down" };
  }
  if (res.status >= 500) {
    await res.body?.cancel();
    return { kind: "down" };
  }
  if (res.status !== 200) {
    await res.body?.cancel();
    return { kind: "invalid" };
  }
  let body: unknown;
  try {
    const text = await res.text();
    if (text.length > WELL_KNOWN_MAX_BYTES) return { kind: "invalid" };
    // "servers parsing the response should assume that the body is JSON regardless of type"
    body = JSON.parse(text);
  } catch {
    return { kind: "invalid" };
  }
  const server = isJsonObject(body) ? body["m.server"] : undefined;
  if (typeof server !== "string" || !parseServerName(server)) return { kind: "invalid" };
  return { kind: "valid", server, cacheMs: cachePeriod(res.headers) };
}

/** Cache-Control max-age (no-store/no-cache: the minimum), within [5 min, 48 h]; 24 h without one. */
function cachePeriod(headers: Headers): number {
  const cc = headers.get("Cache-Control")?.toLowerCase() ?? "";
  let ms = WELL_KNOWN_DEFAULT_CACHE_MS;
  const maxAge = /(?:^|,)\s*max-age\s*=\s*"?(\d+)"?/.exec(cc);
  if (/(?:^|,)\s*no-(?:store|cache)\b/.test(cc)) ms = 0;
  else if (maxAge) ms = Number(maxAge[1]) * 1000;
  return Math.max(WELL_KNOWN_MIN_CACHE_MS, Math.min(WELL_KNOWN_MAX_CACHE_MS, ms));
}

// ---------------------------------------------------------------------------------------------------
// SRV over DNS-over-HTTPS (the JSON API of Cloudflare's and Google's resolvers).

export interface SrvTarget {
  target: string;
  port: number;
}

const srvMemo = new Map<string, { result: SrvTarget | null; expiresTs: number }>();
const SRV_MIN_TTL_MS = 60_000;
const SRV_MAX_TTL_MS = 3600_000;
const DNS_TYPE_SRV = 33;

/** Looks up an SRV record; null when there is none, or when the resolver cannot be reached or fails. */
export async function lookupSrv(env: DiscoveryEnv, name: string, now = Date.now()): Promise<SrvTarget | null> {
  const memo = srvMemo.get(name);
  if (memo && memo.expiresTs > now) return memo.result;
  const base = env.FEDERATION_DOH_URL?.trim() || DEFAULT_DOH_URL;
  let body: unknown;
  try {
    const url = new URL(base);
    url.searchParams.set("name", name);
    url.searchParams.set("type", "SRV");
    const res = await outboundFetch(env)(
      new Request(url.toString(), { headers: { Accept: "application/dns-json" }, signal: AbortSignal.timeout(DOH_TIMEOUT_MS) }),
    );
    if (res.status !== 200) {
      await res.body?.cancel();
      return null; // not cached: a resolver error says nothing about the record
    }
    body = await res.json();
  } catch {
    return null;
  }
  const { result, ttlMs } = pickSrv(body);
  remember(srvMemo, name, { result, expiresTs: now + Math.max(SRV_MIN_TTL_MS, Math.min(SRV_MAX_TTL_MS, ttlMs)) });
  return result;
}

/** Chooses an SRV record from a DoH JSON answer (RFC 2782: lowest priority, then weighted at random). */
export function pickSrv(body: unknown, random = Math.random): { result: SrvTarget | null; ttlMs: number } {
  if (!isJsonObject(body) || body.Status !== 0 || !Array.isArray(body.Answer)) return { result: null, ttlMs: SRV_MIN_TTL_MS };
  const records: { priority: number; weight: number; port: number; target: string; ttl: number }[] = [];
  for (const a of body.Answer) {
    if (!isJsonObject(a) || a.type !== DNS_TYPE_SRV || typeof a.data !== "string") continue;
    const m = /^(\d+)\s+(\d+)\s+(\d+)\s+(\S+?)\.?$/.exec(a.data.trim());
    if (!m) continue;
    const port = Number(m[3]);
    if (port < 1 || port > 65535) continue;
    records.push({ priority: Number(m[1]), weight: Number(m[2]), port, target: m[4]!, ttl: typeof a.TTL === "number" ? a.TTL : 0 });
  }
  const ttlMs = records.length > 0 ? Math.min(...records.map((r) => r.ttl)) * 1000 : SRV_MIN_TTL_MS;
  // A single record with target "." means the service is decidedly not available (RFC 2782).
  const usable = records.filter((r) => r.target !== "." && parseServerName(r.target)?.port === null);
  if (usable.length === 0) return { result: null, ttlMs };
  const best = Math.min(...usable.map((r) => r.priority));
  const candidates = usable.filter((r) => r.priority === best);
  const total = candidates.reduce((s, r) => s + r.weight, 0);
  let pick = candidates[0]!;
  if (total > 0) {
    let x = random() * total;
    for (const r of candidates) {
      x -= r.weight;
      if (x < 0) {
        pick = r;
        break;
      }
    }
  }
  return { result: { target: pick.target, port: pick.port }, ttlMs };
}
