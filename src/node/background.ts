/**
 * Background work off the consensus loop: worker threads for the long reads (snapshots, audits),
 * started the same way, and run at a lower CPU priority than the thread that ticks Raft.
 *
 * Why lower: on a busy machine (more runnable threads than cores) a worker thread verifying a
 * 100,000-entry chain competes for the core with the runtime's loop; at an equal nice value the
 * loop's ticks wait behind it for a scheduler slice or more. At nice 10 the kernel gives the loop
 * ~10x the worker's share whenever both want the CPU, and the worker all of what is left.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { TransferListItem, Worker } from "node:worker_threads";

/** The nice value of background threads (0 is the loop's; 19 the lowest; 10: ~1/10th of the loop's share). */
export const BACKGROUND_NICE = 10;

/**
 * Starts a worker thread running `moduleFile` (the __filename of a worker module) with `data`
 * (and the ports or buffers in `transferList` moved to it).
 * From compiled JavaScript it loads the file itself; from the sources (tests, bin/resonetics's tsx
 * fallback) it loads them through tsx, as bin/resonetics does.
 */
export function startWorker(moduleFile: string, data: unknown, transferList: readonly TransferListItem[] = []): Worker {
  const options = { workerData: data, transferList: [...transferList] };
  if (moduleFile.endsWith(".js")) return new Worker(moduleFile, options);
  const ts = path.join(path.dirname(moduleFile), `${path.basename(moduleFile, path.extname(moduleFile))}.ts`);
  return new Worker(`require("tsx/cjs/api").register(); require(${JSON.stringify(ts)});`, { ...options, eval: true });
}

/**
 * Lowers the calling thread (not the process) to BACKGROUND_NICE. On Linux a thread's id names it
 * for setpriority(2); /proc/thread-self gives that id. Returns null when done, or why not (another
 * OS, a /proc that is not mounted): the work still runs, at the loop's priority, and the caller says so.
 */
export function lowerThisThreadPriority(): string | null {
  let link: string;
  try {
    link = fs.readlinkSync("/proc/thread-self");
  } catch (err) {
    return `no /proc/thread-self (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): background work runs at normal priority`;
  }
  const tid = Number(link.split("/").pop());
  if (!Number.isSafeInteger(tid) || tid <= 0) return `unexpected /proc/thread-self target ${JSON.stringify(link)}`;
  try {
    os.setPriority(tid, BACKGROUND_NICE);
  } catch (err) {
    return `setpriority(${tid}, ${BACKGROUND_NICE}) failed: ${(err as Error).message}`;
  }
  return null;
}
