/**
 * Deterministic Raft cluster simulation:
 *   npm run sim -- --seeds N --seed S [--nodes 3|5] [--steps K] [--mutate figure8|vote-persistence|truncate-below-commit|prevote] [--coalesce] [--clients N]
 * --coalesce works as the node runtime does: requests join the node's next Ready, whose messages go
 * through coalesceAppends. --clients sets the concurrent clients per cluster (3 by default).
 * Prints a summary; on a violation prints the seed and the exact replay command and exits 1.
 */
import { formatSummary, MUTATION_NAMES, runSeeds, type MutationName, type RunOptions } from "../src/raft/sim/runner";

function parse(argv: string[]): RunOptions & { quiet: boolean } {
  const opts = { seeds: 100, seed: 1, nodes: 3, steps: 600, mutation: undefined as MutationName | undefined, stopOnFailure: false, quiet: false, coalesce: false, clients: undefined as number | undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isSafeInteger(v) || v < 0) usage(`${a} needs a non-negative integer`);
      return v;
    };
    switch (a) {
      case "--seeds": opts.seeds = num(); break;
      case "--seed": opts.seed = num(); break;
      case "--nodes": opts.nodes = num(); break;
      case "--steps": opts.steps = num(); break;
      case "--stop-on-failure": opts.stopOnFailure = true; break;
      case "--quiet": opts.quiet = true; break;
      case "--coalesce": opts.coalesce = true; break;
      case "--clients": opts.clients = num(); break;
      case "--mutate": {
        const m = argv[++i] as MutationName;
        if (!MUTATION_NAMES.includes(m)) usage(`--mutate takes one of ${MUTATION_NAMES.join(", ")}`);
        opts.mutation = m;
        break;
      }
      default: usage(`unknown argument ${a}`);
    }
  }
  if (opts.nodes < 1 || opts.nodes > 7) usage("--nodes must be 1..7");
  return opts;
}

function usage(msg: string): never {
  process.stderr.write(`${msg}\nusage: npm run sim -- --seeds N --seed S [--nodes 3|5] [--steps K] [--mutate NAME] [--stop-on-failure] [--coalesce] [--clients N]\n`);
  process.exit(2);
}

const opts = parse(process.argv.slice(2));
const started = Date.now();
let done = 0;
const summary = runSeeds({
  ...opts,
  onSeed: (r) => {
    done++;
    if (!r.ok) process.stdout.write(`seed ${r.seed}: VIOLATION at tick ${r.atTick}: ${r.violation ?? ""}\n`);
    if (!opts.quiet && done % 1000 === 0) process.stderr.write(`... ${done}/${opts.seeds} seeds, ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  },
});
process.stdout.write(formatSummary(opts, summary) + `\nwall time: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
process.exit(summary.violations > 0 ? 1 : 0);
