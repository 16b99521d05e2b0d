// Ed25519 on @noble/ed25519 (pure JS): an independent implementation to cross-check the WebCrypto
// path in tests, and the comparison point of the signing benchmark. Not used on the hot path
// (DESIGN.md: WebCrypto verifies ~15x faster in workerd).
import * as ed from "@noble/ed25519";
import { decodeBase64, encodeBase64 } from "./base64.js";

/** Signs `bytes` with a 32-byte Ed25519 seed; returns the unpadded base64 signature. */
export async function nobleSign(seed: Uint8Array, bytes: Uint8Array): Promise<string> {
  return encodeBase64(await ed.signAsync(bytes, seed));
}

/** Unpadded base64 public key of a 32-byte seed. */
export async function noblePublicKey(seed: Uint8Array): Promise<string> {
  return encodeBase64(await ed.getPublicKeyAsync(seed));
}

/** Verifies an unpadded base64 signature with RFC 8032 semantics (`zip215: false`, the stricter
 * branch, closer to libsodium and WebCrypto). False for malformed keys or signatures. */
export async function nobleVerify(publicKeyB64: string, bytes: Uint8Array, sigB64: string): Promise<boolean> {
  try {
    const publicKey = decodeBase64(publicKeyB64);
    const signature = decodeBase64(sigB64);
    if (publicKey.length !== 32 || signature.length !== 64) return false;
    return await ed.verifyAsync(signature, bytes, publicKey, { zip215: false });
  } catch {
    return false;
  }
}
