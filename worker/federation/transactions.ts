// Server-Server API: PUT /_matrix/federation/v1/send/{txnId} (spec: "Transactions"; data/api/server-server/
// transactions.yaml). The PDUs are grouped by room and handed to each room's DO in order; every PDU gets a
// result. EDUs are applied after the PDUs (worker/federation/edus.ts): a receipt may name an event of the
// same transaction. They have no result in the answer.
import { Hono } from "hono";
import { unwrap } from "../../durable-objects/room/outcome.js";
import { MatrixError, badJson } from "../../protocol/errors.js";
import { isJsonObject } from "../../protocol/json.js";
import type { Pdu } from "../../protocol/pdu.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { roomStub } from "../room-store.js";
import { isValidRoomId } from "../directory-store.js";
import { assertServerAllowedInRoom, requestOrigin } from "./auth.js";
import { receiveEdus } from "./edus.js";

export const federationTransactionRoutes = new Hono<AppEnv>();

/** Spec: a transaction holds at most 50 PDUs and 100 EDUs. */
const MAX_PDUS = 50;
const MAX_EDUS = 100;

// PUT /_matrix/federation/v1/send/{txnId}
federationTransactionRoutes.put("/_matrix/federation/v1/send/:txnId", async (c) => {
  const origin = requestOrigin(c);
  const body = await readJsonObject(c, { allowEmpty: false, canonical: false });
  if (body.origin !== undefined && body.origin !== origin) throw new MatrixError(403, "M_FORBIDDEN", "The transaction's origin is not the authenticated server");
  const pdus = body.pdus ?? [];
  const edus = body.edus ?? [];
  if (!Array.isArray(pdus) || !Array.isArray(edus)) throw badJson("pdus and edus must be lists");
  if (pdus.length > MAX_PDUS || edus.length > MAX_EDUS) throw badJson(`A transaction holds at most ${MAX_PDUS} PDUs and ${MAX_EDUS} EDUs`);

  const results: Record<string, { error?: string }> = {};
  const byRoom = new Map<string, Pdu[]>();
  for (const pdu of pdus) {
    // A PDU without a room cannot be processed or answered for (Synapse drops it).
    if (!isJsonObject(pdu) || typeof pdu.room_id !== "string" || !isValidRoomId(pdu.room_id)) continue;
    const list = byRoom.get(pdu.room_id);
    if (list) list.push(pdu as unknown as Pdu);
    else byRoom.set(pdu.room_id, [pdu as unknown as Pdu]);
  }
  // Rooms are independent: process them concurrently; within a room the DO keeps the order.
  await Promise.all(
    [...byRoom].map(async ([roomId, roomPdus]) => {
      try {
        // Spec: PDUs of a room whose server ACL denies the origin are refused.
        await assertServerAllowedInRoom(c.env, roomId, origin);
        Object.assign(results, unwrap(await roomStub(c.env, roomId).receivePdus(origin, roomPdus)));
      } catch (e) {
        if (!(e instanceof MatrixError)) throw e;
        for (const pdu of roomPdus) if (typeof pdu.event_id === "string") results[pdu.event_id] = { error: e.message };
      }
    }),
  );
  if (edus.length > 0) await receiveEdus(c.env, origin, edus);
  return c.json({ pdus: results });
});
