// After a successful `tsc -p tsconfig.build.json`: marks dist/ as built from the current src/
// (bin/resonetics runs dist/ only while no file in src/ is newer than this stamp).
"use strict";
const fs = require("node:fs");
const path = require("node:path");
fs.writeFileSync(path.join(__dirname, "..", "dist", ".built"), `${new Date().toISOString()}\n`);
