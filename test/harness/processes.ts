import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { SERVER_NODE_FLAGS } from "../../src/server/node-flags.js";
import type { ShardSet } from "../../src/shard/shards.js";
import { testAuthEnv } from "./auth.js";

/** A running `src/main.ts` (what `npm start` runs) as a child process. */
export interface MainProcess {
  child: ChildProcess;
  /** Resolves with the port of the "serving" log line; rejects if the process ends first. */
  port: Promise<number>;
  /** Resolves on "close" (not "exit"): only then has all of its output been read. */
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  log(): string;
}

const started = new Set<ChildProcess>();

/**
 * Starts `src/main.ts` on a free loopback port with the test auth keys; `env` adds to or overrides
 * the environment (SHARD_URLS, REDIS_URLS, FAULT_POINT, …). Call killStartedProcesses in afterEach.
 */
export function startMain(env: Record<string, string>): MainProcess {
  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, "--import", "tsx", "src/main.ts"], {
    env: {
      ...process.env,
      PORT: "0",
      GRPC_PORT: "0",
      HOST: "127.0.0.1",
      MIGRATE_ON_START: "false",
      LOG_LEVEL: "info",
      FAULT_POINT: "",
      ...testAuthEnv,
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.add(child);
  let out = "";
  const exited = once(child, "close") as Promise<[number | null, NodeJS.Signals | null]>;
  const port = new Promise<number>((resolve, reject) => {
    // Keep reading for the whole life of the process: a full pipe would block its logger.
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split("\n").find((l) => l.includes('"msg":"serving"'));
      if (line) resolve(JSON.parse(line).port as number);
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    void exited.then(([code, signal]) =>
      reject(new Error(`exited (${code ?? signal}) before serving:\n${out}`)),
    );
  });
  port.catch(() => undefined);
  return { child, port, exited, log: () => out };
}

/** SIGKILLs every process startMain started that is still running. */
export function killStartedProcesses(): void {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  started.clear();
}

type Row = Record<string, unknown>;

/** A query on every shard, rows tagged with the shard index. */
export async function everyShard(
  shards: ShardSet,
  sql: string,
  params: unknown[] = [],
): Promise<(Row & { shard: number })[]> {
  const all = await Promise.all(
    shards.shards.map(async (s) =>
      (await s.fork().execute<Row[]>(sql, params)).map((r) => ({ ...r, shard: s.index })),
    ),
  );
  return all.flat();
}
