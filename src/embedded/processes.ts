/** Process and port helpers for the embedded Postgres and Redis children. */
import { type ChildProcess, execFile } from "node:child_process";
import { once } from "node:events";
import { constants } from "node:fs";
import { access, readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { delimiter, join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";

/** Raised when the embedded default cannot start; its message says what to do instead. */
export class EmbeddedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "EmbeddedError";
  }
}

/** Children to stop if this process exits without stop(): the signal each one gets. */
const children = new Map<ChildProcess, NodeJS.Signals>();
let exitHookInstalled = false;

/**
 * Tracks a child so it dies with this process. The 'exit' handler can only send signals (no waiting):
 * Postgres gets SIGINT (fast shutdown, which it completes on its own), Redis SIGTERM.
 */
export function killOnExit(child: ChildProcess, signal: NodeJS.Signals): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const [c, s] of children) c.kill(s);
    });
  }
  children.set(child, signal);
  child.once("exit", () => children.delete(child));
}

/** Sends `signal`, waits up to `timeoutMs` for the child to exit, then SIGKILLs it. */
export async function stopChild(
  child: ChildProcess,
  signal: NodeJS.Signals,
  timeoutMs: number,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
    children.delete(child);
  }
}

/** True when a process with this pid exists (EPERM means it exists but belongs to another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Waits until `pid` is gone (or a zombie, for an orphan its new parent has not reaped yet). */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid) && !(await isZombie(pid))) {
    if (Date.now() > deadline) return false;
    await delay(50);
  }
  return true;
}

async function isZombie(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return / Z /.test(stat.slice(stat.lastIndexOf(")")));
}

/** The command line of a running process, or null when it is gone or cannot be read. */
export async function commandLine(pid: number): Promise<string | null> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, "utf8")).replaceAll("\0", " ");
  } catch {
    // No /proc (macOS): ask ps.
    return new Promise((resolve) => {
      execFile("ps", ["-o", "command=", "-p", String(pid)], (err, stdout) => {
        resolve(err ? null : stdout.trim() || null);
      });
    });
  }
}

/** The absolute path of an executable on PATH, or null. */
export async function which(name: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** True when nothing listens on 127.0.0.1:port right now. */
export async function isPortFree(port: number): Promise<boolean> {
  const server = createServer();
  try {
    server.listen({ port, host: "127.0.0.1", exclusive: true });
    await once(server, "listening");
    return true;
  } catch {
    return false;
  } finally {
    if (server.listening) {
      server.close();
      await once(server, "close");
    }
  }
}

/** `preferred` when it is free, else a port the OS just handed out (free a moment ago). */
export async function choosePort(preferred: number | undefined): Promise<number> {
  if (preferred !== undefined && (await isPortFree(preferred))) return preferred;
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (address === null || typeof address === "string") throw new EmbeddedError("could not find a free port");
  return address.port;
}

/** Keeps the last `max` characters a child wrote, for error messages. */
export function captureOutput(child: ChildProcess, max = 4000): () => string {
  let output = "";
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-max);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  return () => output.trim();
}
