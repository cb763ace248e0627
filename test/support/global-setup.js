// Jest's globalSetup: builds dist/ (incremental tsc) before any test runs, so the processes tests
// start through bin/resonetics run the compiled code of exactly these sources (bin/resonetics would
// otherwise fall back to tsx, and say so on stderr, after a source file changed).
"use strict";
const { execFileSync } = require("node:child_process");
const path = require("node:path");

module.exports = async function globalSetup() {
  const root = path.join(__dirname, "..", "..");
  execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", path.join(root, "tsconfig.build.json")], { cwd: root, stdio: "inherit" });
  execFileSync(process.execPath, [path.join(root, "scripts", "stamp-build.js")], { cwd: root, stdio: "inherit" });
  // The audit explorer's bundle (dist/explorer/), which the nodes serve at /explorer (~0.1 s; its
  // type check runs in `npm run build` and `npm run typecheck`, not before every test run).
  execFileSync(process.execPath, [path.join(root, "web", "explorer", "build.js")], { cwd: root, stdio: "inherit" });
};
