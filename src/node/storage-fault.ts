/**
 * The storage-fault policy (README "Storage faults"; contrib/README.md): an I/O error from the data
 * dir is not a bug in the ledger and not a lie of a peer, it is the machine. The node stops
 * acknowledging at once, stops leading (no more heartbeats), and the process exits with
 * EXIT_STORAGE_FAULT for its supervisor to restart it once the fault clears. Nothing acknowledged
 * is lost: an acknowledgement follows a majority's fsync, and SQLite's transactions are atomic
 * under ENOSPC and EIO. A start on a full disk exits with the same code (try again later).
 */

/** EX_TEMPFAIL (sysexits.h): a temporary failure; the supervisor retries. */
export const EXIT_STORAGE_FAULT = 75;

/** SQLite result codes (and their extended forms) that mean the disk, not the data. */
const SQLITE_FAULTS = ["SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_NOLFS"];
/** errno codes from fs calls that mean the same. */
const ERRNO_FAULTS = new Set(["ENOSPC", "EDQUOT", "EIO", "EROFS"]);
/** The faults that clear by themselves (space freed), as opposed to a disk that is gone. */
const TRANSIENT = new Set(["ENOSPC", "EDQUOT", "SQLITE_FULL"]);

/** The fault's code when err is a storage I/O failure, else null. */
export function storageFaultCode(err: unknown): string | null {
  if (typeof err !== "object" || err === null) return null;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== "string") return null;
  if (ERRNO_FAULTS.has(code)) return code;
  return SQLITE_FAULTS.some((c) => code === c || code.startsWith(`${c}_`)) ? code : null;
}

/** True for a fault that a later start may not meet (a full disk that gets freed). */
export const isTransientFault = (code: string): boolean => TRANSIENT.has(code);
