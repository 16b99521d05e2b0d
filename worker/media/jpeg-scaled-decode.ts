// A JPEG decoder that decodes straight to 1/2, 1/4 or 1/8 of the image's size, as libjpeg's scaled decode
// (`scale_num/scale_denom`) does, so that a 12- or 50-megapixel photo can be thumbnailed inside a Worker's
// 128 MB: Photon (WebAssembly) needs 12-15 bytes per source pixel to decode a JPEG whole, this decoder needs
// memory in proportion to the reduced image. Written from ITU-T T.81 (the JPEG standard); the sections are
// named where they are implemented. Pure computation, no I/O; it never throws: every problem is a value.
//
// How the reduction works. Each 8×8 block is a sum of 64 cosine patterns (T.81 A.3.3). The average of the
// block's pixels over a d×d square is a linear function of its coefficients, and for the squares of a 1/d
// grid many of those weights are exactly zero: the average of a whole block (1/8) is the DC coefficient
// alone, the averages over 4×4 squares (1/4) use frequencies 0, 1, 3, 5, 7 of each axis, over 2×2 squares
// (1/2) all but 4. So the reduced block is the box-filtered full decode, computed without the full decode.
// - Baseline (sequential) scans: every coefficient is decoded anyway and used at once, so the reduction is
//   exact; nothing is stored but the reduced image.
// - Progressive scans (T.81 G.1.2) refine the coefficients over several scans, so they must be kept until
//   the end: per block only the low-frequency corner (1 coefficient at 1/8, 4×4 otherwise; libjpeg's 1/4
//   uses the same 4×4 corner) plus one bit per coefficient saying whether it is non-zero, which is what the
//   refinement scans' decoding depends on (G.1.2.3). Dropping frequencies 4-7 at 1/2 and 1/4 blurs a little
//   more than the exact box filter; the thumbnail is resized further anyway.
// - Subsampled colour components (4:2:2, 4:2:0) are decoded at their own reduced scale (a 4:2:0 chroma
//   block covers 16×16 pixels, so at 1/4 of the image it becomes 4×4 samples), as libjpeg does; only when
//   a component would need more than its full resolution are its samples repeated.
// Supported: baseline and extended sequential (SOF0, SOF1) and progressive (SOF2) Huffman-coded 8-bit
// JPEG with 1 (grey) or 3 (YCbCr, or RGB by the Adobe marker) components, any sampling factor of 1, 2 or 4,
// restart intervals. Not supported (reported as `unsupported`): arithmetic coding, lossless, hierarchical,
// 12-bit, CMYK, DNL. EXIF orientation is the thumbnailer's (worker/media/thumbnail.ts turns the small result).

export type JpegScale = 1 | 2 | 4 | 8;

export interface ScaledJpeg {
  /** ceil(source width / scale), ceil(source height / scale), as libjpeg. */
  width: number;
  height: number;
  scale: JpegScale;
  /** width × height × 4 bytes, alpha 255. */
  rgba: Uint8Array;
  /** Bytes of the decoder's buffers at their peak (reduced planes, kept coefficients, RGBA). */
  bufferBytes: number;
}

export interface JpegDecodeLimits {
  /** Largest source image (width × height) accepted. */
  maxSourcePixels: number;
  /** Largest reduced image (width × height) produced. */
  maxOutputPixels: number;
  /** Most bytes the decoder's own buffers (reduced planes, kept coefficients, RGBA output) may take. */
  maxBytes: number;
}

export type ScaledJpegResult = ScaledJpeg | { error: string; unsupported: boolean };

/** The largest of 8, 4, 2 that still leaves at least `needWidth` × `needHeight` pixels, else 1. */
export function jpegScaleFor(width: number, height: number, needWidth: number, needHeight: number): JpegScale {
  for (const d of [8, 4, 2] as const) if (Math.floor(width / d) >= needWidth && Math.floor(height / d) >= needHeight) return d;
  return 1;
}

/** Most scans a progressive file may have (each one walks every block; real encoders write about 10).
 * libjpeg-turbo recommends such a cap against files made of thousands of empty scans. */
const MAX_SCANS = 100;

class JpegError extends Error {
  constructor(
    message: string,
    readonly unsupported = false,
  ) {
    super(message);
  }
}
const fail = (message: string): never => {
  throw new JpegError(message);
};
const unsupported = (message: string): never => {
  throw new JpegError(message, true);
};

/** Zig-zag order (T.81 figure A.6): ZIGZAG[k] is the natural (row-major) index of the k-th coefficient. */
const ZIGZAG = Uint8Array.from([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23,
  30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
]);

/**
 * Row n of the result is the average, over the n-th group of 8/N samples, of the 1-D inverse DCT basis
 * (T.81 A.3.3: C(u)/2 · cos((2x+1)uπ/16)), for frequencies u < k: N outputs from k coefficients.
 */
function boxIdctMatrix(n: number, k: number): Float64Array {
  const m = new Float64Array(n * k);
  const group = 8 / n;
  for (let i = 0; i < n; i++) {
    for (let u = 0; u < k; u++) {
      let sum = 0;
      for (let x = i * group; x < (i + 1) * group; x++) sum += ((u === 0 ? Math.SQRT1_2 : 1) / 2) * Math.cos(((2 * x + 1) * u * Math.PI) / 16);
      m[i * k + u] = Math.abs(sum) < 1e-12 ? 0 : sum / group;
    }
  }
  return m;
}

/** The frequencies (bits) of a box-IDCT matrix with k columns that have a non-zero weight somewhere. */
function usedFrequencies(m: Float64Array, k: number): number {
  let used = 0;
  for (let i = 0; i < m.length; i++) if (m[i] !== 0) used |= 1 << i % k;
  return used;
}

// ---- Huffman tables (T.81 C, F.2.2.3) ----

/** A table as defined by DHT; built when a scan first uses it (a file may redefine tables many times). */
interface HuffmanSpec {
  counts: Uint8Array;
  values: Uint8Array;
  built: HuffmanTable | null;
}

const builtTable = (spec: HuffmanSpec | null): HuffmanTable | null => spec && (spec.built ??= buildHuffman(spec.counts, spec.values));

interface HuffmanTable {
  /** Codes of up to 9 bits: indexed by the next 9 bits, (length << 8) | value; 0 when longer. */
  fast: Uint16Array;
  maxCode: Int32Array; // by length 1..16, -1 when none
  valPtr: Int32Array;
  minCode: Int32Array;
  values: Uint8Array;
}

const FAST_BITS = 9;

function buildHuffman(counts: Uint8Array, values: Uint8Array): HuffmanTable {
  const fast = new Uint16Array(1 << FAST_BITS);
  const maxCode = new Int32Array(18).fill(-1);
  const valPtr = new Int32Array(18);
  const minCode = new Int32Array(18);
  let code = 0;
  let k = 0;
  for (let len = 1; len <= 16; len++) {
    const n = counts[len - 1];
    valPtr[len] = k;
    minCode[len] = code;
    for (let i = 0; i < n; i++) {
      if (code >= 1 << len) fail("bad Huffman table"); // more codes than the length allows
      if (len <= FAST_BITS) {
        const shift = FAST_BITS - len;
        fast.fill((len << 8) | values[k], code << shift, (code + 1) << shift);
      }
      code++;
      k++;
    }
    if (n > 0) maxCode[len] = code - 1;
    code <<= 1;
  }
  return { fast, maxCode, valPtr, minCode, values };
}

// ---- Entropy-coded data (T.81 F.1.2.3 byte stuffing, F.2.2.5 bit reading) ----

class BitReader {
  private buf = 0;
  private n = 0;
  /** Zero bytes fed after the data ended (at a marker or the end of the file). */
  private padding = 0;
  private atMarker = false;
  constructor(
    private readonly d: Uint8Array,
    public pos: number,
  ) {}

  private fill(): void {
    while (this.n <= 24) {
      let byte = 0;
      if (!this.atMarker && this.pos < this.d.length) {
        byte = this.d[this.pos];
        if (byte === 0xff) {
          const next = this.pos + 1 < this.d.length ? this.d[this.pos + 1] : -1;
          if (next === 0x00) this.pos += 2;
          else {
            // A marker ends the entropy-coded segment; it is read by the caller.
            this.atMarker = true;
            byte = 0;
            this.padding++;
          }
        } else this.pos++;
      } else this.padding++;
      this.buf = ((this.buf << 8) | byte) >>> 0;
      this.n += 8;
    }
  }

  bit(): number {
    if (this.n < 1) this.fill();
    this.n--;
    return (this.buf >>> this.n) & 1;
  }

  bits(s: number): number {
    if (s === 0) return 0;
    if (this.n < s) this.fill();
    this.n -= s;
    return (this.buf >>> this.n) & ((1 << s) - 1);
  }

  /** RECEIVE then EXTEND (T.81 F.2.2.1): s bits as a signed value. */
  signed(s: number): number {
    const v = this.bits(s);
    return v < 1 << (s - 1) ? v - (1 << s) + 1 : v;
  }

  decode(t: HuffmanTable): number {
    if (this.n < 16) this.fill();
    const peek = (this.buf >>> (this.n - 16)) & 0xffff;
    const f = t.fast[peek >>> (16 - FAST_BITS)];
    if (f !== 0) {
      this.n -= f >> 8;
      return f & 0xff;
    }
    for (let len = FAST_BITS + 1; len <= 16; len++) {
      const code = peek >>> (16 - len);
      if (t.maxCode[len] >= 0 && code <= t.maxCode[len]) {
        this.n -= len;
        return t.values[t.valPtr[len] + code - t.minCode[len]];
      }
    }
    return fail("bad Huffman code");
  }

  /** Whether bits beyond the data were used: the segment was truncated or corrupt. */
  overran(): boolean {
    return this.padding * 8 > this.n;
  }

  /** At a restart interval's end (T.81 F.1.2.3, E.1.4): skips the padding bits and expects RSTn. */
  restart(): void {
    if (this.overran()) fail("truncated or corrupt entropy-coded data");
    const p = nextMarker(this.d, this.pos);
    if (p < 0 || this.d[p + 1] < 0xd0 || this.d[p + 1] > 0xd7) fail("missing restart marker");
    this.pos = p + 2;
    this.buf = 0;
    this.n = 0;
    this.padding = 0;
    this.atMarker = false;
  }
}

/** Position of the next marker (0xFF then a byte other than 0x00 and 0xFF) at or after `from`, or -1. */
function nextMarker(d: Uint8Array, from: number): number {
  for (let i = from; i + 1 < d.length; i++) {
    if (d[i] === 0xff && d[i + 1] !== 0x00 && d[i + 1] !== 0xff) return i;
  }
  return -1;
}

// ---- Frame (T.81 B.2.2) ----

interface Component {
  id: number;
  h: number;
  v: number;
  tq: number;
  /** Blocks per line and column that carry data (for non-interleaved scans, T.81 A.2.2). */
  blocksW: number;
  blocksH: number;
  /** Blocks per line and column including the MCU padding (interleaved scans, T.81 A.2.3). */
  paddedW: number;
  paddedH: number;
  /** Reduced samples per block along each axis, and how many times each is repeated in the output. */
  nx: number;
  ny: number;
  repX: number;
  repY: number;
  /** Kept coefficients per axis (progressive: what is stored; sequential: what is used). */
  k: number;
  mx: Float64Array;
  my: Float64Array;
  /** Bit u set when frequency u has a non-zero weight in mx (my): the others are skipped. */
  usedX: number;
  usedY: number;
  plane: Uint8ClampedArray;
  planeW: number;
  /** Progressive: k×k coefficients per block, not dequantised, and one non-zero bit per coefficient. */
  coefs: Int16Array | null;
  nonZero: Uint32Array | null;
  /** The coefficient's slot in `coefs` by zig-zag index, -1 when not kept. */
  slot: Int8Array;
  dcPred: number;
  dcTable: HuffmanTable | null;
  acTable: HuffmanTable | null;
}

interface Frame {
  progressive: boolean;
  width: number;
  height: number;
  hMax: number;
  vMax: number;
  mcusX: number;
  mcusY: number;
  components: Component[];
  bufferBytes: number;
}

const u16 = (d: Uint8Array, i: number) => (d[i] << 8) | d[i + 1];

/**
 * Decodes `bytes` at 1/`scale` of its size into RGBA. Errors (malformed, truncated, over a limit) and
 * unsupported kinds of JPEG come back as values; nothing is allocated from header values before the limits
 * are checked.
 */
export function decodeJpegScaled(bytes: Uint8Array, scale: JpegScale, limits: JpegDecodeLimits): ScaledJpegResult {
  try {
    return decode(bytes, scale, limits);
  } catch (e) {
    if (e instanceof JpegError) return { error: e.message, unsupported: e.unsupported };
    // Anything else (an allocation refused by the runtime, a bug) is still an answer, not a crash.
    return { error: `JPEG could not be decoded (${e instanceof Error ? e.message : String(e)})`, unsupported: false };
  }
}

function decode(d: Uint8Array, scale: JpegScale, limits: JpegDecodeLimits): ScaledJpeg {
  if (d.length < 4 || d[0] !== 0xff || d[1] !== 0xd8) fail("not a JPEG");
  const quant: (Uint16Array | null)[] = [null, null, null, null];
  const dcTables: (HuffmanSpec | null)[] = [null, null, null, null];
  const acTables: (HuffmanSpec | null)[] = [null, null, null, null];
  let restartInterval = 0;
  let adobeTransform = -1;
  let frame: Frame | null = null;
  let scans = 0;
  let pos = 2;
  for (;;) {
    const p = nextMarker(d, pos);
    if (p < 0) fail("truncated JPEG (no end of image)");
    // Bytes before the marker (other than fill bytes) are skipped, as libjpeg does with a warning.
    const marker = d[p + 1];
    pos = p + 2;
    if (marker === 0xd9) break; // EOI
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue; // TEM, stray RSTn: no length
    if (pos + 2 > d.length) fail("truncated JPEG");
    const length = u16(d, pos);
    if (length < 2 || pos + length > d.length) fail("malformed JPEG segment length");
    const seg = d.subarray(pos + 2, pos + length);
    pos += length;
    switch (marker) {
      case 0xc0: // SOF0 baseline
      case 0xc1: // SOF1 extended sequential, Huffman
      case 0xc2: // SOF2 progressive, Huffman
        if (frame) fail("more than one frame");
        frame = readFrame(seg, marker === 0xc2, scale, limits);
        break;
      case 0xc3:
      case 0xc5:
      case 0xc6:
      case 0xc7:
      case 0xc9:
      case 0xca:
      case 0xcb:
      case 0xcd:
      case 0xce:
      case 0xcf:
        unsupported("lossless, hierarchical or arithmetic-coded JPEG");
        break;
      case 0xc4:
        readHuffmanTables(seg, dcTables, acTables);
        break;
      case 0xdb:
        readQuantTables(seg, quant);
        break;
      case 0xdd:
        if (seg.length < 2) fail("malformed restart interval");
        restartInterval = u16(seg, 0);
        break;
      case 0xdc:
        unsupported("JPEG with a DNL marker");
        break;
      case 0xee: // APP14: Adobe's colour transform flag (0: the three components are RGB)
        if (seg.length >= 12 && String.fromCharCode(...seg.subarray(0, 5)) === "Adobe") adobeTransform = seg[11];
        break;
      case 0xda: {
        if (!frame) fail("scan before the frame header");
        if (++scans > MAX_SCANS) fail("too many scans");
        pos = readScan(d, pos, seg, frame!, quant, dcTables, acTables, restartInterval);
        break;
      }
      default:
        break; // APPn, COM and others: skipped
    }
  }
  if (!frame || scans === 0) fail("JPEG without image data");
  const f = frame!;
  if (f.progressive) {
    for (const c of f.components) finishProgressive(c, quant);
  }
  const rgb =
    f.components.length === 3 &&
    (adobeTransform === 0 || (adobeTransform < 0 && f.components[0].id === 0x52 && f.components[1].id === 0x47 && f.components[2].id === 0x42));
  return toRgba(f, scale, rgb);
}

function readFrame(seg: Uint8Array, progressive: boolean, scale: JpegScale, limits: JpegDecodeLimits): Frame {
  if (seg.length < 6) fail("malformed frame header");
  if (seg[0] !== 8) unsupported(`${seg[0]}-bit JPEG`);
  const height = u16(seg, 1);
  const width = u16(seg, 3);
  const count = seg[5];
  if (height === 0) unsupported("JPEG with a DNL marker");
  if (width === 0) fail("JPEG with no width");
  if (count !== 1 && count !== 3) unsupported(`JPEG with ${count} components`);
  if (seg.length < 6 + 3 * count) fail("malformed frame header");
  if (width * height > limits.maxSourcePixels) fail(`image is larger than ${limits.maxSourcePixels} pixels`);
  const raw: { id: number; h: number; v: number; tq: number }[] = [];
  for (let i = 0; i < count; i++) {
    const o = 6 + 3 * i;
    const id = seg[o];
    const h = seg[o + 1] >> 4;
    const v = seg[o + 1] & 15;
    const tq = seg[o + 2];
    if (raw.some((c) => c.id === id)) fail("duplicate component");
    if (h < 1 || h > 4 || v < 1 || v > 4 || tq > 3) fail("malformed frame header");
    if (h === 3 || v === 3) unsupported("sampling factor 3");
    raw.push({ id, h, v, tq });
  }
  const hMax = Math.max(...raw.map((c) => c.h));
  const vMax = Math.max(...raw.map((c) => c.v));
  const mcusX = Math.ceil(width / (8 * hMax));
  const mcusY = Math.ceil(height / (8 * vMax));
  const outW = Math.ceil(width / scale);
  const outH = Math.ceil(height / scale);
  if (outW * outH > limits.maxOutputPixels) fail(`reduced image is larger than ${limits.maxOutputPixels} pixels`);
  // What the buffers will take, before any of them is allocated.
  let bytes = outW * outH * 4;
  const plans = raw.map((c) => {
    const paddedW = mcusX * c.h;
    const paddedH = mcusY * c.v;
    // Reduced samples per block: a block covers 8·hMax/h pixels, which is 8·hMax/(h·scale) output pixels.
    const wantX = (8 * hMax) / (c.h * scale);
    const wantY = (8 * vMax) / (c.v * scale);
    const nx = Math.min(8, wantX);
    const ny = Math.min(8, wantY);
    const n = Math.max(nx, ny);
    const k = progressive ? (scale === 1 ? 8 : n === 1 ? 1 : 4) : 8;
    bytes += paddedW * nx * paddedH * ny;
    if (progressive) bytes += paddedW * paddedH * (k * k * 2 + 8);
    return { ...c, paddedW, paddedH, nx, ny, repX: wantX / nx, repY: wantY / ny, k };
  });
  if (bytes > limits.maxBytes) fail(`decoding needs ${bytes} bytes, over the limit of ${limits.maxBytes}`);
  const components: Component[] = plans.map((c) => {
    const slot = new Int8Array(64).fill(-1);
    for (let z = 0; z < 64; z++) {
      const row = ZIGZAG[z] >> 3;
      const col = ZIGZAG[z] & 7;
      if (row < c.k && col < c.k) slot[z] = row * c.k + col;
    }
    const blocks = c.paddedW * c.paddedH;
    return {
      id: c.id,
      h: c.h,
      v: c.v,
      tq: c.tq,
      blocksW: Math.ceil(Math.ceil((width * c.h) / hMax) / 8),
      blocksH: Math.ceil(Math.ceil((height * c.v) / vMax) / 8),
      paddedW: c.paddedW,
      paddedH: c.paddedH,
      nx: c.nx,
      ny: c.ny,
      repX: c.repX,
      repY: c.repY,
      k: c.k,
      mx: boxIdctMatrix(c.nx, c.k),
      my: boxIdctMatrix(c.ny, c.k),
      usedX: usedFrequencies(boxIdctMatrix(c.nx, c.k), c.k),
      usedY: usedFrequencies(boxIdctMatrix(c.ny, c.k), c.k),
      plane: new Uint8ClampedArray(c.paddedW * c.nx * c.paddedH * c.ny),
      planeW: c.paddedW * c.nx,
      coefs: progressive ? new Int16Array(blocks * c.k * c.k) : null,
      nonZero: progressive ? new Uint32Array(blocks * 2) : null,
      slot,
      dcPred: 0,
      dcTable: null,
      acTable: null,
    };
  });
  return { progressive, width, height, hMax, vMax, mcusX, mcusY, components, bufferBytes: bytes };
}

function readHuffmanTables(seg: Uint8Array, dc: (HuffmanSpec | null)[], ac: (HuffmanSpec | null)[]): void {
  let i = 0;
  while (i < seg.length) {
    if (i + 17 > seg.length) fail("malformed Huffman table");
    const tc = seg[i] >> 4;
    const th = seg[i] & 15;
    if (tc > 1 || th > 3) fail("malformed Huffman table");
    const counts = seg.subarray(i + 1, i + 17);
    let total = 0;
    for (const c of counts) total += c;
    if (total > 256 || i + 17 + total > seg.length) fail("malformed Huffman table");
    (tc === 0 ? dc : ac)[th] = { counts, values: seg.subarray(i + 17, i + 17 + total), built: null };
    i += 17 + total;
  }
}

function readQuantTables(seg: Uint8Array, quant: (Uint16Array | null)[]): void {
  let i = 0;
  while (i < seg.length) {
    const pq = seg[i] >> 4;
    const tq = seg[i] & 15;
    if (pq > 1 || tq > 3) fail("malformed quantisation table");
    const size = pq === 0 ? 64 : 128;
    if (i + 1 + size > seg.length) fail("malformed quantisation table");
    const table = new Uint16Array(64);
    for (let z = 0; z < 64; z++) table[ZIGZAG[z]] = pq === 0 ? seg[i + 1 + z] : u16(seg, i + 1 + 2 * z);
    quant[tq] = table;
    i += 1 + size;
  }
}

// ---- Scans (T.81 B.2.3, F.2 sequential, G.1.2 progressive) ----

function readScan(
  d: Uint8Array,
  start: number,
  seg: Uint8Array,
  frame: Frame,
  quant: (Uint16Array | null)[],
  dcTables: (HuffmanSpec | null)[],
  acTables: (HuffmanSpec | null)[],
  restartInterval: number,
): number {
  const ns = seg[0];
  if (ns < 1 || ns > 4 || seg.length < 1 + 2 * ns + 3) fail("malformed scan header");
  const comps: Component[] = [];
  for (let i = 0; i < ns; i++) {
    const id = seg[1 + 2 * i];
    const c = frame.components.find((x) => x.id === id);
    if (!c || comps.includes(c)) fail("scan names an unknown or repeated component");
    const td = seg[2 + 2 * i] >> 4;
    const ta = seg[2 + 2 * i] & 15;
    if (td > 3 || ta > 3) fail("malformed scan header");
    c!.dcTable = builtTable(dcTables[td]);
    c!.acTable = builtTable(acTables[ta]);
    comps.push(c!);
  }
  const o = 1 + 2 * ns;
  const ss = seg[o];
  const se = seg[o + 1];
  const ah = seg[o + 2] >> 4;
  const al = seg[o + 2] & 15;
  if (frame.progressive) {
    if (se > 63 || ss > se || (ss === 0) !== (se === 0) || (ss > 0 && ns !== 1) || ah > 13 || al > 13) fail("malformed progressive scan");
  }
  const mode = !frame.progressive ? "sequential" : ss === 0 ? (ah === 0 ? "dcFirst" : "dcRefine") : ah === 0 ? "acFirst" : "acRefine";
  for (const c of comps) {
    if (mode === "sequential") {
      if (!c.dcTable || !c.acTable) fail("scan uses an undefined Huffman table");
      if (!quant[c.tq]) fail("component uses an undefined quantisation table");
    }
    if (mode === "dcFirst" && !c.dcTable) fail("scan uses an undefined Huffman table");
    if ((mode === "acFirst" || mode === "acRefine") && !c.acTable) fail("scan uses an undefined Huffman table");
    c.dcPred = 0;
  }
  if (comps.length > 1 && comps.reduce((n, c) => n + c.h * c.v, 0) > 10) fail("too many blocks in an MCU");

  const r = new BitReader(d, start);
  const block = new Float64Array(64);
  const tmp = new Float64Array(64);
  let eobrun = 0;

  const sequential = (c: Component, bx: number, by: number) => {
    const q = quant[c.tq]!;
    block.fill(0);
    const t = r.decode(c.dcTable!);
    if (t > 15) fail("bad DC coefficient");
    c.dcPred += t === 0 ? 0 : r.signed(t);
    block[0] = c.dcPred * q[0];
    let rows = 1;
    let cols = 1;
    for (let k = 1; k < 64; ) {
      const rs = r.decode(c.acTable!);
      const s = rs & 15;
      const run = rs >> 4;
      if (s === 0) {
        if (run !== 15) break; // EOB
        k += 16;
        continue;
      }
      k += run;
      if (k > 63) fail("bad AC coefficient position");
      const z = ZIGZAG[k];
      block[z] = r.signed(s) * q[z];
      rows |= 1 << (z >> 3);
      cols |= 1 << (z & 7);
      k++;
    }
    writeBlock(c, block, 8, rows, cols, bx, by, tmp);
  };

  const p1 = 1 << al;
  const m1 = -1 << al;
  const dcFirst = (c: Component, index: number) => {
    const t = r.decode(c.dcTable!);
    if (t > 15) fail("bad DC coefficient");
    c.dcPred += t === 0 ? 0 : r.signed(t);
    c.coefs![index * c.k * c.k] = c.dcPred * p1;
  };
  const dcRefine = (c: Component, index: number) => {
    if (r.bit()) c.coefs![index * c.k * c.k] |= p1;
  };
  const acFirst = (c: Component, index: number) => {
    if (eobrun > 0) {
      eobrun--;
      return;
    }
    const base = index * c.k * c.k;
    for (let k = ss; k <= se; ) {
      const rs = r.decode(c.acTable!);
      const s = rs & 15;
      const run = rs >> 4;
      if (s === 0) {
        if (run < 15) {
          eobrun = (1 << run) - 1 + r.bits(run);
          break;
        }
        k += 16;
        continue;
      }
      k += run;
      if (k > se) fail("bad AC coefficient position");
      c.nonZero![index * 2 + (k >> 5)] |= 1 << (k & 31);
      const slot = c.slot[k];
      const v = r.signed(s) * p1;
      if (slot >= 0) c.coefs![base + slot] = v;
      k++;
    }
  };
  // Successive approximation of AC coefficients (T.81 G.1.2.3): a correction bit for every coefficient
  // already non-zero, new coefficients of ±1 placed after runs of zero ones.
  const refineNonZero = (c: Component, index: number, k: number) => {
    if (r.bit()) {
      const slot = c.slot[k];
      if (slot >= 0) {
        const at = index * c.k * c.k + slot;
        const v = c.coefs![at];
        if ((v & p1) === 0) c.coefs![at] = v >= 0 ? v + p1 : v + m1;
      }
    }
  };
  const isNonZero = (c: Component, index: number, k: number) => (c.nonZero![index * 2 + (k >> 5)] & (1 << (k & 31))) !== 0;
  const acRefine = (c: Component, index: number) => {
    let k = ss;
    if (eobrun === 0) {
      for (; k <= se; k++) {
        const rs = r.decode(c.acTable!);
        let s = rs & 15;
        let run = rs >> 4;
        if (s !== 0) {
          if (s !== 1) fail("bad refinement coefficient");
          s = r.bit() ? p1 : m1;
        } else if (run !== 15) {
          eobrun = (1 << run) + r.bits(run);
          break;
        }
        // Skip `run` zero coefficients (refining the non-zero ones passed), then place the new one.
        for (; k <= se; k++) {
          if (isNonZero(c, index, k)) refineNonZero(c, index, k);
          else {
            if (run === 0) break;
            run--;
          }
        }
        if (s !== 0) {
          if (k > se) fail("bad AC coefficient position");
          c.nonZero![index * 2 + (k >> 5)] |= 1 << (k & 31);
          const slot = c.slot[k];
          if (slot >= 0) c.coefs![index * c.k * c.k + slot] = s;
        }
      }
    }
    if (eobrun > 0) {
      // The rest of the band: a correction bit for each non-zero coefficient, in order (most blocks of a
      // refinement scan are in end-of-band runs, so this walks the set bits rather than every position).
      for (let word = k >> 5; word <= se >> 5 && k <= se; word++) {
        const from = Math.max(k, word * 32) & 31;
        const to = Math.min(se, word * 32 + 31) & 31;
        let bits = c.nonZero![index * 2 + word] & ((0xffffffff << from) >>> 0) & (0xffffffff >>> (31 - to));
        while (bits !== 0) {
          const low = bits & -bits;
          bits ^= low;
          refineNonZero(c, index, word * 32 + 31 - Math.clz32(low));
        }
      }
      eobrun--;
    }
  };

  const each =
    mode === "sequential"
      ? (c: Component, bx: number, by: number) => sequential(c, bx, by)
      : (c: Component, bx: number, by: number) => {
          const index = by * c.paddedW + bx;
          if (mode === "dcFirst") dcFirst(c, index);
          else if (mode === "dcRefine") dcRefine(c, index);
          else if (mode === "acFirst") acFirst(c, index);
          else acRefine(c, index);
        };

  // MCUs (T.81 A.2): one block of the only component in a non-interleaved scan, h×v blocks of each
  // component in an interleaved one. A restart marker follows every `restartInterval` MCUs (E.1.4).
  const single = comps.length === 1 ? comps[0] : null;
  const mcusX = single ? single.blocksW : frame.mcusX;
  const mcusY = single ? single.blocksH : frame.mcusY;
  let mcu = 0;
  for (let my = 0; my < mcusY; my++) {
    for (let mx = 0; mx < mcusX; mx++) {
      if (restartInterval > 0 && mcu > 0 && mcu % restartInterval === 0) {
        r.restart();
        eobrun = 0;
        for (const c of comps) c.dcPred = 0;
      }
      mcu++;
      if (single) each(single, mx, my);
      else
        for (const c of comps) {
          for (let v = 0; v < c.v; v++) for (let h = 0; h < c.h; h++) each(c, mx * c.h + h, my * c.v + v);
        }
    }
    if (r.overran()) fail("truncated or corrupt entropy-coded data");
  }
  const next = nextMarker(d, r.pos);
  if (next < 0) fail("truncated JPEG (scan without an end)");
  return next;
}

/** Dequantises a progressive component's kept coefficients and reduces its blocks into the plane. */
function finishProgressive(c: Component, quant: (Uint16Array | null)[]): void {
  const q = quant[c.tq];
  if (!q) fail("component uses an undefined quantisation table");
  const block = new Float64Array(64);
  const tmp = new Float64Array(64);
  const kk = c.k * c.k;
  for (let by = 0; by < c.paddedH; by++) {
    for (let bx = 0; bx < c.paddedW; bx++) {
      const base = (by * c.paddedW + bx) * kk;
      let rows = 1;
      let cols = 1;
      for (let row = 0; row < c.k; row++) {
        for (let col = 0; col < c.k; col++) {
          const v = c.coefs![base + row * c.k + col];
          block[row * c.k + col] = v * q![row * 8 + col];
          if (v !== 0) {
            rows |= 1 << row;
            cols |= 1 << col;
          }
        }
      }
      writeBlock(c, block, c.k, rows, cols, bx, by, tmp);
    }
  }
  c.coefs = null;
  c.nonZero = null;
}

/**
 * The reduced inverse DCT of one block: its nx×ny box averages, from its first k×k dequantised
 * coefficients (`block`, rows of `stride`), written into the component's plane with the level shift.
 * `rows` and `cols` have bit i set when row (column) i of the block may hold a non-zero coefficient; only
 * those, and only frequencies with a non-zero weight, are computed.
 */
function writeBlock(c: Component, block: Float64Array, stride: number, rows: number, cols: number, bx: number, by: number, tmp: Float64Array): void {
  const { nx, ny, k, mx, my, plane, planeW } = c;
  const x0 = bx * nx;
  const y0 = by * ny;
  const vs = rows & c.usedY;
  const us = cols & c.usedX;
  if ((vs | us) === 1) {
    const value = block[0] / 8 + 128;
    for (let y = 0; y < ny; y++) plane.fill(value, (y0 + y) * planeW + x0, (y0 + y) * planeW + x0 + nx);
    return;
  }
  for (let v = 0; v < k; v++) {
    if ((vs & (1 << v)) === 0) continue;
    const row = v * stride;
    for (let x = 0; x < nx; x++) {
      let sum = 0;
      for (let u = 0; u < k; u++) if (us & (1 << u)) sum += mx[x * k + u] * block[row + u];
      tmp[v * nx + x] = sum;
    }
  }
  for (let y = 0; y < ny; y++) {
    const out = (y0 + y) * planeW + x0;
    for (let x = 0; x < nx; x++) {
      let sum = 0;
      for (let v = 0; v < k; v++) if (vs & (1 << v)) sum += my[y * k + v] * tmp[v * nx + x];
      plane[out + x] = sum + 128;
    }
  }
}

// ---- Colour (JFIF: YCbCr as in ITU-R BT.601, full range) ----

function toRgba(f: Frame, scale: JpegScale, rgb: boolean): ScaledJpeg {
  const width = Math.ceil(f.width / scale);
  const height = Math.ceil(f.height / scale);
  const out = new Uint8ClampedArray(width * height * 4);
  const [a, b, c] = f.components;
  const colX = (comp: Component) => {
    const xs = new Int32Array(width);
    for (let x = 0; x < width; x++) xs[x] = Math.floor(x / comp.repX);
    return xs;
  };
  const ax = colX(a);
  const bxs = b ? colX(b) : ax;
  const cxs = c ? colX(c) : ax;
  for (let y = 0; y < height; y++) {
    const ar = Math.floor(y / a.repY) * a.planeW;
    let o = y * width * 4;
    if (!b || !c) {
      for (let x = 0; x < width; x++, o += 4) {
        const g = a.plane[ar + ax[x]];
        out[o] = g;
        out[o + 1] = g;
        out[o + 2] = g;
        out[o + 3] = 255;
      }
      continue;
    }
    const br = Math.floor(y / b.repY) * b.planeW;
    const cr = Math.floor(y / c.repY) * c.planeW;
    for (let x = 0; x < width; x++, o += 4) {
      const y0 = a.plane[ar + ax[x]];
      const cb = b.plane[br + bxs[x]];
      const cv = c.plane[cr + cxs[x]];
      if (rgb) {
        out[o] = y0;
        out[o + 1] = cb;
        out[o + 2] = cv;
      } else {
        out[o] = y0 + 1.402 * (cv - 128);
        out[o + 1] = y0 - 0.344136 * (cb - 128) - 0.714136 * (cv - 128);
        out[o + 2] = y0 + 1.772 * (cb - 128);
      }
      out[o + 3] = 255;
    }
  }
  return { width, height, scale, rgba: new Uint8Array(out.buffer), bufferBytes: f.bufferBytes };
}
