/** Ordered .sql migrations from migrations/, applied at start and recorded in schema_migrations. */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Database } from "better-sqlite3";
import { assert } from "../util/assert";

export const MIGRATIONS_DIR = path.resolve(__dirname, "..", "..", "migrations");

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** Reads NNNN_name.sql files in version order; versions must be 1..n without gaps. */
export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const files = fs.readdirSync(dir).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
  return files.map((file, i) => {
    const version = Number(file.slice(0, 4));
    assert(version === i + 1, `migration ${file} out of sequence (expected version ${i + 1})`);
    return { version, name: file, sql: fs.readFileSync(path.join(dir, file), "utf8") };
  });
}

/** Applies the migrations not yet recorded, each in its own transaction. Returns how many ran. */
export function migrate(db: Database, migrations = loadMigrations()): number {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
  const done = new Set((db.prepare("SELECT version FROM schema_migrations").all() as Array<{ version: number }>).map((r) => r.version));
  const known = new Set(migrations.map((m) => m.version));
  for (const v of done) assert(known.has(v), `database has migration ${v} that this build does not know: refusing to run an older build`);
  let ran = 0;
  for (const m of migrations) {
    if (done.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)").run(m.version, m.name, new Date().toISOString());
    })();
    ran++;
  }
  return ran;
}
