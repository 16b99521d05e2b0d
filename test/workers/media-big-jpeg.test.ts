// Thumbnails of big photos (worker/media/thumbnail.ts with worker/media/jpeg-scaled-decode.ts): a
// 12-megapixel JPEG, baseline and progressive, and one of exactly MEDIA_MAX_THUMBNAIL_PIXELS (50 M), get
// thumbnails of the right sizes and colours; one pixel more is refused. Photon alone cannot decode such
// images within a Worker's memory; the scaled decoder reads them at 1/4 or 1/8.
// The photos are written by a small JPEG encoder whose blocks are flat (test/fixtures/jpeg/flat-jpeg.ts), so
// that a 50-megapixel file takes milliseconds to make and about a megabyte to upload.
import { env } from "cloudflare:workers";
import { PhotonImage } from "@cf-wasm/photon";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../worker/index.js";
import type { Env } from "../../worker/env.js";
import { imageInfo } from "../../worker/media/image-info.js";
import { SERVER_NAME, registerUser, uniqueLocalpart } from "./helpers.js";
import { flatJpeg } from "../fixtures/jpeg/flat-jpeg.js";

const app = buildApp();
const baseEnv = env as unknown as Env;

async function call(method: string, path: string, token: string, body?: BodyInit, type?: string): Promise<Response> {
  const headers = new Headers({ Authorization: `Bearer ${token}` });
  if (type) headers.set("Content-Type", type);
  return app.fetch(new Request(`https://${SERVER_NAME}${path}`, { method, headers, body }), baseEnv);
}

/** Left half red, right half blue, darker towards the bottom. */
const redBlue = (mcusX: number, mcusY: number) => (mx: number, my: number): [number, number, number] => {
  const y = 150 - Math.floor((60 * my) / mcusY);
  return mx < mcusX / 2 ? [y, 90, 220] : [y, 220, 90];
};

async function upload(token: string, bytes: Uint8Array): Promise<string> {
  const res = await call("POST", "/_matrix/media/v3/upload", token, bytes, "image/jpeg");
  expect(res.status).toBe(200);
  return ((await res.json()) as { content_uri: string }).content_uri.slice("mxc://".length);
}

/** The thumbnail's size, and the colour at (fx, fy) as fractions of its size. */
async function thumbnailOf(token: string, path: string, query: string, at: [number, number][] = []) {
  const res = await call("GET", `/_matrix/client/v1/media/thumbnail/${path}?${query}`, token);
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (res.status !== 200) return { status: res.status, body: new TextDecoder().decode(bytes) };
  const info = imageInfo(bytes);
  if ("error" in info) throw new Error(info.error);
  const img = PhotonImage.new_from_byteslice(bytes);
  const px = img.get_raw_pixels();
  const width = img.get_width();
  img.free();
  const colours = at.map(([fx, fy]) => {
    const i = (Math.floor(fy * info.height) * width + Math.floor(fx * info.width)) * 4;
    return { r: px[i], g: px[i + 1], b: px[i + 2] };
  });
  return { status: res.status, type: res.headers.get("Content-Type"), width: info.width, height: info.height, colours };
}

describe("thumbnails of big JPEGs", () => {
  it("makes the 32×32 crop and 800×600 scale thumbnails of a 12-megapixel photo, baseline and progressive", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("bigjpeg"));
    const mcus = redBlue(Math.ceil(4000 / 16), Math.ceil(3000 / 16));
    for (const opts of [{ restart: 7 }, { progressive: true }]) {
      const path = await upload(access_token, flatJpeg(4000, 3000, mcus, opts));
      const scaled = await thumbnailOf(access_token, path, "width=800&height=600&method=scale", [
        [0.25, 0.5],
        [0.75, 0.5],
      ]);
      expect(scaled).toMatchObject({ status: 200, type: "image/jpeg", width: 800, height: 600 });
      const [left, right] = (scaled as { colours: { r: number; b: number }[] }).colours;
      expect([opts, left.r > left.b + 80, right.b > right.r + 80]).toEqual([opts, true, true]);
      const cropped = await thumbnailOf(access_token, path, "width=32&height=32&method=crop", [
        [0.1, 0.5],
        [0.9, 0.5],
      ]);
      expect(cropped).toMatchObject({ status: 200, type: "image/jpeg", width: 32, height: 32 });
      const [l, r] = (cropped as { colours: { r: number; b: number }[] }).colours;
      expect([opts, l.r > l.b + 80, r.b > r.r + 80]).toEqual([opts, true, true]);
    }
  });

  it("turns photos by their EXIF orientation (as Synapse), on the scaled path and on Photon's", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("turnjpeg"));
    // Stored 4,000 × 3,000, red left and blue right; orientation 6 (turn a quarter clockwise) shows it
    // 3,000 × 4,000 with red on top.
    const portrait = await upload(access_token, flatJpeg(4000, 3000, redBlue(250, 188), { orientation: 6 }));
    // The stored picture darkens towards its bottom, which is shown on the left (orientation 5, a transpose,
    // would show it on the right).
    const scaled = await thumbnailOf(access_token, portrait, "width=800&height=600&method=scale", [
      [0.5, 0.25],
      [0.5, 0.75],
      [0.1, 0.25],
      [0.9, 0.25],
    ]);
    expect(scaled).toMatchObject({ status: 200, width: 450, height: 600 });
    const [top, bottom, left, right] = (scaled as { colours: { r: number; g: number; b: number }[] }).colours;
    expect([top.r > top.b + 80, bottom.b > bottom.r + 80, left.r + left.g + left.b + 60 < right.r + right.g + right.b]).toEqual([true, true, true]);
    // Small enough for Photon's whole decode: 64 × 48 stored, orientation 8 (a quarter anticlockwise) shows
    // 48 × 64 with red at the bottom.
    const small = await upload(access_token, flatJpeg(64, 48, redBlue(4, 3), { orientation: 8 }));
    const cropped = await thumbnailOf(access_token, small, "width=32&height=32&method=crop", [
      [0.5, 0.1],
      [0.5, 0.9],
    ]);
    expect(cropped).toMatchObject({ status: 200, width: 32, height: 32 });
    const [t, b] = (cropped as { colours: { r: number; b: number }[] }).colours;
    expect([t.b > t.r + 80, b.r > b.b + 80]).toEqual([true, true]);
    const scaledSmall = await thumbnailOf(access_token, small, "width=320&height=240&method=scale");
    expect(scaledSmall).toMatchObject({ status: 200, width: 48, height: 64 });
  });

  it("thumbnails a photo of exactly MEDIA_MAX_THUMBNAIL_PIXELS (50 M) and refuses one pixel row more", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("hugejpeg"));
    const path = await upload(access_token, flatJpeg(10_000, 5_000, redBlue(625, 313)));
    expect(await thumbnailOf(access_token, path, "width=96&height=96&method=crop")).toMatchObject({ status: 200, width: 96, height: 96 });
    // Over the limit: refused from the header (the file claims 10,000 × 5,001; its data is never read).
    const small = flatJpeg(16, 16, () => [128, 128, 128]);
    const sof = small.findIndex((b, i) => b === 0xff && small[i + 1] === 0xc0);
    small.set([5001 >> 8, 5001 & 255, 10_000 >> 8, 10_000 & 255], sof + 5);
    const over = await thumbnailOf(access_token, await upload(access_token, small), "width=96&height=96&method=crop");
    expect(over.status).toBe(400);
    expect((over as { body: string }).body).toContain("larger than 50000000 pixels");
  });

  it("answers a corrupt big JPEG with an error and keeps working", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("badjpeg"));
    const bytes = flatJpeg(4000, 3000, redBlue(250, 188));
    // Cut the scan short but keep the end-of-image marker: the header check passes, the decoder does not.
    const cut = new Uint8Array([...bytes.subarray(0, bytes.length >> 1), 0xff, 0xd9]);
    const res = await thumbnailOf(access_token, await upload(access_token, cut), "width=32&height=32&method=crop");
    expect(res.status).toBe(400);
    expect((res as { body: string }).body).toContain("truncated or corrupt");
    const ok = await thumbnailOf(access_token, await upload(access_token, bytes), "width=32&height=32&method=crop");
    expect(ok).toMatchObject({ status: 200, width: 32, height: 32 });
  });
});
