// Every random test's seed can be set from outside: RESONETICS_SEED reproduces a failure, and
// `npm run mutate` sets it for all of a run's processes (Stryker runs a mutant's tests by the names
// of its dry run, and a test named with a clock seed would be named differently in every process,
// so it would never run against a mutant). A seed drawn from the clock, Math.random or crypto must
// therefore come through testSeed() (test/support/independent.ts) or read RESONETICS_SEED itself.
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";

const TEST = resolve(__dirname);

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? (e.name === "fixtures" ? [] : files(join(dir, e.name))) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** A line that makes a seed from a source outside the test's control. */
const CLOCK_SEED = /seed\w*\s*[:=][^;]*(Date\.now\(\)|Math\.random\(\)|performance\.now\(\)|randomInt\(|randomBytes\()/i;

describe("test seeds", () => {
  test("every seed drawn from the clock or a random source honours RESONETICS_SEED", () => {
    const offending: string[] = [];
    for (const f of files(TEST)) {
      if (f === join(TEST, "support", "independent.ts") || f === __filename) continue; // testSeed() itself; this file's examples
      readFileSync(f, "utf8").split("\n").forEach((line, i) => {
        if (CLOCK_SEED.test(line) && !line.includes("RESONETICS_SEED")) offending.push(`${relative(TEST, f)}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(offending).toEqual([]);
  });

  test("the check sees what it looks for", () => {
    expect(CLOCK_SEED.test("  const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);")).toBe(true);
    expect(CLOCK_SEED.test("const SEED = Math.random() * 2 ** 31;")).toBe(true);
    expect(CLOCK_SEED.test("const SEED = testSeed();")).toBe(false);
  });
});
