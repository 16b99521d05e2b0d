// Client-Server API: Send-to-Device messaging (spec: "Send-to-Device messaging";
// data/api/client-server/to_device.yaml). Each recipient device's inbox lives in the recipient's User DO
// (durable-objects/user/to-device.ts); /sync reads and acknowledges it there. Messages for users of other
// servers go out as one `m.direct_to_device` EDU per server (spec: Server-Server API, "Send-to-device
// messaging") through that server's Destination DO, which keeps it until the peer accepted it.
import { Hono } from "hono";
import { badJson, invalidParam } from "../../protocol/errors.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { encodeBase64Url } from "../../protocol/base64.js";
import { isLocalUserId, requester, requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { userStore } from "../user-store.js";
import { pushToDeviceToAppservices } from "../../durable-objects/appservice/streams.js";
import { checkUserId, fanOut, localDevices, serverOfUserId } from "./keys.js";

export const toDeviceRoutes = new Hono<AppEnv>();

const CLIENT = "/_matrix/client/:version{v3|r0}";

const encoder = new TextEncoder();

/** `messages` of a send: recipient user → device ID (or `*`) → content. */
export type ToDeviceMessages = Record<string, Record<string, JsonObject>>;

/**
 * Puts a message into the inboxes of local recipients. `*` means "all known devices for the user"; a
 * device also named explicitly gets its own content; devices the user does not have are skipped (as
 * Synapse does). `origin` is set for messages received over federation (deduplicated per origin and
 * message ID); local sends deduplicate by `messageId` per device.
 */
export async function deliverToLocalDevices(env: Env, messageId: string, sender: string, type: string, messages: ToDeviceMessages, origin?: string): Promise<void> {
  const recipients = Object.keys(messages).filter((r) => isLocalUserId(r, env));
  const known = await localDevices(env, recipients);
  await fanOut([...known.keys()], async (recipient) => {
    const byDevice = messages[recipient]!;
    const existing = [...known.get(recipient)!.keys()];
    const targets = new Map<string, JsonObject>();
    if (isJsonObject(byDevice["*"])) for (const d of existing) targets.set(d, byDevice["*"]);
    for (const [d, content] of Object.entries(byDevice)) {
      if (d !== "*" && existing.includes(d)) targets.set(d, content);
    }
    const deviceIds = [...targets.keys()];
    const contents = deviceIds.map((d) => JSON.stringify(targets.get(d)));
    const store = userStore(env, recipient);
    // A federation message whose devices are all gone is still marked seen (a retry finds nothing either).
    let position: number | null = null;
    if (origin !== undefined) position = await store.deliverToDeviceFromFederation(origin, messageId, sender, type, deviceIds, contents);
    else if (deviceIds.length > 0) position = await store.deliverToDevice(messageId, sender, type, deviceIds, contents);
    // Application services holding the recipient get it in their next transaction (MSC4203); not again
    // for a repeat the inbox already had.
    if (position !== null) await pushToDeviceToAppservices(env, recipient, sender, type, deviceIds, contents);
  });
}

/** A message ID that is the same for a retried send (same sender, device and txnId), so a crash between
 * queueing and recording the transaction cannot make the peer deliver the message twice. */
async function federationMessageId(userId: string, deviceId: string, txnId: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(JSON.stringify([userId, deviceId, txnId])));
  return encodeBase64Url(new Uint8Array(digest)).slice(0, 32);
}

/** Queues one `m.direct_to_device` EDU per remote server named among the recipients. */
async function sendToRemoteServers(env: Env, messageId: string, sender: string, type: string, messages: ToDeviceMessages): Promise<void> {
  const byServer = new Map<string, ToDeviceMessages>();
  for (const [recipient, byDevice] of Object.entries(messages)) {
    if (isLocalUserId(recipient, env)) continue;
    const server = serverOfUserId(recipient);
    let m = byServer.get(server);
    if (!m) byServer.set(server, (m = {}));
    m[recipient] = byDevice;
  }
  await Promise.all(
    [...byServer].map(([server, forServer]) =>
      env.DESTINATIONS.get(env.DESTINATIONS.idFromName(server)).enqueue(server, [], [
        { eduType: "m.direct_to_device", content: JSON.stringify({ sender, type, message_id: messageId, messages: forServer }) },
      ]),
    ),
  );
}

// PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}
toDeviceRoutes.put(`${CLIENT}/sendToDevice/:eventType/:txnId`, requireAuth, async (c) => {
  const { userId, deviceId } = requester(c);
  const type = c.req.param("eventType");
  const txnId = c.req.param("txnId");
  if (type === "" || encoder.encode(type).length > 255) throw invalidParam("Invalid event type");
  // To-device content is the clients' own (Synapse accepts any JSON): floats are not refused here.
  const body = await readJsonObject(c, { allowEmpty: false, canonical: false });
  const messages = body.messages;
  if (!isJsonObject(messages)) throw badJson("messages must be an object");
  for (const [recipient, byDevice] of Object.entries(messages)) {
    checkUserId(recipient);
    if (!isJsonObject(byDevice) || !Object.values(byDevice).every(isJsonObject)) {
      throw badJson(`messages.${recipient} must map device IDs to message contents`);
    }
  }

  // Spec: "Transaction identifiers": a retried request (same access token's device, same txnId) is
  // answered without sending again.
  const sender = userStore(c.env, userId);
  if (await sender.hasToDeviceTxn(deviceId, txnId)) return c.json({});

  const typed = messages as ToDeviceMessages;
  // Unique per (sender, sender device, txnId): each inbox stores a message once however often it arrives.
  await deliverToLocalDevices(c.env, JSON.stringify([userId, deviceId, txnId]), userId, type, typed);
  // Stored in the destinations' queues before the client hears 200: kept until each peer accepted it.
  await sendToRemoteServers(c.env, await federationMessageId(userId, deviceId, txnId), userId, type, typed);
  await sender.recordToDeviceTxn(deviceId, txnId);
  return c.json({});
});
