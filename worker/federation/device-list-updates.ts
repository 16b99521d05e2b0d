// Server-Server API: inbound `m.device_list_update` and `m.signing_key_update` EDUs (spec: "Device
// Management"). Not applied yet: dropped.
import type { JsonObject } from "../../protocol/json.js";
import type { Env } from "../env.js";
import type { EduVerdict } from "./edus.js";

export async function applyDeviceListUpdates(_env: Env, _origin: string, contents: JsonObject[]): Promise<EduVerdict[]> {
  return contents.map(() => "dropped: device list updates are not applied yet");
}

export async function applySigningKeyUpdate(_env: Env, _origin: string, _content: JsonObject): Promise<EduVerdict> {
  return "dropped: signing key updates are not applied yet";
}
