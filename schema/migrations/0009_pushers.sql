CREATE TABLE `pushers` (
	`user_id` text NOT NULL,
	`app_id` text NOT NULL,
	`pushkey` text NOT NULL,
	`kind` text NOT NULL,
	`app_display_name` text NOT NULL,
	`device_display_name` text NOT NULL,
	`profile_tag` text DEFAULT '' NOT NULL,
	`lang` text,
	`data` text NOT NULL,
	`pushkey_ts` integer NOT NULL,
	`device_id` text,
	PRIMARY KEY(`user_id`, `app_id`, `pushkey`)
);
--> statement-breakpoint
CREATE INDEX `pushers_app_pushkey` ON `pushers` (`app_id`,`pushkey`);--> statement-breakpoint
CREATE INDEX `pushers_device` ON `pushers` (`user_id`,`device_id`);