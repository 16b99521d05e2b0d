// A room built as a real DAG for the auth-rule tests of the experimental room versions (MSC4345 server
// participation, MSC4348 portable accounts): every event lists the auth events the selection rules
// choose from the current state, so the same events serve the auth rules, the auth events selection and
// state resolution. `send` builds an event, `apply` checks it (against the current state and against its
// own auth events: both must agree) and adds it, throwing if it is rejected. Signatures are structural
// (which entities signed); their validity is the signature check before auth, tested elsewhere.
import { expect } from "vitest";
import {
  authEventTypesFor,
  checkEventAgainstAuthEvents,
  checkEventAuth,
  type AuthCheckOptions,
  type AuthResult,
  type AuthStateLookup,
} from "../../protocol/auth-rules.js";
import { encodeBase64 } from "../../protocol/base64.js";
import type { JsonObject } from "../../protocol/json.js";
import { serverKeyFromPublicKey } from "../../protocol/participation.js";
import { stateKey, type IdentifiedPdu, type StateMap } from "../../protocol/pdu.js";
import { roomVersionRules, type RoomVersionRules } from "../../protocol/room-versions.js";

export const rulesOf = (v: string): RoomVersionRules => {
  const r = roomVersionRules(v);
  if (!r) throw new Error(`no room version ${v}`);
  return r;
};

/** A key made of one repeated byte (server keys and account keys have the same form; the rules only
 * read keys structurally). */
export const keyOf = (byte: number): string => serverKeyFromPublicKey(encodeBase64(new Uint8Array(32).fill(byte)));

export function allowed(r: AuthResult): void {
  expect(r).toEqual({ allowed: true });
}
export function rejected(r: AuthResult, reason: RegExp): void {
  expect(r.allowed).toBe(false);
  if (!r.allowed) expect(r.reason).toMatch(reason);
}

/** Shared by every room of a test file: event IDs, timestamps and depths only grow. */
let counter = 0;

export interface SendOptions {
  stateKey?: string;
  prev?: string[];
  /** Every entity whose signature the event carries (default: the room's `defaultSigners`). */
  signers?: string[];
  /** Auth events to list instead of those chosen from the current state. */
  auth?: string[];
}

export abstract class DagRoom {
  readonly events = new Map<string, IdentifiedPdu>();
  state = new Map<string, IdentifiedPdu>();
  create!: IdentifiedPdu;
  readonly roomId: string;
  last = "";
  private readonly createId: string;

  constructor(readonly rules: RoomVersionRules) {
    this.createId = `$create${++counter}`;
    this.roomId = "!" + this.createId.slice(1);
  }

  /** Who signs an event when the test does not say. */
  protected abstract defaultSigners(probe: IdentifiedPdu): string[];

  /** The sender's hosting server key for the auth events selection (portable accounts), if any. */
  protected hostingKey(_sender: string): string | undefined {
    return undefined;
  }

  readonly lookup: AuthStateLookup = (type, key) => this.state.get(stateKey(type, key));

  /** The create event, added without checks (the first event of the room). */
  protected addCreate(creator: string, signers?: string[]): void {
    const create = this.build("m.room.create", creator, { room_version: this.rules.id }, { stateKey: "", prev: [], signers }, this.createId);
    delete create.room_id;
    create.auth_events = [];
    this.create = this.add(create);
  }

  private build(type: string, sender: string, content: JsonObject, opts: SendOptions, id?: string): IdentifiedPdu {
    const probe = { type, sender, content, state_key: opts.stateKey } as unknown as IdentifiedPdu;
    const signatures: Record<string, Record<string, string>> = {};
    for (const k of opts.signers ?? this.defaultSigners(probe)) signatures[k] = { "ed25519:1": "fake" };
    const auth =
      opts.auth ??
      authEventTypesFor(type, opts.stateKey, sender, content, this.rules, this.hostingKey(sender))
        .map(([t, k]) => this.lookup(t, k)?.event_id)
        .filter((x): x is string => x !== undefined);
    const e: IdentifiedPdu = {
      event_id: id ?? `$p${++counter}`,
      room_id: this.roomId,
      sender,
      type,
      content,
      origin_server_ts: counter,
      prev_events: opts.prev ?? (this.last ? [this.last] : []),
      auth_events: auth,
      depth: counter,
      hashes: { sha256: "" },
      signatures,
    };
    if (opts.stateKey !== undefined) e.state_key = opts.stateKey;
    return e;
  }

  send(type: string, sender: string, content: JsonObject, opts: SendOptions = {}): IdentifiedPdu {
    return this.build(type, sender, content, opts);
  }

  /** The event against the current state, and against its own auth events. Both must agree. */
  check(e: IdentifiedPdu, options: AuthCheckOptions = {}): AuthResult {
    const current = checkEventAuth(e, this.rules, this.lookup, options);
    const authEvents = e.auth_events.map((id) => this.events.get(id as string)!);
    const own = checkEventAgainstAuthEvents(e, authEvents, this.rules, { ...options, createEvent: this.create });
    expect(own.allowed).toBe(current.allowed);
    return current;
  }

  add(e: IdentifiedPdu): IdentifiedPdu {
    this.events.set(e.event_id, e);
    if (e.state_key !== undefined) this.state.set(stateKey(e.type, e.state_key), e);
    this.last = e.event_id;
    return e;
  }

  apply(e: IdentifiedPdu): IdentifiedPdu {
    const r = this.check(e);
    if (!r.allowed) throw new Error(`setup event rejected: ${r.reason}`);
    return this.add(e);
  }

  stateMap(): StateMap {
    return new Map([...this.state.values()].map((e) => [stateKey(e.type, e.state_key!), e.event_id]));
  }
}
