// Client-Server API: Send-to-Device messaging (spec: "Send-to-Device messaging";
// data/api/client-server/to_device.yaml). Each recipient device's inbox lives in the recipient's User DO
// (durable-objects/user/to-device.ts); /sync reads and acknowledges it there.
import { Hono } from "hono";
import { badJson, invalidParam } from "../../protocol/errors.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { isLocalUserId, requester, requireAuth } from "../auth.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { userStore } from "../user-store.js";
import { checkUserId, fanOut, localDevices } from "./keys.js";

export const toDeviceRoutes = new Hono<AppEnv>();

const CLIENT = "/_matrix/client/:version{v3|r0}";

const encoder = new TextEncoder();

// PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}
toDeviceRoutes.put(`${CLIENT}/sendToDevice/:eventType/:txnId`, requireAuth, async (c) => {
  const { userId, deviceId } = requester(c);
  const type = c.req.param("eventType");
  const txnId = c.req.param("txnId");
  if (type === "" || encoder.encode(type).length > 255) throw invalidParam("Invalid event type");
  const body = await readJsonObject(c, { allowEmpty: false });
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

  // Messages for other servers would go out over federation, which does not exist yet: they are dropped.
  const recipients = Object.keys(messages).filter((r) => isLocalUserId(r, c.env));
  const known = await localDevices(c.env, recipients);
  // Unique per (sender, sender device, txnId): each inbox stores a message once however often it arrives.
  const messageId = JSON.stringify([userId, deviceId, txnId]);
  await fanOut([...known.keys()], async (recipient) => {
    const byDevice = messages[recipient] as JsonObject;
    const existing = [...known.get(recipient)!.keys()];
    // `*` means "all known devices for the user"; a device also named explicitly gets its own content.
    const targets = new Map<string, JsonObject>();
    if (isJsonObject(byDevice["*"])) for (const d of existing) targets.set(d, byDevice["*"]);
    for (const [d, content] of Object.entries(byDevice)) {
      // Messages to devices the user does not have are dropped (as Synapse does).
      if (d !== "*" && existing.includes(d)) targets.set(d, content as JsonObject);
    }
    if (targets.size === 0) return;
    const deviceIds = [...targets.keys()];
    const contents = deviceIds.map((d) => JSON.stringify(targets.get(d)));
    await userStore(c.env, recipient).deliverToDevice(messageId, userId, type, deviceIds, contents);
  });
  await sender.recordToDeviceTxn(deviceId, txnId);
  return c.json({});
});
