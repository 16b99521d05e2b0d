// Helpers for tests where this server federates with the homeservers played by test/workers/
// remote-homeserver.mjs (`*.remote.test`): the same key each of them publishes (derived from its name),
// X-Matrix-signed requests to our Worker as one of them, and PDUs built and signed as one of their users.
import { canonicalJson } from "../../protocol/canonical-json.js";
import { hashAndSignEvent } from "../../protocol/event-hashes.js";
import type { JsonObject } from "../../protocol/json.js";
import type { Pdu } from "../../protocol/pdu.js";
import { roomVersionRules } from "../../protocol/room-versions.js";
import { signJson, signingKeyFromSeed, type SigningKey } from "../../protocol/signing.js";
import { expect } from "vitest";
import { api, SERVER_NAME, type ApiResponse } from "./helpers.js";

const keys = new Map<string, Promise<SigningKey>>();

/** The signing key a remote-homeserver.mjs server publishes: seed = SHA-256("seed:<name>:1"), key ID ed25519:v1. */
export function remoteKey(serverName: string): Promise<SigningKey> {
  let key = keys.get(serverName);
  if (!key) {
    key = (async () => {
      const seed = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`seed:${serverName}:1`)));
      return signingKeyFromSeed(seed, "v1");
    })();
    keys.set(serverName, key);
  }
  return key;
}

/** A federation request to our Worker, signed by `origin` (spec: "Request Authentication"). */
export async function federationApi(origin: string, method: string, path: string, body?: unknown): Promise<ApiResponse> {
  const key = await remoteKey(origin);
  const toSign: JsonObject = { method, uri: path, origin, destination: SERVER_NAME };
  if (body !== undefined) toSign.content = body as JsonObject;
  const signed = await signJson(toSign, origin, key);
  const sig = (signed.signatures as Record<string, Record<string, string>>)[origin]![key.keyId]!;
  const authorization = `X-Matrix origin="${origin}",destination="${SERVER_NAME}",key="${key.keyId}",sig="${sig}"`;
  return api(method, path, { body, headers: { Authorization: authorization } });
}

/** A PDU sent by a user of `serverName`, hashed and signed with its key; returns it with its event ID. */
export async function remotePdu(serverName: string, roomVersion: string, fields: Omit<Pdu, "hashes" | "signatures">): Promise<{ pdu: Pdu; eventId: string }> {
  const rules = roomVersionRules(roomVersion)!;
  const signed = await hashAndSignEvent({ ...fields, hashes: { sha256: "" }, signatures: {} } as Pdu, serverName, await remoteKey(serverName), rules);
  return signed;
}

/** Signs a make_* template as the joining server does (fills in the timestamp, then hashes and signs). */
export async function signTemplate(serverName: string, roomVersion: string, template: JsonObject, extra: JsonObject = {}): Promise<{ pdu: Pdu; eventId: string }> {
  const { signatures: _s, hashes: _h, ...rest } = template;
  return remotePdu(serverName, roomVersion, { ...(rest as unknown as Pdu), ...extra });
}

export const canonical = canonicalJson;

export interface RemoteMembership {
  /** The signed membership event as the remote server sent it. */
  pdu: Pdu;
  eventId: string;
  /** The body of our send_join / send_leave answer. */
  answer: JsonObject;
}

/** `userId` of `remote` joins our room `roomId` as its server does: make_join, sign the template, send_join
 * (v2), both expected to succeed. */
export async function joinFromRemote(remote: string, roomId: string, userId: string, roomVersion = "12"): Promise<RemoteMembership> {
  const enc = encodeURIComponent;
  const made = await federationApi(remote, "GET", `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(userId)}?ver=${enc(roomVersion)}`);
  expect(made.status, JSON.stringify(made.body)).toBe(200);
  const join = await signTemplate(remote, roomVersion, made.body.event as JsonObject, { origin_server_ts: Date.now() });
  const sent = await federationApi(remote, "PUT", `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(join.eventId)}`, join.pdu);
  expect(sent.status, JSON.stringify(sent.body)).toBe(200);
  return { ...join, answer: sent.body as JsonObject };
}

/** `userId` of `remote` leaves our room `roomId` as its server does: make_leave, sign, send_leave (v2). */
export async function leaveFromRemote(remote: string, roomId: string, userId: string, roomVersion = "12"): Promise<RemoteMembership> {
  const enc = encodeURIComponent;
  const made = await federationApi(remote, "GET", `/_matrix/federation/v1/make_leave/${enc(roomId)}/${enc(userId)}`);
  expect(made.status, JSON.stringify(made.body)).toBe(200);
  const leave = await signTemplate(remote, roomVersion, made.body.event as JsonObject, { origin_server_ts: Date.now() });
  const sent = await federationApi(remote, "PUT", `/_matrix/federation/v2/send_leave/${enc(roomId)}/${enc(leave.eventId)}`, leave.pdu);
  expect(sent.status, JSON.stringify(sent.body)).toBe(200);
  return { ...leave, answer: sent.body as JsonObject };
}
