CREATE TABLE `federation_well_known` (
	`server_name` text PRIMARY KEY NOT NULL,
	`delegated_server` text,
	`expires_ts` integer NOT NULL,
	`failures` integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE `remote_server_key_documents` (
	`server_name` text PRIMARY KEY NOT NULL,
	`key_json` text,
	`valid_until_ts` integer,
	`fetched_ts` integer,
	`last_attempt_ts` integer NOT NULL
);
