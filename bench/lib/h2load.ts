/**
 * gRPC calls from h2load (Debian's nghttp2-client), for requests whose body does not change from
 * call to call: one h2c connection, one stream at a time (`-c 1 -m 1`), the same framed message on
 * every request (`-d FILE`). h2load is C and costs the machine far less per call than a Node client,
 * so less of the latency it records is the load generator's own CPU or garbage collection.
 *
 * h2load knows HTTP, not gRPC: it counts an answer with HTTP status 200 as a success even when its
 * trailers carry a gRPC error. So every run is checked against the server's own count of calls by
 * gRPC code (`rpcCodes`, from its /metrics): a run passes only if every call ended OK.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { scrapeMetrics } from "./server-gc.js";

export interface H2loadRun {
  /** Latency of each call that got HTTP 200, ms, in the order they ended (the first call dropped). */
  latenciesMs: number[];
  /** Calls without an HTTP 200 answer (or none at all). */
  failed: number;
  /** h2load's own CPU (user + system), ms. */
  cpuMs: number;
}

/**
 * `calls` + 1 sequential calls of one request; the first is dropped from the latencies (it is the
 * connection's first stream, and slower), so `calls` are reported.
 */
export async function h2loadGrpc(opts: {
  port: number;
  /** e.g. /shop.order.v1.OrderService/ListOrders */
  path: string;
  /** The framed gRPC message (5-byte prefix and the protobuf bytes). */
  body: Uint8Array;
  bearer: string;
  calls: number;
}): Promise<H2loadRun> {
  const dir = mkdtempSync(join(tmpdir(), "h2load-"));
  try {
    const bodyFile = join(dir, "body");
    const logFile = join(dir, "log.tsv");
    writeFileSync(bodyFile, opts.body);
    const total = opts.calls + 1;
    const args = [
      ...["-n", String(total), "-c", "1", "-m", "1", "-t", "1"],
      ...["-d", bodyFile, `--log-file=${logFile}`],
      ...["-H", "content-type: application/grpc", "-H", "te: trailers"],
      ...["-H", `authorization: Bearer ${opts.bearer}`],
      `http://127.0.0.1:${opts.port}${opts.path}`,
    ];
    // bash's `times` prints the CPU of the shell and then of its finished children (h2load).
    const out = await run("bash", ["-c", 'h2load "$@" >/dev/null || exit $?; times', "h2load", ...args]);
    const rows = readFileSync(logFile, "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => l.split("\t"))
      .sort((a, b) => Number(a[0]) - Number(b[0]));
    const ok = rows.filter((r) => r[1] === "200");
    return {
      latenciesMs: ok.slice(rows[0]?.[1] === "200" ? 1 : 0).map((r) => Number(r[2]) / 1000),
      failed: total - ok.length,
      cpuMs: childCpuMs(out),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The children's line of bash's `times` ("0m0.030s 0m0.022s"), user + system in ms. */
export function childCpuMs(times: string): number {
  const line = times.trim().split("\n")[1] ?? "";
  const parts = [...line.matchAll(/(\d+)m([\d.]+)s/g)];
  if (parts.length !== 2) throw new Error(`unexpected output of bash's times: ${JSON.stringify(times)}`);
  return parts.reduce((ms, p) => ms + (Number(p[1]) * 60 + Number(p[2])) * 1000, 0);
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    child.once("error", (e) =>
      reject(new Error(`cannot run ${cmd} (h2load: apt-get install nghttp2-client): ${e.message}`)),
    );
    child.once("exit", (code) =>
      code === 0
        ? resolve(stdout)
        : reject(
            new Error(
              `h2load exited with ${code}${code === 127 ? " (not installed: apt-get install nghttp2-client)" : ""}: ${stderr}`,
            ),
          ),
    );
  });
}

/** Calls the server has finished, by gRPC/Connect code label ("ok", "not_found", …), for one method. */
export async function rpcCodes(
  port: number,
  service: string,
  method: string,
): Promise<Record<string, number>> {
  return rpcCodesIn(await scrapeMetrics(port), service, method);
}

/** rpcCodes from a /metrics text already read (so one scrape serves several readings). */
export function rpcCodesIn(metrics: string, service: string, method: string): Record<string, number> {
  const codes: Record<string, number> = {};
  const line = /^rpc_server_duration_seconds_count\{([^}]*)\} (\d+)$/;
  for (const l of metrics.split("\n")) {
    const m = line.exec(l);
    if (!m) continue;
    const labels = Object.fromEntries(
      [...(m[1] as string).matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1] as string, x[2] as string]),
    );
    if (labels.service === service && labels.method === method) codes[labels.code as string] = Number(m[2]);
  }
  return codes;
}

/** Calls per code between two readings of rpcCodes. */
export function codesBetween(
  before: Record<string, number>,
  after: Record<string, number>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [code, n] of Object.entries(after)) {
    const d = n - (before[code] ?? 0);
    if (d > 0) out[code] = d;
  }
  return out;
}
