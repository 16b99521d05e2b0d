// D1 schema (drizzle-orm). D1 holds what is looked up across users and rooms: accounts, tokens,
// server keys, aliases and directories. Per-room and per-user data lives in Durable Objects.
// After editing, run `npm run db:generate` to write a migration into schema/migrations.
import { integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** This server's ed25519 signing keys. Exactly one row has `expired_ts` null: the current key. */
export const serverSigningKeys = sqliteTable("server_signing_keys", {
  keyId: text("key_id").primaryKey(),
  /** Synapse signing.key line: `ed25519 <version> <seed>`. */
  keyFile: text("key_file").notNull(),
  publicKey: text("public_key").notNull(),
  createdTs: integer("created_ts").notNull(),
  /** When the key stopped being used; it is then listed in `old_verify_keys`. */
  expiredTs: integer("expired_ts"),
});

/** Cache of other servers' verify keys (filled by federation). */
export const remoteServerKeys = sqliteTable(
  "remote_server_keys",
  {
    serverName: text("server_name").notNull(),
    keyId: text("key_id").notNull(),
    publicKey: text("public_key").notNull(),
    validUntilTs: integer("valid_until_ts").notNull(),
    expiredTs: integer("expired_ts"),
    fetchedTs: integer("fetched_ts").notNull(),
  },
  (t) => [primaryKey({ columns: [t.serverName, t.keyId] })],
);
