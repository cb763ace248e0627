// Data-driven protocol traces (test/raft/testdata/*.txt); the format is documented in trace-runner.ts.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { TraceRunner } from "./trace-runner";

const DIR = join(__dirname, "testdata");
const files = readdirSync(DIR).filter((f) => f.endsWith(".txt")).sort();

describe("raft traces", () => {
  test("every classic scenario has a trace", () => {
    for (const name of ["split-vote", "figure8", "stale-leader", "prevote", "leader-transfer", "snapshot", "membership"])
      expect(files).toContain(`${name}.txt`);
  });

  test.each(files)("%s", (file) => {
    // On failure the error names the line, the command and every node's state; rerun with
    // `npx jest test/raft/trace.test.ts -t <file>`.
    new TraceRunner().run(readFileSync(join(DIR, file), "utf8"));
  });
});
