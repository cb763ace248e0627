// `npm run test:repeat -- N [jest args...]`: runs the jest suite (or the subset the jest args
// select) N times in a row, one run after the other, each with `--json --outputFile`, and prints
// per test how many runs it passed and failed. A test that failed in some runs but not all is
// flaky; one that failed in every run is failing. Exit 0 only when no test is flaky or failing
// (issue 8, acceptance 3: "10 consecutive runs of the suite show no flaky test").
//
// A series is one commit's: the work dir's series.json records the commit, the clean tree, N and the
// jest args. `--resume <dir>` continues a series that was stopped (a run of the whole suite takes
// ~11 minutes, ten take two hours) after its last run that ended, on the same commit and tree and
// with the same N and args, or refuses. A run that ended wrote its log, with or without a report (one
// without counts against the series, as it would have); a run cut off by the stop wrote none, counts
// for nothing, and is run again. The tally covers every run of the series.
//
// Examples:
//   npm run test:repeat -- 10                                  the whole suite, 10 times
//   npm run test:repeat -- 10 --resume /tmp/resonetics-repeat-Ab12Cd   the same series, on from where it stopped
//   npm run test:repeat -- 3 test/util test/ledger/merkle.test.ts
//   npm run test:repeat -- 5 -t "ReadIndex" test/raft/core.test.ts
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const ROOT = path.resolve(__dirname, "..");
/** More runs than this is a typo (10 is the acceptance figure; a full run takes minutes). */
const RUNS_MAX = 100;
/** One jest run that does not finish in this long is stopped: the whole suite is well under it. */
const RUN_TIMEOUT_MS = 60 * 60 * 1000;
/** Jest's own output per run, kept in a log file; this much of its tail is shown for a run with no report. */
const TAIL_CHARS = 4000;
/** In the work dir: what the series runs on (see the header). */
const SERIES_FILE = "series.json";

interface AssertionResult {
  readonly fullName: string;
  readonly status: "passed" | "failed" | "pending" | "skipped" | "todo" | "disabled" | "focused";
}
interface FileResult {
  readonly name: string;
  readonly status: string;
  readonly message: string;
  readonly assertionResults: readonly AssertionResult[];
}
interface JestReport {
  readonly numTotalTests: number;
  readonly numFailedTests: number;
  readonly testResults: readonly FileResult[];
}

interface Tally {
  passed: number;
  failed: number;
  /** Runs in which the test did not appear (its file did not load, or -t filtered it differently). */
  absent: number;
}

function usage(message: string): never {
  process.stderr.write(`repeat-tests: ${message}\nusage: npm run test:repeat -- N [--resume DIR] [jest args...]   (1 <= N <= ${RUNS_MAX})\n`);
  process.exit(2);
}

function parseArgs(argv: readonly string[]): { runs: number; resume: string | null; jestArgs: string[] } {
  const [first, ...rest] = argv;
  if (first === undefined || !/^[0-9]+$/.test(first)) usage(`the first argument is the number of runs, got ${JSON.stringify(first ?? null)}`);
  const runs = Number(first);
  if (runs < 1 || runs > RUNS_MAX) usage(`runs must be 1..${RUNS_MAX}, got ${runs}`);
  let resume: string | null = null;
  if (rest[0] === "--resume") {
    if (rest[1] === undefined || rest[1].startsWith("-")) usage("--resume needs the work dir of the series to continue");
    resume = path.resolve(rest[1]);
    rest.splice(0, 2);
  }
  for (const a of rest) {
    if (a === "--json" || a.startsWith("--outputFile")) usage(`${a} is set by this script`);
    if (a === "--resume") usage("--resume goes right after N");
  }
  return { runs, resume, jestArgs: rest };
}

/** What a series runs on: the commit, and whether tracked files differ from it. */
interface Series {
  readonly commit: string;
  readonly clean: boolean;
  readonly runs: number;
  readonly jestArgs: readonly string[];
}

function git(args: readonly string[]): string {
  const r = spawnSync("git", args, { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`git ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout.trim();
}

function currentSeries(runs: number, jestArgs: readonly string[]): Series {
  return { commit: git(["rev-parse", "HEAD"]), clean: git(["status", "--porcelain", "--untracked-files=no"]) === "", runs, jestArgs };
}

/**
 * The runs of a stopped series that ended, 1..k in a row, after checking the series is this
 * one: the same commit, a clean tree then and now (a dirty tree's runs may be of other code), the
 * same N and jest args. Refuses (exit 2) otherwise.
 */
function resumable(work: string, now: Series): number {
  const file = path.join(work, SERIES_FILE);
  if (!fs.existsSync(file)) usage(`${work} holds no ${SERIES_FILE}: not a series this script started`);
  const then = JSON.parse(fs.readFileSync(file, "utf8")) as Series;
  const differs = then.commit !== now.commit ? `it ran on ${then.commit}, HEAD is ${now.commit}`
    : !then.clean || !now.clean ? "tracked files differed from the commit (then or now): its runs may not be of the same code"
      : then.runs !== now.runs ? `it is a series of ${then.runs} runs, not ${now.runs}`
        : JSON.stringify(then.jestArgs) !== JSON.stringify(now.jestArgs) ? `its jest args were ${JSON.stringify(then.jestArgs)}`
          : null;
  if (differs !== null) usage(`cannot resume ${work}: ${differs}`);
  // A run that ended wrote its log (after jest exited, report or not); one cut off by the stop did not.
  let done = 0;
  while (done < now.runs && fs.existsSync(path.join(work, `run-${done + 1}.log`))) done++;
  return done;
}

/** One jest run; its report, or null (with the reason) when jest wrote none. */
function runOnce(i: number, runs: number, jestArgs: readonly string[], work: string): { report: JestReport | null; exit: number | null; log: string; why?: string } {
  const out = path.join(work, `run-${i}.json`);
  const log = path.join(work, `run-${i}.log`);
  const jest = require.resolve("jest/bin/jest", { paths: [ROOT] });
  const started = Date.now();
  process.stdout.write(`run ${i}/${runs}: jest ${jestArgs.join(" ")} ... `);
  const r = spawnSync(process.execPath, [jest, "--json", "--outputFile", out, ...jestArgs], {
    cwd: ROOT, encoding: "utf8", timeout: RUN_TIMEOUT_MS, maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, CI: process.env.CI ?? "true" },
  });
  fs.writeFileSync(log, `${r.stdout ?? ""}\n--- stderr ---\n${r.stderr ?? ""}`);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (r.error !== undefined) {
    process.stdout.write(`could not run (${r.error.message}) after ${seconds} s\n`);
    return { report: null, exit: r.status, log, why: r.error.message };
  }
  if (!fs.existsSync(out)) {
    process.stdout.write(`no report (exit ${r.status}, signal ${r.signal}) after ${seconds} s; log ${log}\n`);
    return { report: null, exit: r.status, log, why: `jest wrote no report (exit ${r.status}); tail of its output:\n${(r.stderr ?? "").slice(-TAIL_CHARS)}` };
  }
  const report = JSON.parse(fs.readFileSync(out, "utf8")) as JestReport;
  process.stdout.write(`${report.numTotalTests - report.numFailedTests}/${report.numTotalTests} passed, exit ${r.status}, ${seconds} s\n`);
  return { report, exit: r.status, log };
}

/** "test/e2e/x.test.ts › describe › name" for a test; a file that failed to load gets one entry of its own. */
function keysOf(report: JestReport): Map<string, "passed" | "failed"> {
  const keys = new Map<string, "passed" | "failed">();
  for (const f of report.testResults) {
    const file = path.relative(ROOT, f.name);
    if (f.status === "failed" && f.assertionResults.length === 0) {
      keys.set(`${file} › (test file failed to run)`, "failed");
      continue;
    }
    for (const a of f.assertionResults) {
      if (a.status !== "passed" && a.status !== "failed") continue; // skipped/todo: neither
      // A seed printed in a test's name (fast-check, RESONETICS_SEED) differs per run: one test still.
      // A test named after its run's seed ("seed 123", "RESONETICS_SEED=123") is one test in every run.
      const key = `${file} › ${a.fullName.replace(/\bseed([ =:]*)\d+/gi, "seed$1<n>").replace(/\bRESONETICS_SEED=\d+/g, "RESONETICS_SEED=<n>")}`;
      // The same full name twice in a file: one failure makes the key failed.
      keys.set(key, keys.get(key) === "failed" ? "failed" : a.status);
    }
    // A file whose tests all passed but which failed anyway (an afterAll, a leak check) is a failure too.
    if (f.status === "failed" && f.assertionResults.every((a) => a.status !== "failed")) keys.set(`${file} › (test file failed after its tests)`, "failed");
  }
  return keys;
}

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join("  ")).join("\n");
}

/** A run of the stopped series, read back: its report, or why it has none (it counts as a run without one). */
function earlierRun(work: string, i: number, runs: number): { report: JestReport | null; log: string; why?: string } {
  const file = path.join(work, `run-${i}.json`);
  const log = path.join(work, `run-${i}.log`);
  if (!fs.existsSync(file)) {
    process.stdout.write(`run ${i}/${runs}: from the stopped series, no report; log ${log}\n`);
    return { report: null, log, why: "jest wrote no report (in the stopped series)" };
  }
  const report = JSON.parse(fs.readFileSync(file, "utf8")) as JestReport;
  process.stdout.write(`run ${i}/${runs}: from the stopped series, ${report.numTotalTests - report.numFailedTests}/${report.numTotalTests} passed\n`);
  return { report, log };
}

function main(): void {
  const { runs, resume, jestArgs } = parseArgs(process.argv.slice(2));
  const series = currentSeries(runs, jestArgs);
  let work: string;
  let done = 0;
  if (resume === null) {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-repeat-"));
    fs.writeFileSync(path.join(work, SERIES_FILE), JSON.stringify(series, null, 2) + "\n");
  } else {
    work = resume;
    done = resumable(work, series);
  }
  process.stdout.write(`series on ${series.commit}${series.clean ? "" : " (tracked files changed: cannot be resumed)"}, work dir ${work}\n`);
  const tallies = new Map<string, Tally>();
  const noReport: string[] = [];
  for (let i = 1; i <= runs; i++) {
    const r = i <= done ? earlierRun(work, i, runs) : runOnce(i, runs, jestArgs, work);
    if (r.report === null) {
      noReport.push(`run ${i}: ${r.why ?? "no report"} (log ${r.log})`);
      continue;
    }
    for (const [key, status] of keysOf(r.report)) {
      const t = tallies.get(key) ?? { passed: 0, failed: 0, absent: 0 };
      t[status]++;
      tallies.set(key, t);
    }
  }
  const reported = runs - noReport.length;
  for (const t of tallies.values()) t.absent = reported - t.passed - t.failed;
  const flaky = [...tallies].filter(([, t]) => t.failed > 0 && (t.passed > 0 || t.absent > 0)).sort((a, b) => b[1].failed - a[1].failed);
  const failing = [...tallies].filter(([, t]) => t.failed > 0 && t.passed === 0 && t.absent === 0);
  const unstable = [...tallies].filter(([, t]) => t.failed === 0 && t.absent > 0);

  process.stdout.write("\n" + table([
    ["runs", "with a report", "tests", "passed every run", "flaky", "failing every run", "missing in some run"],
    [String(runs), String(reported), String(tallies.size), String(tallies.size - flaky.length - failing.length - unstable.length), String(flaky.length), String(failing.length), String(unstable.length)],
  ]) + "\n");
  if (flaky.length > 0) {
    process.stdout.write("\nflaky (failed in some runs, not all):\n" + table([["failed", "passed", "test"], ...flaky.map(([k, t]) => [`${t.failed}/${reported}`, String(t.passed), k])]) + "\n");
  }
  if (failing.length > 0) process.stdout.write(`\nfailing in every run:\n${failing.map(([k]) => `  ${k}`).join("\n")}\n`);
  if (unstable.length > 0) process.stdout.write(`\nmissing in some runs (never failed):\n${unstable.map(([k, t]) => `  ${k} (absent ${t.absent}/${reported})`).join("\n")}\n`);
  if (noReport.length > 0) process.stdout.write(`\nruns without a report:\n${noReport.map((l) => `  ${l}`).join("\n")}\n`);
  process.stdout.write(`\nflaky: ${flaky.length}\nreports and jest logs: ${work}\n`);
  process.exitCode = flaky.length > 0 || failing.length > 0 || noReport.length > 0 ? 1 : 0;
}

main();
