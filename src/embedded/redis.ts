/**
 * Embedded Redis: independent `redis-server` children on loopback (ports 6390.. when free), keeping
 * nothing on disk. Each node's pid is written to `<dir>/node-<i>.pid` so a node orphaned by a killed
 * earlier run is stopped on the next start.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, readFile, unlink, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import type { Logger } from "pino";
import {
  captureOutput,
  choosePort,
  commandLine,
  EmbeddedError,
  isAlive,
  killOnExit,
  stopChild,
  waitForExit,
  which,
} from "./processes.js";

const FIRST_PORT = 6390;
export const REDIS_NOT_FOUND =
  "redis-server not found on PATH: install it (Debian/Ubuntu: apt-get install redis-server; " +
  "macOS: brew install redis) or set REDIS_URLS";

export interface EmbeddedRedis {
  urls: string[];
  stop(): Promise<void>;
}

/** Starts `nodes` redis-server processes and waits until each answers PING. */
export async function startEmbeddedRedis(opts: {
  dir: string;
  nodes: number;
  logger: Logger;
}): Promise<EmbeddedRedis> {
  const { dir, nodes, logger } = opts;
  const bin = await which("redis-server");
  if (bin === null) throw new EmbeddedError(REDIS_NOT_FOUND);
  await mkdir(dir, { recursive: true });
  const started: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(started.map((child) => stopChild(child, "SIGTERM", 5_000)));
    await Promise.all(started.map((_, i) => unlink(pidFile(dir, i)).catch(() => undefined)));
  };
  const ports: number[] = [];
  try {
    for (let i = 0; i < nodes; i++) {
      await stopOrphan(dir, i, logger);
      const { child, port } = await startNode(bin, dir, FIRST_PORT + i, ports, logger);
      started.push(child);
      ports.push(port);
      await writeFile(pidFile(dir, i), `${child.pid}\n`);
    }
  } catch (e) {
    await stop();
    throw e;
  }
  logger.info({ ports }, "embedded Redis ready");
  return { urls: ports.map((p) => `redis://127.0.0.1:${p}`), stop };
}

const pidFile = (dir: string, i: number) => join(dir, `node-${i}.pid`);

async function stopOrphan(dir: string, i: number, logger: Logger): Promise<void> {
  const pid = Number.parseInt(await readFile(pidFile(dir, i), "utf8").catch(() => ""), 10);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
  if (!(await commandLine(pid))?.includes("redis-server")) return;
  logger.warn({ orphanPid: pid }, "stopping an embedded Redis node left running by an earlier run");
  process.kill(pid, "SIGTERM");
  await waitForExit(pid, 5_000);
}

async function startNode(
  bin: string,
  dir: string,
  preferred: number,
  taken: number[],
  logger: Logger,
): Promise<{ child: ChildProcess; port: number }> {
  for (let attempt = 1; ; attempt++) {
    let port = await choosePort(attempt === 1 ? preferred : undefined);
    while (taken.includes(port)) port = await choosePort(undefined);
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    args.push("--dir", dir, "--daemonize", "no", "--logfile", "");
    // detached: a Ctrl-C in the terminal reaches only this process, which drains and then stops Redis.
    const child = spawn(bin, args, { detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const output = captureOutput(child);
    killOnExit(child, "SIGTERM");
    const failure = await waitForPong(child, port, 10_000);
    if (failure === undefined) {
      logger.debug({ port, pid: child.pid }, "embedded Redis node started");
      return { child, port };
    }
    await stopChild(child, "SIGKILL", 1_000);
    const text = output();
    if (attempt < 3 && /address already in use/i.test(text)) continue;
    throw new EmbeddedError(
      `embedded redis-server on port ${port} did not start (${failure}): ${text.slice(-1500)}`,
    );
  }
}

async function waitForPong(
  child: ChildProcess,
  port: number,
  timeoutMs: number,
): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      return `exited with ${child.exitCode ?? child.signalCode}`;
    if (await pings(port)) return undefined;
    if (Date.now() > deadline) return `no PONG after ${timeoutMs} ms`;
    await delay(25);
  }
}

/** True when the server on the port answers PING with PONG. */
export function pings(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let reply = "";
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on("error", () => done(false));
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk: Buffer) => {
      reply += chunk.toString();
      if (reply.includes("\r\n")) done(reply.startsWith("+PONG"));
    });
  });
}
