// OpenID (spec: Client-Server API, "OpenID": POST /_matrix/client/v3/user/{userId}/openid/request_token;
// Server-Server API, "OpenID": GET /_matrix/federation/v1/openid/userinfo). A client gets a token to hand
// to a third party (an integration manager), which asks this server whose token it is. The token is
// `<random>.<base64url user ID>`: the user part says which User DO holds the token's hash and expiry, so
// no global index is needed; a token whose hash that DO does not hold (or holds expired) is unknown.
import { Hono } from "hono";
import { decodeBase64, encodeBase64Url } from "../../protocol/base64.js";
import { MatrixError, missingParam } from "../../protocol/errors.js";
import { randomToken } from "../../protocol/signing.js";
import { isLocalUserId, requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { requireSelf, userStore } from "../user-store.js";

export const openIdRoutes = new Hono<AppEnv>();

/** Synapse's lifetime of an OpenID token (1 hour). */
const OPENID_TOKEN_LIFETIME_MS = 3600_000;

async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// POST /_matrix/client/v3/user/{userId}/openid/request_token
openIdRoutes.post("/_matrix/client/:version{v3|r0}/user/:userId/openid/request_token", requireAuth, async (c) => {
  const userId = requireSelf(c, c.req.param("userId"), "Cannot request OpenID tokens for other users.");
  await readJsonObject(c, { allowEmpty: true });
  const token = `${randomToken(24)}.${encodeBase64Url(new TextEncoder().encode(userId))}`;
  await userStore(c.env, userId).addOpenIdToken(await sha256Hex(token), Date.now() + OPENID_TOKEN_LIFETIME_MS);
  return c.json({ access_token: token, token_type: "Bearer", matrix_server_name: c.env.SERVER_NAME, expires_in: OPENID_TOKEN_LIFETIME_MS / 1000 });
});

/** The user an OpenID token was issued to, or undefined. */
export async function openIdTokenUser(env: Env, token: string): Promise<string | undefined> {
  const dot = token.indexOf(".");
  if (dot <= 0 || token.length > 512) return undefined;
  let userId: string;
  try {
    userId = new TextDecoder().decode(decodeBase64(token.slice(dot + 1)));
  } catch {
    return undefined;
  }
  if (!/^@[^:]+:.+$/.test(userId) || !isLocalUserId(userId, env)) return undefined;
  return (await userStore(env, userId).openIdTokenValid(await sha256Hex(token))) ? userId : undefined;
}

// GET /_matrix/federation/v1/openid/userinfo (no X-Matrix: the token authenticates; worker/federation/auth.ts)
openIdRoutes.get("/_matrix/federation/v1/openid/userinfo", async (c) => {
  const token = c.req.query("access_token");
  if (token === undefined || token === "") throw missingParam("Missing access_token");
  const userId = await openIdTokenUser(c.env, token);
  if (!userId) throw new MatrixError(401, "M_UNKNOWN_TOKEN", "Access token unknown or expired");
  return c.json({ sub: userId });
});
