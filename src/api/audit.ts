/**
 * GET /v1/audit/verify: a full replay of this node's chain, run so that it never stalls the node.
 * The audit reads through its own read-only connection inside one read transaction (a WAL
 * snapshot: consistent while the writer goes on), drives the verifier's step function in slices of
 * a few milliseconds with setImmediate between them (Raft ticks, peer messages and other requests
 * run in the gaps), and runs one at a time per node: a second caller gets 429 with Retry-After.
 */
import { performance } from "node:perf_hooks";
import type { Request, Response } from "express";
import type { Logger } from "pino";
import type { AuditSnapshot } from "../node/ports";
import { startProblem, verifyChainSteps, VerifyReport, VerifyStart } from "../ledger/verify";
import { stateRootSteps, DedupRow, SubjectRow } from "../ledger/state-machine";
import { toHex } from "../ledger/bytes";
import { LedgerError } from "../util/errors";
import { checkBearer } from "./auth";
import { parseOptionalIndex } from "./params";

/**
 * One slice of verification work before the event loop gets a turn. A Raft tick is 50 ms and an
 * election timeout 10-20 ticks: 5 ms slices keep a tick's delay far below either, and an entry
 * (hash, 1-2 Merkle node reads, apply) costs tens of microseconds, so a slice still does ~100+.
 */
export const AUDIT_SLICE_MS = 5;
/**
 * The longest an audit may run. It holds a WAL read snapshot, which keeps SQLite from
 * checkpointing the WAL past it (the WAL grows while it runs); at ~20k entries/s, 30 min is a
 * ~36M-entry log, past any log this node is sized for, so beyond that it is a runaway.
 */
export const AUDIT_TIME_MAX_MS = 30 * 60_000;
/** Retry-After bounds (s) for a caller turned away while an audit runs: at least 1, at most a minute. */
const RETRY_AFTER_S_MAX = 60;

export interface AuditOptions {
  /** Opens a consistent read-only snapshot of the node's database (the reader's openAuditSnapshot). */
  readonly open: () => AuditSnapshot;
  readonly adminToken: string;
  /** The read-only auditor token (<data-dir>/audit.token). */
  readonly auditToken: string;
  /** --public-audit: no token needed. */
  readonly publicAudit: boolean;
  readonly logger: Logger;
  /** Slice length (default AUDIT_SLICE_MS). */
  readonly sliceMs?: number;
}

export interface AuditResult {
  readonly report: VerifyReport;
  /** The state root of the node's own state tables in the same read snapshot (full audits only). */
  readonly stateRootLive?: string;
}

interface Running {
  readonly startedAt: number;
  done: number;
  total: number;
}

/** Runs steps to completion in slices of at most sliceMs, giving the event loop a turn between slices. */
export async function runInSlices<T>(steps: Iterator<void, T, void>, sliceMs: number, deadline: number, abandoned: () => boolean): Promise<T> {
  // Ends: steps finishes (finitely many rows), or the deadline / the caller leaving stops it.
  for (;;) {
    const until = performance.now() + sliceMs;
    do {
      const r = steps.next();
      if (r.done === true) return r.value;
    } while (performance.now() < until);
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (performance.now() > deadline) throw new LedgerError("unavailable", `the audit ran longer than ${AUDIT_TIME_MAX_MS} ms and was stopped`);
    if (abandoned()) throw new AuditAbandoned();
  }
}

/** The client went away: nothing to answer, stop working for it. */
class AuditAbandoned extends Error {
  constructor() {
    super("the client closed the connection; audit abandoned");
  }
}

/** The state root of the stored state tables, reading one row per step. */
function* liveStateRoot(store: AuditSnapshot): Generator<void, string, void> {
  const subjects: SubjectRow[] = [];
  for (const s of store.allSubjects()) {
    subjects.push(s);
    yield;
  }
  const dedup: DedupRow[] = [];
  for (const d of store.allDedup()) {
    dedup.push(d);
    yield;
  }
  return toHex(yield* stateRootSteps(subjects, dedup));
}

/** ?from=genesis (default) | snapshot (the latest anchor) | <index> (a retained snapshot anchor, GET /v1/snapshots). */
export function parseFrom(raw: unknown): VerifyStart {
  const from = raw ?? "genesis";
  if (from === "genesis" || from === "snapshot") return from;
  if (typeof from === "string" && /^[1-9][0-9]{0,15}$/.test(from) && Number.isSafeInteger(Number(from))) return Number(from);
  throw new LedgerError("bad_request", "from must be genesis, snapshot, or the index of a retained snapshot anchor (GET /v1/snapshots)");
}

/** The audit of one node: token check, one-at-a-time, time-sliced replay on a read-only snapshot. */
export class AuditRunner {
  private running: Running | null = null;
  private readonly sliceMs: number;

  constructor(private readonly o: AuditOptions) {
    this.sliceMs = o.sliceMs ?? AUDIT_SLICE_MS;
  }

  /** True while an audit runs. */
  busy(): boolean {
    return this.running !== null;
  }

  /** The handler of GET /v1/audit/verify. A chain violation answers 500 with the report (ok:false). */
  async handle(req: Request, res: Response): Promise<void> {
    if (!this.o.publicAudit) checkBearer(req.headers.authorization, [this.o.adminToken, this.o.auditToken]);
    const from = parseFrom(req.query.from);
    const to = parseOptionalIndex(req.query.to, "to");
    let gone = false;
    res.once("close", () => {
      if (!res.writableFinished) gone = true;
    });
    let result: AuditResult;
    try {
      result = await this.run(from, to, () => gone);
    } catch (err) {
      if (err instanceof AuditAbandoned) return;
      throw err;
    }
    res.setHeader("Cache-Control", "no-store");
    res.status(result.report.ok ? 200 : 500).json({ ...result.report, state_root_live: result.stateRootLive });
  }

  /**
   * Verifies this node's chain from `from` (to `to`, default its end). Throws too_many_requests while
   * another audit runs, conflict when the data dir cannot serve the start (no snapshot; a compacted
   * log and from=genesis), and never reports a missing start as a chain violation.
   */
  async run(from: VerifyStart, to: number | undefined, abandoned: () => boolean = () => false): Promise<AuditResult> {
    if (this.running !== null) {
      throw new LedgerError("too_many_requests", "an audit is already running on this node (one at a time); retry later", {
        retry_after_s: this.retryAfterS(this.running),
      });
    }
    const running: Running = { startedAt: performance.now(), done: 0, total: 0 };
    this.running = running;
    let store: AuditSnapshot | undefined;
    let steps: Iterator<void, AuditResult, void> | undefined;
    try {
      // One read transaction: its first read fixes the WAL snapshot every later step sees.
      store = this.o.open();
      const problem = startProblem(store, from);
      if (problem !== null) throw new LedgerError("conflict", problem.reason, { from, possible: problem.possible });
      // Like the proof routes: a size beyond the log is not there to verify (never a shorter "ok").
      if (to !== undefined && to > store.lastIndex()) throw new LedgerError("not_found", `to ${to} is beyond the end of the log (${store.lastIndex()})`);
      const src = store;
      const onProgress = (done: number, total: number): void => {
        running.done = done;
        running.total = total;
      };
      steps = (function* (): Generator<void, AuditResult, void> {
        const report = yield* verifyChainSteps(src, { from, onProgress, ...(to === undefined ? {} : { to }) });
        return to === undefined ? { report, stateRootLive: yield* liveStateRoot(src) } : { report };
      })();
      const result = await runInSlices(steps, this.sliceMs, running.startedAt + AUDIT_TIME_MAX_MS, abandoned);
      const ms = Math.round(performance.now() - running.startedAt);
      this.o.logger.info({ from, to: to ?? null, ok: result.report.ok, entries: result.report.entries, size: result.report.size, duration_ms: ms }, "audit finished");
      return result;
    } finally {
      // Closing the steps closes the statement iterators they hold open, before the connection goes.
      steps?.return?.();
      store?.close();
      this.running = null;
    }
  }

  /** Seconds until the running audit is likely done, from its progress so far. */
  private retryAfterS(r: Running): number {
    const elapsedS = (performance.now() - r.startedAt) / 1000;
    if (r.done <= 0 || r.total <= r.done) return 1;
    const remainingS = ((r.total - r.done) * elapsedS) / r.done;
    return Math.min(RETRY_AFTER_S_MAX, Math.max(1, Math.ceil(remainingS)));
  }
}
