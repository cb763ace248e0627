// DESIGN.md "Top-level layout" and STYLE.md's dependency direction, for every folder of src/:
// api → node → raft / ledger; storage implements ledger's ports (it may import ledger); ledger/,
// raft/ (and util/, which both use) import no I/O module and nothing above them; nothing lower
// imports anything higher. Every import of every file is parsed (static, re-export, side-effect,
// require and dynamic import, type-only included: a type import couples the layers as well).
// A failure lists each offending import as file:line, the import, and the rule it breaks.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative, resolve, sep } from "node:path";

const SRC = resolve(__dirname, "../src");

/**
 * Which folders of src/ each folder may import (itself included). cli is the composition root;
 * client is the HTTP client library of the REST API (wire formats and proof checks over ledger),
 * used by cli and by node's join.
 */
const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  util: ["util"],
  ledger: ["ledger", "util"],
  raft: ["raft", "ledger", "util"],
  storage: ["storage", "ledger", "util"],
  client: ["client", "ledger", "util"],
  node: ["node", "raft", "ledger", "storage", "client", "util"],
  // api never imports storage: it reads through node/'s ports (its own test below names the rule).
  api: ["api", "node", "ledger", "util"],
  cli: ["cli", "api", "node", "raft", "ledger", "storage", "client", "util"],
};

/** Pure folders: no node builtin at all, and only these packages (pure computation, no I/O). */
const PURE = new Set(["util", "ledger", "raft"]);
const PURE_PACKAGES: Readonly<Record<string, readonly string[]>> = {
  util: [],
  ledger: ["@noble/hashes", "@noble/ed25519", "canonicalize"],
  raft: [], // the core reaches hashing only through ledger/
};
/** Named for the failure message: the I/O modules DESIGN.md keeps out of ledger/ and raft/. */
const IO_MODULES = ["express", "ws", "better-sqlite3", "pino", "prom-client", "commander", "cli-progress", "undici", "tsx"];
/** Packages that belong to exactly one layer: SQLite is storage's, HTTP serving is api's, argv is cli's. */
const OWNED_PACKAGES: Readonly<Record<string, readonly string[]>> = {
  "better-sqlite3": ["storage"],
  express: ["api"],
  "prom-client": ["api"],
  commander: ["cli"],
  "cli-progress": ["cli"],
};

interface Import {
  readonly file: string; // relative to src/
  readonly line: number;
  readonly spec: string;
  readonly typeOnly: boolean;
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

// `import ... from "x"` / `export ... from "x"` (multi-line too), `import "x"`, `require("x")`, `import("x")`.
const IMPORT_RE =
  /\b(import|export)(\s+type\b)?[^'"`;]*?\bfrom\s*["']([^"']+)["']|\bimport\s*["']([^"']+)["']|\brequire\(\s*["']([^"']+)["']\s*\)|\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** Comments blanked out (newlines kept, so line numbers stay right); "ws://" in a string is not a comment. */
const stripComments = (text: string): string =>
  text.replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, " ")).replace(/(^|[\s;{}()])\/\/.*$/gm, "$1");

/** Every import of one source text. */
function importsOf(file: string, text: string): Import[] {
  const body = stripComments(text);
  const out: Import[] = [];
  for (const m of body.matchAll(IMPORT_RE)) {
    const spec = m[3] ?? m[4] ?? m[5] ?? m[6];
    const line = body.slice(0, m.index).split("\n").length;
    out.push({ file, line, spec, typeOnly: m[2] !== undefined });
  }
  return out;
}

const folderOf = (relFile: string): string => (relFile.includes(sep) ? relFile.split(sep)[0] : "(src root)");
/** The src/ folder a relative import lands in ("../raft" is the folder raft/ itself, by its index.ts). */
function targetFolder(absFile: string, spec: string): string {
  const target = relative(SRC, resolve(dirname(absFile), spec));
  const isDir = ((): boolean => {
    try {
      return statSync(join(SRC, target)).isDirectory();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false; // a module path without its .ts
      throw err;
    }
  })();
  return isDir ? target.split(sep)[0] : folderOf(target);
}
const packageName = (spec: string): string => (spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]);
const isBuiltin = (spec: string): boolean => spec.startsWith("node:") || builtinModules.includes(packageName(spec));

/** The rule an import breaks, or null. Relative imports are resolved to the src/ folder they land in. */
function violation(imp: Import, absFile: string): string | null {
  const from = folderOf(imp.file);
  const allowed = MAY_IMPORT[from];
  if (allowed === undefined) return `folder ${from}/ has no place in the layer map of test/layers.test.ts (add it, with what it may import)`;
  if (imp.spec.startsWith(".")) {
    const target = relative(SRC, resolve(dirname(absFile), imp.spec));
    if (target.startsWith("..")) return `reaches outside src/ (${target})`;
    const to = targetFolder(absFile, imp.spec);
    if (!allowed.includes(to)) return `${from}/ may not import ${to}/ (it may import ${allowed.join(", ")})`;
    return null;
  }
  const pkg = packageName(imp.spec);
  if (PURE.has(from)) {
    if (isBuiltin(imp.spec)) return `${from}/ is pure: ${imp.spec} is a node builtin (I/O belongs behind a port that storage/ or node/ implements)`;
    if (!PURE_PACKAGES[from].includes(pkg)) {
      return `${from}/ is pure: ${IO_MODULES.includes(pkg) ? `${pkg} is an I/O module` : `${pkg} is not on its list of pure packages (${PURE_PACKAGES[from].join(", ") || "none"})`}`;
    }
  }
  const owners = OWNED_PACKAGES[pkg];
  if (owners !== undefined && !owners.includes(from) && from !== "cli") return `${pkg} belongs to ${owners.join(", ")}/ only`;
  return null;
}

const files = tsFiles(SRC);
const all: Array<Import & { abs: string }> = files.flatMap((abs) => importsOf(relative(SRC, abs), readFileSync(abs, "utf8")).map((i) => ({ ...i, abs })));
const show = (i: Import, why: string): string => `src/${i.file}:${i.line} imports ${i.typeOnly ? "type from " : ""}"${i.spec}": ${why}`;

describe("layers of src/ (DESIGN.md, STYLE.md dependency direction)", () => {
  test("the parser finds the imports (so an empty result means something)", () => {
    expect(files.length).toBeGreaterThan(40);
    expect(all.length).toBeGreaterThan(200);
    const sample = importsOf(
      "x/y.ts",
      ['import { a,', '  b } from "./m1";', 'import type { T } from "../m2";', 'export * from "m3";', 'import "m4";', 'const c = require("m5");',
        'const d = await import("m6");', '// import z from "commented";', '/* import w from "blocked"; */', 'const u = "ws://h"; import q from "m7";'].join("\n"),
    );
    expect(sample.map((i) => [i.spec, i.line, i.typeOnly])).toEqual([
      ["./m1", 1, false], ["../m2", 3, true], ["m3", 4, false], ["m4", 5, false], ["m5", 6, false], ["m6", 7, false], ["m7", 10, false],
    ]);
  });

  test("every folder of src/ is in the layer map", () => {
    const folders = [...new Set(files.map((f) => folderOf(relative(SRC, f))))].sort();
    expect(folders.filter((f) => MAY_IMPORT[f] === undefined)).toEqual([]);
  });

  // Known violations, each with why it is still here. The list must match exactly: a new one
  // fails, and so does one that was fixed (remove it from the list), so it only ever shrinks.
  const KNOWN: Readonly<Record<string, string>> = {
    'src/client/client.ts imports type from "../api/views"': "client takes EntryView (the wire shape) from api/; reported to the lead",
  };
  const key = (i: Import): string => `src/${i.file} imports ${i.typeOnly ? "type from " : ""}"${i.spec}"`;

  test.each(Object.keys(MAY_IMPORT))("%s/ imports only what its layer allows", (folder) => {
    const bad = all
      .filter((i) => folderOf(i.file) === folder)
      .flatMap((i) => {
        const why = violation(i, i.abs);
        return why === null || KNOWN[key(i)] !== undefined ? [] : [show(i, why)];
      });
    expect(bad).toEqual([]);
  });

  test("the known violations are still exactly these (fix one: delete it from KNOWN)", () => {
    const found = all.filter((i) => violation(i, i.abs) !== null).map(key).filter((k) => KNOWN[k] !== undefined);
    expect([...new Set(found)].sort()).toEqual(Object.keys(KNOWN).sort());
  });

  test("ledger/ and raft/ import no I/O module and nothing from node/, api/, storage/, cli/", () => {
    // Restated on its own, whatever the map above says: DESIGN.md's hard rule.
    const bad = all
      .filter((i) => ["ledger", "raft"].includes(folderOf(i.file)))
      .flatMap((i) => {
        if (i.spec.startsWith(".")) {
          const to = targetFolder(i.abs, i.spec);
          return ["node", "api", "storage", "cli", "client"].includes(to) ? [show(i, `imports ${to}/`)] : [];
        }
        return isBuiltin(i.spec) || IO_MODULES.includes(packageName(i.spec)) ? [show(i, "I/O module")] : [];
      });
    expect(bad).toEqual([]);
  });
});

// api reaches storage only through node/'s ports (the audit's read-only snapshot is one); the rule
// has a test of its own so that its failure names it.
describe("src/api imports no storage module", () => {
  const KNOWN_API_STORAGE: string[] = [];
  test("no api → storage import", () => {
    const found = all
      .filter((i) => folderOf(i.file) === "api" && i.spec.startsWith(".") && targetFolder(i.abs, i.spec) === "storage")
      .map((i) => `src/${i.file} imports ${i.typeOnly ? "type from " : ""}"${i.spec}"`);
    expect([...new Set(found)].sort()).toEqual(KNOWN_API_STORAGE);
  });

  // Issue 9: api depends on the writes and reader interfaces only. Of node/ it may name the ports
  // (types) and the record-type registry (validation shared by the API and apply), nothing else:
  // not the runtime, not the node class, not the reader's implementation, which hold the store.
  const API_MAY_USE_OF_NODE = new Set(["node/ports", "node/record-types"]);
  test("api uses node/ only through its ports", () => {
    const found = all
      .filter((i) => folderOf(i.file) === "api" && i.spec.startsWith(".") && targetFolder(i.abs, i.spec) === "node")
      .map((i) => ({ i, target: relative(SRC, resolve(dirname(i.abs), i.spec)).split(sep).join("/") }))
      .filter(({ target }) => !API_MAY_USE_OF_NODE.has(target))
      .map(({ i, target }) => `${show(i, `api/ may use of node/ only ${[...API_MAY_USE_OF_NODE].join(", ")}`)} (${target})`);
    expect(found).toEqual([]);
  });

  test("the ports expose no store: no method of a port returns the Store class", () => {
    const ports = readFileSync(join(SRC, "node/ports.ts"), "utf8");
    // Types from storage/ appear only as data shapes (StoredCheckpoint), never the Store itself.
    expect(ports).not.toMatch(/\bStore\b(?!d)/);
    expect(ports).not.toMatch(/import\s+\{[^}]*\bStore\b[^d]/);
  });
});
