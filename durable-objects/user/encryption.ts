// The end-to-end encryption part of the User DO in one place: device list log, keys, to-device inbox and
// key backup, over the DO's SQLite storage and stream counter. durable-objects/user.ts creates one
// `UserEncryption` and exposes thin RPC methods that delegate here.
import { DeviceListLog } from "./device-lists.js";
import { E2eKeyStore } from "./e2e-keys.js";
import { KeyBackupStore } from "./key-backup.js";
import type { UserStream } from "./stream.js";
import { ToDeviceInbox } from "./to-device.js";

export class UserEncryption {
  readonly deviceLists: DeviceListLog;
  readonly keys: E2eKeyStore;
  readonly toDevice: ToDeviceInbox;
  readonly backup: KeyBackupStore;

  constructor(
    private readonly storage: DurableObjectStorage,
    stream: UserStream,
  ) {
    this.deviceLists = new DeviceListLog(storage.sql, stream);
    this.keys = new E2eKeyStore(storage, this.deviceLists);
    this.toDevice = new ToDeviceInbox(storage, stream);
    this.backup = new KeyBackupStore(storage);
  }

  /**
   * Forgets deleted devices: their keys, signatures on and by them, their to-device inbox and transaction
   * IDs. `deviceIds` null: every device except `keepDeviceId`. Records a device list change of `userId`
   * when a deleted device had keys. Returns whether it did.
   */
  deleteDevices(userId: string, deviceIds: string[] | null, keepDeviceId?: string): boolean {
    return this.storage.transactionSync(() => {
      const ids =
        deviceIds ??
        [...new Set([...this.keys.deviceIdsWithKeys(), ...this.toDevice.deviceIds()])].filter((id) => id !== keepDeviceId);
      this.toDevice.deleteDevices(ids);
      return this.keys.deleteDevices(userId, ids);
    });
  }
}
