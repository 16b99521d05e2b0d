CREATE TABLE `event_rooms` (
	`event_id` text PRIMARY KEY NOT NULL,
	`room_id` text NOT NULL
);
