CREATE TABLE `remote_server_keys` (
	`server_name` text NOT NULL,
	`key_id` text NOT NULL,
	`public_key` text NOT NULL,
	`valid_until_ts` integer NOT NULL,
	`expired_ts` integer,
	`fetched_ts` integer NOT NULL,
	PRIMARY KEY(`server_name`, `key_id`)
);
--> statement-breakpoint
CREATE TABLE `server_signing_keys` (
	`key_id` text PRIMARY KEY NOT NULL,
	`key_file` text NOT NULL,
	`public_key` text NOT NULL,
	`created_ts` integer NOT NULL,
	`expired_ts` integer
);
