/**
 * An exclusive lock that lives exactly as long as the process holding it: SQLite's own file lock
 * (fcntl on POSIX, LockFileEx on Windows) on a dedicated, empty database, taken with
 * locking_mode=EXCLUSIVE and a write transaction that is never committed. The kernel drops the
 * lock when the process dies, however it dies, so a kill -9 cannot leave it stale, and a reused pid
 * cannot fake it (a pid file checked with kill(pid, 0) can be fooled by both).
 */
import Database from "better-sqlite3";
import type { Database as Db } from "better-sqlite3";

export interface ExclusiveLock {
  /** Drops the lock (a process that exits needs not call it). */
  release(): void;
}

/** Takes the lock on `file` (created when absent) at once, never waiting; null when another connection holds it. */
export function tryExclusiveLock(file: string): ExclusiveLock | null {
  // timeout 0: a second process must be refused at once, not after the 5 s default busy wait.
  const db: Db = new Database(file, { timeout: 0 });
  try {
    // No journal file: the transaction never writes a page, and the lock file stays one empty file.
    db.pragma("journal_mode = MEMORY");
    db.pragma("locking_mode = EXCLUSIVE");
    db.exec("BEGIN EXCLUSIVE");
  } catch (err) {
    db.close();
    // By its code, not `instanceof Database.SqliteError` (src/node/storage-fault.ts reads it so too): the
    // addon throws the class of the first module instance that loaded it, so instanceof fails wherever
    // modules load again in one process (jest runs test files in one worker with fresh modules).
    const code = (err as { code?: unknown } | null)?.code;
    if (code === "SQLITE_BUSY" || code === "SQLITE_LOCKED") return null;
    throw err;
  }
  let open = true;
  return {
    release(): void {
      if (!open) return;
      open = false;
      db.exec("ROLLBACK");
      db.close();
    },
  };
}
