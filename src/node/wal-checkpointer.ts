/**
 * WAL checkpoints off the commit path. With SQLite's default (wal_autocheckpoint = 1,000 pages) the
 * commit that crosses the threshold also copies the WAL's pages into ledger.db and fsyncs it, on the
 * thread that commits: for the runtime, the thread that ticks Raft. Measured on this project's
 * write pattern (a 400-byte row and three Merkle nodes a commit, synchronous=FULL): p50 1.13 ms a
 * commit with the automatic checkpoint, 0.85 ms without.
 *
 * So the runtime turns it off on its connection and asks a worker thread, with a connection of its
 * own, for a PASSIVE checkpoint every COMMITS_PER_CHECKPOINT commits. PASSIVE never waits for the
 * writer or for readers; the WAL starts over from its beginning at the writer's next commit after a
 * checkpoint that copied everything. Durability is unchanged: a commit is durable once its WAL frames
 * are fsync'd, and a checkpoint fsyncs the database file before the WAL may be reused.
 *
 * Under steady writes the worker's checkpoint never copies everything: it copies what was committed
 * when it began, and the writer commits on meanwhile. So when the worker reports WAL_FRAMES_RESTART
 * frames or more, the writer catches up itself at its next commit (only the frames since the
 * worker's checkpoint are left to copy), and the commit after it starts the WAL over.
 *
 * Bounded: one request in flight at a time. When the worker cannot start, answered its last request
 * with a failure (or has exited), or leaves UNANSWERED_MAX requests in a row unanswered (stalled, or
 * starved of CPU at its lower priority), the writer checkpoints on its own connection, as SQLite
 * would have: the WAL never grows without bound, only its cost moves back onto the loop while the
 * worker is not there.
 */
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import type { Logger } from "pino";
import { WalCheckpoint, WalCheckpointConnection } from "../storage/store";
import { lowerThisThreadPriority, startWorker } from "./background";

/**
 * Commits between two checkpoint requests. A commit writes ~6 pages (the log row, Merkle nodes, the
 * hard state, state rows), so this is about SQLite's own 1,000-page interval.
 */
export const COMMITS_PER_CHECKPOINT = 150;
/**
 * WAL frames past which the writer catches the checkpoint up itself, so the WAL starts over: 4,096
 * frames is 16 MiB at SQLite's 4 KiB pages, ~700 commits of ~6 pages (four or five worker answers). Without it the WAL never
 * started over under steady writes: 3 GB of WAL beside a 340 MB database after a 1,000,000-entry
 * build, read through at every start (6.7 s to /ready). While a reader holds an older snapshot
 * (an audit) nothing can start it over; the writer tries again after the worker's next answer.
 */
export const WAL_FRAMES_RESTART = 4096;
/** Requests in a row the worker may leave unanswered before the writer checkpoints itself (~600 commits of WAL). */
export const UNANSWERED_MAX = 4;
/** How long close waits for the worker to close its connection before terminating it. */
const CLOSE_WAIT_MS = 5_000;

export type WalOutcome =
  | ({ readonly ok: true; readonly priority?: string } & WalCheckpoint)
  | { readonly ok: false; readonly message: string; readonly code?: string; readonly priority?: string };

/** Where checkpoints run: a worker thread in production; tests may give their own. */
export interface CheckpointRunner {
  /** Asks for one checkpoint; `done` is called once, on the caller's thread. */
  request(done: (outcome: WalOutcome) => void): void;
  /** Stops, closing the runner's connection first when it can (awaited by a clean close). */
  close(): Promise<void>;
}

/** What the checkpointer has done since the node started (for /metrics and tests). */
export interface WalCheckpointStats {
  readonly requested: number;
  readonly answered: number;
  readonly failed: number;
  /** Checkpoints the writer ran itself: no worker, or one that did not answer. */
  readonly onWriter: number;
}

export class WalCheckpointer {
  private commits = 0;
  private inFlight = false;
  /** Requests that came due while one was in flight (reset by an answer). */
  private unanswered = 0;
  /** The last answer was a failure (the worker's connection failed, or the worker is gone). */
  private lastFailed = false;
  /** The worker's last answer saw WAL_FRAMES_RESTART frames or more: the writer catches up at its next commit. */
  private restartDue = false;
  private runner: CheckpointRunner | null = null;
  /** Why the runner is gone for good (it could not start, or the node stopped); the writer checkpoints itself. */
  private gone: string | null = null;
  private readonly counts = { requested: 0, answered: 0, failed: 0, onWriter: 0 };

  /**
   * @param startRunner starts the runner on first need (most short-lived nodes never need one)
   * @param onWriter a checkpoint on the writer's own connection, run synchronously
   */
  constructor(
    private readonly startRunner: () => CheckpointRunner,
    private readonly onWriter: () => WalCheckpoint,
    private readonly log: Logger,
  ) {}

  /** The writer committed a transaction. */
  committed(): void {
    if (this.restartDue) {
      this.restartDue = false;
      this.checkpointOnWriter(`the WAL reached ${WAL_FRAMES_RESTART} frames: the writer copies the rest, so its next commit starts the WAL over`);
    }
    if (++this.commits < COMMITS_PER_CHECKPOINT) return;
    this.commits = 0;
    // After a failed answer the writer checkpoints too (a worker that exited fails every request at
    // once): the WAL stays bounded, and a lasting fault surfaces here, on the writer's path, where
    // the storage-fault policy handles it.
    if (this.lastFailed) this.checkpointOnWriter("the checkpoint worker's last answer was a failure");
    if (this.inFlight) {
      if (++this.unanswered >= UNANSWERED_MAX) {
        this.unanswered = 0;
        this.checkpointOnWriter(`the checkpoint worker left ${UNANSWERED_MAX} requests unanswered`);
      }
      return;
    }
    const runner = this.ensureRunner();
    if (runner === null) {
      this.checkpointOnWriter(this.gone ?? "no checkpoint worker");
      return;
    }
    this.inFlight = true;
    this.counts.requested++;
    runner.request((o) => {
      this.inFlight = false;
      this.unanswered = 0;
      this.counts.answered++;
      this.lastFailed = !o.ok;
      this.restartDue = o.ok && o.walFrames >= WAL_FRAMES_RESTART;
      if (o.priority !== undefined) this.log.warn({ reason: o.priority }, "WAL checkpoint worker runs at the loop's priority");
      if (!o.ok) {
        this.counts.failed++;
        // The writer meets a lasting fault on its own next commit (the storage-fault policy).
        this.log.warn({ code: o.code, err: o.message }, "WAL checkpoint failed in the worker");
      }
    });
  }

  stats(): WalCheckpointStats {
    return { ...this.counts };
  }

  /** Stops the worker without waiting (a halted or stopped node). */
  stop(): void {
    this.gone = "the node stopped";
    const r = this.runner;
    this.runner = null;
    if (r !== null) void r.close();
  }

  /** Stops the worker after it closed its connection, so the writer's close is the last (SQLite then removes the WAL). */
  async close(): Promise<void> {
    this.gone = "the node closed";
    const r = this.runner;
    this.runner = null;
    if (r !== null) await r.close();
  }

  private ensureRunner(): CheckpointRunner | null {
    if (this.runner !== null || this.gone !== null) return this.runner;
    try {
      this.runner = this.startRunner();
    } catch (err) {
      this.gone = `the checkpoint worker did not start: ${(err as Error).message}`;
      this.log.warn({ err }, "WAL checkpoint worker did not start: the writer checkpoints itself");
    }
    return this.runner;
  }

  private checkpointOnWriter(why: string): void {
    this.counts.onWriter++;
    const r = this.onWriter();
    this.log.debug({ why, wal_frames: r.walFrames, checkpointed: r.checkpointed }, "WAL checkpoint on the writer's connection");
  }
}

interface WalJob {
  readonly walCheckpointDb: string;
}

/** The production runner: one worker thread with its own connection to dbPath, started once. */
export function workerCheckpointRunner(dbPath: string): CheckpointRunner {
  const job: WalJob = { walCheckpointDb: dbPath };
  const w: Worker = startWorker(__filename, job);
  let done: ((o: WalOutcome) => void) | null = null;
  let exited = false;
  const answer = (o: WalOutcome): void => {
    const d = done;
    done = null;
    d?.(o);
  };
  w.on("message", (o: WalOutcome) => answer(o));
  w.on("error", (err: Error) => answer({ ok: false, message: err.message }));
  const exit = new Promise<void>((resolve) =>
    w.once("exit", (code) => {
      exited = true;
      answer({ ok: false, message: `WAL checkpoint worker exited with code ${code}` });
      resolve();
    }),
  );
  // The worker must not keep a process alive that is otherwise done.
  w.unref();
  return {
    request(d) {
      if (exited) {
        d({ ok: false, message: "WAL checkpoint worker has exited" });
        return;
      }
      done = d;
      w.postMessage("checkpoint");
    },
    async close() {
      if (exited) return;
      w.postMessage("close");
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, CLOSE_WAIT_MS);
      });
      await Promise.race([exit, late]);
      clearTimeout(timer);
      if (!exited) await w.terminate();
    },
  };
}

if (!isMainThread && parentPort !== null && typeof (workerData as Partial<WalJob> | null)?.walCheckpointDb === "string") {
  const port = parentPort;
  const priority = lowerThisThreadPriority();
  // Said once, with the first answer.
  let note: { priority?: string } = priority === null ? {} : { priority };
  let conn: WalCheckpointConnection | null = null;
  port.on("message", (m: unknown) => {
    if (m === "close") {
      conn?.close();
      port.close();
      return;
    }
    let outcome: WalOutcome;
    try {
      conn ??= new WalCheckpointConnection((workerData as WalJob).walCheckpointDb);
      outcome = { ok: true, ...conn.checkpoint(), ...note };
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      outcome = { ok: false, message: (err as Error).message, ...(typeof code === "string" ? { code } : {}), ...note };
    }
    port.postMessage(outcome);
    note = {};
  });
}
