// `npm run mutate [-- folder...]`: StrykerJS over src/<folder>, one folder at a time, incremental.
// Shared settings live in stryker.config.json (jest runner, TypeScript checker, perTest coverage,
// concurrency 2); this script adds per folder what to mutate, which test files to run, and where the
// incremental file and the HTML report go (reports/mutation/, git-ignored). It prints per folder the
// counts, the mutation score and every surviving mutant (file:line, mutator, replacement).
//
// Only in-process test files are chosen per folder: mutants reached only inside a spawned server
// process are invisible to Stryker's coverage and show as NoCoverage. They are counted, not excluded.
//
// The last result of a whole folder (or of one of its parts) is kept in git, gzipped, as
// test/mutation/<folder>[.<part>].incremental.json.gz:
// a clean checkout starts from it, so a run retests only the mutants whose code or covering tests
// changed since (a first run of ledger/ takes over an hour on 2 cores). `--full` retests everything.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import type { MutantResult, PartialStrykerOptions } from "@stryker-mutator/api/core";

interface FolderPlan {
  /** Globs (relative to the repository root) of the files whose mutants are made. */
  mutate: string[];
  /** Jest testMatch globs: the in-process test files that exercise this folder. */
  tests: string[];
  /** Environment for the test runs (inherited by Stryker's runner processes), with why. */
  env?: Record<string, string>;
  /**
   * A folder too big for one sitting runs as parts (name → its files), each its own Stryker run with
   * its own incremental file and baseline, so what a part found is kept even if a later part is
   * stopped; the folder's score sums the parts. Every file of the folder must be in exactly one part.
   */
  parts?: Record<string, string[]>;
  /**
   * A part's own test files, in place of `tests`, with why. Fewer tests can only kill fewer mutants:
   * the score is the focused files' alone, never flattered by it.
   */
  partTests?: Record<string, string[]>;
}

const ROOT = path.resolve(__dirname, "..");
const REPORT_DIR = path.join(ROOT, "reports", "mutation");
/** Tracked: each folder's last whole-folder incremental report, gzipped (see the header). */
const BASELINE_DIR = path.join(ROOT, "test", "mutation");

// Test choice per folder, measured by the dry run: each list is the in-process test files that
// import the folder's code (directly or through a layer above it). Spawned-process suites
// (test/e2e, test/cluster, test/verify, most of test/api) add minutes and no coverage Stryker can see.
const PLANS: Record<string, FolderPlan> = {
  ledger: {
    mutate: ["src/ledger/**/*.ts"],
    tests: ["<rootDir>/test/ledger/**/*.test.ts", "<rootDir>/test/independent*.test.ts"],
    // ~3,100 mutants, ~2.5 hours on 2 cores in one run: six parts (small, proofs and formats took 24, 17
    // and 21 minutes), smallest files first.
    parts: {
      small: ["trust", "merkle-verify", "keys", "checkpoint", "bytes", "note", "entry", "canonical", "hash", "shapes"].map((f) => `src/ledger/${f}.ts`),
      proofs: ["receipt", "merkle"].map((f) => `src/ledger/${f}.ts`),
      formats: ["config", "record", "snapshot"].map((f) => `src/ledger/${f}.ts`),
      state: ["subject-tree", "state-machine", "anchor"].map((f) => `src/ledger/${f}.ts`),
      verify: ["src/ledger/verify.ts"],
      ijson: ["src/ledger/ijson.ts"],
    },
    partTests: {
      // Every ledger test parses JSON, so each ijson mutant was covered by ~900 tests (~3 mutants a
      // minute, 3.5 hours for the part). Its own files hold the JSONTestSuite cases, the exact
      // messages and the property tests: ijson is scored by the tests written for it.
      ijson: ["<rootDir>/test/ledger/ijson*.test.ts"],
    },
  },
  storage: {
    mutate: ["src/storage/**/*.ts"],
    tests: [
      "<rootDir>/test/storage/**/*.test.ts",
      "<rootDir>/test/node/raft-storage.test.ts",
      "<rootDir>/test/node/snapshots.test.ts",
    ],
  },
  api: {
    mutate: ["src/api/**/*.ts"],
    // The in-process files only: audit, metrics, metrics-scrape, stream and stream-slow drive a
    // spawned server (built from dist/, which a Stryker sandbox does not have), so they cost minutes
    // per mutant run and see no mutant.
    tests: [
      "<rootDir>/test/api/app*.test.ts", "<rootDir>/test/api/auth.test.ts", "<rootDir>/test/api/errors.test.ts",
      "<rootDir>/test/api/metrics-gauges.test.ts", "<rootDir>/test/api/params.test.ts", "<rootDir>/test/api/upgrade.test.ts",
      "<rootDir>/test/api/views.test.ts", "<rootDir>/test/api/stream-backoff.test.ts", "<rootDir>/test/api/openapi.test.ts", "<rootDir>/test/api/openapi-document.test.ts", "<rootDir>/test/api/loop-share.test.ts",
      "<rootDir>/test/api/audit-runner.test.ts", "<rootDir>/test/api/body.test.ts", "<rootDir>/test/api/server.test.ts", "<rootDir>/test/api/stream-inproc.test.ts",
      "<rootDir>/test/layers.test.ts",
    ],
    // ~2,700 mutants, ~90 minutes on 2 cores in one run: five parts, so a stopped run keeps what it did.
    parts: {
      small: ["auth", "receipts", "client-cert", "explorer", "snapshots", "errors", "metrics", "views", "params", "loop-share"].map((f) => `src/api/${f}.ts`),
      server: ["body", "upgrade", "server", "audit"].map((f) => `src/api/${f}.ts`),
      routes: ["src/api/routes.ts"],
      stream: ["src/api/stream.ts"],
      openapi: ["src/api/openapi.ts"],
    },
    partTests: {
      // openapi.ts only builds and serves GET /v1/openapi.json, and only openapi.test.ts asks for it;
      // but routes.ts imports it, so each of its static mutants (the module-level tables) ran every
      // test of the plan, and a run stopped at 54% after 1 h 34 min. It is scored by the tests that
      // read the document (openapi.test.ts against the code, openapi-document.test.ts against the
      // committed fixture), as ijson is by its own.
      openapi: ["<rootDir>/test/api/openapi*.test.ts"],
    },
  },
  raft: {
    mutate: ["src/raft/**/*.ts", "!src/raft/sim/**"],
    tests: [
      "<rootDir>/test/raft/core.test.ts",
      "<rootDir>/test/raft/units.test.ts",
      "<rootDir>/test/raft/trace.test.ts",
      "<rootDir>/test/raft/simulation.test.ts",
      "<rootDir>/test/raft/coalesce.test.ts",
    ],
    // The subset scored for raft: the simulation runs its first 10 seeds per cluster size, not 200,
    // 120 and 20. Whole, they cost ~80 s for each of ~1,700 mutants (38 hours on 2 cores); 10 seeds
    // of every fault kind, plus core.test.ts and the traces, take a few seconds.
    env: { RESONETICS_SIM_SEEDS: "10" },
  },
};
const DEFAULT_FOLDERS = ["ledger", "api", "storage", "raft"];

interface Summary {
  folder: string;
  mutants: number;
  killed: number;
  survived: number;
  noCoverage: number;
  timeouts: number;
  /** Compile errors found by the TypeScript checker, runtime errors, ignored: not part of the score. */
  invalid: number;
  /** (killed + timeouts) / (killed + timeouts + survived + noCoverage), in percent. */
  score: number;
  /** The same over covered mutants only (NoCoverage left out): what the chosen tests can see. */
  coveredScore: number;
  seconds: number;
  survivors: string[];
}

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function describe(m: MutantResult): string {
  const file = path.relative(ROOT, path.resolve(ROOT, m.fileName));
  const line = m.location?.start.line ?? 0; // MutantResult lines are 1-based (the report schema's)
  return `${file}:${line}  ${m.mutatorName}  → ${oneLine(m.replacement ?? "", 100)}`;
}

function summarize(folder: string, results: MutantResult[], seconds: number): Summary {
  const count = (status: string): number => results.filter((m) => m.status === status).length;
  const killed = count("Killed");
  const survived = count("Survived");
  const noCoverage = count("NoCoverage");
  const timeouts = count("Timeout");
  const detected = killed + timeouts;
  const valid = detected + survived + noCoverage;
  const covered = detected + survived;
  const byPlace = (a: MutantResult, b: MutantResult): number =>
    a.fileName.localeCompare(b.fileName) || (a.location?.start.line ?? 0) - (b.location?.start.line ?? 0);
  const undetected = results.filter((m) => m.status === "Survived" || m.status === "NoCoverage").sort(byPlace);
  return {
    folder,
    mutants: results.length,
    killed,
    survived,
    noCoverage,
    timeouts,
    invalid: results.length - valid,
    score: valid === 0 ? 100 : (100 * detected) / valid,
    coveredScore: covered === 0 ? 100 : (100 * detected) / covered,
    seconds,
    survivors: undetected.map((m) => `${m.status === "NoCoverage" ? "[no coverage] " : ""}${describe(m)}`),
  };
}

/** One run: a whole folder, one of its parts, or (`npm run mutate -- src/ledger/merkle.ts`) some of its files. */
interface Run {
  folder: string;
  /** The files asked for, relative to the root; empty for the whole folder. */
  files: string[];
  /** The plan's part these files are (its results are kept as a baseline like a whole folder's). */
  part?: string;
}

/** The name a run's reports go under: the folder, or the folder and the files' base names. */
function runName(run: Run): string {
  if (run.part !== undefined) return `${run.folder}.${run.part}`;
  if (run.files.length === 0) return run.folder;
  return [run.folder, ...run.files.map((f) => path.basename(f, ".ts"))].join(".");
}

/**
 * The property tests' seed in every process of a run (test/support/independent.ts testSeed). Stryker's
 * jest runner runs a mutant's covering tests by the full names it recorded in its dry run, and several
 * property tests carry their seed in their name: with a seed from the clock, each process named them
 * differently, so no mutant run ever matched them and no property test ever ran against a mutant
 * (its mutants counted as survived, unless another test killed them). One fixed seed keeps the names
 * equal in every process and from run to run (the incremental file matches tests by name), and makes
 * a run reproducible.
 */
const MUTATION_SEED = "1208";

const incrementalPath = (name: string): string => path.join(REPORT_DIR, `${name}.incremental.json`);
const baselinePath = (name: string): string => path.join(BASELINE_DIR, `${name}.incremental.json.gz`);

/** A whole-folder run with no local incremental file starts from the tracked baseline. */
function restoreBaseline(name: string): boolean {
  if (fs.existsSync(incrementalPath(name)) || !fs.existsSync(baselinePath(name))) return false;
  fs.writeFileSync(incrementalPath(name), zlib.gunzipSync(fs.readFileSync(baselinePath(name))));
  return true;
}

/**
 * Stryker reuses a surviving mutant's result unless a test that covers it was added. A static
 * mutant (in code run when a module loads) has no per-test coverage, so no new test ever counts as
 * covering it and its "survived" would stand forever, even after a test that kills it was written.
 * Those results are dropped from the incremental file before a run: Stryker then tests them again
 * (each one runs every test of the plan; there are a handful). Returns how many were dropped.
 */
function forgetStaticSurvivors(name: string): number {
  const file = incrementalPath(name);
  if (!fs.existsSync(file)) return 0;
  const report = JSON.parse(fs.readFileSync(file, "utf8")) as { files: Record<string, { mutants: Array<{ static?: boolean; status: string }> }> };
  let dropped = 0;
  for (const f of Object.values(report.files)) {
    const kept = f.mutants.filter((m) => !(m.static === true && (m.status === "Survived" || m.status === "NoCoverage")));
    dropped += f.mutants.length - kept.length;
    f.mutants = kept;
  }
  if (dropped > 0) fs.writeFileSync(file, JSON.stringify(report));
  return dropped;
}

/**
 * After a whole-folder run: its incremental file becomes the tracked baseline (commit it), without
 * what only names this machine (the checkout's path, the absolute config path): Stryker reads neither.
 */
function saveBaseline(name: string): void {
  const report = JSON.parse(fs.readFileSync(incrementalPath(name), "utf8")) as { projectRoot?: string; config?: { configFile?: string } };
  delete report.projectRoot;
  if (report.config?.configFile !== undefined) report.config.configFile = path.basename(report.config.configFile);
  fs.mkdirSync(BASELINE_DIR, { recursive: true });
  fs.writeFileSync(baselinePath(name), zlib.gzipSync(JSON.stringify(report), { level: 9 }));
}

async function runFolder(run: Run, plan: FolderPlan, full: boolean): Promise<{ summary: Summary; results: MutantResult[] }> {
  const name = runName(run);
  const whole = run.files.length === 0 || run.part !== undefined;
  if (whole && !full && restoreBaseline(name)) process.stdout.write(`mutate: ${name}: starting from ${path.relative(ROOT, baselinePath(name))}\n`);
  if (!full) {
    const again = forgetStaticSurvivors(name);
    if (again > 0) process.stdout.write(`mutate: ${name}: ${again} static mutant(s) left alive last time are tested again\n`);
  }
  // The tests' temp dirs go under one dir of this run, removed after it: a test runner Stryker stops
  // on a timeout never runs its afterAll, and its data dirs would be left in the system's temp dir.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `resonetics-mutate-${name.replace(/[^A-Za-z0-9.-]/g, "_")}-`));
  const env: Record<string, string> = { ...(plan.env ?? {}), TMPDIR: tmp, RESONETICS_SEED: MUTATION_SEED };
  const saved = Object.keys(env).map((k): [string, string | undefined] => [k, process.env[k]]);
  for (const [k, v] of Object.entries(env)) process.env[k] = v;
  const options: PartialStrykerOptions = {
    configFile: path.join(ROOT, "stryker.config.json"),
    mutate: run.files.length === 0 ? plan.mutate : run.files,
    incremental: true,
    // --full: every mutant is tested again (the result still becomes the incremental file).
    force: full,
    // A file-scoped run keeps its own incremental file: Stryker rewrites the file with only the
    // mutants of the run, so sharing the folder's would forget the folder's other files.
    incrementalFile: path.relative(ROOT, incrementalPath(name)),
    htmlReporter: { fileName: path.join("reports", "mutation", name, "index.html") },
    // One sandbox folder per run name, so runs of different folders or files can go side by side.
    tempDirName: path.join(".stryker-tmp", name),
    jest: {
      projectType: "custom",
      configFile: "jest.config.js",
      // Overrides jest.config.js: only this folder's in-process tests, and no custom reporter
      // (the summary reporter prints per run, i.e. once per mutant).
      // globalSetup is dropped: it builds dist/ for spawned-process suites, none of which run here,
      // and jest would otherwise run it (a tsc build) once per mutant run.
      config: { testMatch: (run.part === undefined ? undefined : plan.partTests?.[run.part]) ?? plan.tests, reporters: ["default"], globalSetup: null },
      enableFindRelatedTests: true,
    },
  };
  // Stryker ships ESM only; a dynamic import loads it from this CommonJS script.
  const { Stryker } = await import("@stryker-mutator/core");
  const started = Date.now();
  let results: MutantResult[];
  try {
    results = await new Stryker(options).runMutationTest();
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  if (whole) saveBaseline(name);
  return { summary: summarize(name, results, Math.round((Date.now() - started) / 1000)), results };
}

/** The folder's source files (what its plan mutates), relative to the root. */
function folderFiles(folder: string): string[] {
  const dir = path.join(ROOT, "src", folder);
  return fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts")).map((f) => path.join("src", folder, f)).sort();
}

/** Why the plan's parts do not cover the folder's files exactly once, or null. */
function partsProblem(folder: string, parts: Record<string, string[]>): string | null {
  const listed = Object.values(parts).flat();
  const files = folderFiles(folder);
  const missing = files.filter((f) => !listed.includes(f));
  const unknown = listed.filter((f) => !files.includes(f));
  const twice = listed.filter((f, i) => listed.indexOf(f) !== i);
  if (missing.length + unknown.length + twice.length === 0) return null;
  return `the parts of src/${folder} in scripts/mutate.ts must list each of its files once: missing ${missing.join(", ") || "none"}; no such file ${unknown.join(", ") || "none"}; twice ${twice.join(", ") || "none"}`;
}

/** A folder run: one Stryker run, or one per part and a score over all of them. */
async function runPlanned(run: Run, full: boolean): Promise<Summary> {
  const plan = PLANS[run.folder];
  if (run.files.length > 0 || run.part !== undefined || plan.parts === undefined) {
    const { summary } = await runFolder(run, plan, full);
    return summary;
  }
  const problem = partsProblem(run.folder, plan.parts);
  if (problem !== null) throw new Error(problem);
  const all: MutantResult[] = [];
  let seconds = 0;
  for (const [part, files] of Object.entries(plan.parts)) {
    const { summary, results } = await runFolder({ folder: run.folder, files, part }, plan, full);
    print(summary);
    all.push(...results);
    seconds += summary.seconds;
  }
  return summarize(run.folder, all, seconds);
}

function print(s: Summary): void {
  const lines = [
    ``,
    `=== src/${s.folder}: mutation score ${s.score.toFixed(2)}% (covered ${s.coveredScore.toFixed(2)}%) in ${s.seconds}s`,
    `mutants ${s.mutants}  killed ${s.killed}  survived ${s.survived}  no coverage ${s.noCoverage}  timeouts ${s.timeouts}  invalid ${s.invalid}`,
    `surviving mutants (${s.survivors.length}):`,
    ...s.survivors.map((line) => `  ${line}`),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

/**
 * Arguments to runs: each argument is a folder (`ledger`, `src/ledger/`) or a source file in one
 * (`src/ledger/merkle.ts`); files of one folder share a run. No argument: every folder. A string is
 * the reason the arguments are refused.
 */
function planRuns(args: readonly string[]): Run[] | string {
  if (args.length === 0) return DEFAULT_FOLDERS.map((folder) => ({ folder, files: [] }));
  const runs = new Map<string, Run>();
  for (const arg of args) {
    const partArg = /^([a-z]+):([a-z-]+)$/.exec(arg);
    if (partArg !== null) {
      const files = PLANS[partArg[1]]?.parts?.[partArg[2]];
      if (files === undefined) return `no part ${JSON.stringify(partArg[2])} of ${JSON.stringify(partArg[1])} in scripts/mutate.ts`;
      runs.set(arg, { folder: partArg[1], files, part: partArg[2] });
      continue;
    }
    const rel = arg.replace(/^\.\//, "").replace(/\/$/, "");
    const isFile = rel.endsWith(".ts");
    const folder = (isFile ? rel.replace(/^src\//, "").split("/")[0] : rel.replace(/^src\//, "")) ?? "";
    if (!(folder in PLANS)) return `unknown folder ${JSON.stringify(folder)} in ${JSON.stringify(arg)}; known: ${Object.keys(PLANS).join(", ")}`;
    if (isFile && !fs.existsSync(path.join(ROOT, rel))) return `no such file: ${rel}`;
    const run = runs.get(folder) ?? { folder, files: [] };
    if (isFile) run.files.push(rel.startsWith("src/") ? rel : `src/${rel}`);
    runs.set(folder, run);
  }
  return [...runs.values()];
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const full = args.includes("--full");
  const runs = planRuns(args.filter((a) => a !== "--full"));
  if (typeof runs === "string") {
    process.stderr.write(`mutate: ${runs}\n`);
    process.exitCode = 2;
    return;
  }
  process.chdir(ROOT);
  fs.mkdirSync(REPORT_DIR, { recursive: true });
  const summaries: Summary[] = [];
  for (const run of runs) {
    const summary = await runPlanned(run, full);
    fs.writeFileSync(path.join(REPORT_DIR, `${summary.folder}.summary.json`), `${JSON.stringify(summary, null, 2)}\n`);
    print(summary);
    summaries.push(summary);
  }
  const table = [
    ``,
    `| folder | mutants | killed | survived | no coverage | timeouts | score | covered score | time |`,
    `|---|---|---|---|---|---|---|---|---|`,
    ...summaries.map(
      (s) =>
        `| src/${s.folder} | ${s.mutants} | ${s.killed} | ${s.survived} | ${s.noCoverage} | ${s.timeouts} | ` +
        `${s.score.toFixed(2)}% | ${s.coveredScore.toFixed(2)}% | ${s.seconds}s |`,
    ),
  ];
  process.stdout.write(`${table.join("\n")}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`mutate: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
