import type { Reporter, TestModule } from "vitest/node";

/**
 * Prints one plain closing line, `tests: N passed, N failed, N skipped`, after vitest's own summary,
 * so CI logs can be read by tools that do not know vitest's format.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const mod of testModules) {
      let modFailed = 0;
      let modNotRun = 0;
      for (const test of mod.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") modFailed++;
        else modNotRun++;
      }
      // A file that failed outside its tests (a beforeAll, an import) leaves them "skipped": they did
      // not run because something broke, so they count as failed (at least one for the file).
      if (mod.state() === "failed" && modFailed === 0) {
        modFailed = Math.max(1, modNotRun);
        modNotRun = 0;
      }
      failed += modFailed;
      skipped += modNotRun;
    }
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
