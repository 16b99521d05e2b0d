// URL previews (worker/media/preview.ts): OpenGraph from a page, its image stored as media, the answer cached;
// the address block list (default: Synapse's private, loopback and link-local ranges) checked for literal IPs,
// for names through DNS over HTTPS, and again after a redirect. The web is played by
// test/workers/remote-homeserver.mjs; tests that fetch from loopback switch the block list off explicitly.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../worker/index.js";
import type { Env } from "../../worker/env.js";
import { blockedRanges, isBlocked, oEmbedLink, oEmbedToOpenGraph, openGraph, parseIp } from "../../worker/media/preview.js";
import { SERVER_NAME, registerUser, uniqueLocalpart } from "./helpers.js";
import { counter } from "./federation-helpers.js";

const app = buildApp();
const baseEnv = env as unknown as Env;
const noBlocks = { URL_PREVIEW_IP_RANGE_BLACKLIST: "none" };

async function preview(token: string, url: string, vars: Partial<Env> = {}): Promise<{ status: number; body: any }> {
  const res = await app.fetch(
    new Request(`https://${SERVER_NAME}/_matrix/client/v1/media/preview_url?url=${encodeURIComponent(url)}`, { headers: { Authorization: `Bearer ${token}` } }),
    { ...baseEnv, ...vars },
  );
  return { status: res.status, body: await res.json() };
}

describe("address block list", () => {
  it("blocks Synapse's default ranges, IPv4-mapped IPv6 included, and nothing with 'none'", () => {
    const ranges = blockedRanges({});
    for (const ip of ["127.0.0.1", "10.1.2.3", "172.31.255.255", "192.168.0.1", "169.254.169.254", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:7f00:1"]) {
      expect([ip, isBlocked(parseIp(ip)!, ranges)]).toEqual([ip, true]);
    }
    for (const ip of ["93.184.216.34", "172.32.0.1", "2606:4700::1111", "::ffff:93.184.216.34", "8.8.8.8"]) {
      expect([ip, isBlocked(parseIp(ip)!, ranges)]).toEqual([ip, false]);
    }
    expect(blockedRanges({ URL_PREVIEW_IP_RANGE_BLACKLIST: "none" })).toEqual([]);
    const custom = blockedRanges({ URL_PREVIEW_IP_RANGE_BLACKLIST: "10.0.0.0/8, bad, 2001:db8::/32" });
    expect(custom).toHaveLength(2);
    expect(isBlocked(parseIp("127.0.0.1")!, custom)).toBe(false);
    expect(isBlocked(parseIp("2001:db8::5")!, custom)).toBe(true);
  });

  it("reads OpenGraph with entity decoding and falls back to <title> and the description", () => {
    expect(openGraph(`<meta property="og:title" content="a &amp; b"><meta name="og:site_name" content='s'>`)).toEqual({ "og:title": "a & b", "og:site_name": "s" });
    expect(openGraph(`<title>T</title><meta name="description" content="d">`)).toEqual({ "og:title": "T", "og:description": "d" });
  });
});

describe("preview_url", () => {
  it("answers a page's OpenGraph data with its image stored as media, and caches the answer", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("preview"));
    const url = "http://127.0.0.1:8765/_preview/og";
    const res = await preview(access_token, url, noBlocks);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      "og:title": 'Café & "Bar" ☃',
      "og:description": "An OpenGraph description",
      "og:type": "website",
      "og:image:type": "image/png",
      "og:image:width": 1,
      "og:image:height": 1,
      "matrix:image:size": 70,
    });
    expect(res.body["og:image"]).toMatch(new RegExp(`^mxc://${SERVER_NAME}/`));
    const image = await app.fetch(
      new Request(`https://${SERVER_NAME}/_matrix/client/v1/media/download/${res.body["og:image"].slice(6)}`, { headers: { Authorization: `Bearer ${access_token}` } }),
      baseEnv,
    );
    expect(image.status).toBe(200);
    expect(image.headers.get("Content-Type")).toBe("image/png");
    const fetches = await counter("preview:127.0.0.1:8765:og");
    expect((await preview(access_token, url, noBlocks)).body).toEqual(res.body);
    expect(await counter("preview:127.0.0.1:8765:og")).toBe(fetches);
  });

  it("lays a page's discovered oEmbed over its OpenGraph (title, thumbnail as image, the embed's text as description); the page's site name stays", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("oembed"));
    const res = await preview(access_token, "http://127.0.0.1:8765/_preview/oembed-page", noBlocks);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      "og:title": "Embedded &amp; titled", // oEmbed's title is text, not HTML: kept as given
      "og:site_name": "The Site",
      "og:description": "Watch this & that",
      "og:image:type": "image/png",
    });
    expect(res.body["og:image"]).toMatch(new RegExp(`^mxc://${SERVER_NAME}/`));
    // A discovery link that leads nowhere leaves the page's own data.
    const broken = await preview(access_token, "http://127.0.0.1:8765/_preview/oembed-broken", noBlocks);
    expect(broken).toEqual({ status: 200, body: { "og:title": "kept" } });
  });

  it("maps oEmbed documents as Synapse: photo url as image, author as site name, cache_age, other versions ignored", () => {
    expect(oEmbedToOpenGraph({ version: "1.0", type: "photo", url: "https://x/p.png", thumbnail_url: "https://x/t.png", author_name: "A", cache_age: "120" })).toEqual({
      og: { "og:image": "https://x/p.png", "og:site_name": "A" },
      cacheMs: 120_000,
    });
    expect(oEmbedToOpenGraph({ version: "2.0", title: "t" })).toBeUndefined();
    expect(oEmbedToOpenGraph(["not", "an", "object"])).toBeUndefined();
    expect(oEmbedToOpenGraph({ type: "link", title: "t", cache_age: -5 })).toEqual({ og: { "og:title": "t" }, cacheMs: undefined });
    const page = new URL("https://site.example/a/b");
    expect(oEmbedLink(`<link rel="alternate" type="application/json+oembed" href="../o.json">`, page)?.toString()).toBe("https://site.example/o.json");
    expect(oEmbedLink(`<link rel="alternate" type="text/xml+oembed" href="/o.xml">`, page)).toBeUndefined();
    expect(oEmbedLink(`<link rel="stylesheet" type="application/json+oembed" href="/o.json">`, page)).toBeUndefined();
  });

  it("uses <title> and the description meta when a page has no OpenGraph", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("title"));
    const res = await preview(access_token, "http://127.0.0.1:8765/_preview/title", noBlocks);
    expect(res).toEqual({ status: 200, body: { "og:title": "Just a title", "og:description": "described" } });
  });

  it("refuses loopback and private addresses by default: literal, by DNS, and after a redirect", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("ssrf"));
    const loopback = await preview(access_token, "http://127.0.0.1:8799/_preview/og");
    expect(loopback.status).toBe(403);
    expect(loopback.body.errcode).toBe("M_UNKNOWN");
    expect(await counter("preview:127.0.0.1:8799:og")).toBe(0);
    const v6 = await preview(access_token, "http://[::1]:8799/_preview/og");
    expect(v6.status).toBe(403);
    const internal = await preview(access_token, "http://internal.remote.test/_preview/og");
    expect(internal.status).toBe(403);
    expect(await counter("preview:internal.remote.test:og")).toBe(0);
    const pub = await preview(access_token, "http://public.remote.test/_preview/title");
    expect(pub).toEqual({ status: 200, body: { "og:title": "Just a title", "og:description": "described" } });
    const redirected = await preview(access_token, "http://127.0.0.1:8766/_preview/to-private", { URL_PREVIEW_IP_RANGE_BLACKLIST: "10.0.0.0/8" });
    expect(redirected.status).toBe(403);
    expect(await counter("preview:10.9.9.9:og")).toBe(0);
  });

  it("validates the URL, limits the page size, and can be switched off", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("limits"));
    expect((await preview(access_token, "not a url")).body.errcode).toBe("M_INVALID_PARAM");
    expect((await preview(access_token, "ftp://127.0.0.1/x", noBlocks)).body.errcode).toBe("M_INVALID_PARAM");
    const big = await preview(access_token, "http://127.0.0.1:8767/_preview/big", noBlocks);
    expect(big.status).toBe(502);
    expect(big.body.errcode).toBe("M_TOO_LARGE");
    const missing = await preview(access_token, "http://127.0.0.1:8767/_preview/nothing", noBlocks);
    expect(missing.status).toBe(502);
    const off = await preview(access_token, "http://127.0.0.1:8765/_preview/og", { ...noBlocks, URL_PREVIEW_ENABLED: "false" });
    expect(off.status).toBe(404);
    const anon = await app.fetch(new Request(`https://${SERVER_NAME}/_matrix/client/v1/media/preview_url?url=x`), baseEnv);
    expect(anon.status).toBe(401);
  });
});
