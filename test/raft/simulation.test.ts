// The CI slice of the deterministic simulator: hundreds of whole clusters under every fault kind,
// with all safety invariants, linearizability and post-heal liveness checked. Deterministic per seed.
import { formatSummary, replayCommand, runSeeds, type MutationName, type RunOptions } from "../../src/raft/sim/runner";

function run(o: RunOptions): void {
  const s = runSeeds(o);
  if (s.violations > 0) {
    const f = s.failures[0];
    throw new Error(
      `simulation violation at seed ${f.seed}: ${f.violation ?? ""}\nreplay: ${replayCommand({ ...o, seed: f.seed })}\n` + formatSummary(o, s),
    );
  }
  expect(s.seeds).toBe(o.seeds);
  expect(s.elections).toBeGreaterThan(o.seeds);
  expect(s.commits).toBeGreaterThan(o.seeds * 10);
}

describe("simulated clusters keep every invariant", () => {
  test("3 nodes, 200 seeds, all faults", () => run({ seeds: 200, seed: 1_000, nodes: 3, steps: 600 }));
  test("5 nodes, 120 seeds, all faults", () => run({ seeds: 120, seed: 2_000, nodes: 5, steps: 600 }));
  test("single node, 20 seeds", () => run({ seeds: 20, seed: 3_000, nodes: 1, steps: 300 }));
});

describe("the simulator catches deliberate bugs (mutation check)", () => {
  // Seed windows found by `npm run sim -- --mutate NAME --stop-on-failure`; see the closing note.
  const cases: [MutationName, number, number, RegExp][] = [
    ["prevote", 1, 5, /PreVote/],
    ["truncate-below-commit", 1, 5, /commit|lost|gone/],
  ];
  test.each(cases)("%s is caught within seeds %i..+%i", (mutation, seed, seeds, pattern) => {
    const s = runSeeds({ seeds, seed, nodes: 3, steps: 600, mutation, stopOnFailure: true });
    expect(s.violations).toBe(1);
    expect(s.failures[0].violation).toMatch(pattern);
  });
});
