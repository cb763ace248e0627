// Builds the audit explorer into dist/explorer/: index.html, explorer.css, favicon.svg and one script bundle,
// explorer.js (esbuild, for the browser). The bundle may hold only the page's own code, the pure
// ledger code it verifies with (src/ledger, src/util) and the packages that code uses (noble,
// canonicalize): anything else, a node: module above all, fails the build instead of shipping.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const esbuild = require("esbuild");

const ROOT = path.join(__dirname, "..", "..");
const OUT = path.join(ROOT, "dist", "explorer");
/** Where the bundle's inputs may come from (paths relative to the repository, / separated). */
const ALLOWED_INPUTS = [/^web\/explorer\//, /^src\/ledger\//, /^src\/util\//, /^node_modules\/@noble\//, /^node_modules\/canonicalize\//];

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const result = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: [path.join(__dirname, "main.ts")],
    outfile: path.join(OUT, "explorer.js"),
    bundle: true,
    format: "iife",
    // platform browser: an import of a node: module does not resolve, so it cannot reach the page.
    platform: "browser",
    target: ["es2022"],
    minify: true,
    legalComments: "eof",
    tsconfig: path.join(__dirname, "tsconfig.json"),
    metafile: true,
    logLevel: "warning",
  });
  const bad = Object.keys(result.metafile.inputs).filter((p) => !ALLOWED_INPUTS.some((re) => re.test(p.split(path.sep).join("/"))));
  if (bad.length > 0) throw new Error(`the explorer bundle would include modules it must not (not pure ledger code): ${bad.join(", ")}`);
  for (const f of ["index.html", "explorer.css", "favicon.svg"]) fs.copyFileSync(path.join(__dirname, f), path.join(OUT, f));
}

main().catch((err) => {
  process.stderr.write(`explorer build failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
