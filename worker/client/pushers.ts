// Client-Server API: Pushers (spec: "Push Notifications", data/api/client-server/pusher.yaml). Pushers are
// rows in D1 (durable-objects/user/pushers.ts); delivery to http pushers is the user's Durable Object's
// (durable-objects/user/push-delivery.ts), which is told after every change. Behaviour and error messages
// follow Synapse (synapse/rest/client/pusher.py, synapse/push/httppusher.py).
import { Hono } from "hono";
import { removePusher, pushersOf, setPusher } from "../../durable-objects/user/pushers.js";
import { badJson, invalidParam, missingParam } from "../../protocol/errors.js";
import { isJsonObject, type JsonObject } from "../../protocol/json.js";
import { requester, requireAuth } from "../auth.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { pushersChanged } from "../user-store.js";

export const pushersRoutes = new Hono<AppEnv>();

const V = "/_matrix/client/:version{v3|r0}";

/** Spec: `app_id` "Max length, 64 chars", `pushkey` "Max length, 512 bytes". */
const MAX_APP_ID_LENGTH = 64;
const MAX_PUSHKEY_BYTES = 512;
/** The path every push gateway serves (Push Gateway API); Synapse refuses other paths. */
const NOTIFY_PATH = "/_matrix/push/v1/notify";

function stringField(body: JsonObject, key: string): string {
  const v = body[key];
  if (typeof v !== "string") throw badJson(`'${key}' must be a string`);
  return v;
}

/** Synapse's PusherConfigException for http pushers, answered as 400 M_MISSING_PARAM "Config Error: ...". */
function checkHttpPusherData(data: JsonObject): void {
  const configError = (message: string) => missingParam(`Config Error: ${message}`);
  if (!("url" in data)) throw configError("'url' required in data for HTTP pusher");
  const url = data.url;
  if (typeof url !== "string") throw configError("'url' must be a string");
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw configError("'url' must be an http or https URL");
  }
  // The spec says HTTPS; Synapse does not check the scheme ("it isn't up to the homeserver to verify
  // that"). Anything but http(s) could never be delivered, so it is refused here.
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") throw configError("'url' must be an http or https URL");
  if (parsed.pathname !== NOTIFY_PATH) throw configError(`'url' must have a path of '${NOTIFY_PATH}'`);
}

// GET /_matrix/client/v3/pushers
pushersRoutes.get(`${V}/pushers`, requireAuth, async (c) => {
  const pushers = (await pushersOf(c.env.DB, requester(c).userId)).map((p) => ({
    app_display_name: p.appDisplayName,
    app_id: p.appId,
    data: JSON.parse(p.data) as JsonObject,
    device_display_name: p.deviceDisplayName,
    kind: p.kind,
    lang: p.lang,
    profile_tag: p.profileTag,
    pushkey: p.pushkey,
  }));
  return c.json({ pushers });
});

// POST /_matrix/client/v3/pushers/set
pushersRoutes.post(`${V}/pushers/set`, requireAuth, async (c) => {
  const { userId, deviceId } = requester(c);
  const body = await readJsonObject(c, { allowEmpty: false });

  // `kind: null` deletes the pusher (only when app_id and pushkey are given, as in Synapse).
  if ("pushkey" in body && "app_id" in body && "kind" in body && body.kind === null) {
    const appId = stringField(body, "app_id");
    const pushkey = stringField(body, "pushkey");
    if (await removePusher(c.env.DB, userId, appId, pushkey)) await pushersChanged(c.env, [userId]);
    return c.json({});
  }

  // Synapse's assert_params_in_dict: present, whatever the value; the message lists them as Python does.
  const required = ["kind", "app_id", "app_display_name", "device_display_name", "pushkey", "lang", "data"];
  const absent = required.filter((k) => !(k in body));
  if (absent.length > 0) throw missingParam(`Missing params: [${absent.map((k) => `'${k}'`).join(", ")}]`);

  const kind = stringField(body, "kind");
  const appId = stringField(body, "app_id");
  const pushkey = stringField(body, "pushkey");
  const appDisplayName = stringField(body, "app_display_name");
  const deviceDisplayName = stringField(body, "device_display_name");
  if (body.lang !== null && typeof body.lang !== "string") throw badJson("'lang' must be a string");
  const lang = body.lang;
  const profileTag = body.profile_tag === undefined ? "" : stringField(body, "profile_tag");
  const append = body.append ?? false;
  if (typeof append !== "boolean") throw badJson("'append' must be a boolean");
  const data = body.data;
  if (!isJsonObject(data)) {
    // Synapse: "'data' key can not be null for HTTP pusher" (a PusherConfigException).
    if (data === null && kind === "http") throw missingParam("Config Error: 'data' key can not be null for HTTP pusher");
    throw badJson("'data' must be an object");
  }
  if (appId.length === 0 || [...appId].length > MAX_APP_ID_LENGTH) throw invalidParam(`'app_id' must be 1 to ${MAX_APP_ID_LENGTH} characters`);
  if (pushkey.length === 0 || new TextEncoder().encode(pushkey).length > MAX_PUSHKEY_BYTES) {
    throw invalidParam(`'pushkey' must be 1 to ${MAX_PUSHKEY_BYTES} bytes`);
  }
  if (kind === "http") checkHttpPusherData(data);
  // Email pushers are recorded (GET /pushers lists them) but this server sends no email. Synapse requires
  // the pushkey to be one of the user's email addresses; this server has no third-party identifiers. Other
  // kinds are recorded too, as Synapse does, and never delivered.

  const removedFrom = await setPusher(
    c.env.DB,
    { userId, appId, pushkey, kind, appDisplayName, deviceDisplayName, profileTag, lang, data: JSON.stringify(data), deviceId },
    append,
  );
  await pushersChanged(c.env, [userId, ...removedFrom]);
  return c.json({});
});
