// User-Interactive Authentication (spec: Client-Server API, "User-Interactive Authentication API").
// A request protected by UIA is answered with 401 {flows, params, session, completed} until the client
// has completed every stage of one flow in the `auth` dict of the same request; then the handler runs.
// Sessions live in D1 (`uia_sessions`) because successive requests may land on different isolates.
import { MatrixError, badJson, forbidden } from "../protocol/errors.js";
import { isJsonObject, type JsonObject } from "../protocol/json.js";
import { localpartOf } from "./auth.js";
import { getUser } from "./accounts.js";
import type { Env } from "./env.js";
import { dummyPasswordHash, verifyPassword } from "./password.js";
import { rateLimit, recordAction } from "./ratelimit.js";

export type UiaStage = "m.login.dummy" | "m.login.password" | "m.login.registration_token";

/** Sessions older than this are forgotten (their pending registration-token use is released). */
export const UIA_SESSION_LIFETIME_MS = 60 * 60 * 1000;

export interface UiaOptions {
  /** The HTTP method of the protected request. */
  method: string;
  /** What the session protects, e.g. `register` or `delete_device:ABCDEF`; a session cannot be reused
   * for another operation (spec: the request must not change between stages). */
  operation: string;
  /** The flows the client may complete; each is a list of stage types. */
  flows: UiaStage[][];
  params?: JsonObject;
  /** For UIA on an authenticated endpoint: the requester. m.login.password must prove this user. */
  userId?: string;
}

export interface UiaResult {
  sessionId: string;
  completed: UiaStage[];
  /** The registration token the session validated, if any (see `finishUiaSession`). */
  registrationToken: string | null;
}

/**
 * The 401 answer of an incomplete UIA request. It is a MatrixError so that worker/index.ts turns it into
 * JSON, but the body carries `errcode` only when a stage just failed, as the spec's examples show.
 */
export class UiaIncomplete extends MatrixError {
  constructor(
    body: JsonObject,
    readonly failure?: { errcode: string; error: string },
  ) {
    super(401, failure?.errcode ?? "", failure?.error ?? "User-interactive authentication required", body);
  }

  override toJSON(): Record<string, unknown> {
    return this.failure ? { ...this.failure, ...this.extra } : { ...this.extra };
  }
}

interface SessionRow {
  session_id: string;
  method: string;
  path: string;
  user_id: string | null;
  completed: string;
  registration_token: string | null;
  created_ts: number;
}

/**
 * Runs UIA for one request. Returns when a flow is complete; otherwise throws UiaIncomplete (401) or a
 * MatrixError for a malformed `auth` dict.
 */
export async function userInteractiveAuth(env: Env, body: JsonObject, options: UiaOptions): Promise<UiaResult> {
  const auth = body.auth;
  const now = Date.now();
  let session: SessionRow;

  if (auth === undefined || auth === null) {
    session = await newSession(env, options, now);
    throw incomplete(options, session);
  }
  if (!isJsonObject(auth)) throw badJson("auth must be an object");
  const sessionId = auth.session;
  if (sessionId !== undefined && typeof sessionId !== "string") throw badJson("auth.session must be a string");
  if (sessionId === undefined) {
    // Synapse accepts a first request that already carries a stage; start a session for it.
    session = await newSession(env, options, now);
  } else {
    const row = await env.DB.prepare("SELECT * FROM uia_sessions WHERE session_id = ?").bind(sessionId).first<SessionRow>();
    if (!row || now - row.created_ts > UIA_SESSION_LIFETIME_MS) {
      throw new MatrixError(400, "M_UNKNOWN", "Unknown or expired UIA session");
    }
    if (row.method !== options.method || row.path !== options.operation || row.user_id !== (options.userId ?? null)) {
      throw forbidden("Requested operation has changed during the UI authentication session.");
    }
    session = row;
  }

  const type = auth.type;
  if (type !== undefined) {
    if (typeof type !== "string") throw badJson("auth.type must be a string");
    if (!options.flows.some((flow) => (flow as string[]).includes(type))) {
      throw new MatrixError(400, "M_UNRECOGNIZED", `Authentication type ${type} is not offered`);
    }
    const completed = parseCompleted(session);
    if (!completed.includes(type as UiaStage)) {
      const failure = await attemptStage(env, type as UiaStage, auth, session, options, now);
      if (failure) throw incomplete(options, session, failure);
      completed.push(type as UiaStage);
      session.completed = JSON.stringify(completed);
      await env.DB.prepare("UPDATE uia_sessions SET completed = ?, registration_token = ? WHERE session_id = ?")
        .bind(session.completed, session.registration_token, session.session_id)
        .run();
    }
  }

  const completed = parseCompleted(session);
  if (!options.flows.some((flow) => flow.every((stage) => completed.includes(stage)))) {
    throw incomplete(options, session);
  }
  return { sessionId: session.session_id, completed, registrationToken: session.registration_token };
}

/** Ends a session after the protected operation succeeded; a validated registration token moves from
 * pending to completed (spec: "Token-authenticated registration"). */
export async function finishUiaSession(env: Env, result: UiaResult, { registered = false } = {}): Promise<void> {
  const statements = [env.DB.prepare("DELETE FROM uia_sessions WHERE session_id = ?").bind(result.sessionId)];
  if (result.registrationToken !== null) {
    statements.push(
      env.DB.prepare(
        `UPDATE registration_tokens SET pending = max(0, pending - 1), completed = completed + ? WHERE token = ?`,
      ).bind(registered ? 1 : 0, result.registrationToken),
    );
  }
  await env.DB.batch(statements);
}

function parseCompleted(session: SessionRow): UiaStage[] {
  try {
    const value: unknown = JSON.parse(session.completed);
    return Array.isArray(value) ? (value.filter((v) => typeof v === "string") as UiaStage[]) : [];
  } catch {
    return [];
  }
}

function incomplete(options: UiaOptions, session: SessionRow, failure?: { errcode: string; error: string }): UiaIncomplete {
  const body: JsonObject = {
    flows: options.flows.map((stages) => ({ stages })),
    params: options.params ?? {},
    session: session.session_id,
  };
  const completed = parseCompleted(session);
  if (completed.length > 0) body.completed = completed;
  return new UiaIncomplete(body, failure);
}

async function newSession(env: Env, options: UiaOptions, now: number): Promise<SessionRow> {
  await expireSessions(env, now);
  const bytes = crypto.getRandomValues(new Uint8Array(18));
  let sessionId = "";
  for (const b of bytes) sessionId += "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[b % 52];
  const row: SessionRow = {
    session_id: sessionId,
    method: options.method,
    path: options.operation,
    user_id: options.userId ?? null,
    completed: "[]",
    registration_token: null,
    created_ts: now,
  };
  await env.DB.prepare(
    "INSERT INTO uia_sessions (session_id, method, path, user_id, completed, registration_token, created_ts) VALUES (?, ?, ?, ?, ?, NULL, ?)",
  )
    .bind(row.session_id, row.method, row.path, row.user_id, row.completed, row.created_ts)
    .run();
  return { ...row };
}

/** Forgets expired sessions, releasing the registration-token uses they held. */
async function expireSessions(env: Env, now: number): Promise<void> {
  const cutoff = now - UIA_SESSION_LIFETIME_MS;
  await env.DB.batch([
    env.DB.prepare(
      `UPDATE registration_tokens SET pending = max(0, pending - (
         SELECT count(*) FROM uia_sessions s WHERE s.registration_token = registration_tokens.token AND s.created_ts < ?))
       WHERE token IN (SELECT registration_token FROM uia_sessions WHERE created_ts < ? AND registration_token IS NOT NULL)`,
    ).bind(cutoff, cutoff),
    env.DB.prepare("DELETE FROM uia_sessions WHERE created_ts < ?").bind(cutoff),
  ]);
}

/** Checks one stage; returns the failure to report, or undefined when the stage is complete. */
async function attemptStage(
  env: Env,
  type: UiaStage,
  auth: JsonObject,
  session: SessionRow,
  options: UiaOptions,
  now: number,
): Promise<{ errcode: string; error: string } | undefined> {
  switch (type) {
    case "m.login.dummy":
      return undefined;

    case "m.login.registration_token": {
      // Spec: "Token-authenticated registration". A use is held as `pending` while the session lives.
      const token = auth.token;
      if (typeof token !== "string") throw badJson("auth.token must be a string");
      const row = await env.DB.prepare(
        `UPDATE registration_tokens SET pending = pending + 1
          WHERE token = ? AND (expiry_time IS NULL OR expiry_time > ?)
            AND (uses_allowed IS NULL OR pending + completed < uses_allowed)
          RETURNING token`,
      )
        .bind(token, now)
        .first<{ token: string }>();
      if (!row) return { errcode: "M_UNAUTHORIZED", error: "Invalid registration token" };
      session.registration_token = row.token;
      return undefined;
    }

    case "m.login.password": {
      if (options.userId === undefined) throw new Error("m.login.password UIA needs an authenticated user");
      const userId = passwordIdentifierUser(auth, env);
      const password = auth.password;
      if (typeof password !== "string") throw badJson("auth.password must be a string");
      if (userId !== options.userId) {
        throw forbidden("The authenticated user and the user in the auth dict differ");
      }
      await rateLimit(env, "RC_LOGIN_FAILED_ATTEMPTS", `user:${userId}`, { update: false });
      const user = await getUser(env, userId);
      const ok = await verifyPassword(password, user?.passwordHash ?? (await dummyPasswordHash()));
      if (!ok || !user?.passwordHash) {
        await recordAction(env, "RC_LOGIN_FAILED_ATTEMPTS", `user:${userId}`);
        return { errcode: "M_FORBIDDEN", error: "Invalid password" };
      }
      return undefined;
    }
  }
}

/**
 * The user named by a password login or UIA dict: `identifier` of type m.id.user (localpart or full user
 * ID), or the deprecated top-level `user`. Spec: "Identifier types" / "Legacy login". Returns the full
 * user ID (lower-cased localpart for local users, since localparts are registered lower-case).
 */
export function passwordIdentifierUser(auth: JsonObject, env: Pick<Env, "SERVER_NAME">): string {
  let user: unknown;
  const identifier = auth.identifier;
  if (identifier !== undefined) {
    if (!isJsonObject(identifier)) throw badJson("identifier must be an object");
    if (identifier.type !== "m.id.user") {
      throw new MatrixError(400, "M_UNKNOWN", "Unknown login identifier type");
    }
    user = identifier.user;
  } else {
    user = auth.user;
  }
  if (typeof user !== "string" || user === "") throw badJson("Missing or invalid user");
  if (user.startsWith("@")) {
    const localpart = localpartOf(user, env);
    // A user of another server cannot log in here; keep the ID so the caller fails with M_FORBIDDEN.
    return localpart === undefined ? user : `@${localpart.toLowerCase()}:${env.SERVER_NAME}`;
  }
  return `@${user.toLowerCase()}:${env.SERVER_NAME}`;
}
