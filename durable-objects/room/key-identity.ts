// MSC4345 rooms (room versions with `eventFormat.serverKeyIdentity`) name members by server key
// (decision 12 of ../shared/proposals/README.md: `@alice:<server key>`), while this server's clients,
// accounts and User DOs know `@alice:<server name>`. The Room DO keeps the room's own (key-form) IDs
// inside and translates at its edges: a local user's ID on the way in (`inRoom`), and back to the
// account's ID where it addresses a User DO (`local`). In every other room both are the identity.
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

export class KeyIdentity {
  constructor(
    readonly serverName: string,
    /** This server's key (undefined until the room's DO loaded it: only MSC4345 rooms need it). */
    readonly serverKey: string | undefined,
    private readonly rules: RoomVersionRules | undefined,
    /** Other servers' keys whose domain this server verified (room/server-domains.ts). */
    private readonly verifiedDomainOf: (serverKey: string) => string | undefined = () => undefined,
  ) {}

  get active(): boolean {
    return this.rules?.eventFormat.serverKeyIdentity === true && this.serverKey !== undefined;
  }

  /** A local account's ID as this room names it (`@alice:server.name` -> `@alice:<key>`). */
  inRoom(userId: string): string {
    if (!this.active || !userId.startsWith("@") || serverNameOf(userId) !== this.serverName) return userId;
    return `${userId.slice(0, userId.indexOf(":"))}:${this.serverKey}`;
  }

  /** The account ID of a member of this server (`@alice:<key>` -> `@alice:server.name`); others as given. */
  local(userId: string): string {
    if (!this.active || serverKeyOfUser(userId) !== this.serverKey) return userId;
    return `${userId.slice(0, userId.indexOf(":"))}:${this.serverName}`;
  }

  /**
   * The verified domain of a sender's server key, for `unsigned.server_domain` (decision 12): this
   * server's own key is verified by construction; another server's once its domain's key/v3 document
   * listed the key (room/server-domains.ts). Otherwise none.
   */
  readonly serverDomainOf = (userId: string): string | undefined => {
    if (!this.active) return undefined;
    const key = serverKeyOfUser(userId);
    if (key === undefined) return undefined;
    return key === this.serverKey ? this.serverName : this.verifiedDomainOf(key);
  };

  /** Whether `userId` is one of this server's users, in either form. */
  isLocal(userId: string): boolean {
    if (!userId.startsWith("@")) return false;
    if (serverNameOf(userId) === this.serverName) return true;
    return this.active && serverKeyOfUser(userId) === this.serverKey;
  }
}
