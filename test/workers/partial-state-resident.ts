// A room that lives on another server, for partial-state join tests: the resident's DAG built and signed in
// the test (with the key test/workers/remote-homeserver.mjs publishes for the resident's name, so that our
// signature checks fetch the real key), and a RemoteFetch that answers as the resident would: make_join,
// send_join with `omit_members` (no member events in the state, their auth chain only), /event_auth,
// /state_ids, /state and /event from the DAG. Events the resident rejects (sent to us to see what we do with
// them) go into its DAG but not into its state, as Complement's partial-state tests build them.
import type { RemoteFetch, RemoteResponse } from "../../durable-objects/room/federation-inbound.js";
import { eventIdFor, roomIdFromCreateEvent } from "../../protocol/event-hashes.js";
import type { JsonObject } from "../../protocol/json.js";
import { authEventIds, serverNameOf, stateKey, type Pdu } from "../../protocol/pdu.js";
import { roomVersionRules, type RoomVersionRules } from "../../protocol/room-versions.js";
import { remotePdu } from "./federation-room-helpers.js";

const F1 = "/_matrix/federation/v1";

export interface EventSpec {
  type: string;
  stateKey?: string;
  sender: string;
  content: JsonObject;
  /** Auth events by ID (default: what the auth rules select from the resident's state). */
  auth?: string[];
  /** false: the resident rejects it (in the DAG, not in its state). Default true. */
  intoState?: boolean;
}

export class ResidentRoom {
  readonly events = new Map<string, Pdu>();
  /** The resident's current state: key → event ID. */
  readonly state = new Map<string, string>();
  /** The state before each event, as the resident has it. */
  readonly stateBefore = new Map<string, Map<string, string>>();
  /** Requests the resident was asked (method and path with query). */
  readonly asked: string[] = [];
  head: string[] = [];
  depth = 0;
  roomId = "";
  readonly rules: RoomVersionRules;

  private constructor(
    readonly server: string,
    readonly version: string,
  ) {
    this.rules = roomVersionRules(version)!;
  }

  /** A public room on `server` created by `creator` (a localpart), with `users` in the power levels. */
  static async create(server: string, version: string, creator: string, users: Record<string, number> = {}): Promise<ResidentRoom> {
    const room = new ResidentRoom(server, version);
    const c = room.user(creator);
    const v12 = room.rules.authorization.roomCreateEventIdAsRoomId;
    const createFields = { type: "m.room.create", state_key: "", sender: c, content: v12 ? { room_version: version } : { creator: c, room_version: version }, origin_server_ts: Date.now(), depth: 1, prev_events: [], auth_events: [] };
    if (!v12) room.roomId = `!psr-${crypto.randomUUID().slice(0, 8)}:${server}`;
    const create = await remotePdu(server, version, (v12 ? createFields : { ...createFields, room_id: room.roomId }) as unknown as Pdu);
    if (v12) room.roomId = await roomIdFromCreateEvent(create.pdu, room.rules);
    room.accept(create.pdu, create.eventId, true);
    await room.add({ type: "m.room.member", stateKey: c, sender: c, content: { membership: "join" } });
    await room.add({ type: "m.room.power_levels", stateKey: "", sender: c, content: v12 ? { users } : { users: { [c]: 100, ...users } } });
    await room.add({ type: "m.room.join_rules", stateKey: "", sender: c, content: { join_rule: "public" } });
    return room;
  }

  user(localpart: string): string {
    return `@${localpart}:${this.server}`;
  }

  id(type: string, sk = ""): string | undefined {
    return this.state.get(stateKey(type, sk));
  }

  /** The auth events the rules select (spec: "Auth events selection") from the current state. */
  private selectAuth(type: string, sk: string | undefined, sender: string, content: JsonObject): string[] {
    const keys: [string, string][] = [["m.room.power_levels", ""], ["m.room.member", sender]];
    if (!this.rules.authorization.roomCreateEventIdAsRoomId) keys.unshift(["m.room.create", ""]);
    if (type === "m.room.member" && sk !== undefined) {
      keys.push(["m.room.member", sk]);
      if (content.membership === "join" || content.membership === "invite") keys.push(["m.room.join_rules", ""]);
    }
    const ids: string[] = [];
    for (const [t, k] of keys) {
      const id = this.id(t, k);
      if (id !== undefined && !ids.includes(id)) ids.push(id);
    }
    return ids;
  }

  /** Builds, signs and adds an event after the current head. */
  async add(spec: EventSpec): Promise<{ pdu: Pdu; eventId: string }> {
    const fields = {
      room_id: this.roomId,
      type: spec.type,
      ...(spec.stateKey !== undefined ? { state_key: spec.stateKey } : {}),
      sender: spec.sender,
      content: spec.content,
      origin_server_ts: Date.now(),
      depth: this.depth + 1,
      prev_events: [...this.head],
      auth_events: spec.auth ?? this.selectAuth(spec.type, spec.stateKey, spec.sender, spec.content),
    };
    // Signed by the sender's server (another server's user joins through the resident, say).
    const event = await remotePdu(serverNameOf(spec.sender), this.version, fields as unknown as Pdu);
    this.accept(event.pdu, event.eventId, spec.intoState ?? true);
    return event;
  }

  /** Adds a signed event (ours, or one built here) to the DAG after the current head. */
  accept(pdu: Pdu, eventId: string, intoState: boolean): void {
    this.events.set(eventId, pdu);
    this.stateBefore.set(eventId, new Map(this.state));
    if (intoState && typeof pdu.state_key === "string") this.state.set(stateKey(pdu.type, pdu.state_key), eventId);
    this.head = [eventId];
    this.depth = Math.max(this.depth, pdu.depth);
  }

  /** Every event reachable from `ids` through auth_events (not the events themselves), create included. */
  authChain(ids: Iterable<string>): string[] {
    const seen = new Set<string>();
    const stack = [...ids].flatMap((id) => authEventIds(this.events.get(id)!));
    if (this.rules.authorization.roomCreateEventIdAsRoomId) stack.push(this.id("m.room.create")!);
    while (stack.length > 0) {
      const id = stack.pop()!;
      if (seen.has(id)) continue;
      seen.add(id);
      stack.push(...authEventIds(this.events.get(id)!));
    }
    return [...seen];
  }

  /** The make_join template for a user of ours. */
  joinTemplate(userId: string, origin: string): JsonObject {
    return {
      room_id: this.roomId,
      type: "m.room.member",
      state_key: userId,
      sender: userId,
      content: { membership: "join" },
      depth: this.depth + 1,
      prev_events: [...this.head],
      auth_events: this.selectAuth("m.room.member", userId, userId, { membership: "join" }),
      origin,
      origin_server_ts: Date.now(),
    };
  }

  /** The resident, answering as a RemoteFetch. `holdState`: /state_ids and /state fail (the resync waits). */
  remote(options: { holdState?: () => boolean } = {}): RemoteFetch {
    return async (_destination, method, path, body): Promise<RemoteResponse> => {
      this.asked.push(`${method} ${path}`);
      const url = new URL(`https://resident${path}`);
      const eventId = url.searchParams.get("event_id") ?? "";
      const ok = (b: unknown): RemoteResponse => ({ ok: true, status: 200, body: b });
      const pdus = (ids: Iterable<string>) => [...ids].map((id) => this.events.get(id)!);
      if (method === "GET" && url.pathname.startsWith(`${F1}/make_join/`)) {
        const userId = decodeURIComponent(url.pathname.split("/").at(-1)!);
        return ok({ event: this.joinTemplate(userId, userId.split(":").slice(1).join(":")), room_version: this.version });
      }
      if (method === "PUT" && url.pathname.startsWith("/_matrix/federation/v2/send_join/")) {
        const join = body as unknown as Pdu;
        const joinId = await eventIdFor(join, this.rules);
        const nonMembers = [...this.state.values()].filter((id) => this.events.get(id)!.type !== "m.room.member");
        this.accept(join, joinId, true);
        return ok({ state: pdus(nonMembers), auth_chain: pdus(this.authChain([...nonMembers, joinId])), members_omitted: true, servers_in_room: [this.server] });
      }
      if (method === "GET" && url.pathname.startsWith(`${F1}/event_auth/`)) {
        const id = decodeURIComponent(url.pathname.split("/").at(-1)!);
        return ok({ auth_chain: pdus(this.authChain([id])) });
      }
      if (method === "GET" && (url.pathname.startsWith(`${F1}/state_ids/`) || url.pathname.startsWith(`${F1}/state/`))) {
        if (options.holdState?.()) return { ok: false, status: 503, error: "held back (test)" };
        const before = this.stateBefore.get(eventId);
        if (!before) return { ok: false, status: 404, errcode: "M_NOT_FOUND", error: "unknown event" };
        const ids = [...before.values()];
        if (url.pathname.startsWith(`${F1}/state_ids/`)) return ok({ pdu_ids: ids, auth_chain_ids: this.authChain(ids) });
        return ok({ pdus: pdus(ids), auth_chain: pdus(this.authChain(ids)) });
      }
      if (method === "GET" && url.pathname.startsWith(`${F1}/event/`)) {
        const id = decodeURIComponent(url.pathname.split("/").at(-1)!);
        const pdu = this.events.get(id);
        return pdu ? ok({ origin: this.server, origin_server_ts: Date.now(), pdus: [pdu] }) : { ok: false, status: 404, errcode: "M_NOT_FOUND", error: "no such event" };
      }
      return { ok: false, status: 404, errcode: "M_UNRECOGNIZED", error: `not played: ${method} ${path}` };
    };
  }
}
