import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { LoadResult } from "./grpc-load.js";
import type { Pair } from "./seed.js";

const run = promisify(execFile);
const SCRIPT = new URL("./reserve.lua", import.meta.url).pathname;

/** Writes the pairs file wrk's script reads (one "buyer product" line each); returns its path. */
export function writePairsFile(pairs: Pair[]): string {
  const file = join(tmpdir(), `bench-pairs-${process.pid}.txt`);
  writeFileSync(file, pairs.map((p) => `${p.buyer} ${p.product}\n`).join(""));
  return file;
}

/**
 * Connect JSON over HTTP/1.1 with wrk (C, cheap on the client side, so the server gets the cores): one
 * thread, `connections` keep-alive connections, one request in flight on each, bodies made per request
 * by bench/lib/reserve.lua.
 */
export async function wrkLoad(opts: {
  port: number;
  pairsFile: string;
  connections: number;
  seconds: number;
  token: string | null;
  tag: string;
}): Promise<LoadResult> {
  const { stdout } = await run("wrk", [
    "-t1",
    `-c${opts.connections}`,
    `-d${Math.max(1, Math.round(opts.seconds))}s`, // wrk takes whole seconds
    "--timeout",
    "10s",
    "-s",
    SCRIPT,
    `http://127.0.0.1:${opts.port}`,
    "--",
    opts.tag,
    opts.pairsFile,
    opts.token ?? "-",
  ]);
  const line = stdout.split("\n").find((l) => l.startsWith("BENCH "));
  if (!line) throw new Error(`wrk printed no result:\n${stdout}`);
  const r = JSON.parse(line.slice(6)) as {
    requests: number;
    duration_us: number;
    p50_us: number;
    p99_us: number;
    errors: number;
  };
  return {
    calls: r.requests,
    errors: r.errors,
    firstError: r.errors > 0 ? "non-2xx or socket errors (wrk counts only)" : null,
    seconds: r.duration_us / 1e6,
    p50Ms: r.p50_us / 1000,
    p99Ms: r.p99_us / 1000,
    clientCpuMsPerCall: Number.NaN, // wrk is another process; not measured
  };
}
