// The User Durable Object: one user's sync hub (stream, to-device inbox, account data, keys). One instance
// per user (`env.USERS.idFromName(userId)`), so every per-user write is serial by construction.
//
// Storage (SQLite, `ctx.storage.sql`), created in the constructor:
//   stream        the user's stream position counter. Every write that a later /sync must report takes
//                 the next position, so "what changed since position N" is one indexed query per table.
//   account_data  global (room_id '') and per-room account data, each row stamped with the position of
//                 its last write.
//   push_rules    the user's customisation of the default push rules (protocol/push-rules.ts), one row,
//                 stamped like account data: a change shows up in /sync as the `m.push_rules` event.
//   filters       uploaded filters (POST /user/{userId}/filter); IDs are decimal integers.
//   e2e_*, device_list_changes, to_device_*, backup_*: end-to-end encryption, created and owned by the
//                 modules in durable-objects/user/ (encryption.ts bundles them).
//
// A write is acknowledged when the RPC returns; a DO's SQLite writes are committed before its output gate
// lets the reply out (DESIGN.md: "A DO acknowledges a write only after its storage has committed it").
import { DurableObject } from "cloudflare:workers";
import { canonicalJson } from "../protocol/canonical-json.js";
import { MatrixError } from "../protocol/errors.js";
import { isJsonObject, type JsonObject, type JsonPrimitive } from "../protocol/json.js";
import {
  deleteRule,
  effectiveRuleset,
  emptyStoredPushRules,
  putRule,
  setActions,
  copyRoomRules,
  setEnabled,
  type PushRuleKind,
  type Ruleset,
  type StoredPushRules,
} from "../protocol/push-rules.js";
import type { Env } from "../worker/env.js";
import type { DeviceListChangeKind, DeviceListChanges } from "./user/device-lists.js";
import {
  FederatedDeviceLists,
  type DeviceListUpdate,
  type FederatedCrossSigning,
  type FederatedDevice,
  type OwnDeviceListChanges,
  type RemoteUpdateVerdict,
} from "./user/federated-device-list.js";
import type { CrossSigningKeys, KeyUpload, KeyUploadResult, SigningState, StoredSignature, UserKeys } from "./user/e2e-keys.js";
import { UserEncryption } from "./user/encryption.js";
import type { BackupKeyUpload, BackupKeysUpdate, BackupVersionInfo, StoredBackupKey } from "./user/key-backup.js";
import { outcome, type Outcome } from "./user/outcome.js";
import type { ToDeviceBatch } from "./user/to-device.js";
import type { DeliveredRoomEventNotification, ReceiptUpdate, RoomEphemeralNotification, RoomEventNotification } from "./notifications.js";
import type { PushedSyncPart } from "./room/pushed-sync-part.js";
import { SyncHub, type PresenceEvent, type SyncPlan, type SyncRequest } from "./user/sync.js";
import { AlarmClock } from "./user/alarm-clock.js";
import { PushDelivery, type PusherDeliveryState } from "./user/push-delivery.js";
import { SlidingSync, type SlidingPlan, type SlidingSyncRequest } from "./user/sliding-sync.js";
import type { PresenceState } from "./user/sync-stream.js";
import { INBOX_SCHEMA } from "./user/sync-stream.js";

/** An account data event's content. Typed loosely on purpose: a recursive JSON type makes the RPC stub
 * types of this class too deep for TypeScript. */
export type AccountDataContent = { [key: string]: JsonPrimitive | object };

/** Account data that changed after a stream position (what /sync puts in `account_data`). */
export interface AccountDataDelta {
  /** The stream position this delta is complete up to (the next `since`). */
  position: number;
  /** Global account data by type, including `m.push_rules` when the push rules changed. */
  global: Record<string, AccountDataContent>;
  /** Room account data by room ID, then by type. */
  rooms: Record<string, Record<string, AccountDataContent>>;
}

/** One change of the push rule API (PUT/DELETE /pushrules/global/{kind}/{ruleId}[/enabled|/actions]).
 * Bodies travel as JSON text: the DO parses and validates them with protocol/push-rules.ts. */
export type PushRuleChange =
  | { op: "put"; kind: PushRuleKind; ruleId: string; body: string; before?: string; after?: string }
  | { op: "delete"; kind: PushRuleKind; ruleId: string }
  | { op: "enabled"; kind: PushRuleKind; ruleId: string; enabled: boolean }
  | { op: "actions"; kind: PushRuleKind; ruleId: string; actions: string }
  /** The user follows a room upgrade: their rules about `from` are copied for `to`. */
  | { op: "copyRoom"; from: string; to: string };

function applyPushRuleChange(stored: StoredPushRules, change: PushRuleChange): StoredPushRules {
  switch (change.op) {
    case "put":
      return putRule(stored, change.kind, change.ruleId, JSON.parse(change.body) as JsonObject, change.before, change.after);
    case "delete":
      return deleteRule(stored, change.kind, change.ruleId);
    case "enabled":
      return setEnabled(stored, change.kind, change.ruleId, change.enabled);
    case "actions":
      return setActions(stored, change.kind, change.ruleId, JSON.parse(change.actions) as unknown);
    case "copyRoom":
      return copyRoomRules(stored, change.from, change.to);
  }
}

/** The content of the `m.push_rules` account data event (spec: "Push Rules: Events"): `{global}`. */
export function pushRulesAccountData(stored: StoredPushRules, userId: string): { global: Ruleset } {
  // Localparts cannot contain ':' (spec: Appendices, "User Identifiers").
  const localpart = userId.slice(1, userId.indexOf(":") < 0 ? undefined : userId.indexOf(":"));
  return { global: effectiveRuleset(stored, userId, localpart) };
}

/** `room_id` of global account data rows (room IDs always start with `!`, so '' cannot clash). */
const GLOBAL = "";

export class UserDurableObject extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    ctx.blockConcurrencyWhile(async () => {
      // Idempotent schema. A later change to an existing table needs an explicit upgrade step here.
      this.sql.exec(`
        CREATE TABLE IF NOT EXISTS stream (
          id INTEGER PRIMARY KEY CHECK (id = 1),
          position INTEGER NOT NULL
        );
        INSERT OR IGNORE INTO stream (id, position) VALUES (1, 0);
        CREATE TABLE IF NOT EXISTS account_data (
          room_id TEXT NOT NULL,
          type TEXT NOT NULL,
          content TEXT NOT NULL,
          stream_position INTEGER NOT NULL,
          PRIMARY KEY (room_id, type)
        );
        CREATE INDEX IF NOT EXISTS account_data_by_position ON account_data (stream_position);
        CREATE TABLE IF NOT EXISTS push_rules (
          id INTEGER PRIMARY KEY CHECK (id = 1),
          customisation TEXT NOT NULL,
          stream_position INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS filters (
          filter_id INTEGER PRIMARY KEY AUTOINCREMENT,
          filter_json TEXT NOT NULL UNIQUE
        );
      `);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Stream positions.

  /** The position of the user's latest write (0 before any). */
  streamPosition(): number {
    return this.sql.exec<{ position: number }>("SELECT position FROM stream WHERE id = 1").one().position;
  }

  /** Takes the next stream position. Call inside the same synchronous write as the row it stamps. */
  private nextStreamPosition(): number {
    const position = this.sql.exec<{ position: number }>("UPDATE stream SET position = position + 1 WHERE id = 1 RETURNING position").one()
      .position;
    // Long-polls waiting in /sync (user/sync.ts) run once this synchronous write has finished.
    this.syncHubInstance?.wake();
    return position;
  }

  // -------------------------------------------------------------------------------------------
  // Account data (spec: Client-Server API, "Client Config"). The worker refuses the server-managed
  // types (`m.fully_read`, `m.push_rules`) on the client API; server code (read markers) writes
  // `m.fully_read` through `setAccountData` directly.

  /** The content (JSON text) of one account data type, or null if unset. `roomId` null: global account
   * data. JSON text, not an object: the worker answers it as is, and RPC need not clone a deep value. */
  getAccountData(roomId: string | null, type: string): string | null {
    const row = this.sql
      .exec<{ content: string }>("SELECT content FROM account_data WHERE room_id = ? AND type = ?", roomId ?? GLOBAL, type)
      .toArray()[0];
    return row ? row.content : null;
  }

  /** Sets one account data type; returns the stream position of the write. */
  setAccountData(roomId: string | null, type: string, content: JsonObject): number {
    return this.ctx.storage.transactionSync(() => {
      const position = this.nextStreamPosition();
      this.sql.exec(
        `INSERT INTO account_data (room_id, type, content, stream_position) VALUES (?, ?, ?, ?)
         ON CONFLICT (room_id, type) DO UPDATE SET content = excluded.content, stream_position = excluded.stream_position`,
        roomId ?? GLOBAL,
        type,
        JSON.stringify(content),
        position,
      );
      return position;
    });
  }

  /**
   * Sets (content) or removes (null) one room tag (spec: "Room Tagging"): the tags are the room's `m.tag`
   * account data, `{"tags": {tag: {order?}}}`, read and written synchronously (no await between: two tag
   * requests at once cannot lose each other's change). Returns the stream position of the write.
   */
  setRoomTag(roomId: string, tag: string, content: JsonObject | null): number {
    const stored = this.getAccountData(roomId, "m.tag");
    const parsed: unknown = stored === null ? null : JSON.parse(stored);
    const tags: JsonObject = isJsonObject(parsed) && isJsonObject(parsed.tags) ? { ...parsed.tags } : {};
    if (content === null) delete tags[tag];
    else tags[tag] = content;
    return this.setAccountData(roomId, "m.tag", { tags });
  }

  /**
   * Account data written after stream position `since` (0: all of it), for /sync. Each type appears
   * once with its latest content. With `userId` (the DO's own user), the effective push rules are
   * included as global `m.push_rules` when they changed after `since`, and always when `since` is 0
   * (clients need the defaults on an initial sync).
   */
  accountDataSince(since: number, userId?: string): AccountDataDelta {
    const position = this.streamPosition();
    const delta: AccountDataDelta = { position, global: {}, rooms: {} };
    const rows = this.sql.exec<{ room_id: string; type: string; content: string }>(
      "SELECT room_id, type, content FROM account_data WHERE stream_position > ? ORDER BY stream_position",
      since,
    );
    for (const row of rows) {
      const content = JSON.parse(row.content) as AccountDataContent;
      if (row.room_id === GLOBAL) delta.global[row.type] = content;
      else (delta.rooms[row.room_id] ??= {})[row.type] = content;
    }
    if (userId !== undefined) {
      const row = this.pushRulesRow();
      if (since === 0 || (row && row.stream_position > since)) {
        delta.global["m.push_rules"] = pushRulesAccountData(this.storedPushRules(), userId);
      }
    }
    return delta;
  }

  // -------------------------------------------------------------------------------------------
  // Push rules (spec: Client-Server API, "Push Rules"). Only the user's customisation is stored; the
  // default rules come from protocol/push-rules.ts, so a server upgrade that changes them reaches
  // every user without a data migration.

  private pushRulesRow(): { customisation: string; stream_position: number } | undefined {
    // Read on every pushed event (the push rules run on it): kept in memory until changePushRules writes.
    if (this.pushRulesRowCache === undefined) {
      this.pushRulesRowCache = {
        row: this.sql
          .exec<{ customisation: string; stream_position: number }>("SELECT customisation, stream_position FROM push_rules WHERE id = 1")
          .toArray()[0],
      };
    }
    return this.pushRulesRowCache.row;
  }
  private pushRulesRowCache: { row: { customisation: string; stream_position: number } | undefined } | undefined;

  private storedPushRules(): StoredPushRules {
    const row = this.pushRulesRow();
    return row ? (JSON.parse(row.customisation) as StoredPushRules) : emptyStoredPushRules();
  }

  /** The user's push rule customisation as JSON text (`{}`-like when never changed). The worker turns
   * it into the effective ruleset with protocol/push-rules.ts `effectiveRuleset`. */
  getPushRules(): string {
    return this.pushRulesRow()?.customisation ?? JSON.stringify(emptyStoredPushRules());
  }

  /**
   * Applies one push rule API change (read, change, write in one synchronous step, so concurrent
   * requests cannot lose each other's changes). Returns the stream position of the write, or the
   * Matrix error of protocol/push-rules.ts (unknown rule, bad body, bad before/after) as a value:
   * these are ordinary client errors, not exceptions worth logging on the DO side.
   */
  changePushRules(change: PushRuleChange): { position: number } | { error: { status: number; errcode: string; error: string } } {
    try {
      return this.ctx.storage.transactionSync(() => {
        const next = applyPushRuleChange(this.storedPushRules(), change);
        const position = this.nextStreamPosition();
        this.sql.exec(
          `INSERT INTO push_rules (id, customisation, stream_position) VALUES (1, ?, ?)
           ON CONFLICT (id) DO UPDATE SET customisation = excluded.customisation, stream_position = excluded.stream_position`,
          JSON.stringify(next),
          position,
        );
        return { position };
      });
    } catch (e) {
      if (e instanceof MatrixError) return { error: { status: e.status, errcode: e.errcode, error: e.message } };
      throw e;
    } finally {
      // Read again from storage (committed or rolled back alike).
      this.pushRulesRowCache = undefined;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Filters (spec: Client-Server API, "Filtering"). The caller validates (protocol/filter.ts).

  /** Stores a filter and returns its ID. Uploading the same filter again returns the same ID (clients
   * upload their filter on every start; this keeps the table from growing). */
  createFilter(filter: JsonObject): string {
    const json = stableJson(filter);
    const existing = this.sql.exec<{ filter_id: number }>("SELECT filter_id FROM filters WHERE filter_json = ?", json).toArray()[0];
    if (existing) return String(existing.filter_id);
    const row = this.sql.exec<{ filter_id: number }>("INSERT INTO filters (filter_json) VALUES (?) RETURNING filter_id", json).one();
    return String(row.filter_id);
  }

  /** A stored filter (JSON text), or null if there is no filter with that ID. */
  getFilter(filterId: string): string | null {
    if (!/^[0-9]{1,15}$/.test(filterId)) return null;
    const row = this.sql
      .exec<{ filter_json: string }>("SELECT filter_json FROM filters WHERE filter_id = ?", Number(filterId))
      .toArray()[0];
    return row ? row.filter_json : null;
  }

  // -------------------------------------------------------------------------------------------
  // End-to-end encryption: keys, device list changes, to-device inbox, key backup. The storage and rules
  // live in durable-objects/user/ (encryption.ts and the modules it bundles); these methods only delegate.
  // Methods that can fail with a client error answer an `Outcome` (durable-objects/user/outcome.ts).
  // `userId` is this DO's own user (the DO cannot recover it from its ID).

  private encryptionModules?: UserEncryption;
  private get encryption(): UserEncryption {
    return (this.encryptionModules ??= new UserEncryption(this.ctx.storage, {
      next: () => this.nextStreamPosition(),
      current: () => this.streamPosition(),
    }));
  }

  /** POST /keys/upload for one device. */
  uploadKeys(userId: string, deviceId: string, upload: KeyUpload): Outcome<KeyUploadResult> {
    return outcome(() => this.encryption.keys.upload(userId, deviceId, upload));
  }
  /** POST /keys/query: this user's keys as `requesterUserId` sees them (`deviceIds` null: all). */
  queryKeys(userId: string, deviceIds: string[] | null, requesterUserId: string): UserKeys {
    return this.encryption.keys.query(userId, deviceIds, requesterUserId);
  }
  /** POST /keys/claim: `deviceId → algorithm` to `deviceId → {keyId: key JSON}`; each key at most once. */
  claimKeys(request: Record<string, string>): Record<string, Record<string, string>> {
    return this.encryption.keys.claim(request);
  }
  /** For /sync `device_one_time_keys_count`. */
  oneTimeKeyCounts(deviceId: string): Record<string, number> {
    return this.encryption.keys.oneTimeKeyCounts(deviceId);
  }
  /** For /sync `device_unused_fallback_key_types`. */
  unusedFallbackKeyTypes(deviceId: string): string[] {
    return this.encryption.keys.unusedFallbackKeyTypes(deviceId);
  }
  /** MSC3202 (application service transactions, appservice/key-counts.ts): per device, the unclaimed one-time
   * keys by algorithm (only algorithms that have keys, as Synapse counts them for services) and the unused
   * fallback key algorithms. */
  appserviceKeyCounts(deviceIds: string[]): Record<string, { oneTimeKeys: Record<string, number>; unusedFallbackKeyTypes: string[] }> {
    const out: Record<string, { oneTimeKeys: Record<string, number>; unusedFallbackKeyTypes: string[] }> = {};
    for (const deviceId of deviceIds) {
      const oneTimeKeys = Object.fromEntries(Object.entries(this.encryption.keys.oneTimeKeyCounts(deviceId)).filter(([, n]) => n > 0));
      out[deviceId] = { oneTimeKeys, unusedFallbackKeyTypes: this.encryption.keys.unusedFallbackKeyTypes(deviceId) };
    }
    return out;
  }
  /** Cross-signing keys as uploaded. */
  crossSigningKeys(): CrossSigningKeys {
    return this.encryption.keys.crossSigningKeys();
  }
  /** Cross-signing and device keys as uploaded, for checking signatures. */
  keySigningState(): SigningState {
    return this.encryption.keys.signingState();
  }
  /** POST /keys/device_signing/upload (after the worker's checks); fails if the master key is no longer
   * `expectedMaster`. */
  setCrossSigningKeys(userId: string, keys: CrossSigningKeys, expectedMaster: string | null): Outcome<boolean> {
    return outcome(() => this.encryption.keys.setCrossSigningKeys(userId, keys, expectedMaster));
  }
  /** POST /keys/signatures/upload (signatures already verified by the worker). */
  addKeySignatures(userId: string, signatures: StoredSignature[]): void {
    this.encryption.keys.addSignatures(userId, signatures);
  }
  /** Forgets deleted devices' keys and to-device messages (`deviceIds` null: all but `keepDeviceId`). */
  deleteDeviceKeys(userId: string, deviceIds: string[] | null, keepDeviceId?: string): boolean {
    return this.encryption.deleteDevices(userId, deviceIds, keepDeviceId);
  }

  /** Records that `userId`'s device list changed (or, `left`, that this user stopped sharing encrypted
   * rooms with them) at the next stream position, which it returns. */
  recordDeviceListChange(userId: string, kind: DeviceListChangeKind = "changed"): number {
    return this.ctx.storage.transactionSync(() => this.encryption.deviceLists.record(userId, kind));
  }
  /** /sync `device_lists` and /keys/changes: users whose latest change is in (since, upto]. */
  deviceListChanges(since: number, upto?: number): DeviceListChanges {
    return this.encryption.deviceLists.since(since, upto);
  }

  // Device lists over federation (durable-objects/user/federated-device-list.ts). For a local user: the
  // feed of m.device_list_update EDUs; for a remote user (this DO named by their ID): our copy of their
  // list and the local users watching it.
  private federatedLists?: FederatedDeviceLists;
  private get federatedDeviceLists(): FederatedDeviceLists {
    return (this.federatedLists ??= new FederatedDeviceLists(this.ctx.storage));
  }
  /** GET /user/devices: the stream_id of the last update sent to other servers. */
  ownDeviceListStreamId(): number {
    return this.federatedDeviceLists.ownStreamId();
  }
  /** A local user's devices changed: the updates other servers must get (see FederatedDeviceLists.diffOwn). */
  diffOwnDeviceList(userId: string, current: FederatedDevice[], crossSigning: FederatedCrossSigning): OwnDeviceListChanges {
    return this.federatedDeviceLists.diffOwn(userId, current, crossSigning);
  }
  /** A local user asked for this remote user's keys (or shares `roomId` with them). With `updatedSince`:
   * returns whether this user's server sent a device list update since then. */
  watchRemoteDeviceList(localUserId: string, roomId?: string, updatedSince?: number): boolean {
    this.federatedDeviceLists.watch(localUserId, roomId);
    return updatedSince !== undefined && this.federatedDeviceLists.updatedSince(updatedSince);
  }
  /** Rooms where this remote user was seen joined with a local user (anchor candidates for the copy). */
  remoteSharedRooms(): string[] {
    return this.federatedDeviceLists.sharedRooms();
  }
  /** A candidate room is no longer shared with this remote user. */
  forgetRemoteSharedRoom(roomId: string): void {
    this.federatedDeviceLists.forgetSharedRoom(roomId);
  }
  /** Our copy of this remote user's list is in doubt: the next query fetches it again. */
  invalidateRemoteDeviceList(): void {
    this.federatedDeviceLists.invalidateRemote();
  }
  /** Inbound m.device_list_update EDUs of this remote user, in order; with the local users to tell. */
  applyRemoteDeviceListUpdates(updates: DeviceListUpdate[]): { verdicts: RemoteUpdateVerdict[]; watchers: string[] } {
    return { verdicts: this.federatedDeviceLists.applyRemote(updates), watchers: this.federatedDeviceLists.watchers() };
  }
  /** A resync of this remote user's list (GET /user/devices); returns the local users to tell. */
  replaceRemoteDeviceList(
    userId: string,
    streamId: number,
    devices: FederatedDevice[],
    crossSigning: FederatedCrossSigning,
    anchor: { roomId: string; position: number } | null = null,
  ): { kept: boolean; changed: boolean; watchers: string[] } {
    const { kept, changed } = this.federatedDeviceLists.replaceRemote(userId, streamId, devices, crossSigning, anchor);
    return { kept, changed, watchers: this.federatedDeviceLists.watchers() };
  }
  /** An inbound m.signing_key_update of this remote user; returns whether it applied and who to tell. */
  applyRemoteSigningKeys(crossSigning: FederatedCrossSigning): { applied: boolean; watchers: string[] } {
    return { applied: this.federatedDeviceLists.applyRemoteSigningKeys(crossSigning), watchers: this.federatedDeviceLists.watchers() };
  }
  // OpenID tokens (spec: Client-Server API, "OpenID"; Server-Server API, "OpenID"): the SHA-256 of each
  // token this user requested, until it expires. The token itself names the user, so a look-up needs no
  // global index (worker/client/openid.ts).
  private openIdReady = false;
  private openIdTable(): void {
    if (this.openIdReady) return;
    this.sql.exec("CREATE TABLE IF NOT EXISTS openid_tokens (token_hash TEXT PRIMARY KEY, expires_ts INTEGER NOT NULL)");
    this.openIdReady = true;
  }
  /** Stores a new token's hash (and forgets expired ones). */
  addOpenIdToken(tokenHash: string, expiresTs: number, now = Date.now()): void {
    this.openIdTable();
    this.sql.exec("DELETE FROM openid_tokens WHERE expires_ts <= ?", now);
    this.sql.exec("INSERT OR REPLACE INTO openid_tokens (token_hash, expires_ts) VALUES (?, ?)", tokenHash, expiresTs);
  }
  /** Whether a token with this hash was issued and has not expired. */
  openIdTokenValid(tokenHash: string, now = Date.now()): boolean {
    this.openIdTable();
    return this.sql.exec("SELECT 1 FROM openid_tokens WHERE token_hash = ? AND expires_ts > ?", tokenHash, now).toArray().length > 0;
  }

  /** Local users registered for this remote user's updates (device lists, presence). */
  remoteWatchers(): string[] {
    return this.federatedDeviceLists.watchers();
  }
  /** Our copy of this remote user's list (null: never fetched). */
  remoteDeviceList(): { streamId: number; devices: FederatedDevice[]; crossSigning: FederatedCrossSigning; anchor: { roomId: string; position: number } | null } | null {
    return this.federatedDeviceLists.remoteList();
  }

  /** PUT /sendToDevice: puts one message into devices' inboxes (see ToDeviceInbox.deliver). */
  deliverToDevice(messageId: string, sender: string, type: string, deviceIds: string[], contents: string[]): number | null {
    return this.encryption.toDevice.deliver(messageId, sender, type, deviceIds, contents);
  }
  /** An `m.direct_to_device` EDU's message for this user: delivered once per (origin, message ID). */
  deliverToDeviceFromFederation(origin: string, messageId: string, sender: string, type: string, deviceIds: string[], contents: string[]): number | null {
    return this.encryption.toDevice.deliverFromFederation(origin, messageId, sender, type, deviceIds, contents);
  }
  /** For /sync `to_device`: at most `limit` messages of `deviceId` after stream position `since`. */
  toDeviceSince(deviceId: string, since: number, limit: number): ToDeviceBatch {
    return this.encryption.toDevice.since(deviceId, since, limit);
  }
  /** For /sync: drops `deviceId`'s messages up to `upto`, which the device has received. */
  ackToDevice(deviceId: string, upto: number): number {
    return this.encryption.toDevice.ack(deviceId, upto);
  }
  hasToDeviceTxn(deviceId: string, txnId: string): boolean {
    return this.encryption.toDevice.hasTxn(deviceId, txnId);
  }
  recordToDeviceTxn(deviceId: string, txnId: string): void {
    this.encryption.toDevice.recordTxn(deviceId, txnId);
  }

  /** /room_keys/version and /room_keys/keys (see KeyBackupStore). */
  createKeyBackupVersion(algorithm: string, authData: string): string {
    return this.encryption.backup.createVersion(algorithm, authData);
  }
  getKeyBackupVersion(version?: string): BackupVersionInfo | null {
    return this.encryption.backup.getVersion(version);
  }
  updateKeyBackupVersion(version: string, algorithm: string, authData: string): Outcome<null> {
    return outcome(() => (this.encryption.backup.updateVersion(version, algorithm, authData), null));
  }
  deleteKeyBackupVersion(version: string): Outcome<null> {
    return outcome(() => (this.encryption.backup.deleteVersion(version), null));
  }
  putBackupKeys(version: string, keys: BackupKeyUpload[]): Outcome<BackupKeysUpdate> {
    return outcome(() => this.encryption.backup.putKeys(version, keys));
  }
  getBackupKeys(version: string, roomId?: string, sessionId?: string): Outcome<StoredBackupKey[]> {
    return outcome(() => this.encryption.backup.getKeys(version, roomId, sessionId));
  }
  deleteBackupKeys(version: string, roomId?: string, sessionId?: string): Outcome<BackupKeysUpdate> {
    return outcome(() => this.encryption.backup.deleteKeys(version, roomId, sessionId));
  }

  // -------------------------------------------------------------------------------------------
  // Room events (durable-objects/notifications.ts). A Room DO calls this after committing an event that
  // concerns the user; delivery is at least once, so (room_id, stream_ordering) deduplicates. Each new
  // row takes the next inbox position; sync builds on this table.

  private roomEventsInboxReady = false;

  /** Records a room event notification; returns its inbox position (the existing one for a repeat). */
  onRoomEvent(n: RoomEventNotification | DeliveredRoomEventNotification): number {
    return this.onRoomEvents([n])[0]!;
  }

  /**
   * Records a batch of one room's notifications (a Room DO sends all it has pending for the user in one
   * call, in commit order) in one transaction; returns their inbox positions (the existing one for a
   * repeat). The long-polls wake once, after the whole batch.
   */
  onRoomEvents(batch: (RoomEventNotification | DeliveredRoomEventNotification)[], part?: PushedSyncPart): number[] {
    if (!this.roomEventsInboxReady) {
      this.sql.exec(INBOX_SCHEMA);
      this.roomEventsInboxReady = true;
    }
    const positions = this.ctx.storage.transactionSync(() => batch.map((n) => this.recordRoomEvent(n)));
    // Before the woken long-polls run (they plan after this call returns): the room's part of their response.
    if (part) this.syncHub.rememberPushedPart(part);
    // A user with pushers listens to a room they just joined at once (user/push-delivery.ts).
    const me = this.syncHubInstance?.userId();
    if (me !== undefined && batch.some((n) => n.type === "m.room.member" && n.stateKey === me)) this.pushDelivery.onOwnMembership(me);
    return positions;
  }

  private recordRoomEvent(n: RoomEventNotification | DeliveredRoomEventNotification): number {
    const existing = this.sql
      .exec<{ position: number }>("SELECT position FROM room_events_inbox WHERE room_id = ? AND stream_ordering = ?", n.roomId, n.streamOrdering)
      .toArray()[0];
    if (existing) return existing.position;
    // The inbox position is a position of the user's one stream (sync tokens name those), taken in the
    // same transaction as the row and the sync bookkeeping (user/sync.ts).
    const position = this.nextStreamPosition();
    this.sql.exec(
      `INSERT INTO room_events_inbox (position, room_id, stream_ordering, event_id, type, state_key, sender, membership)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      position,
      n.roomId,
      n.streamOrdering,
      n.eventId,
      n.type,
      n.stateKey ?? null,
      n.sender,
      n.membership ?? null,
    );
    this.syncHub.onRoomEvent(n, position);
    this.slidingSync.onRoomEvent(n, position);
    return position;
  }

  // -------------------------------------------------------------------------------------------
  // Sync (durable-objects/user/sync.ts owns the logic and its tables; these methods only delegate).

  private syncHubInstance?: SyncHub;
  private pushRulesetCache?: { key: string; ruleset: Ruleset };
  private get syncHub(): SyncHub {
    return (this.syncHubInstance ??= new SyncHub(
      this.ctx,
      this.env,
      { next: () => this.nextStreamPosition(), current: () => this.streamPosition() },
      {
        recordRoomEvent: (n) => this.recordRoomEvent(n),
        accountDataSince: (since, userId) => this.accountDataSince(since, userId),
        ignoredUsers: () => {
          const text = this.getAccountData(null, "m.ignored_user_list");
          const content: unknown = text === null ? null : JSON.parse(text);
          const users = isJsonObject(content) && isJsonObject(content.ignored_users) ? Object.keys(content.ignored_users) : [];
          return new Set(users);
        },
        pushRuleset: (userId) => {
          const key = `${userId}\n${this.getPushRules()}`;
          if (this.pushRulesetCache?.key !== key) this.pushRulesetCache = { key, ruleset: pushRulesAccountData(this.storedPushRules(), userId).global };
          return this.pushRulesetCache.ruleset;
        },
        toDeviceSince: (deviceId, since, limit) => this.encryption.toDevice.since(deviceId, since, limit),
        ackToDevice: (deviceId, upto) => void this.encryption.toDevice.ack(deviceId, upto),
        deviceListsSince: (since, upto) => this.encryption.deviceLists.since(since, upto),
        recordDeviceListChange: (userId, kind) => this.encryption.deviceLists.record(userId, kind),
        oneTimeKeyCounts: (deviceId) => this.encryption.keys.oneTimeKeyCounts(deviceId),
        unusedFallbackKeyTypes: (deviceId) => this.encryption.keys.unusedFallbackKeyTypes(deviceId),
        onNotify: (n, evaluation) => {
          const me = n.recipient ?? this.syncHubInstance?.userId();
          if (me !== undefined) this.pushDelivery.enqueue(n, evaluation, me);
        },
      },
      this.alarmClock,
    ));
  }

  // -------------------------------------------------------------------------------------------
  // Push delivery to the user's http pushers (durable-objects/user/push-delivery.ts).

  private alarmClockInstance?: AlarmClock;
  private get alarmClock(): AlarmClock {
    return (this.alarmClockInstance ??= new AlarmClock(this.ctx.storage));
  }
  private pushDeliveryInstance?: PushDelivery;
  private get pushDelivery(): PushDelivery {
    return (this.pushDeliveryInstance ??= new PushDelivery(this.ctx, this.env, this.alarmClock, {
      userId: () => this.syncHub.userId(),
      badge: () => this.syncHub.badgeCount(this.env.PUSH_GROUP_UNREAD_COUNT_BY_ROOM !== "false"),
      keepListening: (userId) => this.syncHub.ensureListening(userId),
    }));
  }
  /** The user's pushers changed in D1 (worker/client/pushers.ts, worker/accounts.ts): delivery rereads them. */
  async pushersChanged(userId: string): Promise<void> {
    this.syncHub.learnUserId(userId);
    await this.pushDelivery.refresh(userId);
  }
  /** Push delivery state (tests, diagnostics). */
  pushDeliveryState(): { pushers: PusherDeliveryState[]; queued: number } {
    return this.pushDelivery.state();
  }

  /** GET /sync: the plan of the response, waiting (long-poll) when there is nothing new. */
  sync(request: SyncRequest): Promise<SyncPlan> {
    return this.syncHub.sync(request);
  }
  /** The worker built the response of a /sync whose plan said `backgroundAfterResponse` (user/sync.ts
   * ResponseGate): the sync's background work starts. */
  responseBuilt(): void {
    this.syncHub.responseBuilt();
  }
  /** Typing and receipts of a room the user is joined to (room/ephemeral.ts fans them out). */
  onRoomEphemeral(n: RoomEphemeralNotification): void {
    this.syncHub.onRoomEphemeral(n);
  }
  /** The user's own read receipt at room stream ordering `streamOrdering`: clears unread counts. */
  onOwnReceipt(roomId: string, receipt: ReceiptUpdate, streamOrdering: number): void {
    this.syncHub.onOwnReceipt(roomId, receipt, streamOrdering);
    // The gateways hear of a lower unread count (user/push-delivery.ts `onReceipt`).
    this.pushDelivery.onReceipt();
  }
  /** PUT /presence/{userId}/status; returns the new state if others should be told, else null. */
  setPresence(userId: string, presence: PresenceState["presence"], statusMsg?: string | null): PresenceState | null {
    if (!this.syncHub.setOwnPresence(userId, presence, statusMsg)) return null;
    const row = this.syncHub.store.presenceOf(userId)!;
    const state: PresenceState = { presence: row.presence, lastActiveTs: row.lastActiveTs, currentlyActive: row.currentlyActive };
    if (row.statusMsg !== undefined) state.statusMsg = row.statusMsg;
    return state;
  }
  /** Presence of `userId` as this user knows it (their own, or a room-mate's), or null. */
  presence(userId: string): PresenceEvent | null {
    return this.syncHub.presenceOf(userId);
  }
  /** A room-mate's presence changed. */
  onPresence(userId: string, state: PresenceState): void {
    this.syncHub.onPresence(userId, state);
  }
  /** The user's join `joinEventId` is in a room held with partial state: eager syncs leave the room out
   * until `roomFullState` (user/partial-state-rooms.ts). */
  roomPartialState(roomId: string, joinEventId: string): void {
    this.ctx.storage.transactionSync(() => this.syncHub.partialStateRooms.joinedPartial(roomId, joinEventId));
  }
  /** The resync of a room the user joined with partial state completed: the next eager sync shows it. */
  async roomFullState(roomId: string, joinEventId: string, joinedTs?: number, memberCount?: number): Promise<void> {
    const position = this.ctx.storage.transactionSync(() => this.syncHub.partialStateRooms.becameFull(roomId, joinEventId));
    if (position !== null) await this.syncHub.roomBecameWhole(roomId, joinedTs ?? Date.now(), memberCount);
  }
  /** POST /rooms/{roomId}/forget (after the Room DO accepted it): sync stops listing the left room. */
  forgetRoom(roomId: string): boolean {
    return this.syncHub.store.forgetRoom(roomId);
  }
  /** Rooms the user is joined to, as far as their notifications tell. */
  joinedRooms(): string[] {
    return this.syncHub.store.joinedRooms();
  }
  /** The room stream ordering a sync token position stands for in one room (/messages `from=s...`). */
  roomOrderingAt(roomId: string, position: number): number {
    return this.syncHub.store.roomOrderingAt(roomId, position);
  }
  /** Member events sent to a device while lazy-loading members (include_redundant_members false). */
  recordLazyMembers(deviceId: string, rooms: { roomId: string; members: Record<string, string>; reset: boolean }[]): void {
    this.syncHub.recordLazyMembers(deviceId, rooms);
  }
  // Simplified sliding sync (MSC4186; durable-objects/user/sliding-sync.ts), on the same stream and hub.
  private slidingSyncInstance?: SlidingSync;
  private get slidingSync(): SlidingSync {
    return (this.slidingSyncInstance ??= new SlidingSync(
      this.ctx,
      this.env,
      { next: () => this.nextStreamPosition(), current: () => this.streamPosition() },
      this.syncHub,
      {
        accountDataSince: (since, userId) => this.accountDataSince(since, userId),
        globalAccountData: (type) => {
          const text = this.getAccountData(null, type);
          return text === null ? null : (JSON.parse(text) as AccountDataContent);
        },
        roomAccountDataOfType: (type) => {
          const out = new Map<string, AccountDataContent>();
          for (const r of this.sql.exec<{ room_id: string; content: string }>("SELECT room_id, content FROM account_data WHERE type = ? AND room_id != ?", type, GLOBAL)) {
            out.set(r.room_id, JSON.parse(r.content) as AccountDataContent);
          }
          return out;
        },
        toDeviceSince: (deviceId, since, limit) => this.encryption.toDevice.since(deviceId, since, limit),
        ackToDevice: (deviceId, upto) => void this.encryption.toDevice.ack(deviceId, upto),
        deviceListsSince: (since, upto) => this.encryption.deviceLists.since(since, upto),
        oneTimeKeyCounts: (deviceId) => this.encryption.keys.oneTimeKeyCounts(deviceId),
        unusedFallbackKeyTypes: (deviceId) => this.encryption.keys.unusedFallbackKeyTypes(deviceId),
      },
    ));
  }

  /** POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync: the plan of the response, waiting
   * (long-poll) when there is nothing new; M_UNKNOWN_POS as a value. */
  slidingSyncPlan(request: SlidingSyncRequest): Promise<Outcome<SlidingPlan>> {
    return this.slidingSync.sync(request);
  }
  /** Sliding sync `$LAZY`: the members the rooms of a response sent (user/sliding-sync.ts). */
  slidingLazyMembers(deviceId: string, connId: string, pos: string, members: Record<string, string[]>): void {
    this.slidingSync.recordLazyMembers(deviceId, connId, pos, members);
  }
  /** Sliding sync connection positions stored for a device (tests). */
  slidingPositionCount(deviceId: string): number {
    return this.slidingSync.positionCount(deviceId);
  }

  /** Alarm (user/alarm-clock.ts): presence timeout of sync (user/sync.ts), push retries and keep-alive
   * (user/push-delivery.ts). */
  override async alarm(): Promise<void> {
    this.alarmClock.fired();
    await this.syncHub.alarm();
    await this.pushDelivery.alarm();
  }
  /** Long-polls waiting now (tests). */
  waitingSyncs(): number {
    return this.syncHubInstance?.waiting() ?? 0;
  }
}

/** Key-order-independent JSON, so equal filters deduplicate. Canonical JSON refuses floats; a filter
 * with a float in an unknown key is still a valid filter, so fall back to plain JSON for it. */
function stableJson(value: JsonObject): string {
  try {
    return canonicalJson(value);
  } catch {
    return JSON.stringify(value);
  }
}
