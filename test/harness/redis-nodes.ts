import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { setTimeout as delay } from "node:timers/promises";
import { choosePort } from "../../src/embedded/processes.js";
import { pings } from "../../src/embedded/redis.js";

/** Throwaway redis-server processes on free loopback ports. */
export interface RedisNodes {
  /** redis://127.0.0.1:<port>, one per node, stable across stop/start. */
  urls: string[];
  /** Stops node i (SIGKILL, like a crash) and waits for it to exit. */
  stop(i: number): Promise<void>;
  /** Restarts node i on the same port, empty, and waits until it answers PING. */
  start(i: number): Promise<void>;
  stopAll(): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Starts n redis-server processes; they are killed on stopAll() and, at the latest, when this process exits. */
export async function startRedisNodes(n: number): Promise<RedisNodes> {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const child of live) child.kill("SIGKILL");
    });
  }
  const ports: number[] = [];
  for (let i = 0; i < n; i++) ports.push(await freePort());
  const procs: (ChildProcess | undefined)[] = new Array(n).fill(undefined);

  const node = (i: number): number => {
    const port = ports[i];
    if (port === undefined) throw new Error(`no redis node ${i} (have ${n})`);
    return port;
  };
  const stop = async (i: number): Promise<void> => {
    node(i);
    const child = procs[i];
    procs[i] = undefined;
    if (child) await kill(child);
  };
  const start = async (i: number): Promise<void> => {
    if (procs[i]) throw new Error(`redis node ${i} is already running`);
    procs[i] = await spawnRedis(node(i));
  };
  const stopAll = async (): Promise<void> => {
    await Promise.all(ports.map((_, i) => stop(i)));
  };

  try {
    await Promise.all(ports.map((_, i) => start(i)));
  } catch (e) {
    await stopAll();
    throw e;
  }
  return { urls: ports.map((p) => `redis://127.0.0.1:${p}`), stop, start, stopAll };
}

async function spawnRedis(port: number): Promise<ChildProcess> {
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
  const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  let output = "";
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-2000);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  let failure: Error | undefined;
  child.on("error", (err: NodeJS.ErrnoException) => {
    failure =
      err.code === "ENOENT"
        ? new Error("redis-server is not on the PATH: install Redis 7 to run these tests")
        : err;
  });
  child.on("exit", (code, signal) => {
    live.delete(child);
    failure ??= new Error(`redis-server on port ${port} exited (${code ?? signal}): ${output}`);
  });

  const deadline = Date.now() + 10_000;
  while (!(await pings(port))) {
    if (failure) throw failure;
    if (Date.now() > deadline) {
      await kill(child);
      throw new Error(`redis-server on port ${port} did not answer PING within 10 s: ${output}`);
    }
    await delay(20);
  }
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGKILL");
  await exited;
}

/** A port that was free a moment ago (bind port 0, read it, close). */
const freePort = (): Promise<number> => choosePort(undefined);
