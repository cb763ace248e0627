// Prints one plain closing line, "tests: N passed, N failed", that any CI reader understands.
// A suite that fails to load counts as a failure: it ran no assertion.
"use strict";
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    const skipped = results.numPendingTests + results.numTodoTests;
    process.stdout.write(
      `\ntests: ${results.numPassedTests} passed, ${failed} failed` + (skipped > 0 ? `, ${skipped} skipped` : "") + "\n",
    );
  }
}
module.exports = SummaryReporter;
