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
    // the good one is recorded, the failed one is not: a fixed build retries exactly that one
    const rows = db.prepare("SELECT version, name FROM schema_migrations ORDER BY version").all();
    expect(rows).toEqual([{ version: 1, name: "0001_ok.sql" }]);
    db.close();
  });

  test("only the migrations not yet recorded run, each recorded with its name and an ISO time", () => {
    const mdir = fs.mkdtempSync(path.join(dir, "m-"));
    fs.writeFileSync(path.join(mdir, "0001_one.sql"), "CREATE TABLE t1 (x INTEGER);");
    const db = new Database(path.join(dir, "d.db"));
    expect(migrate(db, loadMigrations(mdir))).toBe(1);
    fs.writeFileSync(path.join(mdir, "0002_two.sql"), "CREATE TABLE t2 (x INTEGER);");
    fs.writeFileSync(path.join(mdir, "0003_three.sql"), "CREATE TABLE t3 (x INTEGER);");
    expect(migrate(db, loadMigrations(mdir))).toBe(2); // 0001 would fail if it ran again (t1 exists)
    const rows = db.prepare("SELECT version, name, applied_at FROM schema_migrations ORDER BY version").all() as Array<{ version: number; name: string; applied_at: string }>;
    expect(rows.map((r) => [r.version, r.name])).toEqual([[1, "0001_one.sql"], [2, "0002_two.sql"], [3, "0003_three.sql"]]);
    for (const r of rows) expect(new Date(r.applied_at).toISOString()).toBe(r.applied_at);
    expect(migrate(db, loadMigrations(mdir))).toBe(0);
    db.close();
  });

  test("files are taken in version order, whatever order the directory lists them in", () => {
    const mdir = fs.mkdtempSync(path.join(dir, "m-"));
    const versions = [7, 3, 12, 1, 9, 5, 11, 2, 8, 4, 10, 6];
    for (const v of versions) fs.writeFileSync(path.join(mdir, `${String(v).padStart(4, "0")}_m${v}.sql`), `CREATE TABLE t${v} (x INTEGER);`);
    const loaded = loadMigrations(mdir);
    expect(loaded.map((m) => m.version)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(loaded.map((m) => m.sql)).toEqual(Array.from({ length: 12 }, (_, i) => `CREATE TABLE t${i + 1} (x INTEGER);`));
  });

  test("an empty directory has no migrations and migrate on it only creates schema_migrations", () => {
    const mdir = fs.mkdtempSync(path.join(dir, "m-"));
    expect(loadMigrations(mdir)).toEqual([]);
    const db = new Database(path.join(dir, "e.db"));
    expect(migrate(db, [])).toBe(0);
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>).map((r) => r.name);
    expect(tables).toEqual(["schema_migrations"]);
    db.close();
  });
});
