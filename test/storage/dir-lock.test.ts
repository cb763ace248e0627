// src/storage/dir-lock.ts in-process: the data-dir lock is exclusive (a second taker is refused at
// once with null, not an error), released on release() and reusable afterwards, leaves one empty
// lock file (no journal beside it), and an error that is not "someone holds it" is thrown, never
// read as "locked". Across processes (kill -9, a second `serve`) it is test/e2e/data-dir-lock.test.ts.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { tryExclusiveLock, ExclusiveLock } from "../../src/storage/dir-lock";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-dir-lock-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;
const lockFile = (): string => path.join(dir, `lock${++n}`);

function mustLock(file: string): ExclusiveLock {
  const lock = tryExclusiveLock(file);
  if (lock === null) throw new Error(`expected to take the lock on ${file}, got null`);
  return lock;
}

describe("tryExclusiveLock", () => {
  test("a second taker gets null while the first holds it; after release the lock can be taken again", () => {
    const file = lockFile();
    const first = mustLock(file);
    expect(tryExclusiveLock(file)).toBeNull();
    expect(tryExclusiveLock(file)).toBeNull(); // a refusal leaves nothing half-held behind
    first.release();
    const second = mustLock(file);
    expect(tryExclusiveLock(file)).toBeNull();
    second.release();
  });

  test("release is idempotent: a second call neither throws nor drops a lock someone else took since", () => {
    const file = lockFile();
    const first = mustLock(file);
    first.release();
    const second = mustLock(file);
    expect(() => first.release()).not.toThrow();
    expect(tryExclusiveLock(file)).toBeNull();
    second.release();
    second.release();
  });

  test("the lock file is created when absent and stays one empty file, with no journal beside it", () => {
    const file = lockFile();
    expect(fs.existsSync(file)).toBe(false);
    const lock = mustLock(file);
    expect(fs.statSync(file).size).toBe(0);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith(path.basename(file)))).toEqual([path.basename(file)]);
    lock.release();
    expect(fs.statSync(file).size).toBe(0);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith(path.basename(file)))).toEqual([path.basename(file)]);
  });

  test("locks on two files are independent", () => {
    const a = mustLock(lockFile());
    const b = mustLock(lockFile());
    a.release();
    b.release();
  });

  test("a file that is not a database is an error, not a lock someone holds", () => {
    const file = lockFile();
    fs.writeFileSync(file, "not a database: ".repeat(16));
    let caught: unknown;
    try {
      tryExclusiveLock(file);
    } catch (err) {
      caught = err;
    }
    // by shape, not instanceof: the addon's error class is per process, jest's modules per test file
    expect(caught).toMatchObject({ name: "SqliteError", code: "SQLITE_NOTADB" });
  });

  test("a lock in a directory that does not exist is an error", () => {
    expect(() => tryExclusiveLock(path.join(dir, "no-such-dir", "lock"))).toThrow();
  });
});
