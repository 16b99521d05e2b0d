// Server-Server API: inbound `m.presence` EDUs (spec: "Presence"). Not applied yet: dropped.
import type { JsonObject } from "../../protocol/json.js";
import type { Env } from "../env.js";
import type { EduVerdict } from "./edus.js";

export async function applyPresence(_env: Env, _origin: string, _content: JsonObject): Promise<EduVerdict> {
  return "dropped: presence is not applied yet";
}
