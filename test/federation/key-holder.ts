// The test's own hand on a server key (MSC4345 rooms, where a server is its key): the test holds the seed
// a Myelin it started was given as SIGNING_KEY, so it can sign events and federation requests as that
// server, as a second process holding the key, or a server that misbehaves, would. Also a key held by
// no server at all (events in these rooms are checked against the key in their sender, decision 11).
// Everything here is the pure protocol library; nothing of the servers' code.
import type { Answer, Server } from "./client.js";

// The protocol library is loaded at run time: its WebCrypto calls are typed for the Workers runtime,
// which this Node-side project (tsconfig.node.json, DOM types) does not type-check. What is used of it:
type JsonObject = Record<string, unknown>;
/** A PDU as the tests build it (protocol/pdu.ts). */
export type Pdu = JsonObject & { depth: number; prev_events: string[]; auth_events: string[] };
interface SigningKey {
  keyId: string;
  publicKey: string;
}
interface Protocol {
  encodeBase64(bytes: Uint8Array): string;
  canonicalJsonBytes(value: unknown): Uint8Array;
  hashAndSignEvent(pdu: unknown, entity: string, key: SigningKey, rules: unknown): Promise<{ pdu: Pdu; eventId: string }>;
  serverKeyFromPublicKey(publicKeyBase64: string): string;
  roomVersionRules(id: string): unknown;
  signBytes(key: SigningKey, bytes: Uint8Array): Promise<string>;
  signingKeyFromSeed(seed: Uint8Array, version: string): Promise<SigningKey>;
  formatXMatrixHeader(auth: { origin: string; destination: string; key: string; sig: string }): string;
  requestJsonToSign(request: { method: string; uri: string; origin: string; destination: string; content?: unknown }): JsonObject;
}
let loaded: Promise<Protocol> | undefined;
function protocol(): Promise<Protocol> {
  const files = ["base64", "canonical-json", "event-hashes", "participation", "room-versions", "signing", "x-matrix"];
  loaded ??= Promise.all(files.map((f) => import(/* @vite-ignore */ new URL(`../../protocol/${f}.ts`, import.meta.url).href))).then((mods) => Object.assign({}, ...mods) as Protocol);
  return loaded;
}


export interface KeyHolder {
  /** The key as server key (URL-safe unpadded base64, the server part of its users' IDs). */
  serverKey: string;
  user(localpart: string): string;
  /** Hashes and signs an event of an org.matrix.msc4345 room with the key (its signatures keyed by it). */
  sign(fields: JsonObject): Promise<{ pdu: Pdu; eventId: string }>;
  /** A federation request to `to`, signed as `origin` (the server whose key this is). */
  request(to: Server, method: string, path: string, body?: JsonObject): Promise<Answer>;
}

/** A fresh seed and the SIGNING_KEY value (Synapse's signing.key format) that gives a server this key. */
export function newSeed(): { seed: Uint8Array; signingKeyEnv: string } {
  const seed = crypto.getRandomValues(new Uint8Array(32));
  return { seed, signingKeyEnv: `ed25519 t1 ${Buffer.from(seed).toString("base64").replace(/=+$/, "")}` };
}

export async function keyHolder(seed: Uint8Array, origin?: Server): Promise<KeyHolder> {
  const p = await protocol();
  const key = await p.signingKeyFromSeed(seed, "t1");
  const serverKey = p.serverKeyFromPublicKey(key.publicKey);
  const rules = p.roomVersionRules("org.matrix.msc4345");
  return {
    serverKey,
    user: (localpart) => `@${localpart}:${serverKey}`,
    async sign(fields) {
      const signed = await p.hashAndSignEvent({ ...fields, hashes: { sha256: "" }, signatures: {} }, serverKey, key, rules);
      return { pdu: signed.pdu, eventId: signed.eventId };
    },
    async request(to, method, path, body) {
      if (!origin) throw new Error("this key has no server to speak for");
      const json = p.requestJsonToSign({ method, uri: path, origin: origin.serverName, destination: to.serverName, content: body });
      const sig = await p.signBytes(key, p.canonicalJsonBytes(json));
      const res = await fetch(`${to.baseUrl}${path}`, {
        method,
        headers: { Authorization: p.formatXMatrixHeader({ origin: origin.serverName, destination: to.serverName, key: key.keyId, sig }), "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON
      }
      return { status: res.status, body: parsed };
    },
  };
}
