import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { expect, it } from "vitest";

const run = promisify(execFile);

/**
 * The bench harness in smoke mode (tiny seed, 1 s measurements, its own shards, Redis nodes and
 * servers): it must run to the end, find no invariant violation and print every scenario's row, so
 * it cannot rot. No timing is asserted.
 */
it("npm run bench -- --smoke runs every scenario and exits 0", { timeout: 90_000 }, async () => {
  const { stdout } = await run(process.execPath, ["--import", "tsx", "bench/run.ts", "--smoke"], {
    timeout: 80_000,
    maxBuffer: 16 * 1024 * 1024,
  }).catch((e: { code?: number; stdout?: string; stderr?: string }) => {
    throw new Error(`bench --smoke exited ${e.code}:\n${e.stdout ?? ""}\n${(e.stderr ?? "").slice(-4000)}`);
  });
  const rows = stdout.split("\n").filter((l) => l.startsWith("| ") && !l.startsWith("| scenario"));
  const names = rows.map((l) =>
    l
      .split("|")
      .slice(2, 4)
      .map((c) => c.trim())
      .join(" / "),
  );
  expect(names).toEqual([
    "product / gRPC h2c",
    "product / Connect JSON HTTP/1.1",
    "bare limit / gRPC h2c",
    "naive baseline / gRPC h2c",
    "naive baseline / Connect JSON HTTP/1.1",
  ]);
  for (const row of rows) expect(row.split("|").at(-2)?.trim(), row).toBe("0"); // violations
});
