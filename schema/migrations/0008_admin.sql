CREATE TABLE `blocked_rooms` (
	`room_id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`created_ts` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `room_deletions` (
	`delete_id` text PRIMARY KEY NOT NULL,
	`room_id` text NOT NULL,
	`status` text NOT NULL,
	`error` text,
	`shutdown_room` text,
	`created_ts` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `room_deletions_room` ON `room_deletions` (`room_id`);--> statement-breakpoint
CREATE TABLE `server_notice_rooms` (
	`user_id` text PRIMARY KEY NOT NULL,
	`room_id` text NOT NULL
);
--> statement-breakpoint
ALTER TABLE `media` ADD `quarantined_by` text;--> statement-breakpoint
ALTER TABLE `media` ADD `safe_from_quarantine` integer DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE `users` ADD `user_type` text;--> statement-breakpoint
ALTER TABLE `users` ADD `erased` integer DEFAULT false NOT NULL;--> statement-breakpoint
CREATE INDEX `event_rooms_room` ON `event_rooms` (`room_id`);