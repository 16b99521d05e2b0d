CREATE TABLE `access_tokens` (
	`token_hash` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`device_id` text NOT NULL,
	`created_ts` integer NOT NULL,
	`expires_ts` integer,
	`refresh_token_hash` text,
	`used` integer DEFAULT true NOT NULL
);
--> statement-breakpoint
CREATE INDEX `access_tokens_device` ON `access_tokens` (`user_id`,`device_id`);--> statement-breakpoint
CREATE INDEX `access_tokens_refresh` ON `access_tokens` (`refresh_token_hash`);--> statement-breakpoint
CREATE TABLE `devices` (
	`user_id` text NOT NULL,
	`device_id` text NOT NULL,
	`display_name` text,
	`created_ts` integer NOT NULL,
	`last_seen_ts` integer,
	`last_seen_ip` text,
	PRIMARY KEY(`user_id`, `device_id`)
);
--> statement-breakpoint
CREATE TABLE `rate_limits` (
	`key` text PRIMARY KEY NOT NULL,
	`level` real NOT NULL,
	`updated_ts` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `refresh_tokens` (
	`token_hash` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`device_id` text NOT NULL,
	`created_ts` integer NOT NULL,
	`next_token_hash` text
);
--> statement-breakpoint
CREATE INDEX `refresh_tokens_device` ON `refresh_tokens` (`user_id`,`device_id`);--> statement-breakpoint
CREATE INDEX `refresh_tokens_next` ON `refresh_tokens` (`next_token_hash`);--> statement-breakpoint
CREATE TABLE `registration_nonces` (
	`nonce` text PRIMARY KEY NOT NULL,
	`created_ts` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `registration_tokens` (
	`token` text PRIMARY KEY NOT NULL,
	`uses_allowed` integer,
	`pending` integer DEFAULT 0 NOT NULL,
	`completed` integer DEFAULT 0 NOT NULL,
	`expiry_time` integer
);
--> statement-breakpoint
CREATE TABLE `uia_sessions` (
	`session_id` text PRIMARY KEY NOT NULL,
	`method` text NOT NULL,
	`path` text NOT NULL,
	`user_id` text,
	`completed` text DEFAULT '[]' NOT NULL,
	`registration_token` text,
	`created_ts` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `users` (
	`user_id` text PRIMARY KEY NOT NULL,
	`password_hash` text,
	`created_ts` integer NOT NULL,
	`deactivated` integer DEFAULT false NOT NULL,
	`admin` integer DEFAULT false NOT NULL,
	`displayname` text,
	`avatar_url` text
);
