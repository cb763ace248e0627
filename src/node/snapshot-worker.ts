/**
 * Making a snapshot off the consensus loop. A snapshot reads and encodes the whole state and signs
 * it: ~0.2 ms a record, so seconds for a large state, far longer than an election timeout. This
 * worker thread does it on a read-only connection of its own, inside one read transaction (so it
 * sees the state exactly at one last_applied while the runtime goes on writing), and hands the row
 * back; the runtime, the only writer, stores it.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { Store, StoredSnapshot } from "../storage/store";
import { buildSnapshot } from "./snapshots";
import { useNativeCrypto } from "./native-crypto";
import { lowerThisThreadPriority, startWorker } from "./background";

export interface SnapshotJob {
  readonly dbPath: string;
  readonly cluster: string;
  readonly nodeId: string;
  readonly secretKey: Uint8Array;
  /** The snapshot's ts, from the runtime's clock (an injected clock does not cross threads). */
  readonly ts: string;
}

/**
 * A failure carries the error's code (SQLITE_FULL, EIO...) across the thread, for the storage-fault
 * policy. `priority` says why the worker could not lower its priority, when it could not.
 */
export type SnapshotOutcome =
  | { readonly ok: true; readonly row: StoredSnapshot; readonly priority?: string }
  | { readonly ok: false; readonly message: string; readonly code?: string; readonly priority?: string };

/** Runs one job in a worker thread; `done` is called once, on the runtime's thread. Returns a stop function. */
export function snapshotInWorker(job: SnapshotJob, done: (outcome: SnapshotOutcome) => void): () => void {
  const w = startWorker(__filename, job);
  let settled = false;
  const settle = (o: SnapshotOutcome): void => {
    if (settled) return;
    settled = true;
    done(o);
  };
  w.once("message", (o: SnapshotOutcome) => settle(o));
  w.once("error", (err: Error) => settle({ ok: false, message: err.message }));
  w.once("exit", (code) => settle({ ok: false, message: `snapshot worker exited with code ${code} before answering` }));
  return () => {
    settled = true;
    void w.terminate();
  };
}

function runJob(job: SnapshotJob): SnapshotOutcome {
  useNativeCrypto();
  const store = new Store(job.dbPath, { readonly: true });
  try {
    store.db.exec("BEGIN");
    const { row } = buildSnapshot(store, { cluster: job.cluster, nodeId: job.nodeId, secretKey: job.secretKey, now: () => new Date(job.ts) });
    return { ok: true, row };
  } finally {
    if (store.db.inTransaction) store.db.exec("ROLLBACK");
    store.close();
  }
}

if (!isMainThread && parentPort !== null && (workerData as Partial<SnapshotJob> | null)?.secretKey !== undefined) {
  const priority = lowerThisThreadPriority();
  const note = priority === null ? {} : { priority };
  let outcome: SnapshotOutcome;
  try {
    outcome = { ...runJob(workerData as SnapshotJob), ...note };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    outcome = { ok: false, message: (err as Error).message, ...(typeof code === "string" ? { code } : {}), ...note };
  }
  parentPort.postMessage(outcome);
}
