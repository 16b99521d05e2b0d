// Application service registrations (spec: Application Service API, "Registration"), in Synapse's YAML
// format (synapse/config/appservice.py `_load_appservice`): `id`, `url`, `as_token`, `hs_token`,
// `sender_localpart`, `namespaces` of `users`, `aliases` and `rooms` (each `{exclusive, regex}`),
// `rate_limited`, `protocols`, `receive_ephemeral` (and MSC2409's older `de.sorunome.msc2409.push_ephemeral`),
// `org.matrix.msc3202` and `io.element.msc4190`.
//
// Pure and self-contained (imports nothing, only erasable TypeScript): the worker and the Durable Objects
// import it as usual, and the Node scripts (scripts/start.mjs, scripts/appservice.mjs) import this .ts file
// directly through Node's type stripping, so a registration is checked by the same code everywhere.
//
// Regexes are Python regexes in Synapse (`re.compile`, matched with `re.match`: anchored at the start, not
// at the end). Here they compile as JavaScript regexes with Python's named groups `(?P<n>…)` rewritten, and
// match anchored at the start only, as in Synapse.

export interface NamespaceEntry {
  exclusive: boolean;
  regex: string;
}

export interface Namespaces {
  users: NamespaceEntry[];
  aliases: NamespaceEntry[];
  rooms: NamespaceEntry[];
}

/** A validated registration. Tokens are secrets: never log this object as a whole. */
export interface AppserviceRegistration {
  id: string;
  /** Base URL without a trailing slash; null: the service receives no events and no queries. */
  url: string | null;
  asToken: string;
  hsToken: string;
  senderLocalpart: string;
  namespaces: Namespaces;
  rateLimited: boolean;
  protocols: string[];
  /** `receive_ephemeral` (or the unstable `de.sorunome.msc2409.push_ephemeral`): typing, receipts, presence. */
  receiveEphemeral: boolean;
  /** `org.matrix.msc3202`: device lists and one-time-key counts in transactions. */
  msc3202: boolean;
  /** `io.element.msc4190`: device management without UIA, /register without tokens. */
  msc4190: boolean;
}

/** A broken registration: `source` names the file (or other origin), `field` the field at fault. */
export class RegistrationError extends Error {
  readonly source: string;
  readonly field: string;
  constructor(source: string, field: string, message: string) {
    super(`${source}: ${field}: ${message}`);
    this.name = "RegistrationError";
    this.source = source;
    this.field = field;
  }
}

const NAMESPACE_KINDS = ["users", "aliases", "rooms"] as const;
export type NamespaceKind = (typeof NAMESPACE_KINDS)[number];

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Compiles a registration regex the way Synapse matches it (`re.match`: anchored at the start). Throws
 * SyntaxError when it does not compile. */
export function compileNamespaceRegex(regex: string): RegExp {
  // Python's named groups (?P<name>...) and back-references (?P=name) in JavaScript syntax.
  const js = regex.replace(/\(\?P</g, "(?<").replace(/\(\?P=(\w+)\)/g, "\\k<$1>");
  return new RegExp(`^(?:${js})`);
}

/**
 * Checks a parsed registration document (the YAML's top-level mapping) and returns it typed. Throws
 * RegistrationError naming `source` and the field for anything Synapse refuses, and for a `url` that is
 * not http(s).
 */
export function parseRegistration(raw: unknown, source: string): AppserviceRegistration {
  if (!isObject(raw)) throw new RegistrationError(source, "(document)", "a registration must be a mapping of fields");
  const requiredString = (field: string): string => {
    const v = raw[field];
    if (typeof v !== "string" || v === "") throw new RegistrationError(source, field, "required, a non-empty string");
    return v;
  };
  const optionalBool = (field: string, fallback: boolean): boolean => {
    const v = raw[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "boolean") throw new RegistrationError(source, field, "must be true or false");
    return v;
  };
  const id = requiredString("id");
  if (id.includes("|")) throw new RegistrationError(source, "id", "cannot contain the '|' character");
  if (id.length > 255) throw new RegistrationError(source, "id", "longer than 255 characters");
  const asToken = requiredString("as_token");
  const hsToken = requiredString("hs_token");
  const senderLocalpart = requiredString("sender_localpart");
  // Synapse: the localpart must need no URL encoding; the grammar of user IDs allows less still.
  if (!/^[a-z0-9._=\-/+]+$/.test(senderLocalpart)) {
    throw new RegistrationError(source, "sender_localpart", "may only contain a-z, 0-9 and . _ = - / +");
  }

  // `url` must be a string or an explicit null (Synapse: missing is an error, so that push is never turned
  // off by accident).
  if (!("url" in raw)) throw new RegistrationError(source, "url", "required: a http(s) URL, or null for a service that receives nothing");
  let url: string | null = null;
  if (raw.url !== null) {
    if (typeof raw.url !== "string") throw new RegistrationError(source, "url", "must be a http(s) URL or null");
    let parsed: URL;
    try {
      parsed = new URL(raw.url);
    } catch {
      throw new RegistrationError(source, "url", `not a URL: ${JSON.stringify(raw.url)}`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new RegistrationError(source, "url", `must be http or https, not ${parsed.protocol.replace(/:$/, "")}`);
    }
    url = raw.url.replace(/\/+$/, "");
  }

  if (!isObject(raw.namespaces)) throw new RegistrationError(source, "namespaces", "required, a mapping of users, aliases and rooms");
  const namespaces: Namespaces = { users: [], aliases: [], rooms: [] };
  for (const kind of NAMESPACE_KINDS) {
    const list = raw.namespaces[kind];
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) throw new RegistrationError(source, `namespaces.${kind}`, "must be a list");
    list.forEach((entry, i) => {
      const field = `namespaces.${kind}[${i}]`;
      if (!isObject(entry)) throw new RegistrationError(source, field, "must be a mapping with exclusive and regex");
      if (typeof entry.exclusive !== "boolean") throw new RegistrationError(source, `${field}.exclusive`, "required, true or false");
      if (typeof entry.regex !== "string") throw new RegistrationError(source, `${field}.regex`, "required, a string");
      try {
        compileNamespaceRegex(entry.regex);
      } catch (e) {
        throw new RegistrationError(source, `${field}.regex`, `does not compile: ${e instanceof Error ? e.message : String(e)}`);
      }
      namespaces[kind].push({ exclusive: entry.exclusive, regex: entry.regex });
    });
  }

  let protocols: string[] = [];
  if (raw.protocols !== undefined && raw.protocols !== null) {
    if (!Array.isArray(raw.protocols) || !raw.protocols.every((p) => typeof p === "string")) {
      throw new RegistrationError(source, "protocols", "must be a list of strings");
    }
    protocols = [...new Set(raw.protocols as string[])];
  }

  // Synapse: rate limiting is on unless `rate_limited` is exactly false.
  const rateLimited = raw.rate_limited === false ? false : true;
  const receiveEphemeral = optionalBool("receive_ephemeral", false) || optionalBool("de.sorunome.msc2409.push_ephemeral", false);
  const msc3202 = optionalBool("org.matrix.msc3202", false);
  const msc4190 = optionalBool("io.element.msc4190", false);

  return { id, url, asToken, hsToken, senderLocalpart, namespaces, rateLimited, protocols, receiveEphemeral, msc3202, msc4190 };
}

/**
 * Refuses two registrations with one `id` or one `as_token` (Synapse: "Cannot reuse ID/as_token across
 * application services"). The error names both sources; a token is never printed.
 */
export function checkDistinct(registrations: readonly { registration: AppserviceRegistration; source: string }[]): void {
  const ids = new Map<string, string>();
  const tokens = new Map<string, string>();
  for (const { registration, source } of registrations) {
    const otherId = ids.get(registration.id);
    if (otherId !== undefined) throw new RegistrationError(source, "id", `${JSON.stringify(registration.id)} is also the id of ${otherId}`);
    ids.set(registration.id, source);
    const otherToken = tokens.get(registration.asToken);
    if (otherToken !== undefined) throw new RegistrationError(source, "as_token", `the same as_token as ${otherToken}`);
    tokens.set(registration.asToken, source);
  }
}

/** The stored form (D1 `appservices.registration`): everything but the as_token, which is kept only as
 * its SHA-256 (like access tokens). The hs_token stays: it is what this server sends. */
export type StoredRegistration = Omit<AppserviceRegistration, "asToken">;

export function storedForm(registration: AppserviceRegistration): StoredRegistration {
  const { asToken: _secret, ...rest } = registration;
  return rest;
}

/** A registration with its namespaces compiled, ready for matching. */
export class Appservice {
  readonly registration: StoredRegistration;
  /** `@sender_localpart:server`. */
  readonly sender: string;
  private readonly compiled: Record<NamespaceKind, { exclusive: boolean; re: RegExp }[]>;

  constructor(registration: StoredRegistration, serverName: string) {
    this.registration = registration;
    this.sender = `@${registration.senderLocalpart}:${serverName}`;
    this.compiled = { users: [], aliases: [], rooms: [] };
    for (const kind of NAMESPACE_KINDS) {
      for (const ns of registration.namespaces[kind] ?? []) {
        try {
          this.compiled[kind].push({ exclusive: ns.exclusive, re: compileNamespaceRegex(ns.regex) });
        } catch {
          // Checked when the registration was stored; a regex that stopped compiling matches nothing.
        }
      }
    }
  }

  get id(): string {
    return this.registration.id;
  }

  private match(kind: NamespaceKind, value: string): { exclusive: boolean } | undefined {
    return this.compiled[kind].find((ns) => ns.re.test(value));
  }

  isUserInNamespace(userId: string): boolean {
    return this.match("users", userId) !== undefined;
  }

  /** Synapse `is_interested_in_user`: the sender or a user in the user namespaces. */
  isInterestedInUser(userId: string): boolean {
    return userId === this.sender || this.isUserInNamespace(userId);
  }

  /** Synapse `is_exclusive_user`: in an exclusive user namespace, or the sender itself. */
  isExclusiveUser(userId: string): boolean {
    return userId === this.sender || this.match("users", userId)?.exclusive === true;
  }

  isAliasInNamespace(alias: string): boolean {
    return this.match("aliases", alias) !== undefined;
  }

  isExclusiveAlias(alias: string): boolean {
    return this.match("aliases", alias)?.exclusive === true;
  }

  isRoomIdInNamespace(roomId: string): boolean {
    return this.match("rooms", roomId) !== undefined;
  }

  isExclusiveRoom(roomId: string): boolean {
    return this.match("rooms", roomId)?.exclusive === true;
  }

  hasProtocol(protocol: string): boolean {
    return this.registration.protocols.includes(protocol);
  }
}
