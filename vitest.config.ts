import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // vitest's own output, then one plain "tests: N passed, N failed, N skipped" line for CI logs.
    reporters: ["default", "./test/harness/summary-reporter.ts"],
    // Postgres databases and a Redis quorum for the whole run; see the file for SHARD_URLS/REDIS_URLS.
    globalSetup: ["test/harness/global-setup.ts"],
    testTimeout: 30_000,
    // Starting servers, creating databases and running migrations happen in hooks.
    hookTimeout: 120_000,
    // Real sockets and child processes: each test file in its own process.
    pool: "forks",
    // The machines have 2 cores; more workers only contend for them (and for Postgres).
    maxWorkers: 2,
  },
});
