// MSC4345 rooms (room versions with `eventFormat.serverKeyIdentity`) name members by server key
// (decision 12 of ../shared/proposals/README.md: `@alice:<server key>`), while this server's clients,
// accounts and User DOs know `@alice:<server name>`. The Room DO keeps the room's own (key-form) IDs
// inside and translates at its edges: a local user's ID on the way in (`inRoom`), and back to the
// account's ID where it addresses a User DO (`local`). In every other room both are the identity.
// MSC4348 rooms (`eventFormat.accountKeyIdentity`) name every member `@<account key>`; a local account's
// key (D1 `account_keys`) is loaded into `LocalAccounts` before the Room DO translates its ID, and an
// account is this server's only while its membership names this server's key (it may have moved).
import { accountKeyOfUser, accountKeyUserId } from "../../protocol/accounts.js";
import { serverKeyFromPublicKey, serverKeyOfUser } from "../../protocol/participation.js";
import { serverNameOf } from "../../protocol/pdu.js";
import type { RoomVersionRules } from "../../protocol/room-versions.js";
import type { SigningKey } from "../../protocol/signing.js";

/**
 * This server's key in these rooms: its current signing key, written as a server key. Myelin's reading:
 * the proposal's long-lived server key is the signing key the server already has, so that
 * `/_matrix/key/v3/...` and `/_matrix/key/v2/server` publish the same key; rotating the signing key
 * makes a new identity in these rooms (the old key must be revoked there).
 */
export function ownServerKey(key: SigningKey): string {
  return serverKeyFromPublicKey(key.publicKey);
}

/** MSC4348: the account keys of this server's accounts that a room has met, both ways. */
export class LocalAccounts {
  private readonly byUser = new Map<string, { accountKey: string; key: SigningKey }>();
  private readonly byKey = new Map<string, string>();

  add(userId: string, accountKey: string, key: SigningKey): void {
    const before = this.byUser.get(userId);
    if (before) this.byKey.delete(before.accountKey);
    this.byUser.set(userId, { accountKey, key });
    this.byKey.set(accountKey, userId);
  }

  has(userId: string): boolean {
    return this.byUser.has(userId);
  }

  /** `@<account key>` of a local account, if loaded. */
  roomIdOf(userId: string): string | undefined {
    const entry = this.byUser.get(userId);
    return entry && accountKeyUserId(entry.accountKey);
  }

  /** The local account holding the key of `@<account key>`, if loaded. */
  accountOf(roomUserId: string): string | undefined {
    const key = accountKeyOfUser(roomUserId);
    return key === undefined ? undefined : this.byKey.get(key);
  }

  /** The signing key of `@<account key>` when a local account holds it. */
  signingKeyOf(roomUserId: string): SigningKey | undefined {
    const account = this.accountOf(roomUserId);
    return account === undefined ? undefined : this.byUser.get(account)?.key;
  }
}

export class KeyIdentity {
  constructor(
    readonly serverName: string,
    /** This server's key (undefined until the room's DO loaded it: only MSC4345 rooms need it). */
    readonly serverKey: string | undefined,
    private readonly rules: RoomVersionRules | undefined,
    /** Other servers' keys whose domain this server verified (room/server-domains.ts). */
    private readonly verifiedDomainOf: (serverKey: string) => string | undefined = () => undefined,
    /** MSC4348 rooms: the local accounts' keys, and the server key a member's membership names. */
    private readonly accounts: LocalAccounts = new LocalAccounts(),
    private readonly hostOf: (userId: string) => string | undefined = () => undefined,
  ) {}

  get active(): boolean {
    return this.rules?.eventFormat.serverKeyIdentity === true && this.serverKey !== undefined;
  }

  private get accountIds(): boolean {
    return this.active && this.rules?.eventFormat.accountKeyIdentity === true;
  }

  /** MSC4348: whether the account behind `@<account key>` is this server's: a local account holds the key
   * and the account's membership names this server (or names none yet: invited, or joining). */
  private hostedHere(roomUserId: string): boolean {
    if (this.accounts.accountOf(roomUserId) === undefined) return false;
    const host = this.hostOf(roomUserId);
    return host === undefined || host === this.serverKey;
  }

  /** A local account's ID as this room names it (`@alice:server.name` -> `@alice:<key>`, or in MSC4348
   * rooms `@<account key>` once the account's key is loaded). */
  inRoom(userId: string): string {
    if (!this.active || !userId.startsWith("@") || serverNameOf(userId) !== this.serverName) return userId;
    if (this.accountIds) return this.accounts.roomIdOf(userId) ?? userId;
    return `${userId.slice(0, userId.indexOf(":"))}:${this.serverKey}`;
  }

  /** The account ID of a member of this server (`@alice:<key>` -> `@alice:server.name`); others as given. */
  local(userId: string): string {
    if (this.accountIds) return this.hostedHere(userId) ? this.accounts.accountOf(userId)! : userId;
    if (!this.active || serverKeyOfUser(userId) !== this.serverKey) return userId;
    return `${userId.slice(0, userId.indexOf(":"))}:${this.serverName}`;
  }

  /** The server key a member speaks through: MSC4348 the one its membership names, else the server part. */
  private serverKeyOf(userId: string): string | undefined {
    return this.accountIds ? this.hostOf(userId) : serverKeyOfUser(userId);
  }

  /**
   * The verified domain of a sender's server key, for `unsigned.server_domain` (decision 12): this
   * server's own key is verified by construction; another server's once its domain's key/v3 document
   * listed the key (room/server-domains.ts). Otherwise none.
   */
  readonly serverDomainOf = (userId: string): string | undefined => {
    if (!this.active) return undefined;
    const key = this.serverKeyOf(userId);
    if (key === undefined) return undefined;
    return key === this.serverKey ? this.serverName : this.verifiedDomainOf(key);
  };

  /**
   * MSC4348: the account name for `unsigned.account` ("the account name only and not the account name
   * user ID"): the localpart of a local account hosted here. Other servers' account names would come from
   * the accounts query; they are not fetched yet, so their events carry none.
   */
  readonly accountNameOf = (userId: string): string | undefined => {
    if (!this.accountIds || !this.hostedHere(userId)) return undefined;
    const account = this.accounts.accountOf(userId)!;
    return account.slice(1, account.indexOf(":"));
  };

  /** Whether `userId` is one of this server's users, in either form. */
  isLocal(userId: string): boolean {
    if (!userId.startsWith("@")) return false;
    if (serverNameOf(userId) === this.serverName) return true;
    if (this.accountIds) return this.hostedHere(userId);
    return this.active && serverKeyOfUser(userId) === this.serverKey;
  }
}
