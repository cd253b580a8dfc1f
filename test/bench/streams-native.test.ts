import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { expect, it } from "vitest";

const run = promisify(execFile);

/**
 * Scenario 6 with its watchers on the native gRPC port (`--watch-port native`), in smoke mode: the
 * full bench runs the main port only, so this keeps the other way from rotting. No timing asserted.
 */
it("the streams scenario runs with its watchers on the native gRPC port", { timeout: 120_000 }, async () => {
  const args = ["--import", "tsx", "bench/scenarios/streams.main.ts", "--smoke", "--watch-port", "native"];
  const { stdout } = await run(process.execPath, args, {
    timeout: 110_000,
    maxBuffer: 8 * 1024 * 1024,
  }).catch((e: { code?: number; stdout?: string; stderr?: string }) => {
    throw new Error(
      `streams --watch-port native exited ${e.code}:\n${e.stdout ?? ""}\n${(e.stderr ?? "").slice(-4000)}`,
    );
  });
  expect(stdout).toMatch(
    /200 watchers \(20 WatchOrders, the rest WatchOrder\) on 10 orders, live in \d+ ms \(server gauges 100 \+ 100\), on the native gRPC port \(grpc-js\)\./,
  );
  expect(stdout).toMatch(
    /Deliveries: (\d+) expected, \1 delivered, 0 missing, 0 duplicated, 0 out of order, 0 unexpected; 0 streams ended early\./,
  );
  // Every stream the watchers opened on the native port was gone from both servers after close.
  const servers = stdout.split("\n").filter((l) => /^\| streams-[AB] /.test(l));
  expect(servers).toHaveLength(2);
  for (const row of servers) expect(row.split("|").at(-2)?.trim(), row).toBe("0");
  expect(stdout).toContain("Order check violations: 0.");
});
