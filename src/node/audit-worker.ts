/**
 * Audits off the consensus loop. A full audit replays the chain: a hash, one or two Merkle node
 * reads and an apply per entry, ~10-50 us each, so seconds to minutes for a large log. Sliced on
 * the loop (as it was), every slice still delayed the next Raft tick by up to its length and the
 * audit crawled on a busy node; here a worker thread, at background priority
 * (src/node/background.ts), runs it to the end on a read-only connection of its own inside one
 * read transaction (a WAL snapshot: consistent while the runtime goes on writing), and posts
 * progress and the result back. The loop only relays messages.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { startProblem, verifyChainSteps, VerifyReport, VerifyStart } from "../ledger/verify";
import { stateRootSteps, DedupRow, SubjectRow } from "../ledger/state-machine";
import { toHex } from "../ledger/bytes";
import { LedgerError, ErrorCode } from "../util/errors";
import { AuditSnapshot, openAuditSnapshot } from "./audit-snapshot";
import { lowerThisThreadPriority, startWorker } from "./background";
import { useNativeCrypto } from "./native-crypto";

/** What to verify: from genesis, the latest snapshot anchor or a retained one, up to `to` (default the end). */
export interface AuditJob {
  readonly from: VerifyStart;
  readonly to?: number;
}

export interface AuditResult {
  readonly report: VerifyReport;
  /** The state root of the node's own state tables in the same read snapshot (full audits only). */
  readonly stateRootLive?: string;
}

/** A running audit: its result, and a way to stop it (the caller left, or it ran too long). */
export interface AuditHandle {
  /** Resolves with the report (ok or not); rejects with a LedgerError for a start it cannot serve, or the error that stopped it. */
  readonly result: Promise<AuditResult>;
  /** Ends the worker now; `result` rejects with `reason`. Idempotent; a no-op once settled. */
  cancel(reason: LedgerError): void;
}

/** Progress is posted at most this often: Retry-After estimates need seconds, not every entry. */
const PROGRESS_EVERY_MS = 250;

interface WorkerData {
  readonly audit: true;
  readonly dbPath: string;
  readonly job: AuditJob;
}

/** Messages from the worker; an error carries a LedgerError's code and details across the thread. */
type FromWorker =
  | { readonly type: "progress"; readonly done: number; readonly total: number }
  | { readonly type: "priority"; readonly reason: string }
  | { readonly type: "done"; readonly result: AuditResult }
  | { readonly type: "failed"; readonly message: string; readonly code?: ErrorCode; readonly details?: Record<string, unknown> };

/**
 * Starts an audit of the database at dbPath in a worker thread. onProgress gets (entries done,
 * entries to do) now and then; onNote a reason the worker runs at normal priority, if it does.
 */
export function auditInWorker(dbPath: string, job: AuditJob, onProgress: (done: number, total: number) => void, onNote: (reason: string) => void): AuditHandle {
  const data: WorkerData = { audit: true, dbPath, job };
  const w = startWorker(__filename, data);
  let settled = false;
  let cancel: (reason: LedgerError) => void = () => undefined;
  const result = new Promise<AuditResult>((resolve, reject) => {
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      f();
      void w.terminate();
    };
    cancel = (reason) => settle(() => reject(reason));
    w.on("message", (m: FromWorker) => {
      if (m.type === "progress") onProgress(m.done, m.total);
      else if (m.type === "priority") onNote(m.reason);
      else if (m.type === "done") settle(() => resolve(m.result));
      else settle(() => reject(m.code === undefined ? new Error(`audit failed: ${m.message}`) : new LedgerError(m.code, m.message, m.details)));
    });
    w.once("error", (err: Error) => settle(() => reject(err)));
    w.once("exit", (code) => settle(() => reject(new Error(`the audit worker exited with code ${code} before answering`))));
  });
  return { result, cancel: (reason) => cancel(reason) };
}

/** The state root of the stored state tables. */
function* liveStateRoot(store: AuditSnapshot): Generator<void, string, void> {
  const subjects: SubjectRow[] = [...store.allSubjects()];
  const dedup: DedupRow[] = [...store.allDedup()];
  return toHex(yield* stateRootSteps(subjects, dedup));
}

/** Runs one audit to its end (it is on its own thread: nothing to yield to). */
function runAudit(dbPath: string, job: AuditJob, post: (m: FromWorker) => void): AuditResult {
  const store = openAuditSnapshot(dbPath);
  try {
    const problem = startProblem(store, job.from);
    if (problem !== null) throw new LedgerError("conflict", problem.reason, { from: job.from, possible: problem.possible });
    // Like the proof routes: a size beyond the log is not there to verify (never a shorter "ok").
    if (job.to !== undefined && job.to > store.lastIndex()) throw new LedgerError("not_found", `to ${job.to} is beyond the end of the log (${store.lastIndex()})`);
    let lastPost = 0;
    const onProgress = (done: number, total: number): void => {
      const now = Date.now();
      if (now - lastPost < PROGRESS_EVERY_MS) return;
      lastPost = now;
      post({ type: "progress", done, total });
    };
    const to = job.to;
    const steps = (function* (): Generator<void, AuditResult, void> {
      const report = yield* verifyChainSteps(store, { from: job.from, onProgress, ...(to === undefined ? {} : { to }) });
      return to === undefined ? { report, stateRootLive: yield* liveStateRoot(store) } : { report };
    })();
    // Ends: the steps read finitely many rows (the snapshot does not grow while it is open).
    for (;;) {
      const r = steps.next();
      if (r.done === true) return r.value;
    }
  } finally {
    store.close();
  }
}

if (!isMainThread && parentPort !== null && (workerData as Partial<WorkerData> | null)?.audit === true) {
  const port = parentPort;
  const post = (m: FromWorker): void => port.postMessage(m);
  const { dbPath, job } = workerData as WorkerData;
  const priority = lowerThisThreadPriority();
  if (priority !== null) post({ type: "priority", reason: priority });
  try {
    useNativeCrypto();
    post({ type: "done", result: runAudit(dbPath, job, post) });
  } catch (err) {
    post(err instanceof LedgerError
      ? { type: "failed", message: err.message, code: err.code, ...(err.details === undefined ? {} : { details: err.details }) }
      : { type: "failed", message: (err as Error).message });
  }
}
