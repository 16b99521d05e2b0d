// Thumbnails (worker/media/thumbnail.ts): PNG, JPEG, GIF and WebP, scale and crop to Synapse's default sizes,
// cached in R2, over the client and federation APIs; hostile images (huge dimensions, truncated, corrupt)
// get an error answer and the thumbnailer keeps working.
import { env } from "cloudflare:workers";
import { PhotonImage } from "@cf-wasm/photon";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../worker/index.js";
import type { Env } from "../../worker/env.js";
import { imageInfo } from "../../worker/media/image-info.js";
import { selectSize } from "../../worker/media/thumbnail.js";
import { boundaryOf, parseMediaMultipart } from "../../worker/media/multipart.js";
import { SERVER_NAME, registerUser, uniqueLocalpart } from "./helpers.js";
import { signedInbound, uniqueServer } from "./federation-helpers.js";

const app = buildApp();
const baseEnv = env as unknown as Env;

async function call(method: string, path: string, token?: string, body?: BodyInit, type?: string): Promise<Response> {
  const headers = new Headers();
  if (token) headers.set("Authorization", `Bearer ${token}`);
  if (type) headers.set("Content-Type", type);
  return app.fetch(new Request(`https://${SERVER_NAME}${path}`, { method, headers, body }), baseEnv);
}

/** A `width` × `height` image with a gradient, encoded by Photon. */
function image(width: number, height: number, format: "png" | "jpeg" | "webp"): Uint8Array {
  const pixels = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    pixels[i * 4] = i % width;
    pixels[i * 4 + 1] = Math.floor(i / width) % 256;
    pixels[i * 4 + 2] = 128;
    pixels[i * 4 + 3] = 255;
  }
  const img = new PhotonImage(pixels, width, height);
  try {
    return format === "png" ? img.get_bytes() : format === "jpeg" ? img.get_bytes_jpeg(90) : img.get_bytes_webp();
  } finally {
    img.free();
  }
}

/** A GIF of `frames` 2×2 frames (hand-built: a 2-colour table, each frame an LZW stream of 4 pixels). */
function gif(frames: number): Uint8Array {
  const bytes = [0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 2, 0, 2, 0, 0x80, 0, 0, 0, 0, 0, 255, 255, 255];
  for (let f = 0; f < frames; f++) {
    bytes.push(0x21, 0xf9, 4, 0, 10, 0, 0, 0); // graphic control: 0.1 s
    bytes.push(0x2c, 0, 0, 0, 0, 2, 0, 2, 0, 0);
    bytes.push(2, 2, 0x84, 0x51, 0); // LZW (2-bit): clear, 0, 6 (= 0 0), 0, end
  }
  bytes.push(0x3b);
  return new Uint8Array(bytes);
}

/** A PNG whose header claims `width` × `height` (a decompression bomb needs no more than this to be refused). */
function bombPng(width: number, height: number): Uint8Array {
  const b = new Uint8Array(8 + 25 + 12);
  b.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const view = new DataView(b.buffer);
  view.setUint32(8, 13);
  b.set([0x49, 0x48, 0x44, 0x52], 12);
  view.setUint32(16, width);
  view.setUint32(20, height);
  b.set([8, 6, 0, 0, 0], 24);
  view.setUint32(33, 0);
  b.set([0x49, 0x45, 0x4e, 0x44], 37);
  return b;
}

async function uploadAs(token: string, bytes: Uint8Array, type: string): Promise<string> {
  const res = await call("POST", "/_matrix/media/v3/upload", token, bytes, type);
  expect(res.status).toBe(200);
  return ((await res.json()) as { content_uri: string }).content_uri.slice("mxc://".length);
}

async function thumbnail(token: string, path: string, query: string): Promise<Response> {
  return call("GET", `/_matrix/client/v1/media/thumbnail/${path}?${query}`, token);
}

async function dimensionsOf(res: Response): Promise<{ width: number; height: number; format: string }> {
  const info = imageInfo(new Uint8Array(await res.arrayBuffer()));
  if ("error" in info) throw new Error(info.error);
  return info;
}

describe("thumbnail size selection", () => {
  it("picks Synapse's default sizes", () => {
    expect(selectSize({ width: 32, height: 32, method: "crop" })).toEqual({ width: 32, height: 32, method: "crop" });
    expect(selectSize({ width: 33, height: 32, method: "crop" })).toEqual({ width: 96, height: 96, method: "crop" });
    expect(selectSize({ width: 320, height: 240, method: "scale" })).toEqual({ width: 320, height: 240, method: "scale" });
    expect(selectSize({ width: 321, height: 240, method: "scale" })).toEqual({ width: 640, height: 480, method: "scale" });
    expect(selectSize({ width: 5000, height: 5000, method: "scale" })).toEqual({ width: 800, height: 600, method: "scale" });
    expect(selectSize({ width: 200, height: 200, method: "crop" })).toEqual({ width: 320, height: 240, method: "scale" });
  });
});

describe("thumbnails", () => {
  it("scales a PNG into the box, keeping its aspect ratio and type", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("thumb"));
    const path = await uploadAs(access_token, image(1000, 500, "png"), "image/png");
    const res = await thumbnail(access_token, path, "width=320&height=240&method=scale");
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toBe("image/png");
    expect(res.headers.get("Content-Security-Policy")).toContain("sandbox");
    expect(await dimensionsOf(res)).toMatchObject({ format: "png", width: 320, height: 160 });
  });

  it("crops a JPEG to the requested square and keeps JPEG", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("crop"));
    const path = await uploadAs(access_token, image(400, 300, "jpeg"), "image/jpeg");
    const res = await thumbnail(access_token, path, "width=96&height=96&method=crop");
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toBe("image/jpeg");
    expect(await dimensionsOf(res)).toMatchObject({ format: "jpeg", width: 96, height: 96 });
    // The second answer comes from the R2 cache.
    const keys = await baseEnv.MEDIA.list({ prefix: `thumbnail/local/${path.split("/")[1]}/` });
    expect(keys.objects.map((o) => o.key)).toEqual([`thumbnail/local/${path.split("/")[1]}/96x96-crop`]);
    const again = await thumbnail(access_token, path, "width=96&height=96&method=crop");
    expect(await dimensionsOf(again)).toMatchObject({ width: 96, height: 96 });
  });

  it("thumbnails WebP and GIF as PNG, never larger than the original", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("webp"));
    const webp = await uploadAs(access_token, image(200, 100, "webp"), "image/webp");
    const w = await thumbnail(access_token, webp, "width=800&height=600");
    expect(w.status).toBe(200);
    expect(await dimensionsOf(w)).toMatchObject({ format: "png", width: 200, height: 100 });
    const still = await uploadAs(access_token, gif(1), "image/gif");
    const g = await thumbnail(access_token, still, "width=32&height=32&method=crop");
    expect(g.status).toBe(200);
    expect(await dimensionsOf(g)).toMatchObject({ format: "png", width: 2, height: 2 });
  });

  it("answers animated=true on an animated GIF with the animation, otherwise with a still", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("anim"));
    const animated = gif(3);
    const path = await uploadAs(access_token, animated, "image/gif");
    const res = await thumbnail(access_token, path, "width=32&height=32&method=crop&animated=true");
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toBe("image/gif");
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(animated);
    const still = await thumbnail(access_token, path, "width=32&height=32&method=crop&animated=false");
    expect(still.headers.get("Content-Type")).toBe("image/png");
    const png = await uploadAs(access_token, image(50, 50, "png"), "image/png");
    const p = await thumbnail(access_token, png, "width=32&height=32&method=crop&animated=true");
    expect(p.headers.get("Content-Type")).toBe("image/png");
  });

  it("validates the parameters", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("params"));
    const path = await uploadAs(access_token, image(10, 10, "png"), "image/png");
    const cases: [string, number, string][] = [
      ["height=32", 400, "M_MISSING_PARAM"],
      ["width=abc&height=32", 400, "M_INVALID_PARAM"],
      ["width=0&height=32", 400, "M_INVALID_PARAM"],
      ["width=32&height=32&method=stretch", 400, "M_INVALID_PARAM"],
      ["width=32&height=32&animated=yes", 400, "M_INVALID_PARAM"],
    ];
    for (const [query, status, errcode] of cases) {
      const res = await thumbnail(access_token, path, query);
      expect([query, res.status, ((await res.json()) as { errcode: string }).errcode]).toEqual([query, status, errcode]);
    }
    expect((await thumbnail(access_token, path, "width=1&height=1")).status).toBe(200);
    expect((await call("GET", `/_matrix/client/v1/media/thumbnail/${path}?width=32&height=32`)).status).toBe(401);
  });

  it("refuses hostile and non-image media with an error, and keeps working", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("hostile"));
    const cases: [string, Uint8Array, string][] = [
      ["30,000 × 30,000 PNG", bombPng(30_000, 30_000), "image/png"],
      ["just over the pixel limit", bombPng(3001, 2000), "image/png"],
      ["truncated PNG", image(300, 300, "png").slice(0, 400), "image/png"],
      ["truncated JPEG", image(300, 300, "jpeg").slice(0, 600), "image/jpeg"],
      ["truncated GIF", gif(2).slice(0, 30), "image/gif"],
      ["text labelled as PNG", new TextEncoder().encode("not an image at all"), "image/png"],
      ["a PDF", new TextEncoder().encode("%PDF-1.4"), "application/pdf"],
    ];
    // A PNG with a valid chunk layout but garbage pixel data: the decoder itself fails.
    const corrupt = image(64, 64, "png");
    const idat = corrupt.findIndex((_, i) => corrupt[i] === 0x49 && corrupt[i + 1] === 0x44 && corrupt[i + 2] === 0x41 && corrupt[i + 3] === 0x54);
    for (let i = idat + 6; i < idat + 40; i++) corrupt[i] ^= 0x5a;
    cases.push(["corrupt PNG data", corrupt, "image/png"]);
    for (const [what, bytes, type] of cases) {
      const path = await uploadAs(access_token, bytes, type);
      const res = await thumbnail(access_token, path, "width=96&height=96&method=crop");
      expect([what, res.status]).toEqual([what, 400]);
      expect(((await res.json()) as { errcode: string }).errcode).toBe("M_UNKNOWN");
    }
    // The pixel limit's edge: exactly 6,000,000 pixels passes the limit (the decoder then finds no pixel data).
    const edge = await uploadAs(access_token, bombPng(3000, 2000), "image/png");
    const edgeRes = await thumbnail(access_token, edge, "width=32&height=32");
    expect(((await edgeRes.json()) as { error: string }).error).toContain("could not be decoded");
    const ok = await uploadAs(access_token, image(100, 100, "png"), "image/png");
    expect((await thumbnail(access_token, ok, "width=32&height=32&method=crop")).status).toBe(200);
  });

  it("serves thumbnails over federation as multipart", async () => {
    const { access_token } = await registerUser(uniqueLocalpart("fedthumb"));
    const path = await uploadAs(access_token, image(640, 480, "png"), "image/png");
    const mediaId = path.split("/")[1];
    const res = await signedInbound(uniqueServer("peer"), "GET", `/_matrix/federation/v1/media/thumbnail/${mediaId}?width=320&height=240&method=scale`);
    expect(res.status).toBe(200);
    const part = await parseMediaMultipart(new Response(res.text).body!, boundaryOf(res.headers.get("Content-Type"))!);
    expect(part.headers.get("content-type")).toBe("image/png");
    expect(part.body).toBeDefined();
  });
});
