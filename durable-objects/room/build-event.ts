// Building a local event (spec: Server-Server API, "Auth events selection", "Signing Events"; room versions,
// "Event format"): prev_events, auth_events, depth, timestamp, content hash, this server's signature and
// the event ID of the room version. The result is persisted like any other event (engine.ts).
import { authEventTypesFor, hostingServerKey, type AuthStateLookup } from "../../protocol/auth-rules.js";
import { MEMBER_SERVER_KEY, accountKeyOfUser } from "../../protocol/accounts.js";
import { encodeBase64 } from "../../protocol/base64.js";
import { MAX_SAFE } from "../../protocol/canonical-json.js";
import { hashAndSignEvent, referenceHash, signEventAsServer } from "../../protocol/event-hashes.js";
import type { JsonObject } from "../../protocol/json.js";
import type { EventReferenceV1, IdentifiedPdu, Pdu } from "../../protocol/pdu.js";
import type { RoomVersionRules } from "../../protocol/room-versions.js";
import { randomToken, type SigningKey } from "../../protocol/signing.js";
import { wireForm } from "./engine.js";
import { ownServerKey } from "./key-identity.js";

/** What a local sender asks for. */
export interface EventTemplate {
  type: string;
  stateKey?: string;
  sender: string;
  content: JsonObject;
  /** Redactions: the event to redact (top level in v1-v10, `content.redacts` in v11+). */
  redacts?: string;
  /** Application services' timestamp massaging (`ts=`): the event's `origin_server_ts` instead of now. */
  originServerTs?: number;
  /** MSC4354 sticky events: how long (ms) the event stays sticky; top level in the PDU as
   * `msc4354_sticky: { duration_ms }` (the unstable name Synapse and matrix-js-sdk use). */
  stickyDurationMs?: number;
}

export interface BuildContext {
  /** Undefined only for the v12 create event, which has no room ID. */
  roomId: string | undefined;
  rules: RoomVersionRules;
  serverName: string;
  key: SigningKey;
  /** The prev events (the forward extremities, at most MAX_PREV_EVENTS of them). */
  prevEvents: IdentifiedPdu[];
  /** The state the event's auth events are chosen from (the state before it). */
  state: AuthStateLookup;
  /** Clock (ms). */
  now: number;
  /** MSC4348 rooms: the sender's account key (a local account's), which signs beside the server key. */
  accountKey?: SigningKey;
}

/** Synapse's cap on the prev_events of a new event (the PDU format allows 20). */
export const MAX_PREV_EVENTS = 10;

export interface BuiltEvent {
  /** The wire form (signed; `event_id` inside only in v1-v2). */
  pdu: Pdu;
  eventId: string;
}

async function reference(pdu: IdentifiedPdu, rules: RoomVersionRules): Promise<string | EventReferenceV1> {
  if (!rules.eventFormat.eventIdInPdu) return pdu.event_id;
  // v1-v2: [event_id, {sha256: reference hash}].
  return [pdu.event_id, { sha256: encodeBase64(await referenceHash(wireForm(pdu, rules), rules)) }];
}

/** Builds, hashes and signs a local event. Auth rules are not checked here: persisting does that. */
export async function buildLocalEvent(template: EventTemplate, ctx: BuildContext): Promise<BuiltEvent> {
  const pdu = await unsignedEvent(withAccountServer(template, ctx), ctx);
  // hashAndSignEvent adds `hashes` and `signatures`.
  // MSC4345 rooms (decision 11): the signature is keyed by the server key, not the server name.
  const entity = ctx.rules.eventFormat.serverKeyIdentity ? ownServerKey(ctx.key) : ctx.serverName;
  const signed = await hashAndSignEvent(pdu, entity, ctx.key, ctx.rules);
  // MSC4348 (rule A): the account signs too, under its own key; the event ID does not cover signatures.
  const accountKey = accountKeyOfUser(template.sender);
  if (ctx.rules.eventFormat.accountKeyIdentity && ctx.accountKey && accountKey !== undefined) {
    return { pdu: await signEventAsServer(signed.pdu, accountKey, ctx.accountKey, ctx.rules), eventId: signed.eventId };
  }
  return { pdu: signed.pdu, eventId: signed.eventId };
}

/**
 * MSC4348 (decision 13): an account's own membership names the server that speaks for it, this one for
 * a local account's (an invite is about the account, not spoken by it, and names none). A join naming
 * this server while the account's membership names another is how the account moves here.
 */
export function withAccountServer(template: EventTemplate, ctx: Pick<BuildContext, "rules" | "key">): EventTemplate {
  if (!ctx.rules.authorization.portableAccounts || template.type !== "m.room.member" || template.stateKey !== template.sender) return template;
  if (template.content.membership === "invite") return template;
  return { ...template, content: { ...template.content, [MEMBER_SERVER_KEY]: ownServerKey(ctx.key) } };
}

/**
 * An event without hashes and signatures: prev_events, auth_events (chosen from `ctx.state` by the spec's
 * auth events selection), depth and timestamp filled in. Local events are then hashed and signed here;
 * the make_join/make_leave/make_knock templates go to the joining server unsigned (it signs them).
 */
export async function unsignedEvent(template: EventTemplate, ctx: Omit<BuildContext, "key">): Promise<Pdu> {
  const { rules } = ctx;
  const content: JsonObject = { ...template.content };
  if (template.type === "m.room.redaction" && template.redacts !== undefined && rules.eventFormat.redactsInContent) {
    content.redacts = template.redacts;
  }

  const authEvents: IdentifiedPdu[] = [];
  const senderServerKey = rules.authorization.portableAccounts ? hostingServerKey(template.sender, ctx.state, rules) : undefined;
  for (const [type, sk] of authEventTypesFor(template.type, template.stateKey, template.sender, content, rules, senderServerKey)) {
    const e = ctx.state(type, sk);
    if (e) authEvents.push(e);
  }

  let depth = 1;
  for (const prev of ctx.prevEvents) depth = Math.max(depth, prev.depth + 1);
  depth = Math.min(depth, MAX_SAFE);

  const pdu: Record<string, unknown> = {};
  if (rules.eventFormat.eventIdInPdu) pdu.event_id = `$${randomToken(18)}:${ctx.serverName}`;
  if (ctx.roomId !== undefined) pdu.room_id = ctx.roomId;
  pdu.sender = template.sender;
  pdu.type = template.type;
  if (template.stateKey !== undefined) pdu.state_key = template.stateKey;
  pdu.content = content;
  pdu.origin_server_ts = ctx.now;
  pdu.depth = depth;
  pdu.prev_events = await Promise.all(ctx.prevEvents.map((e) => reference(e, rules)));
  pdu.auth_events = await Promise.all(authEvents.map((e) => reference(e, rules)));
  if (template.type === "m.room.redaction" && template.redacts !== undefined && !rules.eventFormat.redactsInContent) {
    pdu.redacts = template.redacts;
  }
  if (template.stickyDurationMs !== undefined) pdu.msc4354_sticky = { duration_ms: template.stickyDurationMs };
  // Room versions 1-10 list `origin`; Synapse still sends it there. Keep it out: it is optional and
  // not covered by any rule, and v11 removed it from the redaction algorithm.
  return pdu as unknown as Pdu;
}
