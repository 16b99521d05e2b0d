CREATE TABLE `room_activity` (
	`room_id` text PRIMARY KEY NOT NULL,
	`stream_ordering` integer NOT NULL,
	`bump_ts` integer
);
