// The media repository (worker/client/media.ts, worker/media/*): uploads streamed into R2, asynchronous
// uploads, authenticated and legacy downloads with Synapse's safe-serving headers, Range, and media over
// federation both ways (the remote servers are played by test/workers/remote-homeserver.mjs).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../worker/index.js";
import type { Env } from "../../worker/env.js";
import { SERVER_NAME, registerUser, uniqueLocalpart } from "./helpers.js";
import { counter, signedInbound, uniqueServer } from "./federation-helpers.js";
import { boundaryOf, parseMediaMultipart } from "../../worker/media/multipart.js";

const app = buildApp();
const baseEnv = env as unknown as Env;

interface Call {
  token?: string;
  body?: BodyInit | null;
  headers?: Record<string, string>;
  /** Settings for this request only (e.g. MEDIA_LEGACY_FREEZE_TIME). */
  vars?: Partial<Env>;
}

/** Sends a request to the app with optional per-request settings; the body is left unread. */
async function call(method: string, path: string, { token, body, headers, vars }: Call = {}): Promise<Response> {
  const h = new Headers(headers);
  if (token !== undefined) h.set("Authorization", `Bearer ${token}`);
  return app.fetch(new Request(`https://${SERVER_NAME}${path}`, { method, headers: h, body }), { ...baseEnv, ...vars });
}

async function json(res: Response): Promise<any> {
  return JSON.parse(await res.text());
}

async function upload(token: string, content: BodyInit, type?: string, fileName?: string, vars?: Partial<Env>) {
  const q = fileName === undefined ? "" : `?filename=${encodeURIComponent(fileName)}`;
  const res = await call("POST", `/_matrix/media/v3/upload${q}`, { token, body: content, headers: type === undefined ? {} : { "Content-Type": type }, vars });
  return { status: res.status, body: await json(res) };
}

const mediaPath = (mxc: string) => mxc.slice("mxc://".length);

/** A body of `size` bytes without a declared length (chunked), as a client streaming a file sends it. */
function chunkedBody(size: number, chunk = 64 * 1024): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= size) return controller.close();
      const n = Math.min(chunk, size - sent);
      const bytes = new Uint8Array(n);
      for (let i = 0; i < n; i++) bytes[i] = (sent + i) % 251;
      sent += n;
      controller.enqueue(bytes);
    },
  });
}

describe("media config and upload", () => {
  it("reports the upload limit, default 50 MB, and requires a token", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("cfg"));
    const res = await call("GET", "/_matrix/client/v1/media/config", { token: access_token });
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ "m.upload.size": 50 * 1024 * 1024 });
    const set = await call("GET", "/_matrix/client/v1/media/config", { token: access_token, vars: { MAX_UPLOAD_SIZE: "10M" } });
    expect(await json(set)).toEqual({ "m.upload.size": 10 * 1024 * 1024 });
    const anon = await call("GET", "/_matrix/client/v1/media/config");
    expect(anon.status).toBe(401);
    expect((await json(anon)).errcode).toBe("M_MISSING_TOKEN");
  });

  it("stores the uploader's content type and file name, and another user downloads it with safe headers", async () => {
    const alice = await registerUser(uniqueLocalpart("up"));
    const bob = await registerUser(uniqueLocalpart("down"));
    const up = await upload(alice.access_token, "hello media", "text/plain", "hello.txt");
    expect(up.status).toBe(200);
    expect(up.body.content_uri).toMatch(new RegExp(`^mxc://${SERVER_NAME}/[A-Za-z]{24}$`));
    const res = await call("GET", `/_matrix/client/v1/media/download/${mediaPath(up.body.content_uri)}`, { token: bob.access_token });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("hello media");
    expect(res.headers.get("Content-Type")).toBe("text/plain; charset=UTF-8");
    expect(res.headers.get("Content-Disposition")).toBe("inline; filename=hello.txt");
    expect(res.headers.get("Content-Length")).toBe("11");
    expect(res.headers.get("Content-Security-Policy")).toContain("sandbox");
    expect(res.headers.get("X-Content-Type-Options")).toBe("nosniff");
    expect(res.headers.get("Cross-Origin-Resource-Policy")).toBe("cross-origin");
    expect(res.headers.get("Cache-Control")).toBe("public,max-age=86400,s-maxage=86400");
  });

  it("serves unsafe types as attachments, non-token names as filename*, and the name from the path", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("html"));
    const up = await upload(access_token, "<script>alert(1)</script>", "text/html", "pwn é.html");
    const path = mediaPath(up.body.content_uri);
    const res = await call("GET", `/_matrix/client/v1/media/download/${path}`, { token: access_token });
    expect(res.headers.get("Content-Disposition")).toBe("attachment; filename*=utf-8''pwn%20%C3%A9.html");
    const named = await call("GET", `/_matrix/client/v1/media/download/${path}/other.txt`, { token: access_token });
    expect(named.headers.get("Content-Disposition")).toBe("attachment; filename=other.txt");
    // SVG can carry script: never inline.
    const svg = await upload(access_token, "<svg/>", "image/svg+xml");
    const svgRes = await call("GET", `/_matrix/client/v1/media/download/${mediaPath(svg.body.content_uri)}`, { token: access_token });
    expect(svgRes.headers.get("Content-Disposition")).toBe("attachment");
  });

  it("defaults the content type to application/octet-stream and accepts an empty file", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("empty"));
    const up = await upload(access_token, new Uint8Array(0));
    expect(up.status).toBe(200);
    const res = await call("GET", `/_matrix/client/v1/media/download/${mediaPath(up.body.content_uri)}`, { token: access_token });
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toBe("application/octet-stream");
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  it("refuses uploads over MAX_UPLOAD_SIZE with M_TOO_LARGE and accepts one of exactly the limit", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("big"));
    const vars = { MAX_UPLOAD_SIZE: "1000" };
    expect(await upload(access_token, new Uint8Array(1001), "application/octet-stream", undefined, vars)).toMatchObject({ status: 413, body: { errcode: "M_TOO_LARGE" } });
    expect((await upload(access_token, new Uint8Array(1000), "application/octet-stream", undefined, vars)).status).toBe(200);
    // Chunked bodies (no Content-Length) are counted as they stream.
    const over = await upload(access_token, chunkedBody(1001, 100), "application/octet-stream", undefined, vars);
    expect(over).toMatchObject({ status: 413, body: { errcode: "M_TOO_LARGE" } });
    const exact = await upload(access_token, chunkedBody(1000, 100), "application/octet-stream", undefined, vars);
    expect(exact.status).toBe(200);
  });

  it("checks a declared Content-Length against the limit and against the body", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("declared"));
    const vars = { MAX_UPLOAD_SIZE: "1000" };
    const send = (body: BodyInit, length: number) =>
      call("POST", "/_matrix/media/v3/upload", { token: access_token, body, headers: { "Content-Length": String(length) }, vars });
    const over = await send(new Uint8Array(1001), 1001);
    expect(over.status).toBe(413);
    expect((await json(over)).errcode).toBe("M_TOO_LARGE");
    const exact = await send(new Uint8Array(1000).fill(7), 1000);
    expect(exact.status).toBe(200);
    const { content_uri } = await json(exact);
    const res = await call("GET", `/_matrix/client/v1/media/download/${mediaPath(content_uri)}`, { token: access_token });
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(new Uint8Array(1000).fill(7));
  });

  it("streams a chunked upload larger than one R2 part and returns the same bytes", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("chunk"));
    const size = 8 * 1024 * 1024 + 12345;
    const up = await upload(access_token, chunkedBody(size), "application/octet-stream");
    expect(up.status).toBe(200);
    const res = await call("GET", `/_matrix/client/v1/media/download/${mediaPath(up.body.content_uri)}`, { token: access_token });
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(bytes.length).toBe(size);
    expect(bytes[0]).toBe(0);
    expect(bytes[size - 1]).toBe((size - 1) % 251);
    expect(bytes[8 * 1024 * 1024]).toBe((8 * 1024 * 1024) % 251);
  });

  it("enforces a daily per-user upload allowance when configured", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("quota"));
    const vars = { MEDIA_UPLOAD_LIMIT_PER_DAY: "100" };
    expect((await upload(access_token, new Uint8Array(60), undefined, undefined, vars)).status).toBe(200);
    expect((await upload(access_token, new Uint8Array(40), undefined, undefined, vars)).status).toBe(200);
    expect(await upload(access_token, new Uint8Array(1), undefined, undefined, vars)).toMatchObject({ status: 400, body: { errcode: "M_RESOURCE_LIMIT_EXCEEDED" } });
  });

  it("requires a token to upload", async () => {
    const res = await call("POST", "/_matrix/media/v3/upload", { body: "x" });
    expect(res.status).toBe(401);
  });
});

describe("asynchronous upload", () => {
  it("creates an ID, accepts one upload from its creator, and refuses a second and other users", async () => {
    const alice = await registerUser(uniqueLocalpart("async"));
    const bob = await registerUser(uniqueLocalpart("other"));
    const before = Date.now();
    const created = await call("POST", "/_matrix/media/v1/create", { token: alice.access_token });
    expect(created.status).toBe(200);
    const { content_uri, unused_expires_at } = await json(created);
    expect(unused_expires_at).toBeGreaterThanOrEqual(before + 24 * 3600 * 1000);
    const path = mediaPath(content_uri);
    // Not uploaded yet: a download with timeout_ms=0 answers 504 M_NOT_YET_UPLOADED.
    const early = await call("GET", `/_matrix/client/v1/media/download/${path}?timeout_ms=0`, { token: bob.access_token });
    expect(early.status).toBe(504);
    expect((await json(early)).errcode).toBe("M_NOT_YET_UPLOADED");

    const byBob = await call("PUT", `/_matrix/media/v3/upload/${path}`, { token: bob.access_token, body: "bob", headers: { "Content-Type": "text/plain" } });
    expect(byBob.status).toBe(403);
    expect((await json(byBob)).errcode).toBe("M_FORBIDDEN");
    const put = await call("PUT", `/_matrix/media/v3/upload/${path}?filename=a.txt`, { token: alice.access_token, body: "async!", headers: { "Content-Type": "text/plain" } });
    expect(put.status).toBe(200);
    const again = await call("PUT", `/_matrix/media/v3/upload/${path}`, { token: alice.access_token, body: "again", headers: { "Content-Type": "text/plain" } });
    expect(again.status).toBe(409);
    expect((await json(again)).errcode).toBe("M_CANNOT_OVERWRITE_MEDIA");
    const res = await call("GET", `/_matrix/client/v1/media/download/${path}`, { token: bob.access_token });
    expect(await res.text()).toBe("async!");
    expect(res.headers.get("Content-Disposition")).toBe("inline; filename=a.txt");
  });

  it("a download waiting for the upload gets it when it arrives", async () => {
    const alice = await registerUser(uniqueLocalpart("wait"));
    const { content_uri } = await json(await call("POST", "/_matrix/media/v1/create", { token: alice.access_token }));
    const waiting = call("GET", `/_matrix/client/v1/media/download/${mediaPath(content_uri)}?timeout_ms=10000`, { token: alice.access_token });
    await call("PUT", `/_matrix/media/v3/upload/${mediaPath(content_uri)}`, { token: alice.access_token, body: "late", headers: { "Content-Type": "text/plain" } });
    const res = await waiting;
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("late");
  });

  it("expired IDs are gone; unknown IDs and other servers' are 404", async () => {
    const alice = await registerUser(uniqueLocalpart("exp"));
    const vars = { MEDIA_UNUSED_EXPIRATION_MS: "0" };
    const { content_uri } = await json(await call("POST", "/_matrix/media/v1/create", { token: alice.access_token, vars }));
    const put = await call("PUT", `/_matrix/media/v3/upload/${mediaPath(content_uri)}`, { token: alice.access_token, body: "x" });
    expect(put.status).toBe(404);
    expect((await json(put)).errcode).toBe("M_NOT_FOUND");
    const unknown = await call("PUT", `/_matrix/media/v3/upload/${SERVER_NAME}/nosuchmedia`, { token: alice.access_token, body: "x" });
    expect(unknown.status).toBe(404);
    const remote = await call("PUT", `/_matrix/media/v3/upload/other.example/abc`, { token: alice.access_token, body: "x" });
    expect(remote.status).toBe(404);
  });

  it("limits pending IDs per user (default 5) with M_LIMIT_EXCEEDED", async () => {
    const alice = await registerUser(uniqueLocalpart("pend"));
    for (let i = 0; i < 5; i++) expect((await call("POST", "/_matrix/media/v1/create", { token: alice.access_token })).status).toBe(200);
    const sixth = await call("POST", "/_matrix/media/v1/create", { token: alice.access_token });
    expect(sixth.status).toBe(429);
    const body = await json(sixth);
    expect(body.errcode).toBe("M_LIMIT_EXCEEDED");
    expect(body.retry_after_ms).toBeGreaterThan(0);
  });

  it("rate-limits creation per user (RC_MEDIA_CREATE, Synapse's rc_media_create): the burst passes, one more is 429, others unaffected", async () => {
    const vars = { RC_MEDIA_CREATE: "0.001,3", MEDIA_MAX_PENDING_UPLOADS: "100" };
    const alice = await registerUser(uniqueLocalpart("rcm"));
    const bob = await registerUser(uniqueLocalpart("rcm"));
    for (let i = 0; i < 3; i++) expect((await call("POST", "/_matrix/media/v1/create", { token: alice.access_token, vars })).status).toBe(200);
    const fourth = await call("POST", "/_matrix/media/v1/create", { token: alice.access_token, vars });
    expect(fourth.status).toBe(429);
    const body = await json(fourth);
    expect(body.errcode).toBe("M_LIMIT_EXCEEDED");
    expect(body.retry_after_ms).toBeGreaterThan(0);
    expect((await call("POST", "/_matrix/media/v1/create", { token: bob.access_token, vars })).status).toBe(200);
    // The refused request created nothing: alice has exactly three pending IDs.
    const { results } = await baseEnv.DB.prepare("SELECT count(*) AS n FROM media WHERE user_id = ? AND uploaded_ts IS NULL").bind(alice.user_id).all<{ n: number }>();
    expect(results[0]!.n).toBe(3);
  });
});

describe("downloads", () => {
  it("requires a token on the authenticated endpoint and answers unknown media 404", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("dl"));
    const up = await upload(access_token, "secret", "text/plain");
    const anon = await call("GET", `/_matrix/client/v1/media/download/${mediaPath(up.body.content_uri)}`);
    expect(anon.status).toBe(401);
    const missing = await call("GET", `/_matrix/client/v1/media/download/${SERVER_NAME}/nosuchmediaid`, { token: access_token });
    expect(missing.status).toBe(404);
    expect((await json(missing)).errcode).toBe("M_NOT_FOUND");
    expect(missing.headers.get("X-Content-Type-Options")).toBe("nosniff");
    const bad = await call("GET", `/_matrix/client/v1/media/download/${SERVER_NAME}/bad%20id`, { token: access_token });
    expect(bad.status).toBe(404);
  });

  it("legacy endpoints serve only media stored before the freeze time", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("legacy"));
    const up = await upload(access_token, "old", "text/plain");
    const path = `/_matrix/media/v3/download/${mediaPath(up.body.content_uri)}`;
    // Unset: Synapse's default enable_authenticated_media, nothing on the legacy endpoints.
    expect((await call("GET", path)).status).toBe(404);
    const later = String(Date.now() + 60_000);
    const ok = await call("GET", path, { vars: { MEDIA_LEGACY_FREEZE_TIME: later } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe("old");
    const earlier = new Date(Date.now() - 60_000).toISOString();
    const refused = await call("GET", path, { vars: { MEDIA_LEGACY_FREEZE_TIME: earlier } });
    expect(refused.status).toBe(404);
    expect((await json(refused)).errcode).toBe("M_NOT_FOUND");
    // The freeze instant itself: media created at exactly that time is after it.
    const { results } = await baseEnv.DB.prepare("SELECT created_ts FROM media WHERE media_id = ?").bind(up.body.content_uri.split("/").pop()).all<{ created_ts: number }>();
    const atFreeze = await call("GET", path, { vars: { MEDIA_LEGACY_FREEZE_TIME: String(results[0].created_ts) } });
    expect(atFreeze.status).toBe(404);
    const justAfter = await call("GET", path, { vars: { MEDIA_LEGACY_FREEZE_TIME: String(results[0].created_ts + 1) } });
    expect(justAfter.status).toBe(200);
  });

  it("legacy endpoints fetch remote media only without a freeze (off: Synapse's enable_authenticated_media false)", async () => {
    const remote = uniqueServer("media") + ":8448";
    const path = (id: string) => `/_matrix/media/v3/download/${remote}/${id}`;
    // Under a freeze, what would be fetched now is after it: 404 without asking.
    const frozen = await call("GET", path("frozen1"), { vars: { MEDIA_LEGACY_FREEZE_TIME: String(Date.now() + 60_000) } });
    expect(frozen.status).toBe(404);
    expect(await counter(`media:${remote}:frozen1`)).toBe(0);
    const off = await call("GET", path("open1"), { vars: { MEDIA_LEGACY_FREEZE_TIME: "off" } });
    expect(off.status).toBe(200);
    expect(await off.text()).toContain(`media open1 of ${remote}`);
    expect(await counter(`media:${remote}:open1`)).toBe(1);
    // allow_remote=false still refuses to fetch.
    const local = await call("GET", `${path("open2")}?allow_remote=false`, { vars: { MEDIA_LEGACY_FREEZE_TIME: "off" } });
    expect(local.status).toBe(404);
    expect(await counter(`media:${remote}:open2`)).toBe(0);
  });

  it("answers Range requests with 206 and unsatisfiable ones with 416", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("range"));
    const up = await upload(access_token, "0123456789", "audio/ogg");
    const path = `/_matrix/client/v1/media/download/${mediaPath(up.body.content_uri)}`;
    const mid = await call("GET", path, { token: access_token, headers: { Range: "bytes=2-5" } });
    expect(mid.status).toBe(206);
    expect(mid.headers.get("Content-Range")).toBe("bytes 2-5/10");
    expect(await mid.text()).toBe("2345");
    const tail = await call("GET", path, { token: access_token, headers: { Range: "bytes=-3" } });
    expect(await tail.text()).toBe("789");
    const open = await call("GET", path, { token: access_token, headers: { Range: "bytes=9-" } });
    expect(await open.text()).toBe("9");
    const beyond = await call("GET", path, { token: access_token, headers: { Range: "bytes=10-" } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get("Content-Range")).toBe("bytes */10");
    const whole = await call("GET", path, { token: access_token, headers: { Range: "bytes=0-3,5-6" } });
    expect(whole.status).toBe(200);
    expect(await whole.text()).toBe("0123456789");
  });
});

describe("media over federation", () => {
  it("serves local media to other servers as multipart/mixed", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("fedsrv"));
    const up = await upload(access_token, "for a peer", "image/png", "peer.png");
    const mediaId = up.body.content_uri.split("/").pop();
    const path = `/_matrix/federation/v1/media/download/${mediaId}`;
    const res = await signedInbound(uniqueServer("peer"), "GET", path);
    expect(res.status).toBe(200);
    const boundary = boundaryOf(res.headers.get("Content-Type"));
    expect(boundary).toBeDefined();
    const part = await parseMediaMultipart(new Response(res.text).body!, boundary!);
    expect(part.json).toEqual({});
    expect(part.headers.get("content-type")).toBe("image/png");
    expect(part.headers.get("content-disposition")).toBe("inline; filename=peer.png");
    expect(await new Response(part.body).text()).toBe("for a peer");
    expect(Number(res.headers.get("Content-Length"))).toBe(new TextEncoder().encode(res.text).length);
    // Unsigned requests are refused; unknown media is 404.
    const anon = await call("GET", path);
    expect(anon.status).toBe(401);
    expect((await signedInbound(uniqueServer("peer"), "GET", "/_matrix/federation/v1/media/download/nosuchmedia")).status).toBe(404);
  });

  it("fetches remote media for a local client once, then serves it from R2", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("fedget"));
    const remote = uniqueServer("media") + ":8448";
    const path = `/_matrix/client/v1/media/download/${remote}/abc123`;
    const res = await call("GET", path, { token: access_token });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toBe(`media abc123 of ${remote}\r\n--6d65646961 not a boundary\r\n`);
    expect(res.headers.get("Content-Type")).toBe("text/plain; charset=UTF-8");
    expect(res.headers.get("Content-Disposition")).toBe("inline; filename=remote.txt");
    expect(await counter(`media:${remote}:abc123`)).toBe(1);
    const again = await call("GET", path, { token: access_token });
    expect(await again.text()).toBe(text);
    expect(await counter(`media:${remote}:abc123`)).toBe(1);
  });

  it("follows a Location part, falls back to the legacy endpoint, and maps failures", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("fedloc"));
    const remote = uniqueServer("media") + ":8448";
    const located = await call("GET", `/_matrix/client/v1/media/download/${remote}/located`, { token: access_token });
    expect(located.status).toBe(200);
    expect(await located.text()).toBe(`cdn bytes of /file/${remote}`);

    const legacy = uniqueServer("legacymedia") + ":8448";
    const old = await call("GET", `/_matrix/client/v1/media/download/${legacy}/pic`, { token: access_token });
    expect(old.status).toBe(200);
    expect(await old.text()).toBe("legacy bytes of pic");
    expect(old.headers.get("Content-Disposition")).toBe("inline; filename*=utf-8''l%C3%A9gacy.png");

    const missing = await call("GET", `/_matrix/client/v1/media/download/${remote}/missing`, { token: access_token });
    expect(missing.status).toBe(404);
    const truncated = await call("GET", `/_matrix/client/v1/media/download/${remote}/truncated`, { token: access_token });
    expect(truncated.status).toBe(502);
    expect((await json(truncated)).errcode).toBe("M_UNKNOWN");
    // Nothing was cached for the failures.
    const rows = await baseEnv.DB.prepare("SELECT count(*) AS n FROM media WHERE server_name = ? AND media_id IN ('missing', 'truncated')").bind(remote).first<{ n: number }>();
    expect(rows?.n).toBe(0);
    // allow_remote=false does not fetch.
    const local = await call("GET", `/_matrix/client/v1/media/download/${remote}/notfetched?allow_remote=false`, { token: access_token });
    expect(local.status).toBe(404);
    expect(await counter(`media:${remote}:notfetched`)).toBe(0);
  });

  it("refuses remote media larger than MAX_UPLOAD_SIZE without caching it", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("fedbig"));
    const remote = uniqueServer("media") + ":8448";
    const res = await call("GET", `/_matrix/client/v1/media/download/${remote}/big`, { token: access_token, vars: { MAX_UPLOAD_SIZE: "10" } });
    expect(res.status).toBe(502);
    expect((await json(res)).errcode).toBe("M_TOO_LARGE");
    expect(await baseEnv.MEDIA.head(`remote/${encodeURIComponent(remote)}/big`)).toBeNull();
  });
});
