// X-Matrix request authentication (spec: Server-Server API, "Request Authentication"): the JSON that is
// signed, and the Authorization header's format and parsing rules (RFC 9110 §11.4 as the spec summarises).
import { describe, expect, it } from "vitest";
import { decodeBase64 } from "../../protocol/base64.js";
import { canonicalJson } from "../../protocol/canonical-json.js";
import { signJson, signingKeyFromSeed, verifyJsonSignature } from "../../protocol/signing.js";
import { formatXMatrixHeader, parseXMatrixHeader, requestJsonToSign } from "../../protocol/x-matrix.js";

describe("requestJsonToSign", () => {
  it("wraps method, uri, origin and destination, and content when there is a body", () => {
    const withBody = requestJsonToSign({ method: "POST", uri: "/target", origin: "origin.hs.example.com", destination: "destination.hs.example.com", content: { a: 1 } });
    expect(canonicalJson(withBody)).toBe(
      '{"content":{"a":1},"destination":"destination.hs.example.com","method":"POST","origin":"origin.hs.example.com","uri":"/target"}',
    );
    const noBody = requestJsonToSign({ method: "GET", uri: "/_matrix/federation/v1/query/profile?user_id=%40a%3Ab", origin: "o", destination: "d" });
    expect(noBody).toEqual({ method: "GET", uri: "/_matrix/federation/v1/query/profile?user_id=%40a%3Ab", origin: "o", destination: "d" });
    expect("content" in noBody).toBe(false);
  });

  it("keeps an empty object body as content (PUT/POST always have one)", () => {
    expect(requestJsonToSign({ method: "PUT", uri: "/x", origin: "o", destination: "d", content: {} }).content).toEqual({});
  });

  it("signs and verifies round trip with the spec's test key", async () => {
    const key = await signingKeyFromSeed(decodeBase64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"), "1");
    const json = requestJsonToSign({ method: "PUT", uri: "/_matrix/federation/v1/send/1", origin: "o.test", destination: "d.test", content: { pdus: [] } });
    const signed = await signJson(json, "o.test", key);
    expect(await verifyJsonSignature(signed, "o.test", "ed25519:1", key.publicKey)).toBe(true);
    const tampered = { ...signed, content: { pdus: [1] } };
    expect(await verifyJsonSignature(tampered, "o.test", "ed25519:1", key.publicKey)).toBe(false);
  });
});

describe("X-Matrix header", () => {
  const spec = 'X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF..."';

  it("formats the spec's example exactly", () => {
    expect(formatXMatrixHeader({ origin: "origin.hs.example.com", destination: "destination.hs.example.com", key: "ed25519:key1", sig: "ABCDEF..." })).toBe(spec);
  });

  it("parses the spec's example", () => {
    expect(parseXMatrixHeader(spec)).toEqual({ origin: "origin.hs.example.com", destination: "destination.hs.example.com", key: "ed25519:key1", sig: "ABCDEF..." });
  });

  it("round-trips values with quotes and backslashes", () => {
    const auth = { origin: 'we"ird\\name', destination: "d", key: "ed25519:k", sig: "s" };
    expect(parseXMatrixHeader(formatXMatrixHeader(auth))).toEqual(auth);
  });

  it("accepts unquoted values, colons in unquoted values, any case of names and scheme, spaces and tabs around commas", () => {
    expect(parseXMatrixHeader("x-matrix   ORIGIN=origin.test:8448 ,\tKey=ed25519:k1 , Sig=abc+/def,destination=dest.test")).toEqual({
      origin: "origin.test:8448",
      destination: "dest.test",
      key: "ed25519:k1",
      sig: "abc+/def",
    });
  });

  it("keeps commas, spaces and equals signs inside quoted values", () => {
    expect(parseXMatrixHeader('X-Matrix origin="a,b = c",key="ed25519:k",sig="s"')).toMatchObject({ origin: "a,b = c" });
  });

  it("unescapes backslash pairs in quoted values", () => {
    expect(parseXMatrixHeader('X-Matrix origin="a\\"b\\\\c\\d",key="k",sig="s"')).toMatchObject({ origin: 'a"b\\cd' });
  });

  it("accepts a header without destination (servers older than v1.3)", () => {
    const parsed = parseXMatrixHeader('X-Matrix origin=o.test,key="ed25519:k",sig="s"');
    expect(parsed).toEqual({ origin: "o.test", key: "ed25519:k", sig: "s" });
    expect(parsed && "destination" in parsed).toBe(false);
  });

  it("ignores unknown parameters", () => {
    expect(parseXMatrixHeader('X-Matrix origin=o,key=k,sig=s,future="x y"')).toEqual({ origin: "o", key: "k", sig: "s" });
  });

  it("rejects garbage", () => {
    for (const h of [
      null,
      undefined,
      "",
      "Bearer abc",
      "X-Matrix",
      "X-Matrix ",
      "X-Matrixorigin=o,key=k,sig=s",
      'X-Matrix origin="o,key=k,sig=s', // unterminated quote
      "X-Matrix origin=o,key=k", // no sig
      "X-Matrix key=k,sig=s", // no origin
      'X-Matrix origin="",key=k,sig=s', // empty origin
      "X-Matrix origin=o key=k,sig=s", // missing comma
      "X-Matrix origin=o,key=k,sig=s,origin=evil", // repeated parameter
      "X-Matrix origin=a\"b,key=k,sig=s", // quote inside an unquoted value
      "X-Matrix =o,key=k,sig=s",
      'X-Matrix origin="o\\',
    ]) {
      expect(parseXMatrixHeader(h as string), String(h)).toBeNull();
    }
  });
});
