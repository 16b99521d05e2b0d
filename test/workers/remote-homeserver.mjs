// A stand-in for the rest of the federation, run as an auxiliary worker of the workerd test pool
// (vitest.workers.config.ts, `miniflare.workers`). Myelin's outbound fetches reach it through the optional
// `FEDERATION_TEST_FETCHER` binding (federation-client/outbound-fetch.ts); it reaches Myelin through its
// `MYELIN` service binding. It is written independently of Myelin's code (its own canonical JSON, signing and
// X-Matrix handling, on workerd's WebCrypto) so that the tests check Myelin against a second implementation.
//
// It plays, by the requested host name (the URL's host, or the Host header when one was set):
// - homeservers `*.remote.test`: each has an ed25519 key derived from its name, serves /_matrix/key/v2/server and
//   answers GET /_matrix/federation/v1/query/profile and PUT /_matrix/federation/v1/send/{txnId} after checking
//   Myelin's X-Matrix signature with Myelin's published key. Name prefixes change the behaviour:
//   `badsig-` signs its key document wrongly, `wrongname-` names another server in it, `down-` answers 503 for
//   keys, `hidden-` is known only through the notary, `rotating-` changes key when told (/_test/rotate),
//   `longlived-` publishes keys valid for 30 days.
// - media (test/workers/media*.test.ts): `media-*` servers answer GET /_matrix/federation/v1/media/download/{id}
//   as multipart (`missing` → 404, `located` → a Location part pointing at `cdn.remote.test`, `truncated` → a
//   body cut short); `legacymedia-*` servers do not know that endpoint and serve /_matrix/media/v3/download.
// - URL previews (test/workers/media-preview.test.ts): web pages under `/_preview/` on any host, and A records for
//   `public.remote.test` (a public address) and `internal.remote.test` (a private one) at the DoH resolver.
// - `notary.remote.test`: a notary (POST /_matrix/key/v2/query) for the `hidden-` servers.
// - `/.well-known/matrix/server` for hosts listed in WELL_KNOWN, and a DNS-over-HTTPS resolver at `doh.test`.
// - `/_test/...` control endpoints on any host: sign a request as one of the remote servers, read counters,
//   read the transactions a server received (`/_test/transactions`), make a server fail the next ones
//   (`/_test/fail`), forget everything tests set and recorded (`/_test/reset`, done before every test file).
// - end-to-end keys of its users (federation part 2): answers POST /user/keys/query and /user/keys/claim and
//   GET /user/devices/{userId} with what a test stored for that server (`/_test/user-keys`, POST {server,
//   query?, claim?, devices?: {userId: answer}}); the requests it got are at `/_test/key-requests?server=`.
//   A server named `slow-...` answers key queries and claims after 3 s, one named `broken-...` with 500.
// - any other federation request a test told it how to answer (`/_test/answer`, POST {server, method, path,
//   status?, body}; a path ending in `*` is a prefix); the requests answered so far are at `/_test/answered?server=` ({method, path, query,
//   body}); `/_matrix/key/v3/...` documents (MSC4345) are stored the same way.
// - push gateways `*.push.test` (test/workers/pushers.test.ts): POST /_matrix/push/v1/notify, with control
//   endpoints under `/_test/push/` to read what a gateway got, make it fail or make it reject pushkeys.

const WELL_KNOWN = {
  "delegated.remote.test": { status: 200, body: '{"m.server":"target.remote.test:8448"}', headers: { "Cache-Control": "max-age=600" } },
  "delegated-ip.remote.test": { status: 200, body: '{"m.server":"10.1.2.3"}' },
  "delegated-srv.remote.test": { status: 200, body: '{"m.server":"srv-target.remote.test"}' },
  "wk-badjson.remote.test": { status: 200, body: "{not json" },
  "wk-badserver.remote.test": { status: 200, body: '{"m.server":"bad name!"}' },
  "wk-500.remote.test": { status: 500, body: "oops" },
  "wk-redirect.remote.test": { status: 302, location: "https://wk-redirected.remote.test/.well-known/matrix/server" },
  "wk-redirected.remote.test": { status: 200, body: '{"m.server":"after-redirect.remote.test:443"}' },
};

const SRV = {
  "_matrix-fed._tcp.srv.remote.test": ["10 5 8448 fed-target.remote.test."],
  "_matrix._tcp.srv.remote.test": ["10 5 1111 legacy-target.remote.test."],
  "_matrix._tcp.legacy-srv.remote.test": ["10 5 2222 legacy-only.remote.test."],
  "_matrix-fed._tcp.srv-target.remote.test": ["5 0 9000 low.remote.test.", "10 0 9001 high.remote.test."],
  "_matrix-fed._tcp.srv-dot.remote.test": ["0 0 0 ."],
};

/** A records of the DNS-over-HTTPS resolver (URL previews check where a name points). */
const A_RECORDS = { "public.remote.test": "93.184.216.34", "internal.remote.test": "10.1.2.3" };

/** Where a delegating server's federation API lives (from WELL_KNOWN and SRV above) → its server name. */
const SERVED_FOR = {
  "target.remote.test:8448": "delegated.remote.test",
  "fed-target.remote.test:8448": "srv.remote.test",
  "srv.remote.test": "srv.remote.test",
};

const counters = new Map();
/** Transactions received per server name (PUT /send/{txnId}), every attempt, in arrival order. */
const transactions = new Map();
/** Per server name: answer the next `times` transactions with `status` (503 if unset). */
const failures = new Map();
const count = (key) => counters.set(key, (counters.get(key) ?? 0) + 1);
const rotations = new Map();
/** Per server name: the stored answers for key queries, claims and device lists. */
const userKeys = new Map();
/** Per server name: key requests received ({path, body}). */
const keyRequests = new Map();
/** Stored answers by "<server> <method> <path>", and the requests they answered per server. A stored path
 * ending in `*` answers every path that starts with what comes before it. */
const answers = new Map();
function storedByPrefix(key) {
  for (const [k, v] of answers) if (k.endsWith("*") && key.startsWith(k.slice(0, -1))) return v;
  return undefined;
}
const answered = new Map();
const seen = [];

// ---- encoding, canonical JSON, signing -------------------------------------------------------------------

const b64 = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/=+$/, "");
const unb64 = (text) => Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

function canonical(value) {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort();
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
}
const utf8 = (s) => new TextEncoder().encode(s);

async function identity(name, version = "1") {
  const seed = new Uint8Array(await crypto.subtle.digest("SHA-256", utf8(`seed:${name}:${version}`)));
  const pkcs8 = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20, ...seed]);
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  return { name, keyId: `ed25519:v${version}`, publicKey: b64(unb64(jwk.x)), privateKey, seed: b64(seed) };
}

async function sign(obj, id) {
  const { signatures, unsigned, ...rest } = obj;
  const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", id.privateKey, utf8(canonical(rest))));
  return { ...obj, signatures: { ...(signatures ?? {}), [id.name]: { ...(signatures?.[id.name] ?? {}), [id.keyId]: b64(sig) } } };
}

async function verify(obj, entity, keyId, publicKey) {
  const sig = obj.signatures?.[entity]?.[keyId];
  if (typeof sig !== "string") return false;
  const { signatures, unsigned, ...rest } = obj;
  const key = await crypto.subtle.importKey("raw", unb64(publicKey), { name: "Ed25519" }, false, ["verify"]);
  return crypto.subtle.verify("Ed25519", key, unb64(sig), utf8(canonical(rest)));
}

function xMatrix(origin, destination, keyId, sig) {
  return `X-Matrix origin="${origin}",destination="${destination}",key="${keyId}",sig="${sig}"`;
}

async function signRequest(id, method, uri, destination, content) {
  const json = { method, uri, origin: id.name, destination };
  if (content !== undefined) json.content = content;
  const signed = await sign(json, id);
  return xMatrix(id.name, destination, id.keyId, signed.signatures[id.name][id.keyId]);
}

async function currentIdentity(name) {
  return identity(name, String(rotations.get(name) ?? 1));
}

async function keyDocument(name) {
  const id = await currentIdentity(name);
  const version = rotations.get(name) ?? 1;
  const old = {};
  for (let v = 1; v < version; v++) {
    const o = await identity(name, String(v));
    old[o.keyId] = { key: o.publicKey, expired_ts: 1_000_000 + v };
  }
  const doc = {
    server_name: name.startsWith("wrongname-") ? "someone-else.remote.test" : name,
    valid_until_ts: Date.now() + (name.startsWith("longlived-") ? 30 * 24 * 3600_000 : 3600_000),
    verify_keys: { [id.keyId]: { key: id.publicKey } },
    old_verify_keys: old,
  };
  const signed = await sign(doc, id);
  if (name.startsWith("badsig-")) {
    const s = signed.signatures[name][id.keyId];
    signed.signatures[name][id.keyId] = (s[0] === "A" ? "B" : "A") + s.slice(1);
  }
  return signed;
}

// ---- checking Myelin's requests ---------------------------------------------------------------------------

function parseAuth(header) {
  const m = /^X-Matrix (.*)$/.exec(header ?? "");
  if (!m) return null;
  const params = {};
  for (const part of m[1].split(",")) {
    const eq = part.indexOf("=");
    params[part.slice(0, eq).trim()] = part.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
  }
  return params;
}

/** Checks Myelin's X-Matrix signature with the key Myelin publishes; returns an error text or null. */
async function checkMyelinSignature(request, env, serverName, bodyText) {
  const auth = parseAuth(request.headers.get("Authorization"));
  if (!auth) return "no X-Matrix header";
  if (auth.destination !== serverName) return `destination ${auth.destination} is not ${serverName}`;
  const keyRes = await env.MYELIN.fetch(`https://${auth.origin}/_matrix/key/v2/server`);
  const raw = await keyRes.text();
  const doc = JSON.parse(raw);
  // A peer verifies the signature over the bytes it received: they must be canonical.
  if (canonical(doc) !== raw) return "key document is not canonical JSON";
  const publicKey = doc.verify_keys?.[auth.key]?.key;
  if (!publicKey) return `unknown key ${auth.key}`;
  if (!(await verify(doc, auth.origin, auth.key, publicKey))) return "key document signature is wrong";
  const url = new URL(request.url);
  const json = { method: request.method, uri: url.pathname + url.search, origin: auth.origin, destination: auth.destination };
  if (bodyText) json.content = JSON.parse(bodyText);
  json.signatures = { [auth.origin]: { [auth.key]: auth.sig } };
  if (!(await verify(json, auth.origin, auth.key, publicKey))) return "request signature is wrong";
  return null;
}

const json = (body, status = 200, headers = {}) =>
  new Response(typeof body === "string" ? body : JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });

/** Push gateways: notifications received (by gateway host; `<host>:failed` for the ones answered with an
 * error), failures to answer with, and pushkeys to reject. */
const pushes = new Map();
const pushFailures = new Map();
const pushRejections = new Map();

/** Everything above that tests change. The workers stage runs many test files in one workerd, and its set-up
 * (test/workers/fresh-state.ts) empties these before each file (POST /_test/reset), so that a file sees the
 * state a fresh worker starts with: add any new state here. */
const STATE = [counters, transactions, failures, rotations, userKeys, keyRequests, answers, answered, seen, pushes, pushFailures, pushRejections];

export default {
  async fetch(request, env) {
    const arrivedAt = Date.now();
    const url = new URL(request.url);
    const host = request.headers.get("Host") ?? url.host;
    const serverName = host;
    const hostname = host.replace(/:\d+$/, "");
    seen.push({ method: request.method, url: request.url, host, authorization: request.headers.get("Authorization") });

    // Control endpoints.
    if (url.pathname === "/_test/reset") {
      for (const item of STATE) Array.isArray(item) ? item.splice(0) : item.clear();
      return json({});
    }
    if (url.pathname === "/_test/sign") {
      const { name, method, uri, destination, content, version } = await request.json();
      const id = version ? await identity(name, String(version)) : await currentIdentity(name);
      return json({ authorization: await signRequest(id, method, uri, destination, content), keyId: id.keyId, publicKey: id.publicKey, seed: id.seed });
    }
    if (url.pathname === "/_test/rotate") {
      const name = url.searchParams.get("name");
      rotations.set(name, (rotations.get(name) ?? 1) + 1);
      return json({ version: rotations.get(name) });
    }
    if (url.pathname === "/_test/counters") return json(Object.fromEntries(counters));
    // Transactions: every PUT /send a server received, in arrival order (`?server=`), and failures to
    // answer the next ones with (POST {server, times, status}).
    if (url.pathname === "/_test/transactions") return json(transactions.get(url.searchParams.get("server")) ?? []);
    if (url.pathname === "/_test/fail") {
      const { server, times, status } = await request.json();
      failures.set(server, { times, status: status ?? 503 });
      return json({});
    }
    if (url.pathname === "/_test/user-keys") {
      const { server, ...answers } = await request.json();
      userKeys.set(server, { ...(userKeys.get(server) ?? {}), ...answers });
      return json({});
    }
    if (url.pathname === "/_test/answer") {
      const { server, method, path, status, body } = await request.json();
      answers.set(`${server} ${method} ${path}`, { status: status ?? 200, body });
      return json({});
    }
    if (url.pathname === "/_test/answered") return json(answered.get(url.searchParams.get("server")) ?? []);
    if (url.pathname === "/_test/key-requests") return json(keyRequests.get(url.searchParams.get("server")) ?? []);
    if (url.pathname === "/_test/seen") return json(seen.filter((s) => !url.searchParams.get("host") || s.host === url.searchParams.get("host")));
    if (url.pathname === "/_test/identity") {
      const id = await currentIdentity(url.searchParams.get("name"));
      return json({ keyId: id.keyId, publicKey: id.publicKey });
    }

    // Push gateways (test/workers/pushers.test.ts): `*.push.test` serve POST /_matrix/push/v1/notify and keep
    // what they got (`/_test/push/received?gateway=`); a test makes one fail the next requests (POST
    // /_test/push/fail {gateway, times, status}) or answer `rejected` with some pushkeys (POST
    // /_test/push/reject {gateway, pushkeys}).
    if (url.pathname === "/_test/push/received") return json(pushes.get(url.searchParams.get("gateway")) ?? []);
    if (url.pathname === "/_test/push/fail") {
      const { gateway, times, status } = await request.json();
      pushFailures.set(gateway, { times, status: status ?? 503 });
      return json({});
    }
    if (url.pathname === "/_test/push/reject") {
      const { gateway, pushkeys } = await request.json();
      pushRejections.set(gateway, pushkeys);
      return json({});
    }
    if (hostname.endsWith(".push.test") && url.pathname === "/_matrix/push/v1/notify" && request.method === "POST") {
      const body = await request.json();
      const failure = pushFailures.get(hostname);
      if (failure && failure.times > 0) {
        failure.times -= 1;
        if (!pushes.has(`${hostname}:failed`)) pushes.set(`${hostname}:failed`, []);
        pushes.get(`${hostname}:failed`).push(body);
        return json({ errcode: "M_UNKNOWN", error: "gateway down (test)" }, failure.status);
      }
      if (!pushes.has(hostname)) pushes.set(hostname, []);
      pushes.get(hostname).push(body);
      return json({ rejected: pushRejections.get(hostname) ?? [] });
    }

    // DNS over HTTPS (JSON API).
    if (hostname === "doh.test") {
      const name = url.searchParams.get("name");
      const type = url.searchParams.get("type");
      if (type === "A" || type === "AAAA") {
        const a = type === "A" ? A_RECORDS[name] : undefined;
        if (!a) return json({ Status: 3, Answer: [] }, 200, { "Content-Type": "application/dns-json" });
        return json({ Status: 0, Answer: [{ name, type: 1, TTL: 300, data: a }] }, 200, { "Content-Type": "application/dns-json" });
      }
      count(`doh:${name}`);
      const records = SRV[name];
      if (!records) return json({ Status: 3, Answer: [] }, 200, { "Content-Type": "application/dns-json" });
      return json({ Status: 0, Answer: records.map((data) => ({ name, type: 33, TTL: 300, data })) }, 200, { "Content-Type": "application/dns-json" });
    }

    if (url.pathname === "/.well-known/matrix/server") {
      count(`well-known:${hostname}`);
      const wk = WELL_KNOWN[hostname];
      if (!wk) return new Response("not found", { status: 404 });
      if (wk.location) return new Response(null, { status: wk.status, headers: { Location: wk.location } });
      return new Response(wk.body, { status: wk.status, headers: wk.headers ?? {} });
    }

    // Keys.
    if (url.pathname === "/_matrix/key/v2/server") {
      count(`keys:${serverName}`);
      if (serverName.startsWith("down-") || serverName.startsWith("hidden-")) return json({ errcode: "M_UNKNOWN", error: "down" }, 503);
      return json(await keyDocument(serverName));
    }
    // MSC4345 key/v3 documents: what a test stored with /_test/answer (method GET, this path), else 404.
    if (url.pathname.startsWith("/_matrix/key/v3/")) {
      const stored = answers.get(`${serverName} GET ${url.pathname}`);
      return stored ? json(stored.body, stored.status) : json({ errcode: "M_NOT_FOUND", error: "no key/v3 document" }, 404);
    }
    if (url.pathname === "/_matrix/key/v2/query" && request.method === "POST" && hostname === "notary.remote.test") {
      count(`notary:${serverName}`);
      const body = await request.json();
      const notary = await currentIdentity(serverName);
      const out = [];
      for (const name of Object.keys(body.server_keys ?? {})) {
        if (!name.startsWith("hidden-") && !name.startsWith("badsig-")) continue;
        let doc = await keyDocument(name);
        if (name.startsWith("hidden-unnotarised")) {
          out.push(doc);
          continue;
        }
        out.push(await sign(doc, notary));
      }
      return json({ server_keys: out });
    }

    // Web pages for URL previews.
    if (url.pathname.startsWith("/_preview/")) {
      const page = url.pathname.slice("/_preview/".length);
      count(`preview:${host}:${page}`);
      const html = (body) => new Response(body, { headers: { "Content-Type": "text/html; charset=utf-8" } });
      if (page === "og")
        return html(`<!doctype html><html><head><title>ignored</title>
<meta property="og:title" content="Caf&#233; &amp; &quot;Bar&quot; &#x2603;">
<meta content="An OpenGraph description" property="og:description">
<meta property='og:image' content='/_preview/dot.png'>
<meta property="og:type" content="website"></head><body>hello</body></html>`);
      if (page === "oembed-page")
        return html(`<html><head><meta property="og:title" content="page title"><meta property="og:site_name" content="The Site">
<meta property="og:description" content="page description"><link type="application/json+oembed" rel="alternate" href="/_preview/oembed.json"></head></html>`);
      if (page === "oembed.json")
        return json({ version: "1.0", type: "video", title: "Embedded &amp; titled", author_name: "An Author", thumbnail_url: "/_preview/dot.png", html: "<iframe src='x'></iframe><p>Watch <b>this</b> &amp; that</p>", cache_age: 60 });
      if (page === "oembed-broken")
        return html(`<html><head><title>kept</title><link rel="alternate" type="application/json+oembed" href="/_preview/missing"></head></html>`);
      if (page === "title") return html(`<html><head><title> Just a title </title><meta name="description" content="described"></head></html>`);
      if (page === "dot.png") {
        const png = Uint8Array.from(atob("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="), (c) => c.charCodeAt(0));
        return new Response(png, { headers: { "Content-Type": "image/png" } });
      }
      if (page === "to-private") return new Response(null, { status: 302, headers: { Location: "http://10.9.9.9/_preview/og" } });
      if (page === "big") return new Response(new Uint8Array(11 * 1024 * 1024), { headers: { "Content-Type": "text/html" } });
      return new Response("not found", { status: 404 });
    }

    // Media for media tests: a CDN behind `Location` parts, and the legacy download of `legacymedia-*` servers.
    if (hostname === "cdn.remote.test") {
      count(`cdn:${url.pathname}`);
      return new Response(`cdn bytes of ${url.pathname}`, { headers: { "Content-Type": "text/plain", "Content-Disposition": "inline; filename=cdn.txt" } });
    }
    if (url.pathname.startsWith("/_matrix/media/v3/download/") && serverName.startsWith("legacymedia-")) {
      const [, , , , , , id] = url.pathname.split("/");
      count(`legacymedia:${serverName}:${id}`);
      if (id === "missing") return json({ errcode: "M_NOT_FOUND", error: "no such media" }, 404);
      return new Response(`legacy bytes of ${id}`, { headers: { "Content-Type": "image/png", "Content-Disposition": "inline; filename*=utf-8''l%C3%A9gacy.png" } });
    }

    // Federation endpoints that check Myelin's signature.
    if (url.pathname.startsWith("/_matrix/federation/")) {
      const me = SERVED_FOR[host] ?? serverName;
      count(`federation:${me}`);
      const bodyText = request.method === "GET" ? "" : await request.text();
      const problem = await checkMyelinSignature(request, env, me, bodyText);
      if (problem) return json({ errcode: "M_UNAUTHORIZED", error: problem }, 401);
      if (url.pathname === "/_matrix/federation/v1/query/profile" && !answers.has(`${me} GET ${url.pathname}`)) {
        return json({ displayname: `profile on ${me}`, user_id: url.searchParams.get("user_id"), host });
      }
      if (url.pathname.startsWith("/_matrix/federation/v1/send/") && request.method === "PUT") {
        const body = JSON.parse(bodyText);
        const txnId = decodeURIComponent(url.pathname.slice("/_matrix/federation/v1/send/".length));
        const failure = failures.get(me);
        const failing = failure !== undefined && failure.times > 0;
        if (failing) failure.times--;
        const list = transactions.get(me) ?? [];
        transactions.set(me, list);
        list.push({ txnId, body, accepted: !failing, origin: parseAuth(request.headers.get("Authorization"))?.origin, arrivedAt });
        if (failing) return json({ errcode: "M_UNKNOWN", error: "told to fail" }, failure.status);
        return json({ pdus: {}, received: body });
      }
      if (url.pathname.startsWith("/_matrix/federation/v1/media/download/") && me.startsWith("media-")) {
        const id = decodeURIComponent(url.pathname.split("/")[6]);
        count(`media:${me}:${id}`);
        if (id === "missing") return json({ errcode: "M_NOT_FOUND", error: "no such media" }, 404);
        const boundary = "6d656469612d74657374";
        const jsonPart = `--${boundary}\r\nContent-Type: application/json\r\n\r\n{}\r\n`;
        if (id === "located") {
          const body = `${jsonPart}--${boundary}\r\nLocation: https://cdn.remote.test/file/${me}\r\n\r\n\r\n--${boundary}--\r\n`;
          return new Response(body, { headers: { "Content-Type": `multipart/mixed; boundary=${boundary}` } });
        }
        // The file contains something that looks like the boundary without being it, and a CRLF at the end.
        const file = `media ${id} of ${me}\r\n--${boundary.slice(0, 10)} not a boundary\r\n`;
        const fileHead = `--${boundary}\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=remote.txt\r\n\r\n`;
        const body = id === "truncated" ? `${jsonPart}${fileHead}${file}` : `${jsonPart}${fileHead}${file}\r\n--${boundary}--\r\n`;
        return new Response(body, { headers: { "Content-Type": `multipart/mixed; boundary="${boundary}"` } });
      }
      if (url.pathname.startsWith("/_matrix/federation/v1/user/")) {
        const list = keyRequests.get(me) ?? [];
        keyRequests.set(me, list);
        list.push({ method: request.method, path: url.pathname, body: bodyText ? JSON.parse(bodyText) : null });
        const stored = userKeys.get(me) ?? {};
        if (me.startsWith("slow-")) await new Promise((resolve) => setTimeout(resolve, 3_000));
        if (me.startsWith("broken-")) return json({ errcode: "M_UNKNOWN", error: "broken on purpose" }, 500);
        if (url.pathname === "/_matrix/federation/v1/user/keys/query") return json(stored.query ?? { device_keys: {} });
        if (url.pathname === "/_matrix/federation/v1/user/keys/claim") return json(stored.claim ?? { one_time_keys: {} });
        if (url.pathname.startsWith("/_matrix/federation/v1/user/devices/")) {
          const userId = decodeURIComponent(url.pathname.slice("/_matrix/federation/v1/user/devices/".length));
          count(`devices:${userId}`);
          const answer = stored.devices?.[userId];
          return answer ? json(answer) : json({ errcode: "M_NOT_FOUND", error: "no such user" }, 404);
        }
      }
      const stored = answers.get(`${me} ${request.method} ${url.pathname}`) ?? storedByPrefix(`${me} ${request.method} ${url.pathname}`);
      if (stored) {
        const list = answered.get(me) ?? [];
        answered.set(me, list);
        list.push({ method: request.method, path: url.pathname, query: url.search, body: bodyText ? JSON.parse(bodyText) : null });
        return json(stored.body, stored.status);
      }
      if (url.pathname === "/_matrix/federation/v1/slow") {
        await new Promise((resolve) => setTimeout(resolve, 5_000));
        return json({});
      }
      if (url.pathname === "/_matrix/federation/v1/not-json") return new Response("<html>", { status: 200 });
      return json({ errcode: "M_UNRECOGNIZED", error: "Unrecognized request" }, 404);
    }
    return json({ errcode: "M_UNRECOGNIZED", error: "Unrecognized request" }, 404);
  },
};
