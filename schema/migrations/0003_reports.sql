CREATE TABLE `reports` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`reporter` text NOT NULL,
	`room_id` text NOT NULL,
	`event_id` text,
	`reason` text,
	`received_ts` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `reports_room` ON `reports` (`room_id`);