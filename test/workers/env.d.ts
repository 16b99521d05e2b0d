declare namespace Cloudflare {
  interface Env {
    DB: D1Database;
    ROOMS: DurableObjectNamespace<import("../../durable-objects/room.js").RoomDurableObject>;
    USERS: DurableObjectNamespace<import("../../durable-objects/user.js").UserDurableObject>;
    DESTINATIONS: DurableObjectNamespace<import("../../durable-objects/destination.js").DestinationDurableObject>;
    DELAYED_EVENTS: DurableObjectNamespace<import("../../durable-objects/delayed-events.js").DelayedEventsDurableObject>;
    APPSERVICES: DurableObjectNamespace<import("../../durable-objects/appservice.js").AppserviceDurableObject>;
    MEDIA: R2Bucket;
    SERVER_NAME: string;
    TEST_MIGRATIONS: import("cloudflare:test").D1Migration[];
  }
}
declare namespace Cloudflare {
  interface Exports {
    default: Fetcher;
  }
}
