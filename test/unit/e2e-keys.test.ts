// protocol/e2e-keys.ts: shape checks of uploaded keys and the key backup replacement rule.
import { describe, expect, it } from "vitest";
import {
  parseCrossSigningKey,
  sameOneTimeKey,
  shouldReplaceBackupKey,
  splitKeyId,
  validateBackupKeyData,
  validateDeviceKeys,
  validateKeyMap,
} from "../../protocol/e2e-keys.js";
import { MatrixError } from "../../protocol/errors.js";

const PK = "lEuiRJBit0IG6nUf5pUzWTUEsRVVe/HJkoKuEww9ULI"; // 32 bytes, unpadded base64
const errcode = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return e instanceof MatrixError ? e.errcode : "not a MatrixError";
  }
  return "no error";
};

describe("shouldReplaceBackupKey (spec: Server-side key backups)", () => {
  const k = (is_verified: boolean, first_message_index: number, forwarded_count: number) => ({ is_verified, first_message_index, forwarded_count });
  it("prefers verified keys, then the lower first_message_index, then the lower forwarded_count", () => {
    expect(shouldReplaceBackupKey(k(false, 0, 0), k(true, 9, 9))).toBe(true);
    expect(shouldReplaceBackupKey(k(true, 9, 9), k(false, 0, 0))).toBe(false);
    expect(shouldReplaceBackupKey(k(false, 5, 0), k(false, 4, 9))).toBe(true);
    expect(shouldReplaceBackupKey(k(false, 4, 0), k(false, 5, 0))).toBe(false);
    expect(shouldReplaceBackupKey(k(true, 3, 2), k(true, 3, 1))).toBe(true);
    expect(shouldReplaceBackupKey(k(true, 3, 1), k(true, 3, 2))).toBe(false);
    expect(shouldReplaceBackupKey(k(true, 3, 1), k(true, 3, 1))).toBe(false);
  });
});

describe("key shapes", () => {
  it("splits <algorithm>:<key_id>", () => {
    expect(splitKeyId("signed_curve25519:AAAAHQ")).toEqual({ algorithm: "signed_curve25519", keyId: "AAAAHQ" });
    expect(splitKeyId("a:b:c")).toEqual({ algorithm: "a", keyId: "b:c" });
    for (const bad of ["nocolon", ":x", "x:"]) expect(splitKeyId(bad)).toBeUndefined();
  });

  it("validates one-time key maps", () => {
    const keys = validateKeyMap({ "curve25519:A": "plain", "signed_curve25519:B": { key: "k", signatures: { "@a:x": { "ed25519:D": "s" } } } }, "one_time_keys");
    expect(keys.map((k) => [k.id, k.algorithm])).toEqual([
      ["curve25519:A", "curve25519"],
      ["signed_curve25519:B", "signed_curve25519"],
    ]);
    expect(keys[0]!.json).toBe('"plain"');
    expect(errcode(() => validateKeyMap({ "signed_curve25519:B": { nokey: 1 } }, "f"))).toBe("M_BAD_JSON");
    expect(errcode(() => validateKeyMap({ "signed_curve25519:B": { key: "k", x: 1.5 } }, "f"))).toBe("M_BAD_JSON");
    expect(errcode(() => validateKeyMap([], "f"))).toBe("M_BAD_JSON");
  });

  it("compares re-uploaded one-time keys ignoring signatures", () => {
    expect(sameOneTimeKey('{"key":"k","signatures":{"@a:x":{"ed25519:D":"s1"}}}', '{"key":"k","signatures":{"@a:x":{"ed25519:D":"s2"}}}')).toBe(true);
    expect(sameOneTimeKey('{"key":"k"}', '{"key":"other"}')).toBe(false);
    expect(sameOneTimeKey('"a"', '"b"')).toBe(false);
  });

  it("checks device keys belong to the requesting user and device", () => {
    const keys = { user_id: "@a:x", device_id: "D", algorithms: ["m.olm.v1.curve25519-aes-sha2"], keys: { "ed25519:D": PK }, signatures: { "@a:x": { "ed25519:D": "sig" } } };
    expect(validateDeviceKeys({ ...keys, unsigned: { device_display_name: "x" } }, "@a:x", "D")).toEqual(keys);
    expect(errcode(() => validateDeviceKeys(keys, "@b:x", "D"))).toBe("M_BAD_JSON");
    expect(errcode(() => validateDeviceKeys(keys, "@a:x", "E"))).toBe("M_BAD_JSON");
    expect(errcode(() => validateDeviceKeys({ ...keys, signatures: { "@a:x": "s" } }, "@a:x", "D"))).toBe("M_BAD_JSON");
  });

  it("checks cross-signing keys", () => {
    const master = { user_id: "@a:x", usage: ["master"], keys: { [`ed25519:${PK}`]: PK } };
    expect(parseCrossSigningKey(master, "@a:x", "master")).toEqual({ json: master, keyId: `ed25519:${PK}`, publicKey: PK });
    expect(errcode(() => parseCrossSigningKey(master, "@a:x", "self_signing"))).toBe("M_INVALID_PARAM");
    expect(errcode(() => parseCrossSigningKey(master, "@b:x", "master"))).toBe("M_INVALID_PARAM");
    expect(errcode(() => parseCrossSigningKey({ ...master, keys: { "ed25519:other": PK } }, "@a:x", "master"))).toBe("M_INVALID_PARAM");
    expect(errcode(() => parseCrossSigningKey({ ...master, keys: { "ed25519:abc": "abc" } }, "@a:x", "master"))).toBe("M_INVALID_PARAM");
    expect(errcode(() => parseCrossSigningKey({ ...master, keys: {} }, "@a:x", "master"))).toBe("M_INVALID_PARAM");
  });

  it("validates backup key data", () => {
    const data = { first_message_index: 1, forwarded_count: 0, is_verified: false, session_data: { ciphertext: "c" } };
    expect(validateBackupKeyData(data, "k")).toEqual({ ...data, session_data: '{"ciphertext":"c"}' });
    expect(errcode(() => validateBackupKeyData({ ...data, is_verified: 1 }, "k"))).toBe("M_INVALID_PARAM");
    expect(errcode(() => validateBackupKeyData({ ...data, forwarded_count: 1.5 }, "k"))).toBe("M_BAD_JSON");
    expect(errcode(() => validateBackupKeyData({ ...data, session_data: "s" }, "k"))).toBe("M_BAD_JSON");
  });
});
