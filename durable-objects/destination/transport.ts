// How a Destination DO puts one transaction on the wire (spec: Server-Server API, "Transactions",
// PUT /_matrix/federation/v1/send/{txnId}). The one place the queue meets the federation client
// (federation-client/request.ts: X-Matrix signing, server discovery, answers as values, never throws).
import { federationRequest, type FederationResponse } from "../../federation-client/request.js";
import type { JsonObject } from "../../protocol/json.js";
import type { Env } from "../../worker/env.js";

export type { FederationResponse };

/** The body of PUT /send/{txnId}: `origin`, `origin_server_ts`, `pdus` (required, may be empty) and `edus`. */
export interface TransactionBody extends JsonObject {
  origin: string;
  origin_server_ts: number;
  pdus: JsonObject[];
}

/** A transaction can carry up to 50 PDUs of 64 KiB: allow it more time than a small request. */
const SEND_TIMEOUT_MS = 60_000;

export function sendTransaction(env: Env, destination: string, txnId: string, body: TransactionBody): Promise<FederationResponse> {
  return federationRequest(env, {
    destination,
    method: "PUT",
    path: `/_matrix/federation/v1/send/${encodeURIComponent(txnId)}`,
    body,
    timeoutMs: SEND_TIMEOUT_MS,
  });
}
