// A Room DO runs its schema's DDL only when the DDL changed since it last ran (durable-objects/
// schema-fingerprint.ts): a start with the stored fingerprint skips it; a stale fingerprint brings the
// schema up to date (a table dropped meanwhile comes back); a DO that never held a room gets no tables.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { RoomEngine } from "../../durable-objects/room/engine.js";
import { schemaFingerprint, storedSchemaFingerprint } from "../../durable-objects/schema-fingerprint.js";
import { createRoom, newUser } from "./room-helpers.js";

const rawRoom = (roomId: string) => env.ROOMS.get(env.ROOMS.idFromName(roomId));
const tables = (sql: SqlStorage) =>
  sql
    .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'")
    .toArray()
    .map((r) => r.name);

describe("room schema fingerprint", () => {
  it("differs for any change of the DDL text, and is stable for the same text", () => {
    const ddl = "CREATE TABLE IF NOT EXISTS t (a TEXT);";
    expect(schemaFingerprint(ddl)).toBe(schemaFingerprint(ddl));
    expect(schemaFingerprint(ddl)).not.toBe(schemaFingerprint(ddl.replace("a TEXT", "b TEXT")));
    expect(schemaFingerprint(ddl)).not.toBe(schemaFingerprint(`${ddl} `));
  });

  it("a start with the current fingerprint runs no DDL; a stale one recreates what is missing", async () => {
    const alice = await newUser("fpalice");
    const roomId = await createRoom(alice);
    await runInDurableObject(rawRoom(roomId), (_i, state) => {
      const sql = state.storage.sql;
      const current = storedSchemaFingerprint(sql, "room");
      expect(current).toMatch(/^[0-9a-f]{8}-\d+$/);

      // Current fingerprint: a start leaves a dropped table dropped (the DDL did not run).
      sql.exec("DROP TABLE verified_server_domains");
      new RoomEngine(state.storage, env);
      expect(tables(sql)).not.toContain("verified_server_domains");

      // A stale fingerprint (the DDL changed since): the next start runs it and records the new one.
      sql.exec("UPDATE schema_fingerprints SET fingerprint = 'older' WHERE name = 'room'");
      const engine = new RoomEngine(state.storage, env);
      expect(tables(sql)).toContain("verified_server_domains");
      expect(storedSchemaFingerprint(sql, "room")).toBe(current);
      expect(engine.meta()?.roomId).toBe(roomId);
    });
  });

  it("a room from before fingerprints is brought up to date and gets one", async () => {
    const bob = await newUser("fpbob");
    const roomId = await createRoom(bob);
    await runInDurableObject(rawRoom(roomId), (_i, state) => {
      const sql = state.storage.sql;
      const current = storedSchemaFingerprint(sql, "room");
      sql.exec("DROP TABLE schema_fingerprints");
      sql.exec("DROP TABLE verified_server_domains");
      new RoomEngine(state.storage, env);
      expect(tables(sql)).toContain("verified_server_domains");
      expect(storedSchemaFingerprint(sql, "room")).toBe(current);
    });
  });

  it("a DO addressed by an unknown room ID gets no tables", async () => {
    await runInDurableObject(rawRoom("!never-created:localhost"), (_i, state) => {
      const engine = new RoomEngine(state.storage, env);
      expect(engine.meta()).toBeNull();
      expect(tables(state.storage.sql)).toEqual([]);
    });
  });
});
