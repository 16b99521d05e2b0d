// Node side of application service registrations: reading Synapse-format YAML files, checking them with
// the same code the Worker uses (protocol/appservice-registration.ts, imported through Node's type
// stripping), and the SQL that stores them in D1's `appservices` table. Used by scripts/start.mjs
// (APPSERVICE_CONFIG_FILES) and scripts/appservice.mjs (`npm run appservice`).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import { RegistrationError, checkDistinct, parseRegistration, storedForm } from "../protocol/appservice-registration.ts";

export { RegistrationError };

/** Reads and checks one registration file. Throws RegistrationError naming the file and the field. */
export function readRegistrationFile(file) {
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new RegistrationError(file, "(file)", `cannot read: ${e.code ?? e.message}`);
  }
  let doc;
  try {
    doc = yaml.load(text, { filename: file });
  } catch (e) {
    throw new RegistrationError(file, "(document)", `not valid YAML: ${e.reason ?? e.message}`);
  }
  return { registration: parseRegistration(doc, file), source: file };
}

/** Reads and checks several files, and that no two share an id or an as_token. */
export function readRegistrationFiles(files) {
  const all = files.map(readRegistrationFile);
  checkDistinct(all);
  return all;
}

/** The comma-separated paths of APPSERVICE_CONFIG_FILES (empty entries ignored). */
export function configFilesFrom(value) {
  return (value ?? "").split(",").map((f) => f.trim()).filter((f) => f !== "");
}

export function sha256Hex(text) {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** The row of `appservices` for a registration. */
export function rowOf(registration, source, now = Date.now()) {
  return {
    id: registration.id,
    as_token_hash: sha256Hex(registration.asToken),
    registration: JSON.stringify(storedForm(registration)),
    source,
    updated_ts: now,
  };
}

export const UPSERT_SQL =
  "INSERT INTO appservices (id, as_token_hash, registration, source, updated_ts) VALUES (?, ?, ?, ?, ?) " +
  "ON CONFLICT (id) DO UPDATE SET as_token_hash = excluded.as_token_hash, registration = excluded.registration, " +
  "source = excluded.source, updated_ts = excluded.updated_ts";

/** A SQL string literal. */
export function sqlLiteral(value) {
  if (typeof value === "number") return String(value);
  return `'${String(value).replace(/'/g, "''")}'`;
}

/** UPSERT_SQL with its values inlined (for `wrangler d1 execute --command`, which takes no parameters). */
export function upsertStatement(row) {
  const values = [row.id, row.as_token_hash, row.registration, row.source, row.updated_ts];
  let i = 0;
  return UPSERT_SQL.replace(/\?/g, () => sqlLiteral(values[i++]));
}

/**
 * Refuses a registration whose as_token another stored service (another id) already has: the unique index
 * would refuse it too, but without naming the file.
 */
export function checkAgainstStored(entries, storedRows) {
  for (const { registration, source } of entries) {
    const hash = sha256Hex(registration.asToken);
    const other = storedRows.find((r) => r.as_token_hash === hash && r.id !== registration.id);
    if (other) throw new RegistrationError(source, "as_token", `the same as_token as the registered service ${JSON.stringify(other.id)} (${other.source})`);
  }
}

/**
 * Stores the registrations of APPSERVICE_CONFIG_FILES through a D1 binding (scripts/start.mjs): the files'
 * services are upserted, and services that an earlier start loaded from files no longer listed are removed
 * (those added with `npm run appservice -- add` stay). Returns the stored ids.
 */
export async function syncConfigFiles(db, entries, now = Date.now()) {
  const stored = (await db.prepare("SELECT id, as_token_hash, source FROM appservices").all()).results;
  checkAgainstStored(entries, stored);
  const ids = new Set(entries.map((e) => e.registration.id));
  const statements = [];
  for (const row of stored) {
    if (row.source.startsWith("config:") && !ids.has(row.id)) statements.push(db.prepare("DELETE FROM appservices WHERE id = ?").bind(row.id));
  }
  for (const { registration, source } of entries) {
    const row = rowOf(registration, `config:${source}`, now);
    statements.push(db.prepare(UPSERT_SQL).bind(row.id, row.as_token_hash, row.registration, row.source, row.updated_ts));
  }
  if (statements.length > 0) await db.batch(statements);
  return [...ids];
}
