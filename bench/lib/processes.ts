import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { SERVER_NODE_FLAGS } from "../../src/server/node-flags.js";

/** A server under test in its own process, so its CPU and memory are measured apart from the load. */
export interface ServerProcess {
  name: string;
  pid: number;
  /** Main port (the product's one port; gRPC for the references). */
  port: number;
  /** utime + stime of the process so far, in ms (/proc/<pid>/stat). */
  cpuMs(): number;
  /** Resident set size now, in MiB (/proc/<pid>/status VmRSS). */
  rssMiB(): number;
  stop(): Promise<void>;
}

const TICK_MS = 10; // CLK_TCK is 100 on Linux x86-64

/**
 * The product server's environment for a bench: its shards and Redis nodes, the one port and the
 * native gRPC port on loopback, test auth, no rate limits, a short drain, warnings only.
 */
export function productEnv(opts: {
  shardUrls: string[];
  redisUrls: string[];
  port: number;
  grpcPort: number;
  auth: Record<string, string>;
}): Record<string, string> {
  return {
    ...opts.auth,
    SHARD_URLS: opts.shardUrls.join(","),
    REDIS_URLS: opts.redisUrls.join(","),
    PORT: String(opts.port),
    GRPC_PORT: String(opts.grpcPort),
    HOST: "127.0.0.1",
    MIGRATE_ON_START: "false",
    RATE_LIMIT_USER_RPS: "0",
    RATE_LIMIT_SERVICE_RPS: "0",
    DRAIN_TIMEOUT_MS: "1000",
    LOG_LEVEL: "warn",
  };
}

/** What a comparison changes about one server process. */
export interface ServerOptions {
  /** Node/V8 flags instead of the product's SERVER_NODE_FLAGS (BENCH_SERVER_NODE_FLAGS still follow). */
  nodeFlags?: readonly string[];
  /** Gets the process's stdout (e.g. --trace-gc lines) instead of passing it through. */
  onStdout?: (text: string) => void;
}

/** Starts `node --import tsx <script>` with the given env and waits until `port` accepts connections. */
export async function startServer(
  name: string,
  script: string,
  env: Record<string, string>,
  port: number,
  options: ServerOptions = {},
): Promise<ServerProcess> {
  // BENCH_SERVER_NODE_FLAGS: extra Node/V8 flags for every server process (experiments, e.g. GC flags
  // that NODE_OPTIONS refuses).
  const flags = [
    ...(options.nodeFlags ?? SERVER_NODE_FLAGS), // by default as `npm start` runs it
    ...(process.env.BENCH_SERVER_NODE_FLAGS ?? "").split(" ").filter((f) => f !== ""),
  ];
  const child = spawn(process.execPath, [...flags, "--import", "tsx", script], {
    env: { ...process.env, ...env },
    stdio: ["ignore", options.onStdout ? "pipe" : "inherit", "pipe"],
  });
  const { onStdout } = options;
  if (onStdout) child.stdout?.on("data", (d: Buffer) => onStdout(d.toString()));
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
    process.stderr.write(d);
  });
  const exited = new Promise<never>((_, reject) =>
    child.once("exit", (code) => reject(new Error(`${name} exited early (${code}): ${stderr}`))),
  );
  exited.catch(() => undefined);
  await Promise.race([waitForPort(port, 30_000), exited]);
  const pid = child.pid as number;
  return {
    name,
    pid,
    port,
    cpuMs: () => processCpuMs(pid),
    rssMiB: () => {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      return Number(m?.[1] ?? 0) / 1024;
    },
    stop: () => stop(child),
  };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 5000);
  await gone;
  clearTimeout(t);
}

export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await delay(100);
  }
  throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`);
}

/** utime + stime (fields 14, 15) of a process in ms from /proc/<pid>/stat (0 if it is gone). */
function processCpuMs(pid: number | string): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

/** CPU ms so far of every `postgres` process on this machine (postmaster and backends), by pid. */
export function postgresCpu(): Map<string, number> {
  const byPid = new Map<string, number>();
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "postgres") byPid.set(pid, processCpuMs(pid));
    } catch {
      // gone
    }
  }
  return byPid;
}

/**
 * Postgres CPU ms spent since `before`, over the processes alive now: a backend that exited in
 * between (an idle pool connection closed) drops out instead of making the sum negative.
 */
export function postgresCpuSince(before: Map<string, number>): number {
  let total = 0;
  for (const [pid, ms] of postgresCpu()) total += ms - (before.get(pid) ?? 0);
  return total;
}

/** Machine-wide busy and total CPU time in ms (/proc/stat), to tell how saturated the box was. */
export function machineCpu(): { busyMs: number; totalMs: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  const t = line.trim().split(/\s+/).slice(1).map(Number);
  const total = t.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (t[3] ?? 0) + (t[4] ?? 0);
  return { busyMs: (total - idle) * TICK_MS, totalMs: total * TICK_MS };
}
