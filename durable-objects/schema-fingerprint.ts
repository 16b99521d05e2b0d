// A Durable Object creates its SQLite tables with idempotent DDL (`CREATE TABLE IF NOT EXISTS ...`) when
// it starts. Run on every start, that DDL costs one statement per table and index: 26 for a room, before
// its first request. Starts are frequent: an idle DO is evicted within seconds (locally after about ten),
// so the first request to a quiet room, and every room of an initial /sync of a user in many rooms, pays
// it again. Profiled on an initial /sync of a user in 1,000 rooms, the room schema's DDL was about a tenth
// of all CPU.
//
// So the DDL runs once per version of its text: after it ran, a fingerprint of the text is stored beside
// the tables, and a start that reads the same fingerprint skips it (one indexed read instead of the DDL).
// Any change to the text (a new table, a new index, a new column's upgrade step) changes the fingerprint,
// so the DDL runs once more on each existing DO, exactly as before.

/** FNV-1a (32 bits) of the text, with its length: a change to the DDL changes it (no security use). */
export function schemaFingerprint(ddl: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < ddl.length; i++) {
    hash ^= ddl.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return `${hash.toString(16).padStart(8, "0")}-${ddl.length}`;
}

const TABLE = "schema_fingerprints";

/** The fingerprint stored for `name`, or undefined when none is (including before the table exists). */
export function storedSchemaFingerprint(sql: SqlStorage, name: string): string | undefined {
  try {
    return sql.exec<{ fingerprint: string }>(`SELECT fingerprint FROM ${TABLE} WHERE name = ?`, name).toArray()[0]?.fingerprint;
  } catch {
    return undefined; // no such table: a DO from before fingerprints, or a new one
  }
}

/** Records that the DDL with fingerprint `fingerprint` has run for `name`. */
export function recordSchemaFingerprint(sql: SqlStorage, name: string, fingerprint: string): void {
  sql.exec(`CREATE TABLE IF NOT EXISTS ${TABLE} (name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL)`);
  sql.exec(`INSERT OR REPLACE INTO ${TABLE} (name, fingerprint) VALUES (?, ?)`, name, fingerprint);
}
