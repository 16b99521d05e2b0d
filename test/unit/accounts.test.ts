// MSC4348 account keys and MSC4345 key documents (protocol/accounts.ts, protocol/participation.ts): the
// ID forms and the signed records, each with a case that must fail.
import { describe, expect, it } from "vitest";
import { accountKeyOfUser, accountKeyUserId, accountRecordIsSigned, accountSigningKey, signAccountRecord } from "../../protocol/accounts.js";
import { encodeBase64 } from "../../protocol/base64.js";
import { keyDocumentListsKey, keyFormUserId, serverKeyFromPublicKey } from "../../protocol/participation.js";
import { signJson, signingKeyFromSeed } from "../../protocol/signing.js";

const seed = (n: number) => encodeBase64(new Uint8Array(32).fill(n));

describe("account keys", () => {
  it("derive the same key from a seed with or without padding; refuse other lengths", async () => {
    const a = await accountSigningKey(seed(1));
    expect(a.accountKey).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect((await accountSigningKey(`${seed(1)}=`)).accountKey).toBe(a.accountKey);
    await expect(accountSigningKey(encodeBase64(new Uint8Array(31)))).rejects.toThrow();
    await expect(accountSigningKey(encodeBase64(new Uint8Array(33)))).rejects.toThrow();
    await expect(accountSigningKey("not base64 at all, not at all, no no no no!")).rejects.toThrow();
  });

  it("user IDs are @<key>; other forms are not account-key IDs", async () => {
    const { accountKey } = await accountSigningKey(seed(2));
    expect(accountKeyOfUser(accountKeyUserId(accountKey))).toBe(accountKey);
    expect(accountKeyOfUser(`@${accountKey}:example.org`)).toBeUndefined();
    expect(accountKeyOfUser(accountKey)).toBeUndefined();
    expect(accountKeyOfUser(`@${accountKey.slice(1)}`)).toBeUndefined();
  });

  it("records are signed by the account key: a changed name or another key's signature fails", async () => {
    const a = await accountSigningKey(seed(3));
    const b = await accountSigningKey(seed(4));
    const record = await signAccountRecord(a.accountKey, a.key, "alice", "a.example");
    expect(await accountRecordIsSigned(record, a.accountKey)).toBe(true);
    expect(await accountRecordIsSigned({ ...record, domain: "evil.example" }, a.accountKey)).toBe(false);
    expect(await accountRecordIsSigned(await signAccountRecord(a.accountKey, b.key, "alice", "a.example"), a.accountKey)).toBe(false);
    expect(await accountRecordIsSigned({ errcode: "M_NOT_FOUND" }, a.accountKey)).toBe(false);
  });
});

describe("MSC4345 key documents and key-form IDs", () => {
  it("a key/v3 document proves a domain holds a key only when it names the domain, lists the key and is signed by it", async () => {
    const key = await signingKeyFromSeed(new Uint8Array(32).fill(5), "a1");
    const other = await signingKeyFromSeed(new Uint8Array(32).fill(6), "a1");
    const serverKey = serverKeyFromPublicKey(key.publicKey);
    const doc = await signJson({ server_name: "b.example", verify_keys: { [key.keyId]: { key: serverKey } } }, serverKey, key);
    expect(await keyDocumentListsKey(doc, serverKey, "b.example")).toBe(true);
    expect(await keyDocumentListsKey(doc, serverKey, "c.example")).toBe(false);
    expect(await keyDocumentListsKey(doc, serverKeyFromPublicKey(other.publicKey), "b.example")).toBe(false);
    const forged = await signJson({ server_name: "b.example", verify_keys: { [key.keyId]: { key: serverKey } } }, serverKey, other);
    expect(await keyDocumentListsKey(forged, serverKey, "b.example")).toBe(false);
    expect(await keyDocumentListsKey(null, serverKey, "b.example")).toBe(false);
  });

  it("keyFormUserId keeps the localpart and puts the key as the server part", () => {
    expect(keyFormUserId("@alice:b.example", "KEY")).toBe("@alice:KEY");
    expect(keyFormUserId("@alice:b.example:8448", "KEY")).toBe("@alice:KEY");
  });
});
