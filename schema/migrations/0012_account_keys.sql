-- MSC4348 (portable accounts): each local account's account key, held by the server for now and
-- exportable by its owner (worker/account-keys.ts). `seed` is the ed25519 private seed (unpadded base64),
-- kept as this server's own signing key is (server_signing_keys).
CREATE TABLE `account_keys` (
	`user_id` text PRIMARY KEY NOT NULL,
	`account_key` text NOT NULL,
	`seed` text NOT NULL,
	`created_ts` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `account_keys_account_key_unique` ON `account_keys` (`account_key`);
