// The scaled JPEG decoder (worker/media/jpeg-scaled-decode.ts) against a reference: Photon's full decode
// (Rust's `image` crate, an independent decoder), box-averaged to the same reduced size. Fixtures are made by
// libjpeg (test/fixtures/jpeg/make-fixtures.py): baseline and progressive, 4:4:4, 4:2:2, 4:2:0 and grey,
// restart intervals, optimised tables. Then malformed input: truncated, corrupted, hostile headers.
import { PhotonImage } from "@cf-wasm/photon";
import { describe, expect, it } from "vitest";
import { decodeJpegScaled, jpegScaleFor, type JpegScale, type ScaledJpeg } from "../../worker/media/jpeg-scaled-decode.js";
import { flatJpeg, type FlatJpegOptions } from "../fixtures/jpeg/flat-jpeg.js";

// The fixture files as data URLs (Vite's import.meta.glob with ?inline: the project has no Node type
// definitions, as test/unit/state-res.test.ts explains).
const fixtureFiles = import.meta.glob<string>("../fixtures/jpeg/*.jpg", { eager: true, query: "?inline", import: "default" });
function fixture(name: string): Uint8Array {
  const url = fixtureFiles[`../fixtures/jpeg/${name}`];
  if (!url) throw new Error(`no fixture ${name}`);
  return Uint8Array.from(atob(url.slice(url.indexOf(",") + 1)), (c) => c.charCodeAt(0));
}
const LIMITS = { maxSourcePixels: 50_000_000, maxOutputPixels: 6_000_000, maxBytes: 48 * 1024 * 1024 };

/** Photon's full decode, averaged over scale × scale squares (partial squares at the edges average what they have). */
function reference(bytes: Uint8Array, scale: number): { width: number; height: number; rgba: Uint8Array } {
  const img = PhotonImage.new_from_byteslice(bytes);
  const w = img.get_width();
  const h = img.get_height();
  const px = img.get_raw_pixels();
  img.free();
  const width = Math.ceil(w / scale);
  const height = Math.ceil(h / scale);
  const rgba = new Uint8Array(width * height * 4);
  for (let oy = 0; oy < height; oy++) {
    for (let ox = 0; ox < width; ox++) {
      const sum = [0, 0, 0];
      let n = 0;
      for (let y = oy * scale; y < Math.min(h, (oy + 1) * scale); y++) {
        for (let x = ox * scale; x < Math.min(w, (ox + 1) * scale); x++) {
          for (let ch = 0; ch < 3; ch++) sum[ch] += px[(y * w + x) * 4 + ch];
          n++;
        }
      }
      for (let ch = 0; ch < 3; ch++) rgba[(oy * width + ox) * 4 + ch] = Math.round(sum[ch] / n);
      rgba[(oy * width + ox) * 4 + 3] = 255;
    }
  }
  return { width, height, rgba };
}

function difference(a: Uint8Array, b: Uint8Array): { mean: number; max: number } {
  let sum = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]);
    sum += e;
    if (e > max) max = e;
  }
  return { mean: sum / a.length, max };
}

function decoded(bytes: Uint8Array, scale: JpegScale): ScaledJpeg {
  const out = decodeJpegScaled(bytes, scale, LIMITS);
  if ("error" in out) throw new Error(out.error);
  return out;
}

const FIXTURES = [
  "baseline-444.jpg",
  "baseline-422.jpg",
  "baseline-420.jpg",
  "baseline-grey.jpg",
  "baseline-420-restart.jpg",
  "baseline-420-optimized.jpg",
  "progressive-444.jpg",
  "progressive-422.jpg",
  "progressive-420.jpg",
  "progressive-grey.jpg",
  "progressive-420-restart.jpg",
  "progressive-grey-restart.jpg",
];

/** Offset of the first `marker` segment (its 0xFF byte). */
function segmentAt(bytes: Uint8Array, marker: number): number {
  for (let i = 2; i + 3 < bytes.length; ) {
    if (bytes[i + 1] === marker) return i;
    if (bytes[i + 1] === 0xda) break;
    i += 2 + ((bytes[i + 2] << 8) | bytes[i + 3]);
  }
  throw new Error(`no marker ${marker.toString(16)}`);
}

const hasMarker = (bytes: Uint8Array, marker: number) => bytes.some((b, i) => b === 0xff && bytes[i + 1] === marker);
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
const EOI = Uint8Array.from([0xff, 0xd9]);

describe("scaled JPEG decode against a box-averaged full decode", () => {
  // Mean error over all channels; the maximum bounds single pixels. Subsampled chroma differs most at the red
  // disc's edge: the reference upsamples chroma by interpolation before averaging, this decoder averages
  // the chroma samples themselves. Progressive at 1/2 keeps 4×4 coefficients of 8 (a little more blur).
  for (const name of FIXTURES) {
    it(name, () => {
      const bytes = fixture(name);
      const subsampled = !name.includes("444") && !name.includes("grey");
      if (name.includes("restart")) expect(hasMarker(bytes, 0xdd) && hasMarker(bytes, 0xd0)).toBe(true);
      expect(hasMarker(bytes, 0xc2)).toBe(name.startsWith("progressive"));
      for (const scale of [1, 2, 4, 8] as const) {
        const got = decoded(bytes, scale);
        const want = reference(bytes, scale);
        expect([scale, got.width, got.height]).toEqual([scale, want.width, want.height]);
        expect(got.rgba.length).toBe(got.width * got.height * 4);
        const diff = difference(got.rgba, want.rgba);
        expect(diff.mean, `1/${scale} mean`).toBeLessThan(scale === 1 ? 1.5 : 2);
        expect(diff.max, `1/${scale} max`).toBeLessThanOrEqual(subsampled ? (scale === 1 ? 90 : 45) : 25);
      }
    });
  }

  it("decodes the same picture the same way whatever the encoding (restart intervals change nothing)", () => {
    for (const scale of [2, 4, 8] as const) {
      expect(decoded(fixture("baseline-420-restart.jpg"), scale).rgba).toEqual(decoded(fixture("baseline-420.jpg"), scale).rgba);
      expect(decoded(fixture("progressive-420-restart.jpg"), scale).rgba).toEqual(decoded(fixture("progressive-420.jpg"), scale).rgba);
    }
  });
});

describe("where blocks land, for every sampling layout and scan layout", () => {
  // Flat MCUs of distinct colours (test/fixtures/jpeg/flat-jpeg.ts): every reduced pixel lies inside one MCU
  // (an MCU is 8-32 pixels wide, the scale at most 8), so it must have exactly that MCU's colour.
  const colour = (mx: number, my: number): [number, number, number] => [40 + ((mx * 37 + my * 11) % 170), 60 + ((mx * 13) % 130), 60 + ((my * 29) % 130)];
  const rgb = ([y, cb, cr]: [number, number, number]) =>
    [y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)].map((x) => Math.round(Math.min(255, Math.max(0, x))));
  const layouts: [string, FlatJpegOptions][] = [
    ["4:4:4", { sampling: [1, 1] }],
    ["4:2:2", { sampling: [2, 1] }],
    ["4:4:0", { sampling: [1, 2] }],
    ["4:2:0", { sampling: [2, 2] }],
    ["4:1:1", { sampling: [4, 1] }],
    ["luma 4 × 4, one scan per component", { sampling: [4, 4], separateScans: true }],
    ["4:2:0, one scan per component", { sampling: [2, 2], separateScans: true }],
    ["4:2:2, one scan per component", { sampling: [2, 1], separateScans: true }],
    ["4:2:0 progressive", { sampling: [2, 2], progressive: true }],
    ["4:1:1 progressive", { sampling: [4, 1], progressive: true }],
    ["4:2:0, restart every 5 MCUs", { sampling: [2, 2], restart: 5 }],
  ];
  for (const [name, opts] of layouts) {
    it(name, () => {
      const [h, v] = opts.sampling!;
      const width = 203; // not a multiple of any MCU width
      const height = 157;
      const bytes = flatJpeg(width, height, colour, opts);
      for (const scale of [1, 2, 4, 8] as const) {
        const got = decoded(bytes, scale);
        expect([got.width, got.height]).toEqual([Math.ceil(width / scale), Math.ceil(height / scale)]);
        let worst = 0;
        for (let y = 0; y < got.height; y++) {
          for (let x = 0; x < got.width; x++) {
            const want = rgb(colour(Math.floor((x * scale) / (8 * h)), Math.floor((y * scale) / (8 * v))));
            for (let ch = 0; ch < 3; ch++) worst = Math.max(worst, Math.abs(got.rgba[(y * got.width + x) * 4 + ch] - want[ch]));
          }
        }
        expect(worst, `1/${scale}`).toBeLessThanOrEqual(2);
      }
    });
  }

  it("refuses an interleaved MCU of more than 10 blocks (T.81 B.2.3), which the same layout in separate scans is not", () => {
    const out = decodeJpegScaled(flatJpeg(64, 64, colour, { sampling: [4, 4] }), 4, LIMITS);
    expect("error" in out ? out.error : "decoded").toMatch(/too many blocks in an MCU/);
  });
});

describe("choosing the scale", () => {
  it("takes the largest divisor that still leaves the requested size, the equal size included", () => {
    expect(jpegScaleFor(4000, 3000, 800, 600)).toBe(4);
    expect(jpegScaleFor(6400, 4800, 800, 600)).toBe(8); // exactly 800 × 600 at 1/8
    expect(jpegScaleFor(6399, 4800, 800, 600)).toBe(4);
    expect(jpegScaleFor(4000, 3000, 32, 32)).toBe(8);
    expect(jpegScaleFor(1600, 1200, 800, 600)).toBe(2);
    expect(jpegScaleFor(1599, 1200, 800, 600)).toBe(1);
    expect(jpegScaleFor(100, 100, 96, 96)).toBe(1);
  });
});

describe("malformed and hostile JPEG", () => {
  const expectError = (bytes: Uint8Array, match?: RegExp, limits = LIMITS) => {
    const out = decodeJpegScaled(bytes, 4, limits);
    expect("error" in out ? out.error : "decoded").toMatch(match ?? /./);
    expect("error" in out).toBe(true);
    return out as { error: string; unsupported: boolean };
  };

  it("refuses every truncation, with or without an end-of-image marker appended", () => {
    for (const name of ["baseline-420-restart.jpg", "progressive-420.jpg", "baseline-grey.jpg"]) {
      const bytes = fixture(name);
      const scan = segmentAt(bytes, 0xda);
      for (let n = 0; n < bytes.length - 2; n += 37) {
        expectError(bytes.slice(0, n));
        // Cut inside the first scan's data: the scan runs out before its last block.
        if (n > scan + 20 && name.startsWith("baseline")) expectError(concat(bytes.slice(0, n), EOI), /truncated|corrupt|Huffman|coefficient|restart/);
      }
    }
  });

  it("never throws on corrupted data, and answers an image of the right size or an error", () => {
    let seed = 42;
    const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    let errors = 0;
    for (const name of ["baseline-420-restart.jpg", "progressive-420.jpg", "progressive-grey-restart.jpg", "baseline-422.jpg"]) {
      const bytes = fixture(name);
      for (let trial = 0; trial < 60; trial++) {
        const bad = bytes.slice();
        for (let i = 0; i < 1 + Math.floor(random() * 8); i++) bad[Math.floor(random() * bad.length)] = Math.floor(random() * 256);
        const out = decodeJpegScaled(bad, ([2, 4, 8] as const)[trial % 3], LIMITS);
        if ("error" in out) errors++;
        else expect(out.rgba.length).toBe(out.width * out.height * 4);
      }
    }
    expect(errors).toBeGreaterThan(0);
  });

  it("checks the frame header before allocating anything", () => {
    const bytes = fixture("baseline-420.jpg");
    const sof = segmentAt(bytes, 0xc0);
    const withSize = (w: number, h: number) => {
      const b = bytes.slice();
      b.set([h >> 8, h & 255, w >> 8, w & 255], sof + 5);
      return b;
    };
    expectError(withSize(65535, 65535), /larger than 50000000 pixels/);
    // Within the source limit but over the decoder's memory budget or the reduced-size limit.
    expectError(withSize(8000, 6000), /over the limit/, { ...LIMITS, maxBytes: 1_000_000 });
    expectError(withSize(8000, 6000), /reduced image is larger/, { ...LIMITS, maxOutputPixels: 2_999_999 });
    expect("error" in decodeJpegScaled(withSize(8000, 6000), 4, { ...LIMITS, maxOutputPixels: 3_000_000 })).toBe(true); // passes the limit; the data is too short
    expectError(withSize(0, 100), /no width/);
    expect(expectError(withSize(100, 0), /DNL/).unsupported).toBe(true);
    const edit = (offset: number, value: number) => {
      const b = bytes.slice();
      b[offset] = value;
      return b;
    };
    expect(expectError(edit(sof + 4, 12), /12-bit/).unsupported).toBe(true);
    expect(expectError(edit(sof + 9, 4), /4 components/).unsupported).toBe(true);
    expectError(edit(sof + 11, 0x00), /malformed frame header/); // sampling factors 0
    expectError(edit(sof + 11, 0x55), /malformed frame header/); // sampling factors 5
    expect(expectError(edit(sof + 11, 0x33), /sampling factor 3/).unsupported).toBe(true);
    expectError(edit(sof + 12, 7), /malformed frame header/); // quantisation table 7
    expectError(edit(sof + 13, 1), /duplicate component/); // second component's id = first's
    expect(expectError(edit(sof + 1, 0xc3), /lossless/).unsupported).toBe(true);
    expect(expectError(edit(sof + 1, 0xc9), /arithmetic/).unsupported).toBe(true);
    expectError(concat(bytes.slice(0, sof), bytes.slice(sof).subarray((bytes[sof + 2] << 8) + bytes[sof + 3] + 2)), /scan before the frame/);
  });

  it("refuses bad tables, scans and restart markers", () => {
    const bytes = fixture("baseline-420-restart.jpg");
    const dht = segmentAt(bytes, 0xc4);
    const oversubscribed = bytes.slice();
    oversubscribed[dht + 5] = 3; // three codes of length 1
    expectError(oversubscribed, /Huffman table/);
    const tooMany = bytes.slice();
    tooMany.fill(255, dht + 5, dht + 21); // 16 × 255 codes
    expectError(tooMany, /Huffman table/);
    const dqt = segmentAt(bytes, 0xdb);
    const badDqt = bytes.slice();
    badDqt[dqt + 4] = 0x27; // precision 2
    expectError(badDqt, /quantisation table/);
    const sos = segmentAt(bytes, 0xda);
    const unknownComponent = bytes.slice();
    unknownComponent[sos + 5] = 9;
    expectError(unknownComponent, /unknown or repeated component/);
    const undefinedTable = bytes.slice();
    undefinedTable[sos + 6] = 0x33; // tables 3, never defined
    expectError(undefinedTable, /undefined Huffman table/);
    // Restart markers removed: the decoder finds none where the interval ends.
    const stripped: number[] = [];
    for (let i = 0; i < bytes.length; i++) {
      if (i > sos && bytes[i] === 0xff && bytes[i + 1] >= 0xd0 && bytes[i + 1] <= 0xd7) i++;
      else stripped.push(bytes[i]);
    }
    expectError(Uint8Array.from(stripped), /restart marker|corrupt|Huffman|coefficient/);
    expectError(new TextEncoder().encode("not a jpeg at all"), /not a JPEG/);
    expectError(Uint8Array.from([0xff, 0xd8, 0xff, 0xd9]), /without image data/);
  });

  it("refuses a file of endless scans", () => {
    const bytes = fixture("progressive-grey.jpg");
    const sos = segmentAt(bytes, 0xda);
    // A DC refinement scan of one bit per block, repeated: cheap to write, each one walks every block.
    const scan = Uint8Array.from([0xff, 0xda, 0, 8, 1, bytes[sos + 5], 0x00, 0, 0, 0x10, ...new Array(400).fill(0)]);
    const head = bytes.slice(0, bytes.length - 2);
    const many = concat(head, ...new Array(100).fill(scan), EOI);
    expectError(many, /too many scans/);
    expect("error" in decodeJpegScaled(concat(head, ...new Array(5).fill(scan), EOI), 4, LIMITS)).toBe(false);
  });
});
