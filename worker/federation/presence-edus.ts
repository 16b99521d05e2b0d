// Server-Server API: inbound `m.presence` EDUs (spec: "Presence": {push: [{user_id, presence,
// last_active_ago, currently_active?, status_msg?}]}). Each user must belong to the sending server. The
// state is passed to the local users registered with that remote user's DO (those who share a room with
// them or asked for their keys: durable-objects/user/room-mates.ts `watchRemoteUsers`), whose /sync shows
// it in `presence`, and kept in the remote user's DO.
import { pushPresenceToAppservices } from "../../durable-objects/appservice/streams.js";
import type { PresenceState } from "../../durable-objects/user/sync-stream.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { serverNameOf } from "../../protocol/pdu.js";
import type { Env } from "../env.js";
import { userStore } from "../user-store.js";
import type { EduVerdict } from "./edus.js";

const PRESENCE_STATES = ["online", "offline", "unavailable"];
/** Synapse's limit on status messages. */
const MAX_STATUS_MSG_LENGTH = 1024;

export async function applyPresence(env: Env, origin: string, content: JsonObject, now = Date.now()): Promise<EduVerdict> {
  const push = content.push;
  if (!Array.isArray(push)) return "dropped: malformed";
  const problems: string[] = [];
  for (const entry of push) {
    if (!isJsonObject(entry) || typeof entry.user_id !== "string" || !/^@[^:]+:.+$/.test(entry.user_id) || entry.user_id.length > 255) {
      problems.push("malformed");
      continue;
    }
    const userId = entry.user_id;
    if (serverNameOf(userId) !== origin) {
      problems.push("user of another server");
      continue;
    }
    const ago = entry.last_active_ago ?? 0;
    if (typeof entry.presence !== "string" || !PRESENCE_STATES.includes(entry.presence) || typeof ago !== "number" || !Number.isSafeInteger(ago) || ago < 0) {
      problems.push("malformed");
      continue;
    }
    const state: PresenceState = {
      presence: entry.presence as PresenceState["presence"],
      lastActiveTs: now - ago,
      currentlyActive: entry.currently_active === true,
    };
    if (typeof entry.status_msg === "string") state.statusMsg = entry.status_msg.slice(0, MAX_STATUS_MSG_LENGTH);
    const store = userStore(env, userId);
    const [watchers] = await Promise.all([store.remoteWatchers(), store.onPresence(userId, state)]);
    await Promise.all([
      // Services with receive_ephemeral whose users share a room with this user (appservice/streams.ts).
      pushPresenceToAppservices(env, userId, [], state, watchers, now).catch((e: unknown) =>
        console.warn("remote presence not queued for application services", e instanceof Error ? e.message : e),
      ),
      ...watchers.map((w) =>
        userStore(env, w)
          .onPresence(userId, state)
          .catch((e: unknown) => console.warn("remote presence not delivered", w, e instanceof Error ? e.message : e)),
      ),
    ]);
  }
  return problems.length === 0 ? "applied" : `dropped: ${problems.join("; ")}`;
}
