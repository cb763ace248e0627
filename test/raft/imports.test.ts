// DESIGN.md: the Raft core is pure. Nothing under src/raft may import I/O, clocks or the layers above.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";

const ROOT = resolve(__dirname, "../../src/raft");
const ALLOWED_DIRS = ["src/raft", "src/ledger", "src/util"].map((d) => resolve(__dirname, "../..", d));
const FORBIDDEN_PACKAGES = /^(node:|fs$|path$|crypto$|os$|child_process$|worker_threads$|express|ws$|better-sqlite3|pino)/;

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

const IMPORT_RE = /(?:^|\n)\s*(?:import|export)[^'"`;]*?from\s*["']([^"']+)["']|require\(\s*["']([^"']+)["']\s*\)|import\(\s*["']([^"']+)["']\s*\)/g;

describe("src/raft stays pure", () => {
  const files = tsFiles(ROOT);

  test("finds the core's files", () => {
    expect(files.length).toBeGreaterThan(5);
  });

  test.each(files.map((f) => [relative(ROOT, f), f]))("%s imports nothing impure", (_name, file) => {
    const text = readFileSync(file, "utf8");
    const bad: string[] = [];
    for (const m of text.matchAll(IMPORT_RE)) {
      const spec = m[1] ?? m[2] ?? m[3];
      if (spec.startsWith(".")) {
        const target = resolve(join(file, ".."), spec);
        if (!ALLOWED_DIRS.some((d) => target.startsWith(d + "/") || target === d)) bad.push(spec);
      } else {
        // No package at all directly: pure helpers reach the core only through src/ledger.
        bad.push(FORBIDDEN_PACKAGES.test(spec) ? `${spec} (I/O)` : spec);
      }
    }
    expect(bad).toEqual([]);
  });

  test("no ambient clocks or randomness in the core", () => {
    for (const f of files) {
      const text = readFileSync(f, "utf8").replace(/\/\/.*|\/\*[\s\S]*?\*\//g, "");
      expect({ file: relative(ROOT, f), hits: text.match(/Math\.random|Date\.now|new Date\(|performance\.now|setTimeout|setInterval|process\./g) }).toEqual({ file: relative(ROOT, f), hits: null });
    }
  });
});

describe("planted bugs stay in the harness", () => {
  const SRC = resolve(__dirname, "../../src");
  const MUTANTS = resolve(SRC, "raft/sim/mutants");
  const SIM = resolve(SRC, "raft/sim");

  test("nothing in src/ outside the simulator imports the mutants", () => {
    const bad: string[] = [];
    for (const file of tsFiles(SRC)) {
      if (file.startsWith(SIM + "/")) continue;
      for (const m of readFileSync(file, "utf8").matchAll(IMPORT_RE)) {
        const spec = m[1] ?? m[2] ?? m[3];
        if (spec.startsWith(".") && resolve(join(file, ".."), spec) === MUTANTS) bad.push(relative(SRC, file));
      }
    }
    expect(bad).toEqual([]);
  });

  test("the core outside sim/ has no test switch (no mutation flag, no unsafe option)", () => {
    for (const f of tsFiles(ROOT).filter((x) => !x.startsWith(SIM + "/"))) {
      const code = readFileSync(f, "utf8").replace(/\/\/.*|\/\*[\s\S]*?\*\//g, "");
      expect({ file: relative(ROOT, f), hits: code.match(/mutation|unsafe|allowBelowCommit/gi) }).toEqual({ file: relative(ROOT, f), hits: null });
    }
  });
});
