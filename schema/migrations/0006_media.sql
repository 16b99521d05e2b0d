CREATE TABLE `media` (
	`server_name` text NOT NULL,
	`media_id` text NOT NULL,
	`user_id` text,
	`content_type` text,
	`upload_name` text,
	`size` integer,
	`created_ts` integer NOT NULL,
	`uploaded_ts` integer,
	`unused_expires_ts` integer,
	PRIMARY KEY(`server_name`, `media_id`)
);
--> statement-breakpoint
CREATE INDEX `media_user` ON `media` (`user_id`,`uploaded_ts`);--> statement-breakpoint
CREATE TABLE `media_url_previews` (
	`url` text NOT NULL,
	`og` text NOT NULL,
	`fetched_ts` integer NOT NULL,
	`expires_ts` integer NOT NULL,
	PRIMARY KEY(`url`, `fetched_ts`)
);
