// URL previews (spec: Client-Server API, GET /_matrix/client/v1/media/preview_url): fetch the page, read its
// OpenGraph data (with <title> and the description meta as fallbacks, as Synapse), store its image as media
// and cache the answer for an hour.
//
// Server-side request forgery: requests to private, loopback, link-local and other special addresses are
// refused (Synapse's `url_preview_ip_range_blacklist`, URL_PREVIEW_IP_RANGE_BLACKLIST). A Worker cannot see
// the address its fetch() connects to, so the host name is resolved first through DNS over HTTPS and every
// address it has is checked; literal IPs are checked directly; each redirect is checked again. (A name that
// changes its answer between the check and the fetch is not caught here; deployed on Cloudflare, fetch()
// cannot reach private networks anyway.)
//
// oEmbed, where simple: a page that names its oEmbed document (`<link rel="alternate"
// type="application/json+oembed" href=...>`, oEmbed's discovery) has it fetched under the same checks and
// limits, and its fields laid over the page's OpenGraph, as Synapse does (`og = {**og_from_html,
// **og_from_oembed}`): title, the thumbnail or photo as the image, the text of a video's or rich embed's
// HTML as the description, the author as the site name where the page gives none, and `cache_age` as the
// cache lifetime. Synapse's list of known providers (for URLs whose pages do not link their oEmbed) is not
// kept.
import type { Context } from "hono";
import { MatrixError, invalidParam, missingParam, unrecognized } from "../../protocol/errors.js";
import { outboundFetch } from "../../federation-client/outbound-fetch.js";
import { DEFAULT_DOH_URL } from "../../federation-client/discovery.js";
import type { AppEnv, Env } from "../env.js";
import { imageInfo } from "./image-info.js";
import { contentKey, newMediaId } from "./store.js";

/** Synapse's `max_spider_size`. */
const MAX_PAGE_BYTES = 10 * 1024 * 1024;
const FETCH_TIMEOUT_MS = 10_000;
const MAX_REDIRECTS = 5;
/** Synapse keeps previews for an hour. */
const CACHE_MS = 60 * 60 * 1000;

/** Synapse's recommended `url_preview_ip_range_blacklist`. */
export const DEFAULT_BLOCKED_RANGES = [
  "127.0.0.0/8",
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "100.64.0.0/10",
  "192.0.0.0/24",
  "169.254.0.0/16",
  "192.88.99.0/24",
  "198.18.0.0/15",
  "192.0.2.0/24",
  "198.51.100.0/24",
  "203.0.113.0/24",
  "224.0.0.0/4",
  "0.0.0.0/8",
  "255.255.255.255/32",
  "::1/128",
  "::/128",
  "fe80::/10",
  "fc00::/7",
  "2001:db8::/32",
  "ff00::/8",
  "fec0::/10",
];

// ---- addresses --------------------------------------------------------------------------------------

interface Ip {
  v6: boolean;
  value: bigint;
}

function parseV4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return undefined;
  return parts.reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n);
}

function parseV6(text: string): bigint | undefined {
  let s = text.toLowerCase();
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  if (!/^[0-9a-f:.]+$/.test(s) || !s.includes(":")) return undefined;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const lastColon = s.lastIndexOf(":");
  if (s.slice(lastColon + 1).includes(".")) {
    const v4 = parseV4(s.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    s = `${s.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const parse = (h: string) => (h === "" ? [] : h.split(":").map((g) => (/^[0-9a-f]{1,4}$/.test(g) ? parseInt(g, 16) : NaN)));
  const head = parse(halves[0]);
  const rest = halves.length === 2 ? parse(halves[1]) : [];
  if (halves.length === 2 && head.length + rest.length > 7) return undefined;
  const groups = halves.length === 2 ? [...head, ...Array(8 - head.length - rest.length).fill(0), ...rest] : head;
  if (groups.length !== 8 || groups.some((g) => Number.isNaN(g))) return undefined;
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

export function parseIp(text: string): Ip | undefined {
  const v4 = parseV4(text);
  if (v4 !== undefined) return { v6: false, value: v4 };
  const v6 = parseV6(text);
  if (v6 === undefined) return undefined;
  // IPv4-mapped IPv6 addresses are checked as the IPv4 address they are.
  if (v6 >> 32n === 0xffffn) return { v6: false, value: v6 & 0xffffffffn };
  return { v6: true, value: v6 };
}

interface Range {
  v6: boolean;
  base: bigint;
  bits: number;
}

function parseRange(cidr: string): Range | undefined {
  const [addr, len] = cidr.trim().split("/");
  const ip = parseV4(addr) !== undefined ? { v6: false, value: parseV4(addr)! } : parseV6(addr) !== undefined ? { v6: true, value: parseV6(addr)! } : undefined;
  if (!ip) return undefined;
  const max = ip.v6 ? 128 : 32;
  const bits = len === undefined ? max : Number(len);
  if (!Number.isInteger(bits) || bits < 0 || bits > max) return undefined;
  return { v6: ip.v6, base: ip.value >> BigInt(max - bits), bits };
}

/** The block list: URL_PREVIEW_IP_RANGE_BLACKLIST (comma-separated CIDRs, or "none"), default Synapse's. */
export function blockedRanges(env: Pick<Env, "URL_PREVIEW_IP_RANGE_BLACKLIST">): Range[] {
  const raw = env.URL_PREVIEW_IP_RANGE_BLACKLIST?.trim();
  if (raw !== undefined && raw.toLowerCase() === "none") return [];
  const list = raw === undefined || raw === "" ? DEFAULT_BLOCKED_RANGES : raw.split(",");
  const ranges: Range[] = [];
  for (const cidr of list) {
    const r = parseRange(cidr);
    if (r) ranges.push(r);
    else console.warn(`ignoring malformed range ${JSON.stringify(cidr)} in URL_PREVIEW_IP_RANGE_BLACKLIST`);
  }
  return ranges;
}

export function isBlocked(ip: Ip, ranges: Range[]): boolean {
  const max = ip.v6 ? 128 : 32;
  return ranges.some((r) => r.v6 === ip.v6 && ip.value >> BigInt(max - r.bits) === r.base);
}

/** A/AAAA addresses of a host name through DNS over HTTPS (JSON API). */
async function resolveHost(env: Env, host: string): Promise<string[]> {
  const fetcher = outboundFetch(env);
  const out: string[] = [];
  for (const type of ["A", "AAAA"]) {
    const url = new URL(env.FEDERATION_DOH_URL || DEFAULT_DOH_URL);
    url.searchParams.set("name", host);
    url.searchParams.set("type", type);
    try {
      const res = await fetcher(new Request(url.toString(), { headers: { Accept: "application/dns-json" }, signal: AbortSignal.timeout(5000) }));
      const body = (await res.json()) as { Answer?: { type: number; data: string }[] };
      for (const a of body.Answer ?? []) if ((a.type === 1 || a.type === 28) && typeof a.data === "string") out.push(a.data);
    } catch {
      // no answer of this type
    }
  }
  return out;
}

const blockedError = () => new MatrixError(403, "M_UNKNOWN", "IP address blocked by IP blacklist entry");

/** Refuses a URL whose host is (or resolves to) a blocked address. */
async function checkUrl(env: Env, url: URL, ranges: Range[]): Promise<void> {
  if (url.protocol !== "http:" && url.protocol !== "https:") throw invalidParam("Only http and https URLs can be previewed");
  if (ranges.length === 0) return;
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const literal = parseIp(host);
  const addresses = literal ? [literal] : (await resolveHost(env, host)).map(parseIp).filter((ip): ip is Ip => ip !== undefined);
  if (!literal && (host === "localhost" || host.endsWith(".localhost"))) throw blockedError();
  if (addresses.length === 0 && !literal) throw new MatrixError(502, "M_UNKNOWN", `Could not resolve ${host}`);
  if (addresses.some((ip) => isBlocked(ip, ranges))) throw blockedError();
}

/** Fetches `url` following redirects (each checked), reading at most MAX_PAGE_BYTES. */
async function spider(env: Env, start: URL, ranges: Range[]): Promise<{ url: URL; contentType: string; body: Uint8Array }> {
  let url = start;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    await checkUrl(env, url, ranges);
    let res: Response;
    try {
      res = await outboundFetch(env)(
        new Request(url.toString(), { redirect: "manual", headers: { "User-Agent": "Myelin (URL preview)", Accept: "text/html,image/*;q=0.9,*/*;q=0.5" }, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) }),
      );
    } catch (e) {
      throw new MatrixError(502, "M_UNKNOWN", `Failed to download ${url}: ${(e as Error).message}`);
    }
    if (res.status >= 300 && res.status < 400 && res.headers.get("location")) {
      await res.body?.cancel();
      url = new URL(res.headers.get("location")!, url);
      continue;
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new MatrixError(502, "M_UNKNOWN", `${url} answered HTTP ${res.status}`);
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > MAX_PAGE_BYTES) {
        await reader.cancel();
        throw new MatrixError(502, "M_TOO_LARGE", "The page is too large to preview");
      }
      chunks.push(value);
    }
    const body = new Uint8Array(total);
    let offset = 0;
    for (const c of chunks) {
      body.set(c, offset);
      offset += c.byteLength;
    }
    return { url, contentType: res.headers.get("content-type") ?? "application/octet-stream", body };
  }
  throw new MatrixError(502, "M_UNKNOWN", "Too many redirects");
}

// ---- OpenGraph --------------------------------------------------------------------------------------

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };

function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
    if (e[0] === "#") {
      const code = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : m;
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

function attributes(tag: string): Map<string, string> {
  const attrs = new Map<string, string>();
  for (const m of tag.matchAll(/([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))/g)) {
    attrs.set(m[1].toLowerCase(), decodeEntities(m[2] ?? m[3] ?? m[4] ?? ""));
  }
  return attrs;
}

/** The page's OpenGraph properties (`og:*`), with <title> and the description meta as fallbacks. */
export function openGraph(html: string): Record<string, string> {
  const og: Record<string, string> = {};
  const head = html.slice(0, 1024 * 1024);
  let description: string | undefined;
  for (const m of head.matchAll(/<meta\b[^>]*>/gi)) {
    const attrs = attributes(m[0]);
    const property = (attrs.get("property") ?? attrs.get("name"))?.toLowerCase();
    const content = attrs.get("content");
    if (!property || content === undefined) continue;
    if (property.startsWith("og:") && !(property in og)) og[property] = content.slice(0, 1000);
    if (property === "description") description ??= content;
  }
  if (!("og:title" in og)) {
    const title = /<title[^>]*>([\s\S]*?)<\/title>/i.exec(head)?.[1];
    if (title !== undefined && title.trim() !== "") og["og:title"] = decodeEntities(title.trim()).slice(0, 1000);
  }
  if (!("og:description" in og) && description !== undefined) og["og:description"] = description.slice(0, 1000);
  return og;
}

/** The page's oEmbed discovery link (JSON only, as Synapse), resolved against the page's URL. */
export function oEmbedLink(html: string, pageUrl: URL): URL | undefined {
  for (const m of html.slice(0, 1024 * 1024).matchAll(/<link\b[^>]*>/gi)) {
    const attrs = attributes(m[0]);
    if (attrs.get("type")?.toLowerCase() !== "application/json+oembed" || !attrs.get("href")) continue;
    if (!(attrs.get("rel") ?? "").toLowerCase().split(/\s+/).includes("alternate")) continue;
    try {
      return new URL(attrs.get("href")!, pageUrl);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

interface OEmbed {
  og: Record<string, string>;
  /** `cache_age` in milliseconds, when given. */
  cacheMs?: number;
}

const text = (v: unknown): string | undefined => (typeof v === "string" && v.trim() !== "" ? v.trim().slice(0, 1000) : undefined);

/** An oEmbed document's fields as OpenGraph (oEmbed spec §2.3.4; the mapping Synapse's oembed.py makes). */
export function oEmbedToOpenGraph(doc: unknown): OEmbed | undefined {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) return undefined;
  const d = doc as Record<string, unknown>;
  if (d.version !== undefined && String(d.version) !== "1.0") return undefined;
  const og: Record<string, string> = {};
  const title = text(d.title);
  if (title) og["og:title"] = title;
  const author = text(d.author_name);
  if (author) og["og:site_name"] = author;
  const thumbnail = text(d.thumbnail_url);
  if (thumbnail) og["og:image"] = thumbnail;
  if (d.type === "photo" && text(d.url)) og["og:image"] = text(d.url)!;
  if ((d.type === "video" || d.type === "rich") && typeof d.html === "string") {
    const description = decodeEntities(d.html.replace(/<(script|style)\b[\s\S]*?<\/\1>/gi, " ").replace(/<[^>]*>/g, " ")).replace(/\s+/g, " ").trim();
    if (description) og["og:description"] = description.slice(0, 1000);
  }
  const age = Number(d.cache_age);
  return { og, cacheMs: Number.isFinite(age) && age > 0 ? Math.min(age * 1000, 7 * 24 * 3600 * 1000) : undefined };
}

// ---- the endpoint -----------------------------------------------------------------------------------

/** Stores an image as local media (no uploader: it belongs to the preview cache) and describes it. */
async function storeImage(env: Env, bytes: Uint8Array, contentType: string): Promise<Record<string, string | number>> {
  const mediaId = newMediaId();
  await env.MEDIA.put(contentKey(env, env.SERVER_NAME, mediaId), bytes, { httpMetadata: { contentType } });
  const now = Date.now();
  await env.DB.prepare(
    `INSERT INTO media (server_name, media_id, user_id, content_type, upload_name, size, created_ts, uploaded_ts)
     VALUES (?, ?, NULL, ?, NULL, ?, ?, ?)`,
  )
    .bind(env.SERVER_NAME, mediaId, contentType, bytes.byteLength, now, now)
    .run();
  const out: Record<string, string | number> = { "og:image": `mxc://${env.SERVER_NAME}/${mediaId}`, "og:image:type": contentType, "matrix:image:size": bytes.byteLength };
  const info = imageInfo(bytes);
  if (!("error" in info)) {
    out["og:image:width"] = info.width;
    out["og:image:height"] = info.height;
  }
  return out;
}

const isImage = (type: string) => /^image\//i.test(type.trim());

async function makePreview(env: Env, url: URL): Promise<{ og: Record<string, string | number>; cacheMs?: number }> {
  const ranges = blockedRanges(env);
  const page = await spider(env, url, ranges);
  const type = page.contentType.split(";")[0].trim().toLowerCase();
  if (isImage(type)) return { og: { ...(await storeImage(env, page.body, type)) } };
  if (type !== "text/html" && type !== "application/xhtml+xml") return { og: {} };
  const html = new TextDecoder().decode(page.body);
  const fromHtml = openGraph(html);
  let oembed: OEmbed | undefined;
  const link = oEmbedLink(html, page.url);
  if (link) {
    try {
      const doc = await spider(env, link, ranges);
      oembed = oEmbedToOpenGraph(JSON.parse(new TextDecoder().decode(doc.body)));
    } catch {
      // The page's own OpenGraph stands (as Synapse, when the oEmbed request fails).
    }
  }
  const og: Record<string, string | number> = { ...fromHtml, ...oembed?.og };
  // The author is the site name only where the page names none.
  if (oembed?.og["og:site_name"] && fromHtml["og:site_name"]) og["og:site_name"] = fromHtml["og:site_name"];
  const image = og["og:image"];
  delete og["og:image"];
  if (typeof image === "string" && image !== "") {
    try {
      const imageUrl = new URL(image, page.url);
      const fetched = await spider(env, imageUrl, ranges);
      const imageType = fetched.contentType.split(";")[0].trim().toLowerCase();
      if (isImage(imageType)) Object.assign(og, await storeImage(env, fetched.body, imageType));
    } catch {
      // A preview without its image is still a preview (as Synapse).
    }
  }
  return { og, cacheMs: oembed?.cacheMs };
}

export async function previewUrlResponse(c: Context<AppEnv>, _userId: string): Promise<Response> {
  const env = c.env;
  if (env.URL_PREVIEW_ENABLED?.trim().toLowerCase() === "false") throw unrecognized("URL previews are disabled");
  const raw = c.req.query("url");
  if (raw === undefined || raw === "") throw missingParam("Missing url");
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw invalidParam("Invalid URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw invalidParam("Only http and https URLs can be previewed");
  url.hash = "";
  const key = url.toString();
  const now = Date.now();
  const cached = await env.DB.prepare("SELECT og FROM media_url_previews WHERE url = ? AND expires_ts > ? ORDER BY fetched_ts DESC LIMIT 1")
    .bind(key, now)
    .first<{ og: string }>();
  if (cached) return c.json(JSON.parse(cached.og));
  const { og, cacheMs } = await makePreview(env, url);
  await env.DB.batch([
    env.DB.prepare("DELETE FROM media_url_previews WHERE url = ? AND expires_ts <= ?").bind(key, now),
    env.DB.prepare("INSERT OR REPLACE INTO media_url_previews (url, og, fetched_ts, expires_ts) VALUES (?, ?, ?, ?)").bind(key, JSON.stringify(og), now, now + (cacheMs ?? CACHE_MS)),
  ]);
  return c.json(og);
}
