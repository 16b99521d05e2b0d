// Thumbnails (spec: Client-Server API, GET /_matrix/client/v1/media/thumbnail; Server-Server API,
// GET /_matrix/federation/v1/media/thumbnail). As Synapse, a request is answered with the best of a fixed set
// of sizes (Synapse's default `thumbnail_sizes`), made on first request and cached in R2.
//
// Images are decoded and resized inside the Worker with Photon (@cf-wasm/photon, Rust's `image` crate
// compiled to WebAssembly). Chosen over jSquash (the Squoosh codecs) because one module decodes all four
// formats the spec cares about (jSquash has no GIF decoder) and it is packaged for workerd; bench/media.bench.ts
// measures both on a 4,000 × 3,000 JPEG. Photon decodes the whole file into its pixels, 12-15 bytes of
// WebAssembly memory per pixel, so it decodes whole images of at most 6 megapixels. Bigger JPEGs (phone
// photos: 12-50 megapixels) are decoded by our own decoder straight to 1/2, 1/4 or 1/8 of their size
// (worker/media/jpeg-scaled-decode.ts, libjpeg's scaled decode), and Photon only crops, resizes and encodes
// the reduced image. The header is read first (worker/media/image-info.ts): images over the pixel limits,
// truncated files and anything that is not PNG, JPEG, GIF or WebP are refused before a decoder sees them.
import type { Context } from "hono";
import { PhotonImage, SamplingFilter, crop, resize } from "@cf-wasm/photon";
import { MatrixError, invalidParam, missingParam } from "../../protocol/errors.js";
import type { AppEnv, Env } from "../env.js";
import { CONTENT_TYPE, imageInfo, type ImageInfo } from "./image-info.js";
import { decodeJpegScaled, jpegScaleFor } from "./jpeg-scaled-decode.js";
import { fileHeaders } from "./serve.js";
import { contentKey, type MediaRow } from "./store.js";

export type ThumbnailMethod = "crop" | "scale";

/** Synapse's default `thumbnail_sizes`. */
export const THUMBNAIL_SIZES: { width: number; height: number; method: ThumbnailMethod }[] = [
  { width: 32, height: 32, method: "crop" },
  { width: 96, height: 96, method: "crop" },
  { width: 320, height: 240, method: "scale" },
  { width: 640, height: 480, method: "scale" },
  { width: 800, height: 600, method: "scale" },
];

/**
 * Largest image Photon decodes whole: 6 megapixels (e.g. 3,000 × 2,000). Photon decodes a JPEG into an RGB
 * image and then an RGBA copy; bench/media.bench.ts measured its WebAssembly memory at 139-176 MB for a
 * 4,000 × 3,000 JPEG, above a Worker's 128 MB. PNG, GIF and WebP over it get no thumbnail (400), nor does a
 * JPEG that the scaled decoder cannot read.
 */
export const MAX_DECODED_PIXELS = 6_000_000;

/**
 * Largest image thumbnailed by default (MEDIA_MAX_THUMBNAIL_PIXELS): 50 megapixels, for JPEGs, which are
 * decoded at a reduced scale (a 50-megapixel photo at 1/8 is under a megapixel). Synapse's
 * `max_image_pixels` is 32 M.
 */
export const MAX_IMAGE_PIXELS = 50_000_000;

/** The scaled JPEG decoder's own buffers (reduced planes, kept progressive coefficients, RGBA). A 12 MP
 * progressive 4:2:0 photo at 1/4 takes about 15 MB, a baseline one about 4 MB. */
export const MAX_SCALED_DECODE_BYTES = 40 * 1024 * 1024;

export function maxImagePixels(env: Pick<Env, "MEDIA_MAX_THUMBNAIL_PIXELS">): number {
  const n = Number(env.MEDIA_MAX_THUMBNAIL_PIXELS?.trim() || NaN);
  return Number.isSafeInteger(n) && n > 0 ? n : MAX_IMAGE_PIXELS;
}

/** Largest file thumbnailed; decoding holds the whole file. */
export const MAX_THUMBNAIL_SOURCE_BYTES = 20 * 1024 * 1024;

const cannotThumbnail = (why: string) => new MatrixError(400, "M_UNKNOWN", `Cannot generate a thumbnail: ${why}`);

export interface ThumbnailRequest {
  width: number;
  height: number;
  method: ThumbnailMethod;
  animated: boolean;
}

function dimension(c: Context<AppEnv>, name: "width" | "height"): number {
  const raw = c.req.query(name);
  if (raw === undefined || raw === "") throw missingParam(`Missing ${name}`);
  if (!/^\d+$/.test(raw)) throw invalidParam(`${name} must be a positive integer`);
  const n = Number(raw);
  if (n < 1 || n > 10_000) throw invalidParam(`${name} out of range`);
  return n;
}

export function thumbnailRequest(c: Context<AppEnv>): ThumbnailRequest {
  const width = dimension(c, "width");
  const height = dimension(c, "height");
  const method = c.req.query("method") ?? "scale";
  if (method !== "scale" && method !== "crop") throw invalidParam("method must be crop or scale");
  const animatedRaw = c.req.query("animated");
  if (animatedRaw !== undefined && animatedRaw !== "true" && animatedRaw !== "false") throw invalidParam("animated must be true or false");
  return { width, height, method, animated: animatedRaw === "true" };
}

/**
 * The configured size to answer with (Synapse's `_select_thumbnail`, simplified): of the sizes with the
 * requested method, the smallest at least as large as asked, else the largest. Crop requests fall back to
 * scale sizes when no crop size is large enough, as Synapse prefers a big enough image to an exact shape.
 */
export function selectSize(req: { width: number; height: number; method: ThumbnailMethod }) {
  const big = (s: (typeof THUMBNAIL_SIZES)[number]) => s.width >= req.width && s.height >= req.height;
  const same = THUMBNAIL_SIZES.filter((s) => s.method === req.method);
  const fit = same.filter(big);
  if (fit.length > 0) return fit[0];
  if (req.method === "crop") {
    const scaled = THUMBNAIL_SIZES.filter((s) => s.method === "scale" && big(s));
    if (scaled.length > 0) return scaled[0];
  }
  return same[same.length - 1];
}

/** Output size: `scale` fits inside the box keeping the aspect ratio, `crop` fills it; never larger than the
 * source (as Synapse, which does not upscale). */
export function targetSize(info: Pick<ImageInfo, "width" | "height">, size: { width: number; height: number; method: ThumbnailMethod }) {
  if (size.method === "scale") {
    const factor = Math.min(size.width / info.width, size.height / info.height, 1);
    return { width: Math.max(1, Math.round(info.width * factor)), height: Math.max(1, Math.round(info.height * factor)) };
  }
  return { width: Math.min(size.width, info.width), height: Math.min(size.height, info.height) };
}

/** The thumbnail's type: JPEG stays JPEG (photos), everything else becomes PNG (keeps transparency). */
const outputType = (info: ImageInfo) => (info.format === "jpeg" ? "image/jpeg" : "image/png");

/**
 * The pixels to crop and resize: a JPEG decoded at the largest of 1/8, 1/4, 1/2 that still has at least the
 * thumbnail's size (the resize from there is Photon's), else the whole image decoded by Photon.
 */
function decodeForThumbnail(bytes: Uint8Array, info: ImageInfo, target: { width: number; height: number }, maxPixels: number): PhotonImage {
  const pixels = info.width * info.height;
  if (info.format === "jpeg") {
    const scale = jpegScaleFor(info.width, info.height, target.width, target.height);
    if (scale > 1) {
      const scaled = decodeJpegScaled(bytes, scale, { maxSourcePixels: maxPixels, maxOutputPixels: MAX_DECODED_PIXELS, maxBytes: MAX_SCALED_DECODE_BYTES });
      if (!("error" in scaled)) return new PhotonImage(scaled.rgba, scaled.width, scaled.height);
      // What the scaled decoder cannot read (CMYK, arithmetic coding, a file it finds corrupt) Photon may,
      // when the whole image fits.
      if (pixels > MAX_DECODED_PIXELS) throw cannotThumbnail(`the image could not be decoded (${scaled.error})`);
    }
  }
  if (pixels > MAX_DECODED_PIXELS) throw cannotThumbnail(`image is larger than ${MAX_DECODED_PIXELS} pixels`);
  return PhotonImage.new_from_byteslice(bytes);
}

/**
 * The image as it is meant to be shown, for EXIF orientations 2-8 (CIPA DC-008 "Orientation": 2 mirrors,
 * 3 turns half, 4 flips, 5 transposes, 6 turns a quarter clockwise, 7 transverses, 8 turns anticlockwise).
 */
function orient(image: PhotonImage, orientation: number): PhotonImage {
  const w = image.get_width();
  const h = image.get_height();
  const src = image.get_raw_pixels();
  const turned = orientation >= 5;
  const ow = turned ? h : w;
  const oh = turned ? w : h;
  const out = new Uint8Array(ow * oh * 4);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      // The stored pixel shown at (x, y).
      let sx = x;
      let sy = y;
      if (orientation === 2) sx = w - 1 - x;
      else if (orientation === 3) (sx = w - 1 - x), (sy = h - 1 - y);
      else if (orientation === 4) sy = h - 1 - y;
      else if (orientation === 5) (sx = y), (sy = x);
      else if (orientation === 6) (sx = y), (sy = h - 1 - x);
      else if (orientation === 7) (sx = w - 1 - y), (sy = h - 1 - x);
      else if (orientation === 8) (sx = w - 1 - y), (sy = x);
      const s = (sy * w + sx) * 4;
      const o = (y * ow + x) * 4;
      out[o] = src[s];
      out[o + 1] = src[s + 1];
      out[o + 2] = src[s + 2];
      out[o + 3] = src[s + 3];
    }
  }
  return new PhotonImage(out, ow, oh);
}

/** Decodes, resizes and encodes. Pure computation; errors of the decoder become M_UNKNOWN 400. */
export function makeThumbnail(
  bytes: Uint8Array,
  size: { width: number; height: number; method: ThumbnailMethod },
  maxPixels = MAX_IMAGE_PIXELS,
): { bytes: Uint8Array; contentType: string } {
  const info = imageInfo(bytes);
  if ("error" in info) throw cannotThumbnail(info.error);
  if (info.width < 1 || info.height < 1) throw cannotThumbnail("image has no pixels");
  if (info.width * info.height > maxPixels) throw cannotThumbnail(`image is larger than ${maxPixels} pixels`);
  // EXIF orientation (as Synapse's thumbnailer, which transposes first): the size is chosen for the picture as
  // shown; the image is cut and resized as stored, then turned, which is the same and turns only the small image.
  const orientation = info.orientation ?? 1;
  const turned = orientation >= 5;
  const shown = targetSize(turned ? { width: info.height, height: info.width } : info, size);
  const target = turned ? { width: shown.height, height: shown.width } : shown;
  const images: PhotonImage[] = [];
  try {
    let image = decodeForThumbnail(bytes, info, target, maxPixels);
    images.push(image);
    if (size.method === "crop") {
      // Cut the largest centred region with the box's aspect ratio, then resize it.
      const w = image.get_width();
      const h = image.get_height();
      let cw = w;
      let ch = h;
      if (w * target.height > h * target.width) cw = Math.max(1, Math.round((h * target.width) / target.height));
      else ch = Math.max(1, Math.round((w * target.height) / target.width));
      const x = Math.floor((w - cw) / 2);
      const y = Math.floor((h - ch) / 2);
      if (cw !== w || ch !== h) {
        image = crop(image, x, y, x + cw, y + ch);
        images.push(image);
      }
    }
    if (image.get_width() !== target.width || image.get_height() !== target.height) {
      image = resize(image, target.width, target.height, SamplingFilter.Triangle);
      images.push(image);
    }
    if (orientation !== 1) {
      image = orient(image, orientation);
      images.push(image);
    }
    const contentType = outputType(info);
    const out = contentType === "image/jpeg" ? image.get_bytes_jpeg(80) : image.get_bytes();
    return { bytes: out, contentType };
  } catch (e) {
    if (e instanceof MatrixError) throw e;
    // A Rust panic in the decoder (a corrupt file the header check let through) traps; it is an error answer.
    throw cannotThumbnail(`the image could not be decoded (${e instanceof Error ? e.message : String(e)})`);
  } finally {
    for (const image of images) {
      try {
        image.free();
      } catch {
        // already freed or the module trapped
      }
    }
  }
}

const thumbnailKey = (env: Pick<Env, "SERVER_NAME">, row: MediaRow, size: { width: number; height: number; method: ThumbnailMethod }) =>
  `thumbnail/${contentKey(env, row.server_name, row.media_id)}/${size.width}x${size.height}-${size.method}`;

export interface Thumbnail {
  body: ReadableStream<Uint8Array>;
  contentType: string;
  size: number;
}

/**
 * The thumbnail for a request: from the R2 cache, or made now and cached. `animated=true` on an animated GIF,
 * WebP or PNG answers with the original file, which is what "animated where the format allows" can mean
 * without an animation encoder (MSC2705 lets servers do so).
 */
export async function thumbnailFor(env: Env, row: MediaRow, req: ThumbnailRequest): Promise<Thumbnail> {
  const type = (row.content_type ?? "").toLowerCase().split(";")[0].trim();
  if (!Object.values(CONTENT_TYPE).includes(type)) throw cannotThumbnail(`media of type ${type || "unknown"} has no thumbnails`);
  if ((row.size ?? 0) > MAX_THUMBNAIL_SOURCE_BYTES) throw cannotThumbnail("the image file is too large");
  const size = selectSize(req);
  const key = thumbnailKey(env, row, size);
  if (!req.animated) {
    const cached = await env.MEDIA.get(key);
    if (cached) return { body: cached.body, contentType: cached.httpMetadata?.contentType ?? "image/png", size: cached.size };
  }
  const source = await env.MEDIA.get(contentKey(env, row.server_name, row.media_id));
  if (!source) throw new MatrixError(404, "M_NOT_FOUND", "Media content is missing");
  const bytes = new Uint8Array(await source.arrayBuffer());
  if (req.animated) {
    const info = imageInfo(bytes);
    if (!("error" in info) && info.animated) {
      return { body: new Response(bytes).body!, contentType: CONTENT_TYPE[info.format], size: bytes.byteLength };
    }
    const cached = await env.MEDIA.get(key);
    if (cached) return { body: cached.body, contentType: cached.httpMetadata?.contentType ?? "image/png", size: cached.size };
  }
  const thumb = makeThumbnail(bytes, size, maxImagePixels(env));
  await env.MEDIA.put(key, thumb.bytes, { httpMetadata: { contentType: thumb.contentType } });
  return { body: new Response(thumb.bytes).body!, contentType: thumb.contentType, size: thumb.bytes.byteLength };
}

/** GET …/thumbnail/{serverName}/{mediaId}: the thumbnail with the media headers (inline, sandboxed). */
export async function thumbnailResponse(c: Context<AppEnv>, row: MediaRow): Promise<Response> {
  const req = thumbnailRequest(c);
  const thumb = await thumbnailFor(c.env, row, req);
  const headers = fileHeaders(thumb.contentType, null);
  headers.set("Content-Length", String(thumb.size));
  return new Response(c.req.method === "HEAD" ? null : thumb.body, { status: 200, headers });
}

/** The federation thumbnail endpoint's file part. */
export async function thumbnailForFederation(c: Context<AppEnv>, row: MediaRow): Promise<Thumbnail> {
  return thumbnailFor(c.env, row, thumbnailRequest(c));
}
