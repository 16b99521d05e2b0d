CREATE TABLE `user_reports` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`reporter` text NOT NULL,
	`target_user_id` text NOT NULL,
	`reason` text NOT NULL,
	`received_ts` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `user_reports_target` ON `user_reports` (`target_user_id`);