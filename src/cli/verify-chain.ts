/** `resonetics verify-chain`: read-only offline verification of a data dir. Exit 0/1/2. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { SingleBar, Presets } from "cli-progress";
import { DB_FILE } from "../node/data-dir";
import { defaultWorkers, ParallelChainSource, VerifyWorkers } from "../node/verify-pipeline";
import { openLedgerReadonly } from "./open-readonly";
import { startProblem, verifyChain, VerifyReport, VerifyStart } from "../ledger/verify";
import { parseCheckpointFile, parseTrustFile, PinnedCheckpoint, TrustFile } from "../ledger/trust";

export interface VerifyCliOptions {
  readonly from: string;
  readonly json: boolean;
  readonly progress: boolean;
  /** --trust: the auditor's trust file (DESIGN.md "Offline verification"). */
  readonly trust?: string;
  /** --checkpoint: a signed checkpoint to pin (GET /v1/checkpoints/latest as saved), over the trust file's. */
  readonly checkpoint?: string;
  /** Worker threads that check entries ahead of the replay; 0: all on this thread. Default: by the log's length and the cores. */
  readonly workers?: number;
}

/**
 * Below this many entries verify-chain runs on one thread: starting workers costs tens of
 * milliseconds (more under a TypeScript loader), as much as checking a few thousand entries.
 */
export const PARALLEL_MIN_ENTRIES = 20_000;

/** The trust file and pinned checkpoint named by the flags, or why they cannot be read. */
function readTrust(o: VerifyCliOptions): { trust?: TrustFile; pinned?: PinnedCheckpoint } | string {
  const read = (file: string): string | Error => {
    try {
      return fs.readFileSync(file, "utf8");
    } catch (e) {
      return e as Error;
    }
  };
  let trust: TrustFile | undefined;
  let pinned: PinnedCheckpoint | undefined;
  if (o.trust !== undefined) {
    const text = read(o.trust);
    if (text instanceof Error) return `cannot read --trust ${o.trust}: ${text.message}`;
    const t = parseTrustFile(text);
    if (typeof t === "string") return `--trust ${o.trust} is not a trust file: ${t}`;
    trust = t;
  }
  if (o.checkpoint !== undefined) {
    if (trust === undefined) return "--checkpoint pins a checkpoint of the cluster a trust file pins: give --trust too";
    const text = read(o.checkpoint);
    if (text instanceof Error) return `cannot read --checkpoint ${o.checkpoint}: ${text.message}`;
    const c = parseCheckpointFile(text);
    if (typeof c === "string") return `--checkpoint ${o.checkpoint}: ${c}`;
    pinned = c;
  }
  return { ...(trust === undefined ? {} : { trust }), ...(pinned === undefined ? {} : { pinned }) };
}

/** The graded lines of a verified report: what is signed, what is only chained, or that nothing is anchored. */
export function gradeLines(report: VerifyReport): string {
  const lines: string[] = [];
  for (const g of report.grades ?? []) {
    const what = g.grade === "signed" ? "under checkpoints signed by keys chained from the pinned genesis"
      : g.grade === "chained, not yet signed" ? "after the last checkpoint signed by an endorsed key: hash-chained, covered by no trusted signature yet"
        : `no --trust file: checked only against the keys in this data dir; ${report.checkpointed_size ?? 0} entries under its own checkpoints`;
    lines.push(`${g.grade}: entries ${g.from}..${g.to} (${what})\n`);
  }
  return lines.join("");
}

export type Writer = (text: string) => void;

/** --from: genesis, snapshot (the latest anchor), or a snapshot anchor's index; null when it is none of these. */
export function parseStart(raw: string): VerifyStart | null {
  if (raw === "genesis" || raw === "snapshot") return raw;
  return /^[1-9][0-9]{0,15}$/.test(raw) && Number.isSafeInteger(Number(raw)) ? Number(raw) : null;
}

/** Returns the exit code: 0 verified, 1 a violation, 2 usage, unreadable input, or a start this data dir cannot serve. */
export function verifyChainCommand(dataDir: string, o: VerifyCliOptions, out: Writer, err: Writer): number {
  const fail = (message: string): number => {
    if (o.json) out(JSON.stringify({ ok: false, error: "unreadable", message }) + "\n");
    else err(`verify-chain: ${message}\n`);
    return 2;
  };
  const from = parseStart(o.from);
  if (from === null) return fail(`--from must be genesis, snapshot or a snapshot anchor's index, got ${o.from}`);
  const db = path.join(dataDir, DB_FILE);
  let pool: VerifyWorkers | undefined;
  const store = openLedgerReadonly(dataDir);
  if (typeof store === "string") return fail(store);
  try {
    // A start the data dir cannot serve is not a violation: exit 2, naming the starts it can serve.
    const problem = startProblem(store, from);
    if (problem !== null) {
      if (o.json) out(JSON.stringify({ ok: false, error: "start_unavailable", from, message: problem.reason, possible: problem.possible }) + "\n");
      else err(`verify-chain: cannot start from ${from}: ${problem.reason}\n  possible starts: ${problem.possible.length === 0 ? "none" : problem.possible.map((p) => `--from ${p}`).join(", ")}\n`);
      return 2;
    }
    const pins = readTrust(o);
    if (typeof pins === "string") return fail(pins);
    if (pins.trust !== undefined && from !== "genesis") return fail("--trust anchors a verification from genesis only: a snapshot's configuration is not chained from the pinned genesis here");
    let bar: SingleBar | undefined;
    const workers = o.workers ?? (store.lastIndex() >= PARALLEL_MIN_ENTRIES ? defaultWorkers(os.availableParallelism()) : 0);
    pool = workers === 0 ? undefined : new VerifyWorkers(workers);
    const report: VerifyReport = verifyChain(pool === undefined ? store : new ParallelChainSource(store, pool), {
      from,
      ...pins,
      onProgress: o.progress
        ? (done, total) => {
            if (bar === undefined && total >= 50_000) {
              bar = new SingleBar({ stream: process.stderr, format: "verify {bar} {value}/{total} entries" }, Presets.shades_classic);
              bar.start(total, 0);
            }
            bar?.update(done);
          }
        : undefined,
    });
    bar?.stop();
    if (o.json) out(JSON.stringify(report) + "\n");
    else if (report.ok) {
      out(`verified: ${report.entries} entries, ${report.checkpoints} checkpoints; head ${report.head}; root ${report.root}; state_root ${report.state_root}\n`);
      out(gradeLines(report));
    } else {
      out(`VIOLATION at index ${report.first_bad_index}: ${report.reason}\n`);
    }
    return report.ok ? 0 : 1;
  } catch (e) {
    return fail(`cannot read ${db}: ${(e as Error).message}`);
  } finally {
    pool?.close();
    store.close();
  }
}
