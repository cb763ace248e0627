/**
 * GET /v1/audit/verify: a full replay of this node's chain, run so that it never stalls the node.
 * The node's reader runs it in a worker thread at background priority, on a read-only connection
 * inside one read transaction (a WAL snapshot: consistent while the writer goes on); this thread
 * only waits for the answer. One audit runs at a time per node: a second caller gets 429 with a
 * Retry-After estimated from the running one's progress. A caller that leaves stops its audit.
 */
import { performance } from "node:perf_hooks";
import type { Request, Response } from "express";
import type { Logger } from "pino";
import type { AuditHandle, AuditJob, AuditResult } from "../node/ports";
import type { VerifyStart } from "../ledger/verify";
import { LedgerError } from "../util/errors";
import { checkBearer } from "./auth";
import { parseOptionalIndex } from "./params";

export type { AuditResult } from "../node/ports";

/**
 * The longest an audit may run. It holds a WAL read snapshot, which keeps SQLite from
 * checkpointing the WAL past it (the WAL grows while it runs); at ~20k entries/s, 30 min is a
 * ~36M-entry log, past any log this node is sized for, so beyond that it is a runaway.
 */
export const AUDIT_TIME_MAX_MS = 30 * 60_000;
/** Retry-After bounds (s) for a caller turned away while an audit runs: at least 1, at most a minute. */
const RETRY_AFTER_S_MAX = 60;

export interface AuditOptions {
  /** Starts an audit off this thread (the reader's audit()). */
  readonly start: (job: AuditJob, onProgress: (done: number, total: number) => void, onNote: (reason: string) => void) => AuditHandle;
  readonly adminToken: string;
  /** The read-only auditor token (<data-dir>/audit.token). */
  readonly auditToken: string;
  /** --public-audit: no token needed. */
  readonly publicAudit: boolean;
  readonly logger: Logger;
  /** The longest an audit may run (default AUDIT_TIME_MAX_MS). */
  readonly timeMaxMs?: number;
}

interface Running {
  readonly startedAt: number;
  done: number;
  total: number;
}

/** The client went away: nothing to answer, stop working for it. */
const abandoned = (): LedgerError => new LedgerError("unavailable", "the client closed the connection; audit abandoned");

/** ?from=genesis (default) | snapshot (the latest anchor) | <index> (a retained snapshot anchor, GET /v1/snapshots). */
export function parseFrom(raw: unknown): VerifyStart {
  const from = raw ?? "genesis";
  if (from === "genesis" || from === "snapshot") return from;
  if (typeof from === "string" && /^[1-9][0-9]{0,15}$/.test(from) && Number.isSafeInteger(Number(from))) return Number(from);
  throw new LedgerError("bad_request", "from must be genesis, snapshot, or the index of a retained snapshot anchor (GET /v1/snapshots)");
}

/** The audit of one node: token check, one at a time, run off the loop by the reader. */
export class AuditRunner {
  private running: Running | null = null;
  private warnedPriority = false;

  constructor(private readonly o: AuditOptions) {}

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
    let stop: (() => void) | null = null;
    res.once("close", () => {
      if (res.writableFinished) return;
      gone = true;
      stop?.();
    });
    let result: AuditResult;
    try {
      result = await this.run(from, to, (s) => {
        stop = s;
        if (gone) s();
      });
    } catch (err) {
      if (gone) return; // nobody to answer
      throw err;
    }
    if (gone) return;
    res.setHeader("Cache-Control", "no-store");
    res.status(result.report.ok ? 200 : 500).json({ ...result.report, state_root_live: result.stateRootLive });
  }

  /**
   * Verifies this node's chain from `from` (to `to`, default its end). Throws too_many_requests while
   * another audit runs, conflict when the data dir cannot serve the start (no snapshot; a compacted
   * log and from=genesis), not_found for a `to` beyond the log, and never reports a missing start as
   * a chain violation. `onStart` gets a function that stops the audit (the caller left).
   */
  async run(from: VerifyStart, to: number | undefined, onStart: (stop: () => void) => void = () => undefined): Promise<AuditResult> {
    if (this.running !== null) {
      throw new LedgerError("too_many_requests", "an audit is already running on this node (one at a time); retry later", {
        retry_after_s: this.retryAfterS(this.running),
      });
    }
    const running: Running = { startedAt: performance.now(), done: 0, total: 0 };
    this.running = running;
    const timeMaxMs = this.o.timeMaxMs ?? AUDIT_TIME_MAX_MS;
    let timer: NodeJS.Timeout | undefined;
    try {
      const job: AuditJob = to === undefined ? { from } : { from, to };
      const handle = this.o.start(
        job,
        (done, total) => {
          running.done = done;
          running.total = total;
        },
        (reason) => {
          if (this.warnedPriority) return;
          this.warnedPriority = true;
          this.o.logger.warn({ reason }, "the audit worker could not lower its priority");
        },
      );
      timer = setTimeout(() => handle.cancel(new LedgerError("unavailable", `the audit ran longer than ${timeMaxMs} ms and was stopped`)), timeMaxMs);
      onStart(() => handle.cancel(abandoned()));
      const result = await handle.result;
      const ms = Math.round(performance.now() - running.startedAt);
      this.o.logger.info({ from, to: to ?? null, ok: result.report.ok, entries: result.report.entries, size: result.report.size, duration_ms: ms }, "audit finished");
      return result;
    } finally {
      clearTimeout(timer);
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
