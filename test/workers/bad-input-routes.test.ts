// No input produces a 500 (issue 12 §3; DESIGN.md: "Bad input gets a Matrix error ... never a 500"). Every
// route the Hono app serves (read from the app itself, so a new route is covered without editing this file)
// is sent bad input with a valid access token (an admin's on /_synapse/admin; federation routes X-Matrix
// signed by a remote server):
//   - path parameters: garbage, NUL, bytes that are not UTF-8, 3000 characters, a remote user, a slash;
//     one parameter at a time with the others valid;
//   - query strings with every query parameter the spec names set to garbage, or to huge, empty, negative,
//     float or wrongly shaped JSON values, with a repeated `limit`;
//   - bodies that are not JSON, not UTF-8, not objects, nested 5000 deep, with a lone surrogate, `{}`, or
//     `{}` as text/plain; and objects whose fields (every request-body field the spec names, and more)
//     all have one wrong type, are objects or arrays of wrongly typed fields, or (a few per route, rotating)
//     one field alone with a wrong, huge, deep or long value.
// The assertion: no 5xx answer except 502/504 (a remote server could not be reached), and every 4xx/5xx
// JSON answer is a Matrix error (errcode + error). Failures are listed all at once with the request that
// caused them. Requests that end the session (logout, deactivation) and the admin API run last; bodies
// that hash a password (register, login) are not varied field by field (hashing is slow by design).
// Each route gets one bad value per path parameter, one query string and three bodies of each group, the
// kinds rotating over the routes (`pick`), so one run sends about 1,200 requests and every kind of bad input
// meets routes of every area; a run sends a third of those (every k-th, from an offset that changes per run).
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../worker/index.js";
import { registerAdmin } from "./admin-helpers.js";
import { remoteAuthorization, uniqueServer } from "./federation-helpers.js";
import { api, SERVER_NAME, type RegisteredUser } from "./helpers.js";
import { createRoom, join, newUser, send } from "./room-helpers.js";

const worker = (exports as unknown as { default: { fetch(request: Request): Promise<Response> } }).default;

interface Probe {
  method: string;
  path: string;
  body?: string | Uint8Array;
  contentType?: string | null;
  /** What was bad, for the failure list. */
  what: string;
}

interface Failure {
  probe: string;
  status: number;
  answer: string;
}

/** The query parameter names of the spec's OpenAPI (client-server and server-server) plus ours. */
const QUERY_NAMES = [
  "action", "after", "alias", "animated", "archived", "at", "before", "dir", "event_id", "field", "fields", "filter",
  "format", "from", "full_state", "height", "include", "include_all_networks", "kind", "limit", "max_depth",
  "membership", "method", "minimum_valid_until_ts", "next_batch", "not_membership", "omit_members", "only",
  "redirectUrl", "room_alias", "room_id", "server", "set_presence", "since", "suggested_only",
  "third_party_instance_id", "to", "token", "ts", "url", "use_state_after", "user_id", "userid", "username", "v",
  "ver", "version", "via", "width", "server_name", "order_by", "search_term", "guests", "deactivated", "name",
  "public_rooms", "empty_rooms", "recurse", "allow_remote", "timeout_ms", "device_id", "org.matrix.msc4140.delay",
  "org.matrix.msc4354.sticky_duration_ms", "org.matrix.msc3202.device_id", "pos", "conn_id", "include_unredacted_content",
  "filename", "lang", "allow_redirect", "next_token", "direction", "user_ids", "search",
];

/** Request-body field names of the spec's OpenAPI, and the fields of the bodies our routes read. */
const BODY_NAMES = [
  "actions", "additional_creators", "address", "algorithm", "app_display_name", "app_id", "append", "auth", "auth_data",
  "client_secret", "conditions", "content", "creation_content", "data", "depth", "device_display_name", "device_id",
  "device_keys", "devices", "display_name", "earliest_events", "enabled", "erase", "event", "fallback_keys", "filter",
  "id_access_token", "id_server", "identifier", "include_all_networks", "inhibit_login", "initial_device_display_name",
  "initial_state", "invite", "invite_3pid", "invite_room_state", "invites", "is_direct", "kind", "lang",
  "latest_events", "limit", "locked", "logout_devices", "m.fully_read", "m.read", "m.read.private", "master_key",
  "medium", "messages", "min_depth", "mxid", "name", "new_password", "new_version", "one_time_keys", "origin",
  "origin_server_ts", "password", "pattern", "power_level_content_override", "presence", "preset", "profile_tag",
  "pushkey", "reason", "refresh_token", "room_alias_name", "room_id", "room_version", "rooms", "search_categories",
  "search_term", "self_signing_key", "sender", "server_keys", "sid", "since", "state_key", "status_msg", "suspended",
  "third_party_instance_id", "third_party_signed", "thread_id", "three_pid_creds", "timeout", "token", "topic",
  "transaction_id", "type", "typing", "user", "user_id", "user_signing_key", "username", "version", "visibility",
  // Beyond the OpenAPI's top level: fields of events, PDUs, sliding sync, admin bodies, MSCs.
  "body", "msgtype", "displayname", "avatar_url", "tags", "order", "m.relates_to", "event_id", "key", "keys",
  "signatures", "unsigned", "pdus", "edus", "prev_events", "auth_events", "hashes", "membership", "url", "via",
  "server", "ts", "lists", "room_subscriptions", "extensions", "conn_id", "pos", "timeline_limit", "required_state",
  "ranges", "admin", "deactivated", "threepids", "external_ids", "user_type", "uses_allowed", "expiry_time", "length",
  "nonce", "mac", "block", "purge", "force_purge", "message", "new_room_user_id", "room_name", "delay", "redacts",
  "history_visibility", "join_rule", "users", "users_default", "events", "event_format", "event_fields",
  "account_data", "presence_state", "not_senders", "senders", "types", "not_types", "lazy_load_members", "keys_query",
  "usage", "user_ids", "order_by", "event_context", "groupings", "include_state", "before_limit", "after_limit",
  "include_profile", "m.server", "duration_ms", "msc4354_sticky", "sound", "highlight", "rule_id", "default",
  "unsigned_device_info", "one_time_key_counts", "org.matrix.msc2716.batch_id", "fields", "invite_room_state",
];

/** Fields of the nested objects of request bodies (auth, identifier, filters, keys, events, pushers). */
const NESTED_NAMES = [
  "type", "session", "user", "medium", "address", "password", "token", "room_id", "event_id", "user_id", "device_id",
  "content", "state_key", "limit", "types", "not_types", "rooms", "keys", "signatures", "algorithms", "url", "format",
  "ranges", "timeline_limit", "required_state", "enabled", "key", "pattern", "kind", "is", "value", "room_version",
  "predecessor", "m.federate", "membership", "rel_type", "in_reply_to", "search_term", "order_by", "filter", "duration_ms",
];

/** Values of every JSON type that is wrong somewhere, and values at the edges of what JSON can say. */
const WRONG_VALUES: [string, string][] = [
  ["int", "1"],
  ["float", "1.5"],
  ["huge", "1e400"],
  ["string", '"x"'],
  ["array", '[1,"x",null,{},[]]'],
  ["object", '{"a":{"b":[1]}}'],
  ["null", "null"],
  ["long string", JSON.stringify("é".repeat(40_000))],
  ["deep", "[".repeat(600) + "]".repeat(600)],
];

/** Bodies that are not a JSON object, or not JSON at all. */
function wholeBodies(): { what: string; body?: string | Uint8Array; contentType?: string | null }[] {
  return [
    { what: "not JSON", body: "{not json" },
    { what: "JSON array", body: "[]" },
    { what: "not UTF-8", body: new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]) },
    { what: "lone surrogate", body: '{"a":"\\ud800"}' },
    { what: "empty object as text/plain", body: "{}", contentType: "text/plain" },
    { what: "deep object", body: '{"a":' + "[".repeat(5000) + "]".repeat(5000) + "}" },
    { what: "empty object", body: "{}" },
  ];
}

/** Each route gets every FIELD_SAMPLE-th field alone (rotating with the route), to keep the run short. */
const FIELD_SAMPLE = 20;

/** Objects whose fields have wrong values: all fields at once, one value kind per body; then each field alone
 * with a value kind that rotates over the fields (so every field meets several kinds across routes). */
function fieldBodies(routeIndex: number): { what: string; body: string }[] {
  const out: { what: string; body: string }[] = [];
  for (const [kind, value] of WRONG_VALUES) {
    if (kind === "long string" || kind === "deep" || kind === "huge") continue; // 200 × 80 kB strings or 600 levels: too costly per request
    out.push({ what: `every field ${kind}`, body: `{${BODY_NAMES.map((k) => `${JSON.stringify(k)}:${value}`).join(",")}}` });
  }
  BODY_NAMES.forEach((name, i) => {
    if ((i + routeIndex) % FIELD_SAMPLE !== 0) return;
    const [kind, value] = WRONG_VALUES[(i + routeIndex) % WRONG_VALUES.length]!;
    out.push({ what: `${name} ${kind}`, body: `{${JSON.stringify(name)}:${value}}` });
  });
  // Nested objects with wrong fields (an `auth` whose `type` is a number, an `identifier` that is half there).
  // (The nested objects hold the fields that are objects somewhere: `auth`, `identifier`, `content`, ...)
  const nested = `{${NESTED_NAMES.map((k) => `${JSON.stringify(k)}:1`).join(",")}}`;
  out.push({ what: "every field an object of wrong fields", body: `{${BODY_NAMES.map((k) => `${JSON.stringify(k)}:${nested}`).join(",")}}` });
  out.push({ what: "every field an array of wrong objects", body: `{${BODY_NAMES.map((k) => `${JSON.stringify(k)}:[${nested},1,"x"]`).join(",")}}` });
  return out;
}

function queryVariants(): { what: string; query: string }[] {
  const all = (value: (name: string, i: number) => string) => QUERY_NAMES.map((n, i) => `${encodeURIComponent(n)}=${value(n, i)}`).join("&");
  // `timeout` stays 0: a valid long-poll would only make the test slow.
  const mixed = ["123456789012345678901234567890", "", "-1", "1.5", encodeURIComponent('{"room":{"timeline":{"limit":"x","types":5}},"event_fields":[1]}'), "%00", "[1]"];
  return [
    { what: "query garbage", query: all(() => "%FF%FEzz") + "&timeout=0" },
    { what: "query huge, empty, negative, float, wrong-shape JSON", query: all((_n, i) => mixed[i % mixed.length]!) + "&timeout=0&limit=&limit=3" },
  ];
}

/** Bad values for one path parameter. */
const BAD_PARAMS: [string, string][] = [
  ["garbage", "x"],
  ["NUL", "%00"],
  ["not UTF-8", "%FF%FE"],
  ["long", "a".repeat(3000)],
  ["a remote user", "%40someone%3Anowhere.invalid"],
];

/** `n` items of `list` starting at `start` (wrapping): each route gets a few of the bad inputs, and the
 * rotation over the routes makes every kind meet routes of every area. One run stays around 1,200 requests
 * (the in-workerd test pool makes each request cost tens of ms on a loaded machine). */
function pick<T>(list: readonly T[], start: number, n: number): T[] {
  const out: T[] = [];
  for (let i = 0; i < Math.min(n, list.length); i++) out.push(list[(start * n + i) % list.length]!);
  return out;
}

/** Requests one run sends (of about 1,100 probes): the in-workerd test pool costs tens of ms per request. */
const BUDGET = 400;

/** The route list of the app: method and path pattern, without middleware entries. */
function appRoutes(): { method: string; path: string }[] {
  const seen = new Set<string>();
  const out: { method: string; path: string }[] = [];
  for (const r of buildApp().routes) {
    if (!["GET", "POST", "PUT", "DELETE"].includes(r.method) || r.path.includes("*")) continue;
    const key = `${r.method} ${r.path}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ method: r.method, path: r.path });
  }
  return out;
}

/** The parameter names of a Hono path pattern (`:name`, `:name{regex}`, `:name?`). */
const PARAM = /:([A-Za-z]+)(\{[^}]*\})?\??/g;

function fill(path: string, values: (name: string, enumChoices: string | undefined) => string): string {
  return path.replace(PARAM, (_m, name: string, pattern: string | undefined) => {
    const choices = pattern?.match(/^\{([A-Za-z0-9_|.]+)\}$/)?.[1];
    return values(name, choices);
  });
}

const isEnumParam = (pattern: string | undefined) => pattern !== undefined && /^\{[A-Za-z0-9_|.]+\}$/.test(pattern);

/** Routes whose body is event content or account data: any JSON object is a valid body. */
const OPAQUE_CONTENT = /\/send\/:eventType|\/state\/:eventType|\/account_data\/:type|\/send_server_notice/;

/** Routes that hash a password when the body is good enough (slow by design): path parameters and query
 * strings only, plus the whole-body variants. */
const PASSWORD_HASHING = /\/(register|login|password|deactivate|reset_password)(\/|$)|\/_synapse\/admin\/v2\/users\/:userId$/;

/** Routes that end or change the session run after all others (their bad input must still be refused). */
const SESSION_ENDING = /\/(logout|deactivate|delete_devices|password)(\/|$)|\/devices\/:deviceId$|\/leave$|\/forget$|\/_synapse\/admin\//;

describe("no input produces a 500", () => {
  it("on any route, with bad path parameters, query strings and bodies", { timeout: 600_000 }, async () => {
    const alice: RegisteredUser = await newUser("fuzz");
    const bob = await newUser("fuzz");
    const admin = await registerAdmin("fuzzadmin");
    const roomId = await createRoom(alice, { preset: "public_chat", name: "fuzz" });
    expect((await join(bob, roomId)).status).toBe(200);
    const eventId = (await send(alice, roomId, { msgtype: "m.text", body: "hello" })).body.event_id as string;
    const upload = await api("POST", "/_matrix/media/v3/upload?filename=f.txt", { token: alice.access_token, body: "media", headers: { "Content-Type": "text/plain" } });
    const mediaId = String(upload.body.content_uri).split("/").pop()!;
    const remote = uniqueServer("fuzz");

    const good: Record<string, string> = {
      roomId,
      roomIdOrAlias: roomId,
      userId: alice.user_id,
      eventId,
      serverName: SERVER_NAME,
      mediaId,
      deviceId: alice.device_id,
      eventType: "m.room.message",
      kind: "override",
      ruleId: "fuzzrule",
      txnId: "txn",
      type: "m.fuzz",
      reportId: "1",
      token: "tok",
      sessionId: "sess",
      roomAlias: `#fuzz:${SERVER_NAME}`,
      protocol: "irc",
      fileName: "f.txt",
      backupVersion: "1",
      tag: "u.fuzz",
      stateKey: "",
      relType: "m.thread",
      networkId: "net",
      delayId: "delay",
      serverKey: "key",
      receiptType: "m.read",
      keyId: "ed25519:a",
      filterId: "1",
      deleteId: "del",
      appserviceId: "as",
      scope: "global",
    };
    const goodValue = (name: string, choices: string | undefined) => {
      if (choices !== undefined) return choices.split("|")[0]!;
      const v = good[name];
      if (v === undefined) throw new Error(`no value for path parameter :${name}; add one to \`good\``);
      return encodeURIComponent(v);
    };

    const probes: Probe[] = [];
    const late: Probe[] = [];
    appRoutes().forEach(({ method, path }, index) => {
      const list = SESSION_ENDING.test(path) ? late : probes;
      const goodPath = fill(path, goodValue);
      const hasBody = method === "POST" || method === "PUT";
      // Bad path parameters, one at a time.
      const params = [...path.matchAll(PARAM)].filter((m) => !isEnumParam(m[2])).map((m) => m[1]!);
      for (const [i, param] of params.entries()) {
        // Two bad values per parameter, rotating with the route, so each kind meets each parameter name.
        for (const [what, bad] of pick(BAD_PARAMS, index + i, 1)) {
          list.push({ method, path: fill(path, (n, c) => (n === param ? bad : goodValue(n, c))), body: hasBody ? "{}" : undefined, what: `:${param} ${what}` });
        }
      }
      // Bad query strings.
      for (const { what, query } of pick(queryVariants(), index, 1)) list.push({ method, path: `${goodPath}?${query}`, body: hasBody ? "{}" : undefined, what });
      // Bad bodies (every method: a GET or DELETE with a body must not break either).
      for (const b of pick(wholeBodies(), index, 3)) {
        // A GET cannot carry a body (the runtime refuses to build such a request); a DELETE can.
        if (method === "GET" || (!hasBody && b.body === undefined)) continue;
        list.push({ method, path: goodPath, body: b.body, contentType: b.contentType, what: b.what });
      }
      if (hasBody && !PASSWORD_HASHING.test(path)) {
        // Routes whose body is opaque content (any object is valid) only get the values no content may hold.
        const bodies = OPAQUE_CONTENT.test(path) ? fieldBodies(index).filter((b) => /^every field (float|huge|negative|deep)$/.test(b.what)) : fieldBodies(index);
        for (const b of pick(bodies, index, 3)) list.push({ method, path: goodPath, body: b.body, what: b.what });
      }
    });

    // A run sends a sample of the probes: every k-th, from an offset chosen per run (printed, so a failure
    // can be replayed with that offset); successive runs cover the whole set.
    const total = probes.length + late.length;
    const k = Math.max(1, Math.ceil(total / BUDGET));
    const offset = Date.now() % k;
    const sample = <T,>(list: T[]) => list.filter((_p, i) => i % k === offset);
    probes.splice(0, probes.length, ...sample(probes));
    late.splice(0, late.length, ...sample(late));
    console.log(`bad-input probes: ${probes.length} + ${late.length} of ${total} (every ${k}th from offset ${offset})`);
    const failures: Failure[] = [];
    const sendProbe = async (p: Probe, token: string): Promise<void> => {
      const headers = new Headers();
      if (p.path.startsWith("/_matrix/federation/")) {
        let content: unknown;
        if (typeof p.body === "string") {
          try {
            content = JSON.parse(p.body);
          } catch {
            content = undefined;
          }
        }
        // The remote stand-in's signer recurses: deeply nested content goes unsigned (and is refused as such).
        if (!p.what.includes("deep")) {
          const signed = await remoteAuthorization({ name: remote, method: p.method, uri: p.path, content: content !== null && typeof content === "object" ? content : undefined });
          headers.set("Authorization", signed.authorization);
        }
      } else {
        headers.set("Authorization", `Bearer ${token}`);
      }
      if (p.body !== undefined && p.contentType !== null) headers.set("Content-Type", p.contentType ?? "application/json");
      let status: number;
      let text: string;
      try {
        const res = await worker.fetch(new Request(`https://${SERVER_NAME}${p.path}`, { method: p.method, headers, body: p.body }));
        status = res.status;
        text = await res.text();
      } catch (e) {
        status = 599;
        text = `threw: ${e instanceof Error ? e.message : String(e)}`;
      }
      const label = `${p.method} ${p.path.length > 160 ? p.path.slice(0, 160) + "…" : p.path} [${p.what}]`;
      if (status >= 500 && status !== 502 && status !== 504) {
        failures.push({ probe: label, status, answer: text.slice(0, 200) });
        console.log(`FAILURE ${status} ${label} ${text.slice(0, 200)}`);
        return;
      }
      if (status >= 400 && text.startsWith("{")) {
        let body: { errcode?: unknown; error?: unknown; flows?: unknown } | undefined;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        // A user-interactive auth challenge (401 with `flows`) carries an errcode only after a failed stage.
        const uiaChallenge = status === 401 && Array.isArray(body?.flows);
        if (!uiaChallenge && (typeof body?.errcode !== "string" || !body.errcode.startsWith("M_"))) {
          failures.push({ probe: label, status, answer: `not a Matrix error: ${text.slice(0, 200)}` });
          console.log(`FAILURE ${status} ${label} not a Matrix error: ${text.slice(0, 200)}`);
        }
      }
    };

    // A few at a time: the room and user Durable Objects serialise anyway, and the log stays readable.
    const run = async (list: Probe[], token: () => string) => {
      for (let i = 0; i < list.length; i += 16) await Promise.all(list.slice(i, i + 16).map((p) => sendProbe(p, token())));
    };
    await run(probes, () => alice.access_token);
    // Admin routes with an admin's token (a non-admin is refused before any input is read), then the rest
    // of the session-ending routes with Alice's.
    await run(
      late.filter((p) => p.path.startsWith("/_synapse/admin/")),
      () => admin.access_token,
    );
    await run(
      late.filter((p) => !p.path.startsWith("/_synapse/admin/")),
      () => alice.access_token,
    );

    expect(failures).toEqual([]);
  });
});
