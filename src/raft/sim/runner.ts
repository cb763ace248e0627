/** Runs many seeds and sums them up; shared by scripts/sim.ts and the jest simulation test. */
import { simulate, type FaultRates, type SimResult, type SimStats } from "./cluster";
import { mutant, type MutationName } from "./mutants";

export { MUTATION_NAMES, type MutationName } from "./mutants";

export interface RunOptions {
  readonly seeds: number;
  readonly seed: number;
  readonly nodes: number;
  readonly steps: number;
  readonly mutation?: MutationName;
  readonly faults?: Partial<FaultRates>;
  /** Appends coalesced per peer as the node runtime sends them (src/raft/coalesce.ts). */
  readonly coalesce?: boolean;
  /** Concurrent clients per cluster (default 3). */
  readonly clients?: number;
  /** Stop at the first failing seed (mutation hunting). */
  readonly stopOnFailure?: boolean;
  readonly onSeed?: (r: SimResult) => void;
}

export interface RunSummary {
  seeds: number;
  ticks: number;
  events: number;
  elections: number;
  commits: number;
  messages: number;
  appendsMerged: number;
  faults: SimStats["faults"];
  clientOps: SimStats["clientOps"];
  violations: number;
  failures: SimResult[];
}

/** The exact command that replays one seed. */
export function replayCommand(o: { seed: number; nodes: number; steps: number; mutation?: MutationName; coalesce?: boolean; clients?: number }): string {
  const m = o.mutation !== undefined ? ` --mutate ${o.mutation}` : "";
  const c = o.coalesce === true ? " --coalesce" : "";
  const k = o.clients !== undefined ? ` --clients ${o.clients}` : "";
  return `npm run sim -- --seeds 1 --seed ${o.seed} --nodes ${o.nodes} --steps ${o.steps}${m}${c}${k}`;
}

export function runSeeds(o: RunOptions): RunSummary {
  const sum: RunSummary = {
    seeds: 0,
    ticks: 0,
    events: 0,
    elections: 0,
    commits: 0,
    messages: 0,
    appendsMerged: 0,
    faults: { drops: 0, duplicates: 0, delays: 0, partitions: 0, crashes: 0, persistCrashes: 0, tornWrites: 0, snapshots: 0, snapshotInstalls: 0, configChanges: 0, transfers: 0 },
    clientOps: { ok: 0, unknown: 0, failed: 0 },
    violations: 0,
    failures: [],
  };
  const m = o.mutation !== undefined ? mutant(o.mutation) : undefined;
  for (let k = 0; k < o.seeds; k++) {
    const r = simulate({ seed: o.seed + k, nodes: o.nodes, steps: o.steps, faults: o.faults, makeRaft: m?.makeRaft, unsafeLocalReads: m?.localReads, coalesce: o.coalesce === true, ...(o.clients === undefined ? {} : { clients: o.clients }) });
    sum.seeds++;
    sum.ticks += r.stats.ticks;
    sum.events += r.stats.events;
    sum.elections += r.stats.elections;
    sum.commits += r.stats.commits;
    sum.messages += r.stats.messages;
    sum.appendsMerged += r.stats.appendsMerged;
    for (const key of Object.keys(sum.faults) as (keyof SimStats["faults"])[]) sum.faults[key] += r.stats.faults[key];
    for (const key of Object.keys(sum.clientOps) as (keyof SimStats["clientOps"])[]) sum.clientOps[key] += r.stats.clientOps[key];
    if (!r.ok) {
      sum.violations++;
      if (sum.failures.length < 20) sum.failures.push(r);
    }
    o.onSeed?.(r);
    if (!r.ok && o.stopOnFailure === true) break;
  }
  return sum;
}

/** The summary as the command line prints it. */
export function formatSummary(o: RunOptions, s: RunSummary): string {
  const f = s.faults;
  const lines = [
    `seeds: ${s.seeds} (from ${o.seed}), nodes: ${o.nodes}, steps/seed: ${o.steps}${o.mutation !== undefined ? `, mutation: ${o.mutation}` : ""}${o.coalesce === true ? ", Appends coalesced" : ""}`,
    `steps (ticks): ${s.ticks}, events: ${s.events}, messages: ${s.messages}${o.coalesce === true ? ` (after ${s.appendsMerged} Appends merged)` : ""}`,
    `elections: ${s.elections}, commits: ${s.commits}`,
    `faults injected: drops ${f.drops}, duplicates ${f.duplicates}, delays ${f.delays}, partitions ${f.partitions}, crashes ${f.crashes}, ` +
      `crashes-before-sync ${f.persistCrashes} (torn ${f.tornWrites}), snapshots ${f.snapshots}, snapshot-installs ${f.snapshotInstalls}, ` +
      `config-changes ${f.configChanges}, leader-transfers ${f.transfers}`,
    `client ops: ok ${s.clientOps.ok}, unknown ${s.clientOps.unknown}, failed ${s.clientOps.failed}`,
    `violations: ${s.violations}`,
  ];
  for (const r of s.failures) {
    lines.push(`FAIL seed ${r.seed} at tick ${r.atTick}: ${r.violation ?? ""}`);
    lines.push(`  replay: ${replayCommand({ seed: r.seed, nodes: o.nodes, steps: o.steps, mutation: o.mutation })}`);
  }
  return lines.join("\n");
}
