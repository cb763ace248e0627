import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import Database from "better-sqlite3";
import { loadMigrations, migrate } from "../../src/storage/migrations";

describe("migrations", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-mig-"));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test("apply in order once, are recorded, and a second run does nothing", () => {
    const db = new Database(path.join(dir, "a.db"));
    const all = loadMigrations();
    expect(all.map((m) => m.version)).toEqual(all.map((_, i) => i + 1));
    expect(migrate(db)).toBe(all.length);
    expect(migrate(db)).toBe(0);
    const rows = db.prepare("SELECT version FROM schema_migrations ORDER BY version").all() as Array<{ version: number }>;
    expect(rows.map((r) => r.version)).toEqual(all.map((m) => m.version));
    db.close();
  });

  test("a database from a newer build is refused", () => {
    const db = new Database(path.join(dir, "b.db"));
    migrate(db);
    db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')").run();
    expect(() => migrate(db)).toThrow(/does not know/);
    db.close();
  });

  test("a failing migration leaves nothing behind", () => {
    const mdir = fs.mkdtempSync(path.join(dir, "m-"));
    fs.writeFileSync(path.join(mdir, "0001_ok.sql"), "CREATE TABLE t1 (x INTEGER);");
    fs.writeFileSync(path.join(mdir, "0002_bad.sql"), "CREATE TABLE t2 (x INTEGER); THIS IS NOT SQL;");
    const db = new Database(path.join(dir, "c.db"));
    expect(() => migrate(db, loadMigrations(mdir))).toThrow();
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>).map((r) => r.name);
    expect(tables).toContain("t1");
    expect(tables).not.toContain("t2");
    db.close();
  });
});
