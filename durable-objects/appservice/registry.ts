// The registered application services, read from D1 (`appservices`, written by `npm run appservice` and by
// `npm start` from APPSERVICE_CONFIG_FILES). Used by the worker (authentication by as_token, exclusive
// namespaces, queries) and by the Room DO (which services an event goes to), so it lives below both.
//
// Every check on every request and every event would otherwise read D1: the list is cached per isolate for
// a few seconds (a registration added or removed takes effect within CACHE_MS). An as_token the cache does
// not know is looked up in D1 by its hash before it is refused, so a new service can authenticate at once.
//
// Tokens: the as_token is stored and looked up as its SHA-256 (a look-up by hash compares no secret; a
// leaked database leaks no usable token). The hs_token is stored as it is: this server sends it.
import { Appservice, type StoredRegistration } from "../../protocol/appservice-registration.js";

export { Appservice } from "../../protocol/appservice-registration.js";

/** How long an isolate trusts its copy of the list. */
const CACHE_MS = 5_000;

interface Row {
  id: string;
  as_token_hash: string;
  registration: string;
}

interface Snapshot {
  at: number;
  serverName: string;
  list: Appservice[];
  byId: Map<string, Appservice>;
  byTokenHash: Map<string, Appservice>;
}

let snapshot: Snapshot | undefined;
let loading: Promise<Snapshot> | undefined;

type RegistryEnv = { DB: D1Database; SERVER_NAME: string };

function build(rows: Row[], serverName: string, at: number): Snapshot {
  const list: Appservice[] = [];
  const byId = new Map<string, Appservice>();
  const byTokenHash = new Map<string, Appservice>();
  for (const row of rows) {
    let registration: StoredRegistration;
    try {
      registration = JSON.parse(row.registration) as StoredRegistration;
    } catch {
      console.warn(`appservice ${row.id}: stored registration is not JSON; ignored`);
      continue;
    }
    const service = new Appservice(registration, serverName);
    list.push(service);
    byId.set(service.id, service);
    byTokenHash.set(row.as_token_hash, service);
  }
  return { at, serverName, list, byId, byTokenHash };
}

async function load(env: RegistryEnv): Promise<Snapshot> {
  const now = Date.now();
  if (snapshot && snapshot.serverName === env.SERVER_NAME && now - snapshot.at < CACHE_MS) return snapshot;
  if (!loading) {
    loading = (async () => {
      try {
        const { results } = await env.DB.prepare("SELECT id, as_token_hash, registration FROM appservices ORDER BY id").all<Row>();
        snapshot = build(results, env.SERVER_NAME, Date.now());
        return snapshot;
      } finally {
        loading = undefined;
      }
    })();
  }
  return loading;
}

/** Forgets the cached list (after this isolate changed the table; tests). */
export function invalidateAppservices(): void {
  snapshot = undefined;
}

/** All registered services. */
export async function appservices(env: RegistryEnv): Promise<Appservice[]> {
  return (await load(env)).list;
}

export async function appserviceById(env: RegistryEnv, id: string): Promise<Appservice | undefined> {
  return (await load(env)).byId.get(id);
}

/** The service whose as_token is `token`, or undefined. */
export async function appserviceByToken(env: RegistryEnv, token: string): Promise<Appservice | undefined> {
  const hash = await sha256Hex(token);
  return (await appserviceByTokenHash(env, hash, "cached")) ?? appserviceByTokenHash(env, hash, "database");
}

/**
 * The service whose as_token has this SHA-256 (hex). `cached` asks the isolate's copy of the list only (one
 * D1 read every few seconds at most: the fast path of authentication, before access tokens are looked up);
 * `database` asks D1 (a service registered after the copy was made).
 */
export async function appserviceByTokenHash(env: RegistryEnv, hash: string, where: "cached" | "database"): Promise<Appservice | undefined> {
  if (where === "cached") return (await load(env)).byTokenHash.get(hash);
  const row = await env.DB.prepare("SELECT id, as_token_hash, registration FROM appservices WHERE as_token_hash = ?").bind(hash).first<Row>();
  if (!row) return undefined;
  invalidateAppservices();
  return build([row], env.SERVER_NAME, Date.now()).list[0];
}

/** The service that holds `userId` in an exclusive namespace (or as its sender), if any. */
export async function exclusiveOwnerOfUser(env: RegistryEnv, userId: string): Promise<Appservice | undefined> {
  return (await appservices(env)).find((s) => s.isExclusiveUser(userId));
}

/** The service that holds `alias` in an exclusive namespace, if any. */
export async function exclusiveOwnerOfAlias(env: RegistryEnv, alias: string): Promise<Appservice | undefined> {
  return (await appservices(env)).find((s) => s.isExclusiveAlias(alias));
}

export async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  let hex = "";
  for (const b of digest) hex += b.toString(16).padStart(2, "0");
  return hex;
}
