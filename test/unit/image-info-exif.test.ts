// The EXIF Orientation tag read from a JPEG's APP1 segment (worker/media/image-info.ts), in both TIFF byte
// orders, and malformed EXIF ignored.
import { describe, expect, it } from "vitest";
import { exifOrientation } from "../../worker/media/image-info.js";

/** "Exif\0\0", a TIFF header of the byte order, and one IFD of the given entries (tag, type, value). */
function exif(order: "II" | "MM", entries: [number, number, number][], ifdOffset = 8): Uint8Array {
  const t = new Uint8Array(ifdOffset + 2 + 12 * entries.length + 4);
  const view = new DataView(t.buffer);
  const le = order === "II";
  t.set(order === "II" ? [0x49, 0x49] : [0x4d, 0x4d]);
  view.setUint16(2, 42, le);
  view.setUint32(4, ifdOffset, le);
  view.setUint16(ifdOffset, entries.length, le);
  entries.forEach(([tag, type, value], n) => {
    const e = ifdOffset + 2 + 12 * n;
    view.setUint16(e, tag, le);
    view.setUint16(e + 2, type, le);
    view.setUint32(e + 4, 1, le);
    view.setUint16(e + 8, value, le);
  });
  return Uint8Array.from([0x45, 0x78, 0x69, 0x66, 0, 0, ...t]);
}

describe("EXIF orientation", () => {
  it("reads the Orientation tag in either byte order, among other tags", () => {
    expect(exifOrientation(exif("II", [[0x0112, 3, 6]]))).toBe(6);
    expect(exifOrientation(exif("MM", [[0x010f, 2, 0], [0x0112, 3, 8]]))).toBe(8);
    expect(exifOrientation(exif("MM", [[0x0112, 3, 1]], 20))).toBe(1);
  });

  it("ignores malformed or missing EXIF", () => {
    expect(exifOrientation(exif("II", [[0x010f, 3, 6]]))).toBeUndefined(); // no Orientation
    expect(exifOrientation(exif("II", [[0x0112, 3, 9]]))).toBeUndefined(); // out of range
    expect(exifOrientation(exif("II", [[0x0112, 3, 0]]))).toBeUndefined();
    expect(exifOrientation(exif("II", [[0x0112, 4, 6]]))).toBeUndefined(); // not a SHORT
    const truncated = exif("MM", [[0x0112, 3, 6]]);
    expect(exifOrientation(truncated.subarray(0, truncated.length - 10))).toBeUndefined();
    const badOffset = exif("II", [[0x0112, 3, 6]]);
    badOffset.set([0xff, 0xff, 0xff, 0x7f], 10); // IFD offset far past the end
    expect(exifOrientation(badOffset)).toBeUndefined();
    const notTiff = exif("II", [[0x0112, 3, 6]]);
    notTiff[8] = 43;
    expect(exifOrientation(notTiff)).toBeUndefined();
    expect(exifOrientation(new TextEncoder().encode("http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>"))).toBeUndefined(); // XMP, also APP1
    expect(exifOrientation(new Uint8Array(0))).toBeUndefined();
  });
});
