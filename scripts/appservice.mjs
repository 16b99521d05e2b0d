#!/usr/bin/env node
// `npm run appservice -- <command>`: manages application service registrations in D1 (the `appservices`
// table), on the local database of `npm start` or, with --remote, on the deployed one.
//
//   add FILE...     checks Synapse-format registration YAML files and stores them (an existing id is replaced)
//   list            the registered services (id, url, sender, namespaces, source); tokens are never printed
//   remove ID...    removes services
//
// Options: --remote (the deployed database, through `wrangler d1 execute DB --remote`), --data-dir DIR (the
// local state folder; default DATA_DIR or .data/<PORT or 8008>, as `npm start`). A running server sees a
// change within a few seconds (its cache of the list, durable-objects/appservice/registry.ts).
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { RegistrationError, readRegistrationFiles, rowOf, sha256Hex, sqlLiteral, upsertStatement } from "./appservice-registrations.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const wrangler = path.join(root, "node_modules", ".bin", "wrangler");

function usage(code = 2) {
  console.error("usage: npm run appservice -- add FILE... | list | remove ID...   [--remote] [--data-dir DIR]");
  process.exit(code);
}

const args = process.argv.slice(2);
let remote = false;
let dataDir = process.env.DATA_DIR || path.join(".data", String(process.env.PORT || "8008"));
const positional = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--remote") remote = true;
  else if (a === "--local") remote = false;
  else if (a === "--data-dir") dataDir = args[++i] ?? usage();
  else if (a === "-h" || a === "--help") usage(0);
  else positional.push(a);
}
const [command, ...rest] = positional;
const target = remote ? ["--remote"] : ["--local", "--persist-to", path.resolve(root, dataDir)];

/** Runs `wrangler d1 …` and returns its JSON output (or exits with wrangler's message). */
function d1(argv) {
  const r = spawnSync(wrangler, ["d1", ...argv], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) {
    console.error(`wrangler d1 ${argv[0]} failed:\n${r.stdout}${r.stderr}`);
    process.exit(1);
  }
  return r.stdout;
}

function execute(sql) {
  const out = d1(["execute", "DB", ...target, "--json", "--command", sql]);
  const parsed = JSON.parse(out.slice(out.indexOf("[")));
  return parsed.flatMap((r) => r.results ?? []);
}

// The local database may not exist yet (no `npm start` so far): apply the migrations first, as start does.
if (!remote && command !== undefined) d1(["migrations", "apply", "DB", ...target]);

switch (command) {
  case "add": {
    if (rest.length === 0) usage();
    let entries;
    try {
      entries = readRegistrationFiles(rest.map((f) => path.resolve(f)));
    } catch (e) {
      if (e instanceof RegistrationError) {
        console.error(`[appservice] ${e.message}`);
        process.exit(1);
      }
      throw e;
    }
    const stored = execute("SELECT id, as_token_hash, source FROM appservices");
    for (const { registration, source } of entries) {
      const hash = sha256Hex(registration.asToken);
      const other = stored.find((r) => r.as_token_hash === hash && r.id !== registration.id);
      if (other) {
        console.error(`[appservice] ${source}: as_token: the same as_token as the registered service ${JSON.stringify(other.id)} (${other.source})`);
        process.exit(1);
      }
    }
    execute(entries.map(({ registration }) => upsertStatement(rowOf(registration, "cli"))).join("; "));
    for (const { registration, source } of entries) console.log(`[appservice] registered ${registration.id} from ${source}`);
    break;
  }
  case "list": {
    const rows = execute("SELECT id, registration, source, updated_ts FROM appservices ORDER BY id");
    if (rows.length === 0) console.log("(no application services registered)");
    for (const row of rows) {
      const reg = JSON.parse(row.registration);
      const ns = (kind) => (reg.namespaces[kind] ?? []).map((n) => `${n.regex}${n.exclusive ? " (exclusive)" : ""}`).join(", ") || "-";
      console.log(`${row.id}\n  url: ${reg.url ?? "(none: receives nothing)"}\n  sender: @${reg.senderLocalpart}\n  users: ${ns("users")}\n  aliases: ${ns("aliases")}\n  rooms: ${ns("rooms")}\n  source: ${row.source}, updated ${new Date(row.updated_ts).toISOString()}`);
    }
    break;
  }
  case "remove": {
    if (rest.length === 0) usage();
    const found = execute(`SELECT id FROM appservices WHERE id IN (${rest.map(sqlLiteral).join(", ")})`).map((r) => r.id);
    const missing = rest.filter((id) => !found.includes(id));
    if (found.length > 0) execute(`DELETE FROM appservices WHERE id IN (${found.map(sqlLiteral).join(", ")})`);
    for (const id of found) console.log(`[appservice] removed ${id}`);
    if (missing.length > 0) {
      console.error(`[appservice] not registered: ${missing.join(", ")}`);
      process.exit(1);
    }
    break;
  }
  default:
    usage();
}
