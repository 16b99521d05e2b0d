// Media benchmarks (issue 11), inside workerd:
//  - upload and download throughput of a 20 MB file (with Content-Length, and chunked)
//  - thumbnails of a 4,000 × 3,000 JPEG (progressive and baseline) at each of Synapse's default sizes, as the
//    server makes them (scaled JPEG decode, then Photon), with the decoder's buffers and Photon's WebAssembly
//    memory (its peak: WebAssembly memory never shrinks); a 6,000 × 4,000 one; then Photon decoding the
//    whole image as before, and jSquash (the Squoosh codecs: mozjpeg and the Rust resizer)
// The server's process memory during a 200 MB upload is measured by test/e2e/media.test.ts (workerd's RSS).
import { env } from "cloudflare:workers";
import { it } from "vitest";
import { PhotonImage, SamplingFilter, initPhoton, resize as photonResize } from "@cf-wasm/photon";
import { decode as jpegDecode, encode as jpegEncode } from "@jsquash/jpeg";
import { init as initJpegDecode } from "@jsquash/jpeg/decode.js";
import { init as initJpegEncode } from "@jsquash/jpeg/encode.js";
import resize, { initResize } from "@jsquash/resize";
// WebAssembly module imports: the pool loads .wasm files as compiled modules.
import mozjpegDecWasm from "@jsquash/jpeg/codec/dec/mozjpeg_dec.wasm";
import mozjpegEncWasm from "@jsquash/jpeg/codec/enc/mozjpeg_enc.wasm";
// @ts-expect-error: the package's own typings of this file describe its exports, not the module
import resizeWasm from "@jsquash/resize/lib/resize/pkg/squoosh_resize_bg.wasm";
import { MAX_DECODED_PIXELS, MAX_IMAGE_PIXELS, MAX_SCALED_DECODE_BYTES, THUMBNAIL_SIZES, makeThumbnail, targetSize } from "../worker/media/thumbnail.js";
import { decodeJpegScaled, jpegScaleFor } from "../worker/media/jpeg-scaled-decode.js";
import { registerUser, SERVER, uniqueLocalpart } from "./app-client.js";
import { report } from "./report.js";
import app from "../worker/index.js";

const ctx = { waitUntil: (p: Promise<unknown>) => void p.catch(() => undefined), passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
const MB = 1024 * 1024;

function bodyOf(size: number, chunk = 64 * 1024): ReadableStream<Uint8Array> {
  let sent = 0;
  const block = new Uint8Array(chunk).map((_, i) => i % 251);
  return new ReadableStream({
    pull(controller) {
      if (sent >= size) return controller.close();
      const n = Math.min(chunk, size - sent);
      controller.enqueue(n === chunk ? block.slice() : block.slice(0, n));
      sent += n;
    },
  });
}

it("upload and download throughput, 20 MB", async () => {
  const user = await registerUser(uniqueLocalpart("bench-media"));
  const size = 20 * MB;
  for (const [label, headers] of [
    ["with Content-Length", { "Content-Length": String(size) }],
    ["chunked", {}],
  ] as const) {
    const times: number[] = [];
    let uri = "";
    for (let run = 0; run < 3; run++) {
      const start = performance.now();
      const res = await app.fetch(
        new Request(`https://${SERVER}/_matrix/media/v3/upload`, {
          method: "POST",
          headers: { Authorization: `Bearer ${user.access_token}`, "Content-Type": "application/octet-stream", ...headers },
          body: bodyOf(size),
        }),
        env,
        ctx,
      );
      const body = (await res.json()) as { content_uri: string };
      times.push(performance.now() - start);
      if (res.status !== 200) throw new Error(`upload: ${res.status} ${JSON.stringify(body)}`);
      uri = body.content_uri;
    }
    const best = Math.min(...times);
    report(`media upload 20 MB (${label})`, size / MB / (best / 1000), "MB/s", `best of 3, ${best.toFixed(0)} ms`);
    const dl: number[] = [];
    for (let run = 0; run < 3; run++) {
      const start = performance.now();
      const res = await app.fetch(new Request(`https://${SERVER}/_matrix/client/v1/media/download/${uri.slice(6)}`, { headers: { Authorization: `Bearer ${user.access_token}` } }), env, ctx);
      let n = 0;
      const reader = res.body!.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        n += value.byteLength;
      }
      if (n !== size) throw new Error(`download returned ${n} bytes`);
      dl.push(performance.now() - start);
    }
    const bestDl = Math.min(...dl);
    if (label === "chunked") report("media download 20 MB", size / MB / (bestDl / 1000), "MB/s", `best of 3, ${bestDl.toFixed(0)} ms`);
  }
});

/** A photo-like JPEG (smooth gradients with noise), made with jSquash's encoder (mozjpeg: progressive
 * 4:2:0 by default) so that Photon's WebAssembly memory reflects thumbnailing only. */
async function sourceJpeg(w: number, h: number, progressive = true): Promise<Uint8Array> {
  const pixels = new Uint8ClampedArray(w * h * 4);
  let seed = 1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      const i = (y * w + x) * 4;
      pixels[i] = (x * 255) / w + (seed & 15);
      pixels[i + 1] = (y * 255) / h + ((seed >> 4) & 15);
      pixels[i + 2] = ((x + y) * 127) / (w + h) + ((seed >> 8) & 15);
      pixels[i + 3] = 255;
    }
  }
  return new Uint8Array(
    await jpegEncode({ data: pixels, width: w, height: h, colorSpace: "srgb" } as unknown as Parameters<typeof jpegEncode>[0], { quality: 85, progressive, baseline: !progressive }),
  );
}

it("thumbnails of a 4,000 × 3,000 JPEG: scaled decode, Photon whole, jSquash", async () => {
  await initJpegDecode(mozjpegDecWasm as WebAssembly.Module);
  await initJpegEncode(mozjpegEncWasm as WebAssembly.Module);
  await initResize(resizeWasm as WebAssembly.Module);
  const photonMemory = async () => ((await initPhoton.ensure()) as unknown as { memory: WebAssembly.Memory }).memory.buffer.byteLength / MB;
  report("thumbnail Photon WebAssembly memory before", await photonMemory(), "MB");
  // The server's path first (WebAssembly memory only grows, so Photon's whole decodes come last): the
  // scaled JPEG decoder, then Photon crops, resizes and encodes the reduced image.
  const scaledPath = async (label: string, jpeg: Uint8Array, w: number, h: number, sizes: typeof THUMBNAIL_SIZES) => {
    report(`thumbnail source JPEG ${w}x${h} ${label}`, jpeg.byteLength / MB, "MB");
    for (const size of sizes) {
      const target = targetSize({ width: w, height: h }, size);
      const scale = jpegScaleFor(w, h, target.width, target.height);
      const decoded = decodeJpegScaled(jpeg, scale, { maxSourcePixels: MAX_IMAGE_PIXELS, maxOutputPixels: MAX_DECODED_PIXELS, maxBytes: MAX_SCALED_DECODE_BYTES });
      if ("error" in decoded) throw new Error(decoded.error);
      const times: number[] = [];
      for (let run = 0; run < 3; run++) {
        const start = performance.now();
        makeThumbnail(jpeg, size);
        times.push(performance.now() - start);
      }
      const decodeStart = performance.now();
      decodeJpegScaled(jpeg, scale, { maxSourcePixels: MAX_IMAGE_PIXELS, maxOutputPixels: MAX_DECODED_PIXELS, maxBytes: MAX_SCALED_DECODE_BYTES });
      const decodeMs = performance.now() - decodeStart;
      report(
        `thumbnail ${label} ${w}x${h} ${size.width}x${size.height} ${size.method}`,
        Math.min(...times),
        "ms",
        `best of 3; decode at 1/${scale} ${decodeMs.toFixed(0)} ms, decoder buffers ${(decoded.bufferBytes / MB).toFixed(1)} MB; Photon WebAssembly memory ${(await photonMemory()).toFixed(0)} MB`,
      );
    }
  };
  await scaledPath("progressive", await sourceJpeg(4000, 3000), 4000, 3000, THUMBNAIL_SIZES);
  await scaledPath("baseline", await sourceJpeg(4000, 3000, false), 4000, 3000, THUMBNAIL_SIZES);
  const big = [THUMBNAIL_SIZES[0], THUMBNAIL_SIZES[THUMBNAIL_SIZES.length - 1]];
  await scaledPath("progressive", await sourceJpeg(6000, 4000), 6000, 4000, big);

  // Photon decoding whole images, as the server did before the scaled decoder (and still does for PNG,
  // GIF and WebP): a 3,000 × 2,000 JPEG, the whole-decode limit, then 4,000 × 3,000.
  const whole = (jpeg: Uint8Array, size: (typeof THUMBNAIL_SIZES)[number]) => {
    const img = PhotonImage.new_from_byteslice(jpeg);
    const target = targetSize({ width: img.get_width(), height: img.get_height() }, size);
    const out = photonResize(img, target.width, target.height, SamplingFilter.Triangle);
    out.get_bytes_jpeg(80);
    out.free();
    img.free();
  };
  const small = await sourceJpeg(3000, 2000);
  const smallStart = performance.now();
  whole(small, { width: 800, height: 600, method: "scale" });
  report("thumbnail Photon whole decode 3000x2000 JPEG to 800x600 scale", performance.now() - smallStart, "ms", `WebAssembly memory ${(await photonMemory()).toFixed(0)} MB`);
  const jpeg = await sourceJpeg(4000, 3000);
  const wholeStart = performance.now();
  whole(jpeg, { width: 800, height: 600, method: "scale" });
  report("thumbnail Photon whole decode 4000x3000 JPEG to 800x600 scale", performance.now() - wholeStart, "ms", `WebAssembly memory ${(await photonMemory()).toFixed(0)} MB`);

  for (const size of THUMBNAIL_SIZES) {
    const times: number[] = [];
    for (let run = 0; run < 3; run++) {
      const start = performance.now();
      const decoded = await jpegDecode(jpeg.buffer as ArrayBuffer);
      // Same geometry as the server: scale fits the box; crop fills it after a centred cut.
      let width = size.width;
      let height = size.height;
      if (size.method === "scale") {
        const f = Math.min(size.width / decoded.width, size.height / decoded.height);
        width = Math.round(decoded.width * f);
        height = Math.round(decoded.height * f);
      }
      const resized = await resize(decoded, { width, height, fitMethod: size.method === "crop" ? "contain" : "stretch", method: "triangle" });
      await jpegEncode(resized, { quality: 80 });
      times.push(performance.now() - start);
    }
    report(`thumbnail jSquash ${size.width}x${size.height} ${size.method}`, Math.min(...times), "ms", "best of 3");
  }
  report("thumbnail Photon WebAssembly memory after all sizes", await photonMemory(), "MB");
});
