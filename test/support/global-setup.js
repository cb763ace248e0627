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
};
