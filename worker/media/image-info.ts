// What an image file says about itself before anything decodes it: its format (from the magic bytes, not the
// uploader's Content-Type), its dimensions (from the header), and whether it is complete. The thumbnailer
// refuses what is too large to decode within a Worker's memory (a 30,000 × 30,000 "decompression bomb" is a
// few KB of PNG and 3.6 GB of pixels) and truncated files, before the decoder sees them.

export type ImageFormat = "png" | "jpeg" | "gif" | "webp";

export interface ImageInfo {
  format: ImageFormat;
  width: number;
  height: number;
  /** GIF with more than one frame, WebP with the animation flag, PNG with an acTL chunk (APNG). */
  animated: boolean;
  /** JPEG: the EXIF Orientation tag (1-8; 5-8 turn the picture by a quarter), when the file has one. */
  orientation?: number;
}

const u16be = (b: Uint8Array, i: number) => (b[i] << 8) | b[i + 1];
const u16le = (b: Uint8Array, i: number) => b[i] | (b[i + 1] << 8);
const u24le = (b: Uint8Array, i: number) => b[i] | (b[i + 1] << 8) | (b[i + 2] << 16);
const u32be = (b: Uint8Array, i: number) => ((b[i] << 24) >>> 0) + ((b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]);
const ascii = (b: Uint8Array, i: number, n: number) => String.fromCharCode(...b.subarray(i, i + n));

/** The image's format, size and completeness, or a reason it is not a usable image. */
export function imageInfo(b: Uint8Array): ImageInfo | { error: string } {
  if (b.length >= 24 && b[0] === 0x89 && ascii(b, 1, 3) === "PNG") return png(b);
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return jpeg(b);
  if (b.length >= 13 && (ascii(b, 0, 6) === "GIF87a" || ascii(b, 0, 6) === "GIF89a")) return gif(b);
  if (b.length >= 30 && ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 4) === "WEBP") return webp(b);
  return { error: "not a PNG, JPEG, GIF or WebP image" };
}

function png(b: Uint8Array): ImageInfo | { error: string } {
  if (ascii(b, 12, 4) !== "IHDR") return { error: "PNG without IHDR" };
  const width = u32be(b, 16);
  const height = u32be(b, 20);
  // Walk the chunks: the file must end with IEND (a truncated file does not).
  let animated = false;
  let i = 8;
  for (;;) {
    if (i + 12 > b.length) return { error: "truncated PNG" };
    const length = u32be(b, i);
    const type = ascii(b, i + 4, 4);
    if (type === "acTL") animated = true;
    if (type === "IEND") break;
    i += 12 + length;
  }
  return { format: "png", width, height, animated };
}

function jpeg(b: Uint8Array): ImageInfo | { error: string } {
  let i = 2;
  let size: { width: number; height: number } | undefined;
  let orientation: number | undefined;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) return { error: "malformed JPEG" };
    const marker = b[i + 1];
    if (marker === 0xff) {
      i += 1; // fill byte
      continue;
    }
    if (marker === 0xd9) break;
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2;
      continue;
    }
    const length = u16be(b, i + 2);
    if (length < 2) return { error: "malformed JPEG" };
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof && i + 9 <= b.length) size = { height: u16be(b, i + 5), width: u16be(b, i + 7) };
    if (marker === 0xe1 && orientation === undefined) orientation = exifOrientation(b.subarray(i + 4, Math.min(b.length, i + 2 + length)));
    if (marker === 0xda) {
      // Start of scan: entropy-coded data follows; the file must end with EOI.
      if (!size) return { error: "JPEG without a frame header" };
      let end = b.length;
      while (end > i && (b[end - 1] === 0x00 || b[end - 1] === 0x0a || b[end - 1] === 0x0d || b[end - 1] === 0x20)) end--;
      if (end < 2 || b[end - 2] !== 0xff || b[end - 1] !== 0xd9) return { error: "truncated JPEG" };
      return orientation === undefined ? { format: "jpeg", ...size, animated: false } : { format: "jpeg", ...size, animated: false, orientation };
    }
    i += 2 + length;
  }
  return { error: "truncated JPEG" };
}

/**
 * The Orientation tag (0x0112) of an APP1 segment's EXIF data (CIPA DC-008: "Exif\0\0", then a TIFF header
 * and its first IFD), or undefined when there is none or it is malformed.
 */
export function exifOrientation(app1: Uint8Array): number | undefined {
  if (app1.length < 14 || ascii(app1, 0, 6) !== "Exif\0\0") return undefined;
  const t = app1.subarray(6);
  const little = t[0] === 0x49 && t[1] === 0x49;
  if (!little && !(t[0] === 0x4d && t[1] === 0x4d)) return undefined;
  const u16 = (i: number) => (little ? t[i] | (t[i + 1] << 8) : (t[i] << 8) | t[i + 1]);
  const u32 = (i: number) => (little ? (t[i] | (t[i + 1] << 8) | (t[i + 2] << 16)) + t[i + 3] * 0x1000000 : t[i] * 0x1000000 + ((t[i + 1] << 16) | (t[i + 2] << 8) | t[i + 3]));
  if (u16(2) !== 42) return undefined;
  const ifd = u32(4);
  if (ifd + 2 > t.length) return undefined;
  const count = u16(ifd);
  for (let n = 0; n < count; n++) {
    const e = ifd + 2 + 12 * n;
    if (e + 12 > t.length) return undefined;
    if (u16(e) !== 0x0112) continue;
    const value = u16(e + 8);
    return u16(e + 2) === 3 && value >= 1 && value <= 8 ? value : undefined; // type SHORT
  }
  return undefined;
}

function gif(b: Uint8Array): ImageInfo | { error: string } {
  const width = u16le(b, 6);
  const height = u16le(b, 8);
  let i = 13;
  if (b[10] & 0x80) i += 3 * (1 << ((b[10] & 0x07) + 1)); // global colour table
  let frames = 0;
  for (;;) {
    if (i >= b.length) return { error: "truncated GIF" };
    const block = b[i];
    if (block === 0x3b) break; // trailer
    if (block === 0x21) {
      // Extension: label, then sub-blocks.
      i += 2;
      for (;;) {
        if (i >= b.length) return { error: "truncated GIF" };
        const n = b[i];
        i += 1 + n;
        if (n === 0) break;
      }
      continue;
    }
    if (block !== 0x2c) return { error: "malformed GIF" };
    if (i + 10 > b.length) return { error: "truncated GIF" };
    // A frame may not reach outside the logical screen (decoders size their buffers from it).
    const left = u16le(b, i + 1);
    const top = u16le(b, i + 3);
    const fw = u16le(b, i + 5);
    const fh = u16le(b, i + 7);
    if (left + fw > width || top + fh > height) return { error: "GIF frame outside the image" };
    const flags = b[i + 9];
    i += 10;
    if (flags & 0x80) i += 3 * (1 << ((flags & 0x07) + 1));
    i += 1; // LZW minimum code size
    for (;;) {
      if (i >= b.length) return { error: "truncated GIF" };
      const n = b[i];
      i += 1 + n;
      if (n === 0) break;
    }
    frames++;
  }
  if (frames === 0) return { error: "GIF without frames" };
  return { format: "gif", width, height, animated: frames > 1 };
}

function webp(b: Uint8Array): ImageInfo | { error: string } {
  const riffSize = b[4] | (b[5] << 8) | (b[6] << 16) | ((b[7] << 24) >>> 0);
  if (riffSize + 8 > b.length) return { error: "truncated WebP" };
  const chunk = ascii(b, 12, 4);
  if (chunk === "VP8 ") {
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return { error: "malformed WebP" };
    return { format: "webp", width: u16le(b, 26) & 0x3fff, height: u16le(b, 28) & 0x3fff, animated: false };
  }
  if (chunk === "VP8L") {
    if (b[20] !== 0x2f) return { error: "malformed WebP" };
    const bits = b[21] | (b[22] << 8) | (b[23] << 16) | ((b[24] << 24) >>> 0);
    return { format: "webp", width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1, animated: false };
  }
  if (chunk === "VP8X") {
    return { format: "webp", width: u24le(b, 24) + 1, height: u24le(b, 27) + 1, animated: (b[20] & 0x02) !== 0 };
  }
  return { error: "malformed WebP" };
}

export const CONTENT_TYPE: Record<ImageFormat, string> = { png: "image/png", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp" };
