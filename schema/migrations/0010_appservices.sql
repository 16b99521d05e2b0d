CREATE TABLE `appservice_room_list` (
	`appservice_id` text NOT NULL,
	`network_id` text NOT NULL,
	`room_id` text NOT NULL,
	`visibility` text NOT NULL,
	PRIMARY KEY(`appservice_id`, `network_id`, `room_id`)
);
--> statement-breakpoint
CREATE INDEX `appservice_room_list_room` ON `appservice_room_list` (`room_id`);--> statement-breakpoint
CREATE TABLE `appservices` (
	`id` text PRIMARY KEY NOT NULL,
	`as_token_hash` text NOT NULL,
	`registration` text NOT NULL,
	`source` text NOT NULL,
	`updated_ts` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `appservices_as_token_hash` ON `appservices` (`as_token_hash`);