-- The user directory (worker/client/user-directory.ts), written by each Room DO from its current state
-- (durable-objects/room/directory-index.ts): a room's joined members, and whether the room is public for
-- the directory (public join rule or world-readable history). `local` members are this server's users,
-- searched by their global profile (`users`); other servers' users keep their member event's profile.
CREATE TABLE `directory_members` (
	`room_id` text NOT NULL,
	`user_id` text NOT NULL,
	`local` integer NOT NULL,
	`displayname` text,
	`avatar_url` text,
	PRIMARY KEY(`room_id`, `user_id`)
);
--> statement-breakpoint
CREATE INDEX `directory_members_user` ON `directory_members` (`user_id`);
--> statement-breakpoint
CREATE TABLE `directory_rooms` (
	`room_id` text PRIMARY KEY NOT NULL,
	`public` integer NOT NULL
);
